#pragma once
// The execution pipeline of one claimed task of a run:
//
//   agent     resolve and acquire an agent slot (explicit agent, default agent for the type,
//             cheapest capable agent), waiting with backoff while busy
//   worktree  a fresh worktree for the attempt from the integration branch's current tip
//   rebase    when the task keeps failing its gates, the rebase agent rewrites its spec first
//             (orchestrator/rebase.h); the attempt then starts with a clean context
//   runner    the agent's runner in the sandbox, given the rendered `implement` prompt
//             (orchestrator/task_prompts.h); its steps become `agent.step` events
//   commit    the factory commits the changes ("factory: <title>" + Factory-Task trailer);
//             nothing changed -> the attempt fails
//   protected a diff touching a `protected:` glob fails, unless the task allows it; so does a
//             path outside the task's scope (metadata "scope", globs; none: the whole
//             repository), and a new top-level Python module named like a standard one
//             (plan/scope.h), unless the task's allow_protected names it
//   gates     the configured gates through one interface (verify/gate.h), stage by stage:
//             (task -> verifying) the command gates on a clean checkout of the commit, then
//             (task -> review, phase "review") the review gates, each a reviewer model's verdict
//             on the diff (orchestrator/review.h)
//   merge     the merge queue (--no-ff, structured message); a conflict fails the attempt
//
// The implementation prompt: the project's `implement` template rendered with the task's id,
// title, current spec version, acceptance criteria, attempt number, the previous attempt's
// feedback (none right after a rebase), the task's files (metadata "files", when given) and its
// scope; nothing else. It is written to <attempt dir>/prompt.md (FACTORY_PROMPT_FILE in the
// runner's environment) and given to the runner as AttemptInput::prompt; details.prompt_bytes is
// its size. A template that cannot be rendered fails the attempt finally, naming the template file.
//
// A failed attempt stores its feedback and the phase it failed in in its details
// (store/details.h AttemptDetails); the next attempt reads them back from the queue's attempt
// list. Failures are
// retryable unless no agent can ever take the task, so the queue's retry/backoff applies; after
// the last attempt the task fails finally and the queue blocks its dependents.
//
// Crash safety: a task whose merge is already on the integration branch (a run that crashed
// after merging, before recording it) completes without running or merging again.
//
// Names: branches, worktrees and merge trailers use the task's key, its backlog id (metadata
// "backlog_id"), or the queue id when the task has none.
//
// Thread-safe: Execute runs concurrently on the worker's threads.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agents/registry.h"
#include "core/result.h"
#include "llm/router.h"
#include "orchestrator/observer.h"
#include "plan/config.h"
#include "prompts/library.h"
#include "queue/queue.h"
#include "queue/worker.h"
#include "runners/runner.h"
#include "verify/gate.h"
#include "workspace/merge_queue.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory {

// Everything the pipeline works with; none of it is owned. REQUIRES: all non-null and outliving
// the executor.
struct PipelineDeps {
  Queue* queue = nullptr;
  WorkspaceManager* workspace = nullptr;
  MergeQueue* merges = nullptr;
  AgentRegistry* agents = nullptr;
  Sandbox* sandbox = nullptr;
  const ProjectConfig* config = nullptr;
  // Optional below. The templates of the implementation, review and rebase prompts; null: the
  // shipped defaults (prompts::PromptLibrary::Builtin).
  const prompts::PromptLibrary* prompts = nullptr;
  // The model router review gates and rebases call; null: review gates fail the attempt (a run
  // with a review gate is refused before it starts without one) and rebasing is off.
  llm::Router* router = nullptr;
  // The rebase agent's models (config rebase.model, or models.yaml's chain for task type
  // "rebase"); empty: rebasing is off, because of `rebase_off_reason` (logged once).
  std::vector<std::string> rebase_targets;
  std::string rebase_off_reason;
};

using RunnerFactory = std::function<Result<std::unique_ptr<Runner>>(const AgentSpec&)>;

