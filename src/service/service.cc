#include "service/service.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <utility>

#include "core/clock.h"
#include "core/ulid.h"
#include "ledger/budget.h"
#include "orchestrator/environment.h"
#include "queue/queue.h"
#include "service/internal/run_executor.h"
#include "service/internal/validate.h"
#include "setup/agent_choice.h"
#include "workspace/worktree.h"

namespace factory::service {
namespace {

constexpr size_t kMaxTitleBytes = 1'000;
constexpr size_t kMaxSpecBytes = 1 << 20;
constexpr size_t kMaxCommandBytes = 64 << 10;
constexpr size_t kMaxKeyBytes = 256;
constexpr size_t kMaxBacklogBytes = 4 << 20;

// The names of every request field, for ErrorField.
constexpr std::array<std::string_view, 30> kFields = {"title",        "spec",
                                                      "command",      "depends_on",
                                                      "priority",     "idempotency_key",
                                                      "run",          "run_id",
                                                      "max_attempts", "max_crashes",
                                                      "state",        "limit",
                                                      "cursor",       "backlog_path",
                                                      "backlog_text", "backlog_format",
                                                      "feature_text", "feature_path",
                                                      "max_repairs",  "concurrency",
                                                      "by",           "since",
                                                      "name",         "reason",
                                                      "task_id",      "agent",
                                                      "force",        "backlog",
                                                      "feature",      "user"};

class ServiceImpl final : public Service {
 public:
  ServiceImpl(Store& store, ServiceOptions options)
      : store_(store),
        options_(std::move(options)),
        queue_(store_, QueueOptions{.actor = options_.actor}) {}
  ~ServiceImpl() override { Shutdown(StopMode::kNow); }

  // --- tasks

  Result<AddTaskResult> AddTask(const AddTaskRequest& request) override {
    FACTORY_RETURN_IF_ERROR(internal::ValidateText("title", request.title, kMaxTitleBytes));
    FACTORY_RETURN_IF_ERROR(
        internal::ValidateText("spec", request.spec, kMaxSpecBytes, /*allow_empty=*/true));
    if (request.command) {
      FACTORY_RETURN_IF_ERROR(
          internal::ValidateText("command", *request.command, kMaxCommandBytes));
    }
    if (request.idempotency_key) {
      FACTORY_RETURN_IF_ERROR(
          internal::ValidateText("idempotency_key", *request.idempotency_key, kMaxKeyBytes));
    }
    FACTORY_RETURN_IF_ERROR(internal::ValidateRunId("run", request.run));
    FACTORY_RETURN_IF_ERROR(
        internal::ValidateRange("priority", request.priority, -1'000'000, 1'000'000));
    FACTORY_RETURN_IF_ERROR(internal::ValidateRange("max_attempts", request.max_attempts, 1, 1000));
    FACTORY_RETURN_IF_ERROR(internal::ValidateRange("max_crashes", request.max_crashes, 1, 1000));
    for (const auto& dep : request.depends_on) {
      if (!IsUlid(dep)) {
        return InvalidArgument("depends_on '" + dep + "' is not a task id (a 26-character ULID)");
      }
    }
    for (const auto& dep : request.depends_on) {
      auto found = queue_.GetTask(dep);
      if (!found && found.error().code == ErrorCode::kNotFound) {
        return NotFound("depends_on " + dep + ": no such task");
      }
      if (!found) return std::unexpected(found.error());
    }
    EnqueueRequest enqueue;
    enqueue.title = request.title;
    enqueue.spec = request.spec;
    if (request.command) enqueue.command = *request.command;
    enqueue.idempotency_key = request.idempotency_key;
    enqueue.run_id = request.run;
    enqueue.priority = request.priority;
    enqueue.max_attempts = request.max_attempts;
    enqueue.max_crashes = request.max_crashes;
    enqueue.depends_on = request.depends_on;
    FACTORY_ASSIGN_OR_RETURN(EnqueueResult result, queue_.Enqueue(enqueue));
    return AddTaskResult{std::move(result.task), result.created};
  }

