#pragma once
// The built-in `llm` runner: a tool loop over the model router.
//
// Prompt: the system message is the agent's body; the first user message is the task (BuildPrompt
// without the body: title, spec, acceptance criteria, previous feedback) followed by a repo map
// capped at repo_map_bytes (the file tree with sizes, then the first lines of key files such as
// README and build files). RunnerOutcome.prompt_bytes = bytes of both messages.
//
// Loop, one router call per turn, on the agent's model then its fallbacks:
//  - the tool calls of the answer run in order (tools.h) and their results are appended;
//  - finish(summary) ends the attempt with success;
//  - an answer without tool calls gets a reminder to use the tools and counts as a turn;
//  - max_turns turns (agent.max_turns, else options.default_max_turns) end it with
//    "turn limit reached"; a router error ends it with the error (a budget refusal,
//    kResourceExhausted, as "budget_exceeded: ..."); the cancel flag and the context's timeout
//    end it as cancelled / timed out.
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
#include <string>

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
};

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