struct PipelineOptions {
  bool keep_worktrees = false;                 // keep worktrees after a merge or a final failure
  int64_t runner_timeout_ms = 30 * 60 * 1000;  // wall clock per agent run; 0 = none
  // Where each attempt's artifacts (task file, prompt, logs, gate logs) go:
  // <artifacts_dir>/<run>/<task key>-<attempt>/. Empty: <repo>/.factory/runs.
  std::string artifacts_dir;
  int64_t agent_wait_initial_ms = 50;  // backoff while every capable agent is busy
  int64_t agent_wait_max_ms = 1'000;
  size_t max_step_events = 500;  // agent steps recorded per attempt; the rest are counted
  std::string actor = "pipeline";
  RunObserver* observer = nullptr;  // not owned; may be null
  RunnerFactory make_runner;        // empty: MakeRunner
  // Secret values an attempt's commit must not add (workspace CommitPolicy::secrets), on top of
  // the values of the factory's own secret-looking environment variables (names ending in _KEY,
  // _TOKEN, _SECRET or _PASSWORD), which the pipeline always adds.
  std::vector<NamedSecret> commit_secrets;
};

// The failed_phase of an attempt whose review could not be obtained (the reviewer's call failed
// or its answer was invalid twice): an infrastructure failure, not the builder's, so it does not
// count towards a rebase and leaves no feedback.
inline constexpr char kFailedPhaseReviewError[] = "review_error";
// A runner error starting with this (the llm runner's task budget refusal) ends the task: the
// attempt fails finally with AttemptDetails::budget_exceeded set.
inline constexpr char kBudgetExceeded[] = "budget_exceeded";

class PipelineExecutor final : public Executor {
 public:
  PipelineExecutor(PipelineDeps deps, PipelineOptions options);
  ~PipelineExecutor() override;
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  ExecResult Execute(const ClaimedTask& claimed, const std::atomic<bool>& cancel) override;

  // The progress of the task's current (or just finished) attempt, and forgets it. For the run
  // manager, which reports attempt ends from the worker's events. nullopt when unknown.
  struct FinishedAttempt {
    AttemptProgress progress;
    double cost_usd = 0;
  };
  std::optional<FinishedAttempt> TakeAttempt(const std::string& task_id);

  // Total cost reported by the agents of the attempts this executor ran.
  double total_cost_usd() const;

 private:
  class AttemptRun;
  friend class AttemptRun;

  Result<Runner*> RunnerFor(const AgentSpec& agent);
  void UpdateProgress(const AttemptProgress& progress, bool started);
  void AddCost(const std::string& task_id, double cost_usd);

  PipelineDeps deps_;
  PipelineOptions options_;
  std::optional<prompts::PromptLibrary> builtin_prompts_;  // when deps_.prompts was null
  std::string prompts_problem_;  // why there are no prompts (a broken embedded default)
  // The project's gates in the order they run (GateRegistry::MakeAll), or why they cannot be
  // made. Set by the constructor, read-only afterwards.
  Result<std::vector<std::unique_ptr<Gate>>> gates_;

  // Serialises the git commands that add, remove or prune worktrees (attempt worktrees, gate
  // checkouts, the merge worktree): `git worktree prune` run by one of them can delete the
  // administrative folder of a worktree another thread is adding at that moment.
  std::mutex worktree_mu_;

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Runner>> runners_;  // guarded by mu_: by agent name
  std::map<std::string, FinishedAttempt> attempts_;         // guarded by mu_: by task id
  double total_cost_usd_ = 0;                               // guarded by mu_
};

// The name a task goes by in branches, worktrees and merge trailers: its backlog id when it has
// a valid one, else its queue id.
std::string TaskKey(const Task& task);

// The feedback left by the latest failed attempt of the task before `current_epoch` ("" when
// none). Reads the queue's attempt list.
Result<std::string> PreviousFeedback(Queue& queue, const std::string& task_id,
                                     int64_t current_epoch);

}  // namespace factory