  Result<TaskPage> ListTasks(const ListTasksRequest& request) override {
    TaskQuery query;
    if (!request.state.empty()) {
      auto state = ParseTaskState(request.state);
      if (!state) {
        std::string names;
        for (TaskState known : kAllTaskStates) {
          names += (names.empty() ? "" : ", ") + std::string(TaskStateName(known));
        }
        return InvalidArgument("state '" + request.state + "' is not a task state (one of " +
                               names + ")");
      }
      query.state = *state;
    }
    if (!request.run.empty()) FACTORY_RETURN_IF_ERROR(internal::ValidateRunId("run", request.run));
    if (request.limit < 0) return InvalidArgument("limit must not be negative");
    if (!request.cursor.empty() && !IsUlid(request.cursor)) {
      return InvalidArgument("cursor '" + request.cursor + "' is not a cursor of this listing");
    }
    query.run_id = request.run;
    query.after_id = request.cursor;
    // One more than asked tells whether another page follows.
    query.limit = request.limit > 0 ? request.limit + 1 : 0;
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, queue_.ListTasks(query));
    TaskPage page;
    if (request.limit > 0 && static_cast<int>(tasks.size()) > request.limit) {
      tasks.resize(request.limit);
      page.next_cursor = tasks.back().id;
    }
    page.tasks = std::move(tasks);
    return page;
  }

  Result<TaskDetails> GetTask(const std::string& task_id) override {
    TaskDetails details;
    FACTORY_ASSIGN_OR_RETURN(details.task, LookupTask(task_id));
    FACTORY_ASSIGN_OR_RETURN(details.attempts, queue_.ListAttempts(task_id));
    EventQuery event_query;
    event_query.task_id = task_id;
    event_query.limit = 100'000;
    FACTORY_ASSIGN_OR_RETURN(details.events, queue_.ListEvents(event_query));
    return details;
  }

  Result<Task> CancelTask(const std::string& task_id, const std::string& reason) override {
    FACTORY_RETURN_IF_ERROR(
        internal::ValidateText("reason", reason, kMaxTitleBytes, /*allow_empty=*/true));
    FACTORY_RETURN_IF_ERROR(LookupTask(task_id));
    FACTORY_RETURN_IF_ERROR(queue_.Cancel(task_id, reason));
    return queue_.GetTask(task_id);
  }

  Result<Task> RetryTask(const std::string& task_id) override {
    FACTORY_RETURN_IF_ERROR(LookupTask(task_id));
    FACTORY_RETURN_IF_ERROR(queue_.Retry(task_id));
    return queue_.GetTask(task_id);
  }

  // --- runs

