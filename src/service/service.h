#pragma once
// The factory's use cases, behind the CLI, the HTTP API (`factory serve`) and MCP: runs (start,
// plan, build, resume, cancel, merge), tasks (add, list, get, cancel, retry), agents (list,
// pause, resume), costs and stats. Callers parse and print; everything they need crosses this
// header as typed structs (no JSON strings).
//
//   auto service = Service::Create(store, {.repo_path = "."});
//   auto started = service->StartRun({.backlog_path = "BACKLOG.yaml"});  // returns at once
//   auto summary = service->WaitRun(started->run.run.id);                // or poll GetRun
//
// Errors: Result<T> with the canonical codes (core/result.h), which HttpStatusFor maps:
//   kInvalidArgument     400  a request field is wrong; the message starts with the field's name
//                             as the request struct spells it ("title must not be empty");
//                             ErrorField() returns that name
//   kNotFound            404  an unknown run, task or agent (the message names the id)
//   kAlreadyExists       409
//   kFailedPrecondition  409  the thing is not in a state where this works (merge a run that is
//                             not mergeable, cancel a run this process does not execute, an
//                             illegal task transition, no agents configured)
//   kAborted             409  a lost race; the caller may try again
//   kResourceExhausted   429  a budget or quota
//   kUnavailable         503  transient (busy database); try again
//   others               500
//
// Runs execute in the service's run executor: StartRun/ResumeRun create or check the run's row
// (so it can be listed at once) and hand it to the executor, which drives it on a thread of its
// own. Several runs execute at once; they share the process's agents (each agent's concurrency
// is a slot count across all runs), the model router and the budget guard. A run's state, as
// GetRun shows it: the store's run state ("created", "planning", "running", "done", "stopped",
// "failed", "cancelled", "interrupted", ...) and `executing` while this service drives it.
//
// Use cases that only read or write the store (tasks, runs listing, costs, stats, agent pauses)
// work without a repository; the others open the repository's run environment (config, agents,
// workspace, sandbox, models) on first use and keep it, and fail with its error (naming the
// file and line) when it cannot be opened.
//
// Thread-safety: every method may be called from any thread. Shutdown() ends the executor; the
// service must outlive the runs it executes (its destructor calls Shutdown()).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "ledger/ledger.h"
#include "orchestrator/observer.h"
#include "orchestrator/run.h"
#include "stats/stats.h"
#include "store/model.h"
#include "store/store.h"
#include "workspace/worktree.h"

namespace factory {
class RunEnvironment;
}

