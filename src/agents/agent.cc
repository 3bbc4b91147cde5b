#include "agents/agent.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "agents/yaml_fields.h"
#include "core/text_file.h"

namespace factory {
namespace {

const std::set<std::string, std::less<>> kKnownFields = {
    "name",  "role",      "runner",      "capabilities", "command",   "preset",
    "model", "fallbacks", "temperature", "max_turns",    "cost_tier", "budget",
    "tools", "network",   "concurrency", "env"};
const std::set<std::string, std::less<>> kKnownBudgetFields = {"usd_per_task", "usd_per_day",
                                                               "tokens_per_task"};

// The text of a line without its line ending.
std::string_view StripEol(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool IsFenceLine(std::string_view line) {
  line = StripEol(line);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  return line == "---";
}

struct FrontMatter {
  std::string yaml;
  std::string body;
};

// Splits "---\n<yaml>---\n<body>". nullopt with a diagnostic when the fences are missing.
std::optional<FrontMatter> SplitFrontMatter(std::string_view text, Diagnostics& diagnostics) {
  // A UTF-8 byte order mark some editors write must not hide the opening fence.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  size_t first_end = text.find('\n');
  std::string_view first_line = text.substr(0, first_end);
  if (!IsFenceLine(first_line)) {
    diagnostics.AddError(1, "", "an agent file must start with a '---' line (YAML front matter)");
    return std::nullopt;
  }
  if (first_end == std::string_view::npos) {
    diagnostics.AddError(1, "", "front matter is not closed by a '---' line");
    return std::nullopt;
  }
  size_t pos = first_end + 1;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (IsFenceLine(line)) {
      FrontMatter out;
      out.yaml = std::string(text.substr(first_end + 1, pos - first_end - 1));
      out.body = end == std::string_view::npos ? "" : std::string(text.substr(end + 1));
      return out;
    }
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  diagnostics.AddError(1, "", "front matter is not closed by a '---' line");
  return std::nullopt;
}

std::string TrimBody(std::string body) {
  size_t start = 0;
  // Drop leading blank lines only: indentation of the first real line is the author's.
  while (true) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) break;
    std::string_view line(body.data() + start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) break;
    start = end + 1;
  }
  body.erase(0, start);
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.back()))) body.pop_back();
  return body;
}

}  // namespace

std::string_view RunnerKindName(RunnerKind kind) {
  switch (kind) {
    case RunnerKind::kScript:
      return "script";
    case RunnerKind::kCli:
      return "cli";
    case RunnerKind::kLlm:
      return "llm";
  }
  return "unknown";
}

std::optional<RunnerKind> ParseRunnerKind(std::string_view name) {
  if (name == "script") return RunnerKind::kScript;
  if (name == "cli") return RunnerKind::kCli;
  if (name == "llm") return RunnerKind::kLlm;
  return std::nullopt;
}

