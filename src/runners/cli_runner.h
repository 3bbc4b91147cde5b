#pragma once
// The cli runner's pieces, public so they can be documented, listed (`factory agents`) and
// tested on their own: the presets' command templates, how a template becomes an argv, and the
// parsers for the agents' machine-readable output.
//
// Command templates. A template is split into words first, like a shell would split a plain
// command line (whitespace separates words; '...' and "..." group; a backslash escapes the next
// character), but nothing is expanded: no variables, no globs, no command substitution, no
// redirections. Placeholders are then substituted inside each word, so whatever they stand for
// (titles, specs, feedback, paths) always stays inside one argument and never reaches a shell:
//   {prompt_file}  absolute path of the prompt, written to <attempt_dir>/prompt.md
//   {prompt}       the prompt text itself, as one argument
//   {model}        the agent's `model:`; when empty, a `{model}` word is dropped together with
//                  the option before it ("--model {model}", "-m {model}"), and a word such as
//                  "--model={model}" is dropped alone
//   {worktree}     absolute path of the worktree (also the working directory)
// The prompt goes to the agent's stdin unless the template names {prompt_file} or {prompt}.
// The command's environment is the script runner's (the sandbox's clean environment with the
// agent's `env:` names, FACTORY_TASK_ID, FACTORY_TASK_FILE, FACTORY_WORKTREE, FACTORY_ATTEMPT,
// FACTORY_RUN_ID, RunnerContext::extra_env) plus FACTORY_PROMPT_FILE; the task and prompt files
// are bound read-only. A CLI installed outside the system directories (under /opt, in a home
// directory) must be made visible with config.yaml's `sandbox.read_paths`. Its stdout and stderr
// are kept in <attempt_dir>/runner.stdout.log and runner.stderr.log; stdout is parsed once the
// agent has exited.
//
// Success: exit 0, no timeout or cancellation, and no error reported in the agent's own final
// status (Claude Code's `result` event with is_error or a subtype other than "success", Codex's
// `turn.failed`). Cost is recorded only when the agent reports it (Claude Code's
// total_cost_usd); tokens are summed from its usage reports.
//
// The gateway (`factory gateway`, gateway/gateway.h). When RunnerContext::extra_env holds
// FACTORY_GATEWAY_URL (the gateway's base URL, e.g. "http://127.0.0.1:8788") and
// FACTORY_GATEWAY_KEY (a virtual key, `factory keys create` / gateway::IssueKey, best issued per
// attempt with the run, task and attempt as its scope), the agent's command gets the variables
// the vendors' SDKs and CLIs read for their endpoint and key, pointing at the gateway, so its
// model calls are routed, metered and capped like the built-in agent's (see GatewayEnvironment).
// They replace any such variable of the factory's own environment: the agent never sees the
// real provider keys. The gateway listens on the host's loopback, which a sandbox without
// network (bubblewrap --unshare-net) cannot reach: such an agent needs `network: true`.
//
// Presets (an agent's `command:` replaces the preset's template; the preset still chooses the
// output parser):
//   claude    claude -p --output-format stream-json --verbose --permission-mode acceptEdits
//             --model {model}                                      prompt on stdin, stream-json
//   codex     codex exec --json --full-auto --model {model} -      prompt on stdin, JSON lines
//   opencode  opencode run --model {model} {prompt}                plain output
//   aider     aider --yes-always --no-auto-commits --message-file {prompt_file} --model {model}
//                                                                  plain output
//   gemini    gemini --yolo -m {model} -p {prompt}                 plain output

#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/agent.h"
#include "core/result.h"
#include "runners/runner.h"

namespace factory {

enum class CliOutputFormat {
  kPlain,             // free text; kept as the output tail
  kClaudeStreamJson,  // Claude Code `--output-format stream-json` (JSON lines)
  kCodexJson,         // `codex exec --json` (JSON lines)
};

struct CliPreset {
  std::string_view name;
  std::string_view command_template;
  CliOutputFormat format;
};

// The built-in presets, one per entry of kCliPresets.
const std::vector<CliPreset>& CliPresets();
// nullptr when `name` is not a preset.
const CliPreset* FindCliPreset(std::string_view name);

// Splits a command template into words (see above). InvalidArgument for an unterminated quote,
// a trailing backslash or an empty template.
Result<std::vector<std::string>> SplitCommandTemplate(std::string_view text);

// The values placeholders stand for.
struct CliTemplateValues {
  std::string prompt_file;
  std::string prompt;
  std::string model;
  std::string worktree;
};

// Substitutes placeholders word by word (dropping model words when values.model is empty).
// InvalidArgument for an unknown `{name}` placeholder, so a typo fails loudly.
Result<std::vector<std::string>> ExpandCommandTemplate(const std::vector<std::string>& words,
                                                       const CliTemplateValues& values);

// The split template for a cli agent: agent.command when set, else its preset's template.
// InvalidArgument for an unknown preset or an unsplittable template.
Result<std::vector<std::string>> CliCommandWords(const AgentSpec& agent);

// True when the template sends the prompt on stdin (it names neither {prompt_file} nor
// {prompt}).
bool PromptOnStdin(const std::vector<std::string>& words);

inline constexpr char kGatewayUrlVar[] = "FACTORY_GATEWAY_URL";
inline constexpr char kGatewayKeyVar[] = "FACTORY_GATEWAY_KEY";

// The variables pointing an agent at the gateway named in `extra_env` (empty when it names no
// gateway URL and key):
//   OPENAI_BASE_URL, OPENAI_API_BASE = URL/v1   OpenAI SDKs, Codex, OpenCode / Aider (LiteLLM)
//   OPENAI_API_KEY = KEY
//   ANTHROPIC_BASE_URL = URL                     Anthropic SDKs, Claude Code
//   ANTHROPIC_API_KEY = KEY
// A trailing '/' on the URL is dropped.
std::map<std::string, std::string> GatewayEnvironment(
    const std::map<std::string, std::string>& extra_env);

// What an agent's machine-readable output said.
struct CliOutput {
  std::vector<AgentStep> steps;  // at most kMaxCliSteps, in order
  RunnerUsage usage;
  std::string summary;              // the agent's final message or result text
  std::optional<bool> reported_ok;  // set when the output had a final status
  std::string reported_error;       // the agent's own error text when it reported one
  std::string other_lines;          // lines that were not JSON, tail only
  int json_lines = 0;
};

inline constexpr size_t kMaxCliSteps = 1000;
// Token counts read from an agent's output are clamped to [0, kMaxCliTokens] (sums saturate
// there): the output is untrusted, and no count may overflow or make a cost negative.
inline constexpr int64_t kMaxCliTokens = int64_t{1} << 48;

// Parses an agent's stdout. Never fails: a line that is not JSON is kept in other_lines (its
// last `tail_bytes`), a JSON event of a type the parser does not know is skipped, a known event
// with missing or mistyped fields contributes what it has. kPlain keeps every line in
// other_lines.
CliOutput ParseCliOutput(CliOutputFormat format, std::istream& in, size_t tail_bytes = 4096);

}  // namespace factory
