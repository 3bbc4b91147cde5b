#include "agents/examples.h"

#include <algorithm>
#include <fstream>
#include <system_error>

namespace factory {
namespace {

constexpr std::string_view kLlmBody =
    R"md(You are a senior software engineer working in a git worktree of this repository.

Read the task's spec and acceptance criteria, look at the code that matters for it, make the
smallest change that satisfies every criterion, and run the project's tests with run_command.
If feedback from a previous attempt is given, fix exactly what it reports first.
When the work is complete, call finish with a short summary of what you changed and why.
)md";

constexpr std::string_view kCliBody =
    R"md(You are a careful senior engineer working in a git worktree of this repository. Implement the
task you are given so that every acceptance criterion holds. Keep the change small and focused,
follow the code style around you, and run the tests before you finish. Do not touch files the
task does not need.
)md";

struct CliFacts {
  std::string_view preset;
  std::string_view product;  // for the role line
  std::string_view env;      // the key variables its CLI reads
};

// The private HOME of the sandbox hides a CLI's own login, so its key comes from the
// environment, named here (nothing else of the factory's environment reaches an agent).
constexpr CliFacts kCliFacts[] = {
    {"claude", "Claude Code", "[ANTHROPIC_API_KEY]"},
    {"codex", "Codex CLI", "[OPENAI_API_KEY]"},
    {"opencode", "OpenCode", "[OPENAI_API_KEY, ANTHROPIC_API_KEY]"},
    {"gemini", "Gemini CLI", "[GEMINI_API_KEY]"},
    {"aider", "Aider", "[OPENAI_API_KEY, ANTHROPIC_API_KEY]"},
};

std::string Comment(std::string_view why) {
  if (why.empty()) return "";
  return "# " + std::string(why) + "\n";
}

Status WriteFile(const std::filesystem::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable("cannot write " + path.string());
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) return Unavailable("error writing " + path.string());
  return Ok();
}

}  // namespace

ExampleFile LlmAgentFile(std::string_view model, std::string_view why) {
  std::string text =
      "---\n" + Comment(why) +
      "# The built-in tool-loop agent (`llm` runner): it edits files through tools "
      "confined to\n# its worktree and runs commands in the sandbox. `model` is an "
      "alias of .factory/models.yaml.\n"
      "name: llm-coder\n"
      "role: Implements code changes with the built-in tool-loop agent\n"
      "runner: llm\n"
      "model: " +
      std::string(model) +
      "\n"
      "temperature: 0.2\n"
      "max_turns: 40\n"
      "capabilities: [code, test, docs, refactor]\n"
      "cost_tier: 2         # lower = cheaper; the cheapest capable agent is chosen\n"
      "concurrency: 2       # tasks this agent may run at the same time\n"
      "tools: [read_file, write_file, edit_file, list_dir, grep, run_command, "
      "finish]\n"
      "network: false       # no network inside the sandbox\n"
      "budget:\n"
      "  usd_per_task: 1.00\n"
      "  usd_per_day: 10.00\n"
      "  tokens_per_task: 400000\n"
      "---\n" +
      std::string(kLlmBody);
  return {"llm-coder.md", std::move(text)};
}

Result<ExampleFile> CliAgentFile(std::string_view preset, std::string_view why) {
  const auto* facts = std::find_if(std::begin(kCliFacts), std::end(kCliFacts),
                                   [&](const CliFacts& f) { return f.preset == preset; });
  if (facts == std::end(kCliFacts)) {
    return InvalidArgument("unknown cli preset '" + std::string(preset) + "'");
  }
  const std::string name = std::string(preset) + "-coder";
  std::string text =
      "---\n" + Comment(why) + "# " + std::string(facts->product) +
      " as an agent, through the `cli` runner. It runs in the sandbox with a\n"
      "# private HOME, so its own login is not seen: it gets the key variables named in `env`.\n"
      "# Behind `factory gateway` (config.yaml `gateway:`) its model calls are metered and "
      "capped.\n"
      "name: " +
      name + "\nrole: Implements and refactors code with " + std::string(facts->product) +
      "\nrunner: cli\n"
      "preset: " +
      std::string(preset) +
      "     # claude | codex | opencode | aider | gemini\n"
      "capabilities: [code, test, docs, refactor]\n"
      "cost_tier: 3\n"
      "concurrency: 1\n"
      "network: true       # the CLI talks to its model API\n"
      "env: " +
      std::string(facts->env) +
      "\n"
      "max_turns: 30\n"
      "budget:\n"
      "  usd_per_task: 2.00\n"
      "  usd_per_day: 20.00\n"
      "---\n" +
      std::string(kCliBody);
  return ExampleFile{name + ".md", std::move(text)};
}

std::vector<ExampleFile> ExampleAgentFiles() {
  std::vector<ExampleFile> files;
  files.push_back(LlmAgentFile("cloud/mid",
                               "Example: copy to .factory/agents/ to enable it (needs a model "
                               "provider of models.yaml)."));
  auto claude = CliAgentFile("claude",
                             "Example: copy to .factory/agents/ to enable it (needs the `claude` "
                             "CLI on PATH).");
  if (claude) files.push_back(std::move(*claude));
  return files;
}

Result<std::vector<std::filesystem::path>> WriteAgentFiles(const std::filesystem::path& dir,
                                                           const std::vector<ExampleFile>& files) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());
  std::vector<std::filesystem::path> written;
  for (const ExampleFile& file : files) {
    std::filesystem::path path = dir / file.name;
    if (std::filesystem::exists(path, ec)) continue;
    FACTORY_RETURN_IF_ERROR(WriteFile(path, file.content));
    written.push_back(path);
  }
  return written;
}

}  // namespace factory