bool AgentSpec::Covers(const std::vector<std::string>& required) const {
  return std::all_of(required.begin(), required.end(), [&](const std::string& capability) {
    return std::find(capabilities.begin(), capabilities.end(), capability) != capabilities.end();
  });
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (name.find("..") != std::string_view::npos) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

namespace {

Result<Loaded<AgentSpec>> ParseAgentFileImpl(std::string_view text, const std::string& file) {
  Diagnostics diagnostics(file);
  std::optional<FrontMatter> parts = SplitFrontMatter(text, diagnostics);
  if (!parts) return std::unexpected(diagnostics.ToError());

  // The YAML starts on file line 2, after the opening fence.
  YamlFields fields(diagnostics, /*line_offset=*/1);
  std::optional<YAML::Node> root = fields.Parse(parts->yaml);
  if (!root) return std::unexpected(diagnostics.ToError());
  if (!root->IsMap()) {
    diagnostics.AddError(root->IsNull() ? 1 : fields.Line(*root), "",
                         "front matter must be a YAML mapping of fields");
    return std::unexpected(diagnostics.ToError());
  }
  const YAML::Node& doc = *root;
  fields.WarnUnknownKeys(doc, "", kKnownFields);

  AgentSpec spec;
  spec.source = file;
  for (const auto& entry : doc) {
    if (entry.first.IsScalar())
      spec.field_lines.emplace(entry.first.Scalar(), fields.Line(entry.first));
  }
  auto require_string = [&](const char* key, std::string& out) {
    const YAML::Node node = doc[key];
    if (!node.IsDefined() || node.IsNull()) {
      diagnostics.AddError(1, "", std::string("missing required field '") + key + "'");
      return false;
    }
    auto value = fields.String(node, key);
    if (!value) return false;
    if (value->empty()) {
      fields.AddError(node, key, "must not be empty");
      return false;
    }
    out = *value;
    return true;
  };
  // Optional fields: absent or null means "not set".
  auto present = [&](const char* key) {
    const YAML::Node node = doc[key];
    return node.IsDefined() && !node.IsNull();
  };

  if (require_string("name", spec.name) && !IsValidName(spec.name)) {
    fields.AddError(doc["name"], "name",
                    "'" + spec.name +
                        "' is not a valid name (letters, digits, '.', '_', '-'; starting "
                        "with a letter or digit; at most 64 characters)");
  }
  require_string("role", spec.role);
  std::string runner_name;
  bool has_runner = require_string("runner", runner_name);
  if (has_runner) {
    if (auto kind = ParseRunnerKind(runner_name)) {
      spec.runner = *kind;
    } else {
      fields.AddError(doc["runner"], "runner",
                      "must be one of script, cli, llm (got '" + runner_name + "')");
      has_runner = false;
    }
  }

  if (present("capabilities")) {
    if (auto value = fields.StringList(doc["capabilities"], "capabilities")) {
      spec.capabilities = *value;
    }
  }
  if (present("command")) {
    if (auto value = fields.String(doc["command"], "command")) spec.command = *value;
  }
  if (present("preset")) {
    if (auto value = fields.String(doc["preset"], "preset")) {
      if (std::find(std::begin(kCliPresets), std::end(kCliPresets), *value) ==
          std::end(kCliPresets)) {
        fields.AddError(
            doc["preset"], "preset",
            "must be one of claude, codex, opencode, aider, gemini (got '" + *value + "')");
      } else {
        spec.preset = *value;
      }
    }
  }
  if (present("model")) {
    if (auto value = fields.String(doc["model"], "model")) spec.model = *value;
  }
  if (present("fallbacks")) {
    if (auto value = fields.StringList(doc["fallbacks"], "fallbacks")) spec.fallbacks = *value;
  }
  if (present("temperature")) {
    spec.temperature = fields.Number(doc["temperature"], "temperature", 0.0, 2.0);
  }
  if (present("max_turns")) {
    if (auto value = fields.Int(doc["max_turns"], "max_turns", 1, 100000)) {
      spec.max_turns = static_cast<int>(*value);
    }
  }
  if (present("cost_tier")) {
    if (auto value = fields.Int(doc["cost_tier"], "cost_tier", 0, 1000)) {
      spec.cost_tier = static_cast<int>(*value);
    }
  }
  if (present("budget")) {
    const YAML::Node budget = doc["budget"];
    if (!budget.IsMap()) {
      fields.AddError(budget, "budget",
                      "must be a mapping of usd_per_task, usd_per_day, "
                      "tokens_per_task");
    } else {
      fields.WarnUnknownKeys(budget, "budget", kKnownBudgetFields);
      constexpr double kMaxUsd = 1e9;
      if (budget["usd_per_task"].IsDefined()) {
        spec.budget.usd_per_task =
            fields.Number(budget["usd_per_task"], "budget.usd_per_task", 0.0, kMaxUsd);
      }
      if (budget["usd_per_day"].IsDefined()) {
        spec.budget.usd_per_day =
            fields.Number(budget["usd_per_day"], "budget.usd_per_day", 0.0, kMaxUsd);
      }
      if (budget["tokens_per_task"].IsDefined()) {
        spec.budget.tokens_per_task =
            fields.Int(budget["tokens_per_task"], "budget.tokens_per_task", 1, INT64_MAX);
      }
    }
  }
  if (present("tools")) {
    if (auto value = fields.StringList(doc["tools"], "tools")) spec.tools = *value;
  }
  if (present("network")) {
    if (auto value = fields.Bool(doc["network"], "network")) spec.network = *value;
  }
  if (present("env")) {
    if (auto value = fields.EnvNameList(doc["env"], "env")) spec.env = *value;
  }
  if (present("concurrency")) {
    if (auto value = fields.Int(doc["concurrency"], "concurrency", 1, 10000)) {
      spec.concurrency = static_cast<int>(*value);
    }
  }

  // What each runner cannot work without.
  if (has_runner) {
    switch (spec.runner) {
      case RunnerKind::kScript:
        if (!present("command") || spec.command.empty()) {
          diagnostics.AddError(fields.Line(doc["runner"]), "command",
                               "runner 'script' needs a 'command'");
        }
        break;
      case RunnerKind::kCli:
        if (!present("preset")) {
          diagnostics.AddError(fields.Line(doc["runner"]), "preset",
                               "runner 'cli' needs a 'preset' (claude, codex, opencode, aider, "
                               "gemini)");
        }
        break;
      case RunnerKind::kLlm:
        if (!present("model")) {
          diagnostics.AddError(fields.Line(doc["runner"]), "model",
                               "runner 'llm' needs a 'model' alias (e.g. cloud/mid)");
        }
        break;
    }
  }

  // Fields the chosen runner ignores: loading still works, but the author probably expected
  // them to matter.
  if (has_runner) {
    std::vector<const char*> unused;
    if (spec.runner != RunnerKind::kCli) unused.push_back("preset");
    if (spec.runner == RunnerKind::kScript) {
      for (const char* key : {"model", "fallbacks", "temperature", "max_turns", "tools"}) {
        unused.push_back(key);
      }
    }
    for (const char* key : unused) {
      if (!present(key)) continue;
      fields.AddWarning(doc[key], key,
                        "not used by runner '" + std::string(RunnerKindName(spec.runner)) + "'");
    }
  }

  if (diagnostics.has_errors()) return std::unexpected(diagnostics.ToError());
  spec.system_prompt = TrimBody(std::move(parts->body));
  return Loaded<AgentSpec>{std::move(spec), diagnostics.warnings()};
}

}  // namespace

Result<Loaded<AgentSpec>> ParseAgentFile(std::string_view text, const std::string& file) {
  try {
    return ParseAgentFileImpl(text, file);
  } catch (const YAML::Exception& e) {
    // Every access is checked first; this is the last line of defence, not a control path.
    return InvalidArgument(file + ": cannot read front matter: " + e.what());
  }
}

Result<Loaded<AgentSpec>> LoadAgentFile(const std::filesystem::path& path) {
  auto text = ReadTextFile(path);
  if (!text && text.error().code == ErrorCode::kNotFound) {
    return NotFound("cannot read agent file " + path.string());
  }
  if (!text) return std::unexpected(text.error());
  return ParseAgentFile(*text, path.string());
}

}  // namespace factory