namespace factory::service {

// The HTTP status for an error code (table above).
int HttpStatusFor(ErrorCode code);
// The request field an error of this service is about ("" when it names none): the first word of
// an InvalidArgument error's message, or of a NotFound one about a referenced id (depends_on).
std::string ErrorField(const Error& error);

struct ServiceOptions {
  std::string repo_path = ".";  // any directory inside the repository runs build in
  std::string base_branch;      // overrides config.yaml's base_branch
  std::optional<bool> use_sandbox;
  // Recorded as the actor of the events the use cases write ("cli", "api:<token name>", "mcp").
  std::string actor = "cli";
  // Runs the executor drives at once; more wait (state "queued") for a free place.
  int max_parallel_runs = 4;
  // After Shutdown(kGraceful) or StopRun(kGraceful): how long running attempts may take to
  // finish before they are cancelled and their tasks released.
  int64_t shutdown_grace_ms = 10'000;
};

// --- tasks

struct AddTaskRequest {
  std::string title;                           // required, at most 1000 bytes
  std::string spec;                            // at most 1 MiB
  std::optional<std::string> command;          // a shell command for `factory worker`
  std::vector<std::string> depends_on;         // task ids (ULIDs); each must exist
  int priority = 0;                            // -1,000,000 .. 1,000,000
  std::optional<std::string> idempotency_key;  // same key in the same run: the existing task
  std::string run = "default";                 // the run the task belongs to
  int max_attempts = 3;                        // 1 .. 1000
  int max_crashes = 5;                         // 1 .. 1000
};

struct AddTaskResult {
  Task task;
  bool created = false;  // false: the idempotency key matched an existing task
};

struct ListTasksRequest {
  std::string run;    // "": every run
  std::string state;  // "": every state; else a task state name ("ready", "done", ...)
  int limit = 0;      // 0: all
  // Pagination: the `next_cursor` of the previous page ("" for the first).
  std::string cursor;
};

struct TaskPage {
  std::vector<Task> tasks;  // oldest first (by id)
  std::string next_cursor;  // "" when this is the last page
};

struct TaskDetails {
  Task task;
  std::vector<Attempt> attempts;
  std::vector<Event> events;  // the task's events, oldest first
};

// --- runs

// Where a run's live progress goes and how it executes; the observer is not owned and must
// outlive the run's execution (WaitRun returning, or Shutdown).
struct ExecuteRequest {
  int concurrency = 0;  // parallel tasks of this run; 0: config.yaml's
  bool keep_worktrees = false;
  RunObserver* observer = nullptr;
};

struct StartRunRequest {
  std::optional<std::string> run_id;  // nullopt: a new id; an existing run's id continues it
  // Exactly one of the sources. A backlog run: a file (YAML, or JSON by extension) or the
  // backlog's text (`backlog_text` in `backlog_format`), checked against the agents before
  // anything runs; the text is kept under .factory/runs/<run>/ so the run can be resumed.
  std::string backlog_path;
  std::string backlog_text;
  std::string backlog_format = "json";  // "json" | "yaml"
  std::string title;                    // "": the backlog's source
  // A feature run (planned by agents, then built): the request's markdown, or its file. Served
  // by StartRun when feature runs are supported here; InvalidArgument naming `feature` otherwise.
  std::string feature_text;
  std::string feature_path;
  bool plan_only = false;    // feature runs: plan and store the spec; no build
  bool new_version = false;  // feature runs: plan a new version even when the current one is done
  int max_repairs = 2;       // feature runs: 0 .. 10
  ExecuteRequest execution;
};

struct RunInfo {
  Run run;                         // id, title, state, metadata
  RunSummary summary;              // counts, cost, merge readiness
  std::vector<RunTaskView> tasks;  // GetRun only (creation order)
  bool executing = false;          // this service's executor drives it now
};

struct StartRunResult {
  RunInfo run;
  CreatedRun created;                 // the branch, tasks created and already there
  std::vector<std::string> warnings;  // from the backlog (unknown keys...), one line each
};

struct ListRunsRequest {
  int limit = 100;     // 1 .. 1000
  std::string cursor;  // the `next_cursor` of the previous page
};

struct RunPage {
  std::vector<RunInfo> runs;  // newest first, without tasks
  std::string next_cursor;
};

struct ResumeRunResult {
  RunInfo run;
  ResumeReport report;  // dead leases expired, last attempts granted
};

enum class StopMode {
  kGraceful,  // stop claiming; running attempts get shutdown_grace_ms, then are released
  kNow,       // cancel running attempts now and release their tasks
};

struct MergeRunRequest {
  std::string run_id;
  bool force = false;  // merge although the run is not mergeable; needs a reason
  std::string reason;  // recorded with a forced merge
  std::string user;    // who asked (recorded with a forced merge)
};

// --- agents

struct AgentInfo {
  std::string name;
  std::string role;
  std::string runner;  // "script" | "cli" | "llm"
  std::vector<std::string> capabilities;
  int concurrency = 1;
  int in_use = 0;  // slots taken by this process's runs
  bool paused = false;
  std::string pause_reason;
  std::string paused_by;
};

// --- costs and stats

struct CostsRequest {
  std::string by = "agent";  // agent | model | day | run
  std::string since;         // "" (all), a date, a UTC time or an age ("24h", "7d")
};

struct CostsResult {
  ledger::CostGroup group = ledger::CostGroup::kAgent;
  int64_t since_ms = 0;
  ledger::CostReport report;
};

struct StatsRequest {
  std::string run;  // "": every run
};

class Service {
 public:
  // REQUIRES: store outlives the service. Opens nothing else yet (see the file comment).
  static std::unique_ptr<Service> Create(Store& store, ServiceOptions options = {});
  virtual ~Service() = default;

  // --- tasks
  virtual Result<AddTaskResult> AddTask(const AddTaskRequest& request) = 0;
  virtual Result<TaskPage> ListTasks(const ListTasksRequest& request) = 0;
  virtual Result<TaskDetails> GetTask(const std::string& task_id) = 0;
  // Cancels the task; its dependents become blocked. FailedPrecondition when it is finished.
  virtual Result<Task> CancelTask(const std::string& task_id, const std::string& reason) = 0;
  // A failed or blocked task back to ready (attempts reset); FailedPrecondition otherwise.
  virtual Result<Task> RetryTask(const std::string& task_id) = 0;

