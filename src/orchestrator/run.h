#pragma once
// Runs: a backlog executed as tasks of one run, on its own integration branch. The API
// `factory run`, `factory runs`, `factory run show|resume|merge` are built on.
//
//   RunManager runs(deps);
//   auto created = runs.CreateRun(backlog, {.run_id = "demo"});   // idempotent per run id
//   auto summary = runs.ExecuteRun(created->run_id, {.observer = &view});
//   ... crash ...
//   auto summary = runs.ResumeRun("demo", {});  // dead leases expire at once; nothing lost or
//                                               // merged twice
//
// The base branch is never touched except by MergeRunIntoBase. Thread-safety: one RunManager
// may be used from several threads, but ExecuteRun/ResumeRun run one run at a time per
// manager (RequestStop/RequestCancel act on the run in progress, from any thread).

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agents/registry.h"
#include "core/result.h"
#include "orchestrator/observer.h"
#include "orchestrator/pipeline.h"
#include "plan/backlog.h"
#include "plan/config.h"
#include "queue/queue.h"
#include "queue/worker.h"
#include "store/store.h"
#include "workspace/merge_queue.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory {

// What a finished (or inspected) run amounts to. JSON form: FormatSummary (run_view.h).
struct RunSummary {
  std::string run_id;
  std::string integration_branch;
  std::string base_branch;
  int64_t done = 0;
  int64_t failed = 0;
  int64_t blocked = 0;
  int64_t cancelled = 0;
  int64_t unfinished = 0;  // pending, ready or in flight (a stopped run)
  int64_t total = 0;
  int64_t attempts = 0;  // attempts made, all tasks
  // Among the tasks that were attempted, the share done on their first attempt; 0 when none.
  double first_attempt_success_rate = 0;
  int64_t wall_ms = 0;  // ExecuteRun: this execution; ShowRun: first attempt start to last end
  // The agents' spending plus the reviewers' and the rebase agent's calls and, for a feature,
  // its planning calls (planning_cost_usd).
  double cost_usd = 0;
  // A feature's planning calls: the ledger's calls of the run that belong to no task.
  double planning_cost_usd = 0;
  // The tasks that are not done, in creation order (for what to do next and why not to merge).
  struct OpenTask {
    std::string task_id;  // queue id, for `factory task retry`
    std::string key;
    std::string state;
  };
  std::vector<OpenTask> not_done;
  // A feature's run (CreateRunOptions::feature): the feature id; "" for a backlog run. Merging a
  // feature also needs its final gates to have passed on the integration branch's current tip.
  std::string feature;
  // Feature runs whose tasks are all done: "passed", "failed" or "not run" (never, or on an
  // older tip of the branch); "" otherwise. `final_gates_detail` says why when not "passed".
  std::string final_gates;
  std::string final_gates_detail;

  // Gates config.yaml configures; 0: nothing checked the tasks' work before it merged, which
  // the summary says.
  int64_t gates = 0;
  bool all_done() const { return total > 0 && done == total; }
  // Every task done and, for a feature, its final gates passed on the current tip.
  bool mergeable() const { return all_done() && (feature.empty() || final_gates == "passed"); }
  // Why the run is not mergeable, one sentence each; empty when it is.
  std::vector<std::string> MergeBlockers() const;
  // What to do instead of merging (resume, retry, fix the branch), naming the commands; empty
  // when the run is mergeable.
  std::string NextStep() const;
};

struct CreateRunOptions {
  std::optional<std::string> run_id;  // nullopt: a new short id ("r" + ULID-derived)
  // The branch the run starts from; empty: the workspace's base branch. Must equal the
  // workspace's base branch (the workspace is opened on it).
  std::string base_branch;
  std::string title;  // empty: the backlog's source
  // The feature this run builds (`factory run FEATURE.md`, `factory regenerate`); recorded in
  // the run's metadata so merging it requires its final gates.
  std::string feature;
  // A feature's request file (absolute), so `factory run resume` can plan a run killed before
  // its spec folder recorded it.
  std::string feature_request;
};

