#pragma once
// Runners: how an agent executes one attempt of a task inside its worktree.
//   script: the agent's `command`, run in the worktree through the sandbox.
//   cli:    an external coding-agent CLI from a preset (claude, codex, opencode, aider, gemini),
//           prompt in a file, machine-readable output parsed for steps and usage.
//   llm:    the built-in tool loop over the model router (toolloop/llm_runner.h).
// A runner only changes files in the worktree; the factory commits them afterwards.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agents/agent.h"
#include "core/result.h"
#include "workspace/sandbox.h"

namespace factory {

// Everything a runner gets for one attempt. Written to FACTORY_TASK_FILE as JSON (see
// TaskFileJson) so script and CLI agents can read it.
struct AttemptInput {
  std::string run_id;
  std::string task_id;
  std::string title;
  std::string spec;
  std::vector<std::string> acceptance;
  std::string type;
  int attempt = 1;  // 1-based
  int max_attempts = 3;
  std::string feedback;  // why the previous attempt failed (gate output tail, conflicts...); "" on
                         // the first attempt
  // The queue's ids of the task and of this attempt (ULIDs; task_id above is the backlog key,
  // unique only within its run): what model calls are attributed to in the ledger and what
  // per-task budgets count. "" when the runner is used outside a queue.
  std::string queue_task_id;
  std::string attempt_id;
  // The implementation prompt: the project's `implement` template rendered for this attempt by
  // the pipeline (orchestrator/task_prompts.h) from the fields above. Every runner gives the
  // agent exactly this text: script agents read it from FACTORY_PROMPT_FILE or the task file's
  // "prompt"; cli agents get it as their prompt (after the agent's body); the llm runner sends
  // it as the first user message. "" (a runner used outside a pipeline): BuildPrompt's text.
  std::string prompt;
};

// The JSON written to FACTORY_TASK_FILE: {run_id, task_id, title, spec, acceptance, type,
// attempt, max_attempts, feedback, prompt}.
std::string TaskFileJson(const AttemptInput& input);

// The prompt of an attempt whose input carries none (a runner used outside a pipeline): agent
// body, task, acceptance, feedback. Deterministic.
std::string BuildPrompt(const AgentSpec& agent, const AttemptInput& input);

// What a cli agent is given: the agent's body (its role), then the attempt's prompt
// (AttemptInput::prompt, or BuildPrompt's task part when it is empty).
std::string AgentPrompt(const AgentSpec& agent, const AttemptInput& input);

struct RunnerContext {
  AttemptInput input;
  std::string worktree;        // absolute path of the attempt's worktree
  std::string attempt_dir;     // absolute path for the attempt's artifacts (task file, prompt,
                               // stdout/stderr logs, transcript); created by the caller
  Sandbox* sandbox = nullptr;  // REQUIRES: non-null
  ResourceLimits limits;
  int64_t timeout_ms = 0;  // wall clock for the whole runner; 0 = none
  size_t output_tail_bytes = 4096;
  const std::atomic<bool>* cancel = nullptr;
  std::map<std::string, std::string> extra_env;  // e.g. gateway URL and key
  // Absolute paths bound read-write in the sandbox besides the worktree, for agents that must
  // write somewhere else (a CLI agent's own state directory such as ~/.claude). Empty by
  // default: the worktree is the only writable place; attempt_dir stays read-only inside.
  std::vector<std::string> extra_writable_paths;
  // The attempt's disk quota (workspace/sandbox.h), which the agent's commands count against;
  // null: the runner's run is the attempt.
  DiskQuota* disk_quota = nullptr;
};

// One step an agent reported through its structured output (tool use, message...), recorded as
// an event by the caller.
struct AgentStep {
  std::string kind;     // "message", "tool_use", "tool_result", "result", ...
  std::string summary;  // short, printable
};

struct RunnerUsage {
  std::optional<double> cost_usd;  // set only when the agent reported it
  int64_t input_tokens = 0;        // all prompt tokens, cached and cache-writing ones included
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;  // the part of input_tokens read from a prompt cache
  std::string model;
};

struct RunnerOutcome {
  bool success = false;  // exited 0 and reported no error
  int exit_code = -1;
  bool timed_out = false;
  bool cancelled = false;
  std::string error;        // why it failed, for feedback ("exit 1: <stderr tail>")
  std::string output_tail;  // last output_tail_bytes of stdout+stderr
  std::string summary;      // the agent's own summary when it gave one
  std::vector<AgentStep> steps;
  RunnerUsage usage;
  int64_t duration_ms = 0;
  int64_t prompt_bytes = 0;
};

class Runner {
 public:
  virtual ~Runner() = default;
  // Runs one attempt. An error only when the runner could not be started at all (missing
  // binary, unwritable attempt_dir); a failing agent is a successful call with success = false.
  // Thread-safe: one Runner may run several attempts at once.
  virtual Result<RunnerOutcome> Run(const RunnerContext& context) = 0;
};

// The runner for an agent. InvalidArgument for an llm agent until the model layer exists, or an
// unknown preset.
Result<std::unique_ptr<Runner>> MakeRunner(const AgentSpec& agent);

// Checks, before a run starts, that the agent can run here: a cli preset's binary is on PATH
// (NotFound naming the binary and the agent's file), a script's command is non-empty.
Status CheckRunnerAvailable(const AgentSpec& agent);

}  // namespace factory
