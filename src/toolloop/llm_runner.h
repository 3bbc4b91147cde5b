#pragma once
// The built-in `llm` runner: a tool loop over the model router.
//
// Prompt: in a pipeline the first user message is exactly AttemptInput::prompt (the rendered
// `implement` template: the task's clean context, no repo map) and the system message is the
// agent's body followed by the tool rules (use the tools, call finish). Without a rendered
// prompt (a runner used on its own) the system message is the agent's body and the user
// message the task (BuildPrompt without the body), the tool rules and a repo map capped at
// repo_map_bytes (the file tree with sizes, then the first lines of key files such as README
// and build files). RunnerOutcome.prompt_bytes = bytes of both messages.
//
// Models (the cost pyramid, ChooseModels below): when the agent's `model` is an alias and a
// routing rule of models.yaml matches the task type, attempt N calls the Nth rung of the rule's
// ladder capped at that alias (attempt 1 the cheapest, each retry after a failed gate one tier
// dearer, staying at the agent's alias once reached), then the agent's fallbacks. Otherwise
// (a model name, no matching rule, nothing of the chain available) the agent's model then its
// fallbacks. The choice is the outcome's first step ("model") and the transcript's start record.
//
// Loop, one router call per turn, on the chosen targets:
//  - the tool calls of the answer run in order (tools.h) and their results are appended;
//  - finish(summary) ends the attempt with success;
//  - an answer without tool calls gets a reminder to use the tools and counts as a turn;
//  - max_turns turns (agent.max_turns, else options.default_max_turns) end it with
//    "turn limit reached"; a router error ends it with the error (a budget refusal,
//    kResourceExhausted, as "budget_exceeded: ..."); the cancel flag and the context's timeout
//    end it as cancelled / timed out.
//  - a budget refusal while the agent is paused (options.agent_paused says so: its daily cap,
//    the global cap, a velocity pause) does not end the attempt: the runner waits, polling every
//    pause_poll_ms, until the pause is lifted (`factory agents resume`), then makes the call
//    again. The wait honours the cancel flag and does not count against the timeout.
// Attribution: each call's CallContext carries the run, the queue's task and attempt ids
// (AttemptInput::queue_task_id / attempt_id; the backlog key and "<key>-<attempt>" when unset),
// the agent and purpose "tool_loop".
// Compaction: before each call, when the estimated prompt (bytes / 4) exceeds
// compact_threshold x the smallest context window of the targets (Router::LimitsFor; skipped
// when unknown), the results of old tool calls and the large string arguments of old tool calls
// are replaced by short placeholders, keeping the system prompt, the task message and the last
// keep_recent_turns turns intact.
// Transcript: attempt_dir/transcript.jsonl, one JSON object per line ("message", "call",
// "compaction", "outcome" records), written as the loop goes; every line passes through
// llm::Redact with the values of the providers' API key variables.
// Outcome: one step per tool call ("tool_use", "name {arguments}", with " -> error: ..." when the
// tool failed); usage = tokens and cost summed over the calls (cost from ChatResponse::cost_usd);
// summary, error, steps redacted like the transcript.
//
// Thread-safe: Run() keeps its state on the stack; the Router is thread-safe.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/agent.h"
#include "llm/router.h"
#include "runners/runner.h"

namespace factory::toolloop {

struct LlmRunnerOptions {
  int default_max_turns = 40;
  size_t repo_map_bytes = 8 * 1024;
  double compact_threshold = 0.75;
  int keep_recent_turns = 2;  // assistant turns (with their tool results) kept verbatim
  size_t command_tail_bytes = 8192;
  // Whether budgets pause `agent` now (BudgetGuard::IsPaused). Empty: a budget refusal always
  // ends the attempt.
  std::function<Result<bool>(std::string_view agent)> agent_paused;
  int64_t pause_poll_ms = 1'000;
};

// The models one attempt calls; see the file comment.
struct ModelChoice {
  std::vector<std::string> targets;  // for Router::Chat, in order
  std::string alias;                 // the pyramid's alias; "" when the pyramid does not apply
  int step = 0;                      // its index in `ladder`
  std::vector<std::string> ladder;   // cheapest first, capped at the agent's alias
  std::string why_no_pyramid;        // when alias is "": why (for the transcript)

  // "cloud/fast (pyramid step 1 of cloud/fast > cloud/mid)" or "gpt-x, cloud/mid (...)".
  std::string Describe() const;
};
ModelChoice ChooseModels(const llm::Router& router, const AgentSpec& agent,
                         std::string_view task_type, int attempt_number);

class LlmRunner final : public Runner {
 public:
  // `router` is not owned and must outlive the runner. REQUIRES: agent.model is non-empty.
  LlmRunner(llm::Router& router, AgentSpec agent, LlmRunnerOptions options = {});

  // An error only when attempt_dir's transcript cannot be created or the worktree cannot be
  // opened; everything else is an outcome.
  Result<RunnerOutcome> Run(const RunnerContext& context) override;

 private:
  llm::Router& router_;
  const AgentSpec agent_;
  const LlmRunnerOptions options_;
};

// The repo map given to the model: "path (N bytes)" lines for the tree (skipping .git and
// .factory), then the first lines of key files, all within max_bytes. Exposed for tests.
std::string BuildRepoMap(const std::string& worktree, size_t max_bytes);

}  // namespace factory::toolloop
