#pragma once
// Agent files: `agents/NAME.md`, YAML front matter between two `---` lines, then the system
// prompt as the body. This header is the parsed, validated form; the registry (registry.h)
// loads a directory of them and chooses one for a task.
//
// Front matter fields:
//   name          required; [A-Za-z0-9][A-Za-z0-9._-]* (it appears in branch names and keys)
//   role          required; one line saying what the agent does
//   runner        required; script | cli | llm
//   capabilities  list of strings matched against a task's `capabilities`
//   command       script: the command, run with `sh -c` in the worktree (required for script);
//                 cli: overrides the preset's command template (optional)
//   preset        cli: claude | codex | opencode | aider | gemini (required for cli)
//   model         model alias (llm: required, e.g. cloud/mid; cli: passed to the CLI if set)
//   fallbacks     list of model aliases tried after `model`
//   temperature   number in [0, 2]
//   max_turns     integer >= 1
//   cost_tier     integer >= 0, lower = cheaper (default 1); chooses among capable agents
//   budget        {usd_per_task, usd_per_day, tokens_per_task}, each optional, >= 0
//   tools         list of tool names the agent may use (llm runner)
//   network       bool, default false: network access inside the sandbox
//   env           list of variable names of the factory's environment the agent's commands
//                 get (e.g. [OPENAI_API_KEY]); nothing else of it passes but PATH, locale,
//                 TERM and TZ (workspace/sandbox.h CleanEnvironment)
//   concurrency   integer >= 1, default 1: tasks this agent may run at once
// Unknown fields are warnings (a newer file read by an older factory still loads).

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/diagnostics.h"
#include "core/result.h"

namespace factory {

enum class RunnerKind { kScript, kCli, kLlm };
std::string_view RunnerKindName(RunnerKind kind);
std::optional<RunnerKind> ParseRunnerKind(std::string_view name);

// Presets the cli runner knows; validated here so a typo fails at load time.
inline constexpr std::string_view kCliPresets[] = {"claude", "codex", "opencode", "aider",
                                                   "gemini"};

struct AgentBudget {
  std::optional<double> usd_per_task;
  std::optional<double> usd_per_day;
  std::optional<int64_t> tokens_per_task;
};

struct AgentSpec {
  std::string name;
  std::string role;
  RunnerKind runner = RunnerKind::kScript;
  std::vector<std::string> capabilities;
  std::string command;  // script: required; cli: optional override of the preset template
  std::string preset;   // cli only
  std::string model;    // model alias; empty when not set
  std::vector<std::string> fallbacks;
  std::optional<double> temperature;
  std::optional<int> max_turns;
  int cost_tier = 1;
  AgentBudget budget;
  std::vector<std::string> tools;
  bool network = false;
  std::vector<std::string> env;  // names of variables passed through to its commands
  int concurrency = 1;
  std::string system_prompt;  // the body, leading blank lines and trailing whitespace trimmed

  std::string source;  // the file it came from ("" when built in code)
  // File line of each front matter field present ("model" -> 7), for messages from checks made
  // after loading (unknown model aliases, reviewer/builder model clashes).
  std::map<std::string, int> field_lines;

  // True when every capability in `required` is one of this agent's capabilities.
  [[nodiscard]] bool Covers(const std::vector<std::string>& required) const;
};

// Parses an agent file's text. `file` names it in diagnostics. Errors (missing or malformed
// front matter, missing required field, wrong type) fail the parse with every error, one per
// line, as "FILE:LINE: field 'x': ..."; unknown fields come back as warnings. Lines are file
// lines (the front matter's first line is line 2).
Result<Loaded<AgentSpec>> ParseAgentFile(std::string_view text, const std::string& file);

// Reads and parses one file. NotFound when it cannot be read.
Result<Loaded<AgentSpec>> LoadAgentFile(const std::filesystem::path& path);

// Whether `name` is a valid agent (or task) name: [A-Za-z0-9][A-Za-z0-9._-]*, at most 64
// characters, no "..". Such names are safe in git branch names, file names and URLs.
bool IsValidName(std::string_view name);

}  // namespace factory