  Result<RunPage> ListRuns(const ListRunsRequest& request) override {
    FACTORY_RETURN_IF_ERROR(internal::ValidateRange("limit", request.limit, 1, 1000));
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    std::vector<Run> runs;
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(runs, txn.ListRuns(1'000'000));
      return Ok();
    }));
    std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) {
      return a.created_ms != b.created_ms ? a.created_ms > b.created_ms : a.id > b.id;
    });
    size_t first = 0;
    if (!request.cursor.empty()) {
      auto at = std::find_if(runs.begin(), runs.end(),
                             [&](const Run& run) { return run.id == request.cursor; });
      if (at == runs.end()) {
        return InvalidArgument("cursor '" + request.cursor + "' is not a cursor of this listing");
      }
      first = static_cast<size_t>(at - runs.begin()) + 1;
    }
    RunPage page;
    for (size_t index = first; index < runs.size(); ++index) {
      if (static_cast<int>(page.runs.size()) == request.limit) {
        page.next_cursor = page.runs.back().run.id;
        break;
      }
      RunInfo info;
      info.run = runs[index];
      FACTORY_ASSIGN_OR_RETURN(info.summary, env->runs().Summarize(info.run.id));
      info.executing = executor_ != nullptr && executor_->IsExecuting(info.run.id);
      page.runs.push_back(std::move(info));
    }
    return page;
  }

  Result<RunInfo> GetRun(const std::string& run_id) override {
    FACTORY_RETURN_IF_ERROR(CheckRunId("run_id", run_id));
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    FACTORY_ASSIGN_OR_RETURN(RunDetails details, env->runs().ShowRun(run_id));
    RunInfo info;
    info.run = std::move(details.run);
    info.summary = std::move(details.summary);
    info.tasks = std::move(details.tasks);
    info.executing = executor_ != nullptr && executor_->IsExecuting(run_id);
    return info;
  }

  Result<StartRunResult> StartRun(const StartRunRequest& request) override {
    FACTORY_ASSIGN_OR_RETURN(StartRunResult result, CreateRun(request));
    FACTORY_ASSIGN_OR_RETURN(result.run, ExecuteRun(result.created.run_id, request.execution));
    return result;
  }

  Result<StartRunResult> CreateRun(const StartRunRequest& request) override {
    if (!request.feature_text.empty() || !request.feature_path.empty()) {
      return InvalidArgument(
          std::string(request.feature_text.empty() ? "feature_path" : "feature_text") +
          ": feature runs are started by `factory run FEATURE.md`; this service executes "
          "backlog runs");
    }
    const bool has_path = !request.backlog_path.empty();
    const bool has_text = !request.backlog_text.empty();
    if (has_path == has_text) {
      return InvalidArgument(std::string(has_path ? "backlog_text" : "backlog_path") +
                             (has_path ? " goes without backlog_path: give one backlog"
                                       : " is missing: give a backlog (a file or its text)"));
    }
    std::string run_id = request.run_id.value_or("");
    if (request.run_id) FACTORY_RETURN_IF_ERROR(CheckRunId("run_id", run_id));
    if (has_text) {
      if (request.backlog_format != "json" && request.backlog_format != "yaml") {
        return InvalidArgument("backlog_format '" + request.backlog_format +
                               "' is not json or yaml");
      }
      FACTORY_RETURN_IF_ERROR(
          internal::ValidateText("backlog_text", request.backlog_text, kMaxBacklogBytes));
    }
    FACTORY_RETURN_IF_ERROR(CheckConcurrency(request.execution));
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    FACTORY_RETURN_IF_ERROR(RequireAgents(*env));
    if (run_id.empty()) run_id = NewRunId();
    if (executor_ != nullptr && executor_->IsExecuting(run_id)) {
      return FailedPrecondition("run " + run_id + " is executing already");
    }
    std::filesystem::path backlog_path = request.backlog_path;
    if (has_text) {
      // Kept with the run, so that a resumed run (another process, after a restart) has it.
      const std::filesystem::path dir =
          std::filesystem::path(env->workspace().repo_root()) / ".factory" / "runs" / run_id;
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) return Internal("cannot create " + dir.string() + ": " + ec.message());
      backlog_path = dir / ("BACKLOG." + request.backlog_format);
      std::ofstream out(backlog_path, std::ios::binary | std::ios::trunc);
      out << request.backlog_text;
      out.close();
      if (!out) return Internal("cannot write " + backlog_path.string());
    }
    auto backlog = env->LoadBacklog(backlog_path);
    if (!backlog) {
      return std::unexpected(has_text ? backlog.error().Wrap("backlog_text") : backlog.error());
    }
    StartRunResult result;
    for (const auto& warning : backlog->warnings) result.warnings.push_back(warning.ToString());
    CreateRunOptions create;
    create.run_id = run_id;
    create.title = request.title.empty() ? (has_path ? request.backlog_path : std::string("api"))
                                         : request.title;
    FACTORY_ASSIGN_OR_RETURN(result.created, env->runs().CreateRun(backlog->value, create));
    FACTORY_ASSIGN_OR_RETURN(result.run, GetRunSummaryOnly(*env, run_id));
    return result;
  }

  Result<RunInfo> ExecuteRun(const std::string& run_id, const ExecuteRequest& request) override {
    FACTORY_RETURN_IF_ERROR(CheckRunId("run_id", run_id));
    FACTORY_RETURN_IF_ERROR(CheckConcurrency(request));
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    FACTORY_ASSIGN_OR_RETURN(internal::RunExecutor * executor, Executor(*env));
    FACTORY_RETURN_IF_ERROR(GetRunSummaryOnly(*env, run_id));  // NotFound for an unknown run
    FACTORY_RETURN_IF_ERROR(
        executor->Submit(run_id, MakeExecuteOptions(request),
                         [run_id](RunManager& manager, const ExecuteOptions& options) {
                           return manager.ExecuteRun(run_id, options);
                         }));
    return GetRunSummaryOnly(*env, run_id);
  }

  Result<ResumeRunResult> ResumeRun(const std::string& run_id,
                                    const ExecuteRequest& request) override {
    FACTORY_RETURN_IF_ERROR(CheckRunId("run_id", run_id));
    FACTORY_RETURN_IF_ERROR(CheckConcurrency(request));
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    FACTORY_ASSIGN_OR_RETURN(internal::RunExecutor * executor, Executor(*env));
    if (executor->IsExecuting(run_id)) {
      return FailedPrecondition("run " + run_id + " is executing already");
    }
    ResumeRunResult result;
    FACTORY_ASSIGN_OR_RETURN(result.report, env->runs().ExpireDeadLeases(run_id));
    FACTORY_RETURN_IF_ERROR(
        executor->Submit(run_id, MakeExecuteOptions(request),
                         [run_id](RunManager& manager, const ExecuteOptions& options) {
                           return manager.ExecuteRun(run_id, options);
                         }));
    FACTORY_ASSIGN_OR_RETURN(result.run, GetRunSummaryOnly(*env, run_id));
    return result;
  }

  Result<RunSummary> WaitRun(const std::string& run_id) override {
    internal::RunExecutor* executor = ExistingExecutor();
    if (executor == nullptr) {
      return NotFound("run " + run_id + " is not executing in this process");
    }
    return executor->Wait(run_id);
  }

  Status StopRun(const std::string& run_id, StopMode mode) override {
    internal::RunExecutor* executor = ExistingExecutor();
    if (executor == nullptr) {
      return FailedPrecondition("run " + run_id + " is not executing in this process");
    }
    return executor->Stop(run_id, mode == StopMode::kNow);
  }

  Result<RunInfo> CancelRun(const std::string& run_id) override {
    FACTORY_RETURN_IF_ERROR(CheckRunId("run_id", run_id));
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    FACTORY_ASSIGN_OR_RETURN(RunInfo info, GetRunSummaryOnly(*env, run_id));
    internal::RunExecutor* executor = ExistingExecutor();
    if (executor != nullptr && executor->IsExecuting(run_id)) {
      // Stopped now; the execution records the state when its attempts have been cancelled.
      if (auto stopped = executor->Stop(run_id, /*now=*/true, "cancelled"); stopped) {
        (void)executor->Wait(run_id);
        return GetRunSummaryOnly(*env, run_id);
      }
    }
    if (info.summary.total > 0 && info.summary.unfinished == 0) {
      return FailedPrecondition("run " + run_id + " has finished (" + info.run.state +
                                "); there is nothing to cancel");
    }
    FACTORY_RETURN_IF_ERROR(env->runs().SetRunState(run_id, "cancelled"));
    return GetRunSummaryOnly(*env, run_id);
  }

  Result<BaseMergeResult> MergeRun(const MergeRunRequest& request) override {
    FACTORY_RETURN_IF_ERROR(CheckRunId("run_id", request.run_id));
    if (!request.reason.empty() && !request.force) {
      return InvalidArgument("reason goes with force (it is recorded with the forced merge)");
    }
    if (request.force && request.reason.find_first_not_of(" \t\r\n") == std::string::npos) {
      return InvalidArgument(
          "reason is required with force: a forced merge is recorded in the "
          "audit log");
    }
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    internal::RunExecutor* executor = ExistingExecutor();
    if (executor != nullptr && executor->IsExecuting(request.run_id)) {
      return FailedPrecondition("run " + request.run_id +
                                " is executing; merge it when it has finished");
    }
    RunMergeOptions options;
    options.force = request.force;
    options.reason = request.reason;
    options.user = request.user;
    options.actor = options_.actor;
    return env->runs().MergeRunIntoBase(request.run_id, options);
  }

  Result<std::vector<std::string>> ResumeInterruptedRuns() override {
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    std::vector<Run> runs;
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(runs, txn.ListRuns(1'000'000));
      return Ok();
    }));
    std::sort(runs.begin(), runs.end(),
              [](const Run& a, const Run& b) { return a.created_ms < b.created_ms; });
    std::vector<std::string> resumed;
    for (const Run& run : runs) {
      if (run.state != "interrupted" && run.state != "running") continue;
      FACTORY_ASSIGN_OR_RETURN(ResumeReport report, env->runs().ExpireDeadLeases(run.id));
      (void)report;
      if (run.state == "running" && HeldByLiveWorker(run.id)) continue;  // another process's
      FACTORY_ASSIGN_OR_RETURN(RunInfo info, GetRunSummaryOnly(*env, run.id));
      if (info.summary.total == 0) continue;  // a feature still planning: `factory run resume`
      if (auto submitted = ExecuteRun(run.id, {}); !submitted) {
        return std::unexpected(submitted.error().Wrap("resuming run " + run.id));
      }
      resumed.push_back(run.id);
    }
    return resumed;
  }

  void Shutdown(StopMode mode) override {
    std::unique_ptr<internal::RunExecutor> executor;
    {
      std::lock_guard lock(mu_);
      shut_down_ = true;
      executor = std::move(executor_);
    }
    if (executor) executor->Shutdown(mode == StopMode::kNow);
    std::lock_guard lock(mu_);
    stopped_executor_ = std::move(executor);  // keeps the outcomes for WaitRun
  }

  // --- agents

  Result<std::vector<AgentInfo>> ListAgents() override {
    FACTORY_ASSIGN_OR_RETURN(RunEnvironment * env, Env());
    FACTORY_ASSIGN_OR_RETURN(std::vector<AgentPause> pauses, ListPauses());
    std::vector<AgentInfo> agents;
    for (const AgentSpec* spec : env->agents().agents()) {
      AgentInfo info;
      info.name = spec->name;
      info.role = spec->role;
      info.runner = std::string(RunnerKindName(spec->runner));
      info.capabilities = spec->capabilities;
      if (auto status = env->agents().StatusOf(spec->name); status) {
        info.concurrency = status->concurrency;
        info.in_use = status->in_use;
      }
      for (const AgentPause& pause : pauses) {
        if (pause.agent != spec->name && pause.agent != ledger::kAllAgents) continue;
        info.paused = true;
        info.pause_reason = pause.reason;
        info.paused_by = pause.by;
      }
      agents.push_back(std::move(info));
    }
    return agents;
  }

  Status PauseAgent(const std::string& name, const std::string& reason) override {
    FACTORY_RETURN_IF_ERROR(CheckAgentName(name));
    FACTORY_RETURN_IF_ERROR(internal::ValidateText("reason", reason, kMaxTitleBytes));
    ledger::BudgetGuard guard(store_, ledger::BudgetEnvelope{});
    return guard.Pause(name, reason, options_.actor);
  }

  Status ResumeAgent(const std::string& name) override {
    FACTORY_RETURN_IF_ERROR(CheckAgentName(name));
    ledger::BudgetGuard guard(store_, ledger::BudgetEnvelope{});
    return guard.Resume(name, options_.actor);
  }

  Result<std::vector<AgentPause>> ListPauses() override {
    ledger::BudgetGuard guard(store_, ledger::BudgetEnvelope{});
    return guard.Pauses();
  }

  // --- costs and stats

  Result<CostsResult> Costs(const CostsRequest& request) override {
    CostsResult result;
    auto group = ledger::ParseCostGroup(request.by);
    if (!group) return std::unexpected(group.error().Wrap("by"));
    result.group = *group;
    if (!request.since.empty()) {
      auto since = ledger::ParseSince(request.since, SystemClock().NowMillis());
      if (!since) return std::unexpected(since.error().Wrap("since"));
      result.since_ms = *since;
    }
    ledger::Ledger ledger(store_);
    FACTORY_ASSIGN_OR_RETURN(result.report, ledger.Costs(result.group, result.since_ms));
    return result;
  }

  Result<stats::StatsReport> Stats(const StatsRequest& request) override {
    if (!request.run.empty()) FACTORY_RETURN_IF_ERROR(internal::ValidateRunId("run", request.run));
    return stats::ComputeStats(store_, stats::StatsQuery{.run_id = request.run});
  }

  Result<RunEnvironment*> Environment(std::vector<std::string>* warnings) override {
    return Env(warnings);
  }

 private:
  Result<RunEnvironment*> Env(std::vector<std::string>* warnings = nullptr) {
    std::lock_guard lock(env_mu_);
    if (env_ == nullptr) {
      RunEnvironmentOptions env_options;
      env_options.repo_path = options_.repo_path;
      env_options.base_branch = options_.base_branch;
      env_options.use_sandbox = options_.use_sandbox;
      FACTORY_ASSIGN_OR_RETURN(env_, RunEnvironment::Open(store_, env_options));
      if (warnings != nullptr) {
        for (const auto& warning : env_->warnings()) warnings->push_back(warning.ToString());
      }
    }
    return env_.get();
  }

  Result<internal::RunExecutor*> Executor(RunEnvironment& env) {
    std::lock_guard lock(mu_);
    if (shut_down_) return Unavailable("the factory is shutting down; no run starts now");
    if (executor_ == nullptr) {
      executor_ = std::make_unique<internal::RunExecutor>(env, options_.max_parallel_runs);
    }
    return executor_.get();
  }

  // The executor when one was made (runs were executed), else the one Shutdown stopped.
  internal::RunExecutor* ExistingExecutor() {
    std::lock_guard lock(mu_);
    return executor_ != nullptr ? executor_.get() : stopped_executor_.get();
  }

  ExecuteOptions MakeExecuteOptions(const ExecuteRequest& request) const {
    ExecuteOptions options;
    options.concurrency = request.concurrency;
    options.keep_worktrees = request.keep_worktrees;
    options.observer = request.observer;
    options.shutdown_grace_ms = options_.shutdown_grace_ms;
    return options;
  }

  Result<RunInfo> GetRunSummaryOnly(RunEnvironment& env, const std::string& run_id) {
    std::optional<Run> run;
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(run, txn.GetRun(run_id));
      return Ok();
    }));
    if (!run) return NotFound("run " + run_id + " does not exist");
    RunInfo info;
    info.run = std::move(*run);
    FACTORY_ASSIGN_OR_RETURN(info.summary, env.runs().Summarize(run_id));
    internal::RunExecutor* executor = ExistingExecutor();
    info.executing = executor != nullptr && executor->IsExecuting(run_id);
    return info;
  }

  // Whether a task of the run holds an unexpired lease: a live process is executing it.
  bool HeldByLiveWorker(const std::string& run_id) {
    auto tasks = queue_.ListTasks(TaskQuery{.run_id = run_id});
    if (!tasks) return false;
    const int64_t now_ms = SystemClock().NowMillis();
    return std::any_of(tasks->begin(), tasks->end(), [&](const Task& task) {
      return !task.lease_owner.empty() && task.lease_expires_ms >= now_ms;
    });
  }

  Status RequireAgents(RunEnvironment& env) {
    if (env.agents().size() > 0) return Ok();
    return NotFound(setup::NoAgentMessage(std::filesystem::path(env.workspace().repo_root()) /
                                          ".factory" / "agents"));
  }

  static Status CheckRunId(std::string_view field, const std::string& run_id) {
    if (auto valid = WorkspaceManager::ValidateId("run id", run_id); !valid) {
      return InvalidArgument(std::string(field) + ": " + valid.error().message);
    }
    return Ok();
  }

  static Status CheckConcurrency(const ExecuteRequest& request) {
    if (request.concurrency == 0) return Ok();
    return internal::ValidateRange("concurrency", request.concurrency, 1, 256);
  }

  static Status CheckAgentName(const std::string& name) {
    if (name.empty()) return InvalidArgument("name must not be empty");
    return internal::ValidateText("name", name, kMaxKeyBytes);
  }

  Result<Task> LookupTask(const std::string& id) {
    auto task = queue_.GetTask(id);
    if (!task && task.error().code == ErrorCode::kNotFound) {
      return NotFound("no task with id '" + id + "'" +
                      (IsUlid(id) ? "" : " (task ids are 26-character ULIDs)"));
    }
    return task;
  }

  Store& store_;
  const ServiceOptions options_;
  Queue queue_;

  std::mutex env_mu_;
  std::unique_ptr<RunEnvironment> env_;  // guarded by env_mu_; outlives the executors

  std::mutex mu_;
  std::unique_ptr<internal::RunExecutor> executor_;          // guarded by mu_
  std::unique_ptr<internal::RunExecutor> stopped_executor_;  // guarded by mu_
  bool shut_down_ = false;                                   // guarded by mu_
};

}  // namespace

int HttpStatusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kAborted:
      return 409;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kResourceExhausted:
      return 429;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorField(const Error& error) {
  const std::string& message = error.message;
  size_t end = 0;
  while (end < message.size() &&
         ((message[end] >= 'a' && message[end] <= 'z') || message[end] == '_')) {
    ++end;
  }
  if (end == 0 || end == message.size() || (message[end] != ' ' && message[end] != ':')) {
    return "";
  }
  const std::string_view word(message.data(), end);
  // Other errors may begin with a plain word that is also a field's name ("run r1 does not
  // exist"); only a reference to a missing thing names its field (depends_on).
  if (error.code != ErrorCode::kInvalidArgument && word.find('_') == std::string_view::npos) {
    return "";
  }
  for (std::string_view field : kFields) {
    if (field == word) return std::string(word);
  }
  return "";
}

std::unique_ptr<Service> Service::Create(Store& store, ServiceOptions options) {
  return std::make_unique<ServiceImpl>(store, std::move(options));
}

}  // namespace factory::service