  // --- runs
  virtual Result<RunPage> ListRuns(const ListRunsRequest& request) = 0;
  virtual Result<RunInfo> GetRun(const std::string& run_id) = 0;

  // Creates the run (row, integration branch, tasks) and starts executing it; returns at once.
  // FailedPrecondition when the run is executing already; NotFound (saying how to add one) when
  // the project has no agent; InvalidArgument naming the backlog's file and line, or
  // `backlog_text`, when the backlog is not valid here.
  virtual Result<StartRunResult> StartRun(const StartRunRequest& request) = 0;
  // StartRun's first half: the run and its tasks exist, nothing executes (ExecuteRun does).
  virtual Result<StartRunResult> CreateRun(const StartRunRequest& request) = 0;
  // Hands an existing run to the executor; returns at once.
  virtual Result<RunInfo> ExecuteRun(const std::string& run_id,
                                     const ExecuteRequest& request = {}) = 0;
  // After a crash, Ctrl-C or Shutdown: expires the leases of dead workers of this host (their
  // tasks retry at once; a crashed last attempt gets one more), then executes the run.
  virtual Result<ResumeRunResult> ResumeRun(const std::string& run_id,
                                            const ExecuteRequest& request = {}) = 0;
  // Blocks until the run's execution in this service ends; its summary (wall_ms: this
  // execution). NotFound when the service is not executing it and did not since it was created.
  virtual Result<RunSummary> WaitRun(const std::string& run_id) = 0;
  // Stops the run's execution (it ends "stopped", resumable). No-op when it has ended.
  // FailedPrecondition when this service is not executing it.
  virtual Status StopRun(const std::string& run_id, StopMode mode) = 0;
  // Stops the run now (kNow) and records it "cancelled": ResumeInterruptedRuns leaves it alone
  // (ResumeRun continues it). Its tasks keep their states. FailedPrecondition when this service
  // is not executing it and it is finished.
  virtual Result<RunInfo> CancelRun(const std::string& run_id) = 0;
  // Merges the run's integration branch into the base branch. FailedPrecondition naming every
  // reason when the run is not mergeable (unless forced), or it is executing.
  virtual Result<BaseMergeResult> MergeRun(const MergeRunRequest& request) = 0;

  // At start of a long-running process: resumes every run a process left "running" (crashed,
  // and no live process holds a lease of it) or "interrupted" (Shutdown). Returns their ids. A
  // feature run still planning (no tasks yet) is left to `factory run resume`.
  virtual Result<std::vector<std::string>> ResumeInterruptedRuns() = 0;
  // Stops claiming in every run; kGraceful lets running attempts finish within
  // shutdown_grace_ms, kNow cancels them; either way unfinished tasks are released and their
  // runs recorded "interrupted", so ResumeInterruptedRuns continues them. Returns once every
  // run's execution has ended. Later StartRun/ExecuteRun fail with Unavailable.
  virtual void Shutdown(StopMode mode = StopMode::kGraceful) = 0;

  // --- agents
  virtual Result<std::vector<AgentInfo>> ListAgents() = 0;
  // Pauses an agent ("*": every agent) until ResumeAgent; recorded as agent.paused.
  virtual Status PauseAgent(const std::string& name, const std::string& reason) = 0;
  // Lifts a budget, velocity or manual pause.
  virtual Status ResumeAgent(const std::string& name) = 0;
  // The pauses in force (store-wide), e.g. to warn before a run seems to hang.
  virtual Result<std::vector<AgentPause>> ListPauses() = 0;

  // --- costs and stats
  virtual Result<CostsResult> Costs(const CostsRequest& request) = 0;
  virtual Result<stats::StatsReport> Stats(const StatsRequest& request) = 0;

  // The repository's run environment, opened on first use, for the callers that still drive a
  // feature's planning themselves. Warnings of its config and agent files come with the first
  // successful call only.
  virtual Result<RunEnvironment*> Environment(std::vector<std::string>* warnings = nullptr) = 0;
};

}  // namespace factory::service