struct CreatedRun {
  std::string run_id;
  std::string integration_branch;
  std::string integration_tip;
  bool created = false;    // false: the run existed (resumed)
  int tasks_created = 0;   // new tasks (0 when the same backlog is given again)
  int tasks_existing = 0;  // tasks that were already there
};

struct ExecuteOptions {
  int concurrency = 0;  // 0: the config's concurrency
  int64_t lease_ms = 30'000;
  int64_t poll_ms = 200;
  bool keep_worktrees = false;
  int64_t runner_timeout_ms = 30 * 60 * 1000;
  std::string artifacts_dir;        // see PipelineOptions
  RunObserver* observer = nullptr;  // not owned; may be null
  RunnerFactory make_runner;        // empty: MakeRunner
  std::string worker_owner;         // empty: DefaultWorkerOwner()
  // After RequestStop: how long running attempts may take to finish before they are released.
  int64_t shutdown_grace_ms = 10'000;
};

struct RunTaskView {
  std::string task_id;
  std::string key;  // backlog id
  std::string title;
  std::string state;
  std::string agent;  // of the last attempt ("" before any)
  int attempts = 0;
  int max_attempts = 0;
  std::vector<std::string> depends_on;  // keys
  std::string merge_commit;             // when merged
  std::string last_error;               // of the last failed attempt
  std::vector<std::string> scope;       // globs; empty: the whole repository
  double cost_usd = 0;
};

struct RunDetails {
  Run run;
  RunSummary summary;
  std::vector<RunTaskView> tasks;  // in creation (topological) order
};

struct RunListEntry {
  Run run;
  RunSummary summary;
};

// `factory run merge`: see RunManager::MergeRunIntoBase.
struct RunMergeOptions {
  bool force = false;  // merge although the run is not mergeable
  std::string reason;  // why; required with force
  std::string user;    // who asked; recorded with a forced merge
  std::string actor = "cli";
};

// What ResumeRun did before executing.
struct ResumeReport {
  int dead_leases_expired = 0;    // leases of dead workers on this host, expired at once
  int last_attempts_granted = 0;  // tasks whose crashed attempt was their last: one more
};

// Everything a run works with; none of it is owned. REQUIRES: all non-null, outliving the
// manager; queue built on store.
struct RunDeps {
  Store* store = nullptr;
  Queue* queue = nullptr;
  WorkspaceManager* workspace = nullptr;
  MergeQueue* merges = nullptr;
  AgentRegistry* agents = nullptr;
  Sandbox* sandbox = nullptr;
  const ProjectConfig* config = nullptr;
  // Optional: as PipelineDeps (prompt templates, the router for review gates and rebases, the
  // rebase agent's models).
  const prompts::PromptLibrary* prompts = nullptr;
  llm::Router* router = nullptr;
  std::vector<std::string> rebase_targets;
  std::string rebase_off_reason;
};

// The queue retry policy for runs: short backoff (a failed attempt's retry has new feedback,
// nothing to wait for).
RetryPolicy RunRetryPolicy();

// A new run id: "r" + 13 lowercase base32 characters (time-ordered, safe in branch names).
std::string NewRunId();

class RunManager {
 public:
  explicit RunManager(RunDeps deps);
  RunManager(const RunManager&) = delete;
  RunManager& operator=(const RunManager&) = delete;

  // Creates the run (row, integration branch factory/<run> from the base branch) and its tasks
  // in one EnqueueMany: idempotency key = backlog id, dependencies by key, metadata
  // {backlog_id, allow_protected, scope, agent, type, capabilities}. With an existing run id it
  // resumes: existing tasks are kept as they are, missing ones added, nothing duplicated.
  // InvalidArgument for a bad run id, an empty backlog, or a base branch other than the
  // workspace's; FailedPrecondition when the run exists on another base branch.
  Result<CreatedRun> CreateRun(const Backlog& backlog, const CreateRunOptions& options = {});

