// `factory prompts [--json]` and `factory prompts show NAME [--json]`: the prompt library, the
// shipped defaults and the project's overrides from <factory dir>/prompts/.

#include <fmt/core.h>

#include <iostream>

#include "cli/cli.h"
#include "cli/json_format.h"
#include "prompts/library.h"

namespace factory::cli {
namespace {

using prompts::PromptEntry;
using prompts::PromptLibrary;

std::filesystem::path OverrideDir(const CliContext& ctx, const std::string& dir_flag) {
  return dir_flag.empty() ? ctx.FactoryDir() / "prompts" : std::filesystem::path(dir_flag);
}

Json EntryToJson(const PromptEntry& entry) {
  Json variables = Json::array();
  for (const auto& variable : entry.prompt.variables()) {
    variables.push_back(Json{{"name", variable.name},
                             {"required", variable.required},
                             {"description", variable.description}});
  }
  return Json{{"name", entry.prompt.name()},
              {"source", prompts::PromptSourceName(entry.source)},
              {"overrides_builtin", entry.overrides_builtin},
              {"file", entry.prompt.file()},
              {"description", entry.prompt.description()},
              {"variables", std::move(variables)}};
}

// "A, B, C?" : required variables plain, optional ones with a '?'.
std::string VariableSummary(const PromptEntry& entry) {
  std::string summary;
  for (const auto& variable : entry.prompt.variables()) {
    summary += (summary.empty() ? "" : " ") + variable.name + (variable.required ? "" : "?");
  }
  return summary;
}

int ListPrompts(const CliContext& ctx, const std::string& dir_flag, bool as_json) {
  auto library = PromptLibrary::Load(OverrideDir(ctx, dir_flag));
  if (!library) return ReportError(library.error());
  if (as_json) {
    Json out = Json::array();
    for (const PromptEntry* entry : library->List()) out.push_back(EntryToJson(*entry));
    std::cout << DumpJson(out) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<18} {:<8} {}\n", "NAME", "SOURCE", "VARIABLES (? = optional)");
  for (const PromptEntry* entry : library->List()) {
    std::cout << fmt::format("{:<18} {:<8} {}\n", entry->prompt.name(),
                             prompts::PromptSourceName(entry->source), VariableSummary(*entry));
  }
  return kExitOk;
}

int ShowPrompt(const CliContext& ctx, const std::string& dir_flag, const std::string& name,
               bool as_json) {
  auto library = PromptLibrary::Load(OverrideDir(ctx, dir_flag));
  if (!library) return ReportError(library.error());
  auto entry = library->Find(name);
  if (!entry) return ReportError(entry.error());
  if (as_json) {
    Json out = EntryToJson(**entry);
    out["text"] = (*entry)->prompt.text();
    std::cout << DumpJson(out) << "\n";
    return kExitOk;
  }
  const std::string& text = (*entry)->prompt.text();
  std::cout << text;
  if (!text.empty() && text.back() != '\n') std::cout << "\n";
  return kExitOk;
}

}  // namespace

void AddPromptCommands(CLI::App& app, CliContext& ctx) {
  auto* list = app.add_subcommand(
      "prompts",
      "List the prompt templates (shipped defaults, overridden by <factory dir>/prompts/NAME.md)");
  // Option values live as long as the app (one CLI invocation per process).
  list->fallthrough();  // `prompts show NAME --dir D` reaches the parent's --dir
  static std::string dir_flag;
  static bool list_json = false;
  list->add_option("--dir", dir_flag, "Override directory (default: <factory dir>/prompts)");
  list->add_flag("--json", list_json,
                 "Print a JSON array: name, source (builtin|project), overrides_builtin, file, "
                 "description, variables [{name, required, description}]");
  list->callback([&ctx, list] {
    // `prompts show NAME` sets its own action; the parent's callback runs after it.
    if (!list->get_subcommands().empty()) return;
    ctx.action = [&ctx] { return ListPrompts(ctx, dir_flag, list_json); };
  });

  auto* show = list->add_subcommand("show", "Print one prompt template as its file holds it");
  static std::string show_name;
  static bool show_json = false;
  show->add_option("NAME", show_name, "Prompt name (see `factory prompts`)")->required();
  show->add_flag("--json", show_json, "Print JSON: the listing's fields plus text");
  show->callback(
      [&ctx] { ctx.action = [&ctx] { return ShowPrompt(ctx, dir_flag, show_name, show_json); }; });
}

}  // namespace factory::cli