  // A feature's run before its backlog exists: the row (state "planning"), no tasks and no
  // integration branch yet, so the run can be listed and resumed while it is being planned;
  // CreateRun adds the tasks later. Idempotent per run id. Errors as CreateRun's (minus the
  // backlog's).
  Result<CreatedRun> OpenRun(const CreateRunOptions& options);
  // Sets the run's state (shown by `factory runs`): ExecuteRun keeps running/done/stopped/failed
  // up to date; a feature's planning sets planned, interrupted or planning_failed before that.
  // NotFound for an unknown run.
  Status SetRunState(const std::string& run_id, const std::string& state);

  // Executes the run's tasks until none is ready, in flight or backing off (or until
  // RequestStop/RequestCancel). NotFound for an unknown run.
  Result<RunSummary> ExecuteRun(const std::string& run_id, const ExecuteOptions& options = {});

  // After a crash or Ctrl-C: expires leases held by dead workers of this host (owner
  // "host:pid:..." whose pid is gone) so their tasks are retried at once, then ExecuteRun.
  // A crashed attempt still counts, but a task whose crashed attempt was its last gets one more
  // (the crash was not the agent's failure). `report` (optional) says what was done.
  Result<RunSummary> ResumeRun(const std::string& run_id, const ExecuteOptions& options = {},
                               ResumeReport* report = nullptr);
  // Only the lease expiry part of ResumeRun.
  Result<ResumeReport> ExpireDeadLeases(const std::string& run_id);

  // Runs, newest first, each with its summary.
  Result<std::vector<RunListEntry>> ListRuns(int limit = 100);
  // The run, its tasks and its summary. NotFound for an unknown run.
  Result<RunDetails> ShowRun(const std::string& run_id);
  Result<RunSummary> Summarize(const std::string& run_id);

  // Merges the run's integration branch into the base branch (WorkspaceManager::MergeIntoBase)
  // and records a `run.merged_into_base` event. Only a mergeable run (RunSummary::mergeable):
  // otherwise FailedPrecondition naming every reason and what to do, unless `options.force`,
  // which then records a `run.merge_forced` event (user, reason, what was overridden) before
  // merging; InvalidArgument when forcing without a reason. NotFound for an unknown run.
  Result<BaseMergeResult> MergeRunIntoBase(const std::string& run_id,
                                           const RunMergeOptions& options = {});

  // Stop the run in progress: no new claims, running attempts get a grace period then are
  // released (RequestStop), or are cancelled now (RequestCancel). Thread-safe; no-ops when no
  // run is executing.
  void RequestStop();
  void RequestCancel();

 private:
  // The run and its tasks (with dependencies) from one read snapshot; NotFound naming the run.
  Result<std::pair<Run, std::vector<Task>>> LoadRun(const std::string& run_id);
  Result<RunSummary> SummarizeTasks(const Run& run, const std::vector<Task>& tasks,
                                    std::vector<RunTaskView>* views);
  // Sets summary.final_gates(_detail) of a feature run from its last final-gates event and the
  // integration branch's tip.
  Status ReadFinalGates(RunSummary& summary);
  Result<RunCounts> Counts(const std::string& run_id, double cost_usd);
  // The run's row (no branch, no tasks); `source` is the backlog's.
  Result<CreatedRun> InsertRun(const std::string& source, const CreateRunOptions& options,
                               const std::string& state);
  // The cost of a feature's planning: its run's ledger calls that belong to no task.
  Result<double> PlanningCost(const std::string& run_id);

  RunDeps deps_;
  std::mutex mu_;
  Worker* active_worker_ = nullptr;  // guarded by mu_
  bool stop_requested_ = false;      // guarded by mu_
  bool cancel_requested_ = false;    // guarded by mu_
};

}  // namespace factory
