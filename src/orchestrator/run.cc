#include "orchestrator/run.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/ulid.h"
#include "events/event_log.h"
#include "orchestrator/rebase.h"
#include "store/details.h"

namespace factory {
namespace {

using json = nlohmann::json;

json ParseObject(const std::string& text) {
  json parsed = json::parse(text.empty() ? "{}" : text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return json::object();
  return parsed;
}

std::string StringField(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// The feature a run builds: its metadata's "feature" or, for runs created before that was
// recorded, the id in its title ("feature ID..."); "" for a backlog run.
std::string FeatureOf(const Run& run, const RunMetadata& metadata) {
  if (!metadata.feature.empty()) return metadata.feature;
  constexpr std::string_view kPrefix = "feature ";
  if (!run.title.starts_with(kPrefix)) return "";
  const std::string rest = run.title.substr(kPrefix.size());
  return rest.substr(0, rest.find(' '));
}

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

// True when `owner` ("host:pid:ulid", DefaultWorkerOwner) names a process of this host that no
// longer exists. Owners of other hosts, or in another format, are never judged dead.
bool OwnerIsDeadHere(const std::string& owner, const std::string& host) {
  const size_t first = owner.find(':');
  if (first == std::string::npos) return false;
  const size_t second = owner.find(':', first + 1);
  if (second == std::string::npos) return false;
  if (owner.substr(0, first) != host) return false;
  const std::string pid_text = owner.substr(first + 1, second - first - 1);
  if (pid_text.empty() || pid_text.size() > 10 ||
      !std::all_of(pid_text.begin(), pid_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const long pid = std::stol(pid_text);
  if (pid <= 0) return false;
  if (pid == static_cast<long>(getpid())) return false;  // ours: alive by definition
  if (kill(static_cast<pid_t>(pid), 0) == 0) return false;
  return errno == ESRCH;
}

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

AttemptEndKind EndKind(WorkerEvent::Kind kind) {
  switch (kind) {
    case WorkerEvent::Kind::kSucceeded:
      return AttemptEndKind::kSucceeded;
    case WorkerEvent::Kind::kFailed:
      return AttemptEndKind::kFailed;
    case WorkerEvent::Kind::kReleased:
      return AttemptEndKind::kReleased;
    case WorkerEvent::Kind::kLeaseLost:
      return AttemptEndKind::kLeaseLost;
    default:
      return AttemptEndKind::kError;
  }
}

}  // namespace

std::vector<std::string> RunSummary::MergeBlockers() const {
  std::vector<std::string> blockers;
  if (!all_done()) {
    constexpr size_t kNamed = 10;
    std::string tasks;
    for (size_t index = 0; index < not_done.size() && index < kNamed; ++index) {
      tasks += (index > 0 ? ", " : "") + not_done[index].key + " (" + not_done[index].state + ")";
    }
    if (not_done.size() > kNamed) tasks += ", ...";
    blockers.push_back(std::to_string(total - done) + " of " + std::to_string(total) +
                       " tasks are not done" + (tasks.empty() ? "" : ": " + tasks));
  } else if (!feature.empty() && final_gates != "passed") {
    blockers.push_back(final_gates_detail.empty() ? "the feature's final gates have not passed"
                                                  : final_gates_detail);
  }
  return blockers;
}

std::string RunSummary::NextStep() const {
  if (mergeable()) return "";
  const std::string resume = "`factory run resume " + run_id + "`";
  if (!all_done()) {
    std::string step;
    if (unfinished > 0) step = "Resume the run with " + resume + ".";
    std::string retries;
    int listed = 0;
    for (const auto& task : not_done) {
      if (task.state != "failed") continue;
      if (++listed > 5) {
        retries += ", ...";
        break;
      }
      retries += (retries.empty() ? "" : ", ") + std::string("`factory task retry ") +
                 task.task_id + "` (" + task.key + ")";
    }
    if (!retries.empty()) {
      step += (step.empty() ? "" : " ") + std::string("Retry the failed tasks (") + retries +
              "), then " + resume + ".";
    }
    if (cancelled > 0) {
      step += (step.empty() ? "" : " ") +
              std::string(
                  "Cancelled tasks cannot be retried: run their backlog again under a "
                  "new run id.");
    }
    if (step.empty()) step = "See `factory run show " + run_id + "`.";
    return step;
  }
  if (final_gates == "failed") {
    return "Fix the integration branch " + integration_branch +
           " (or build the feature again with `factory regenerate " + feature + "`), then " +
           resume + " runs the final gates again.";
  }
  return resume + " runs the feature's final gates.";
}

RetryPolicy RunRetryPolicy() {
  RetryPolicy policy;
  policy.base_delay_ms = 200;
  policy.max_delay_ms = 5'000;
  return policy;
}

std::string NewRunId() {
  // The ULID's 10 time characters then 3 of its random ones: sortable, short, unique enough
  // for the runs of one repository, lowercase so it reads well in branch names.
  const std::string ulid = NewUlid();
  std::string id = "r" + ulid.substr(0, 10) + ulid.substr(23, 3);
  std::transform(id.begin(), id.end(), id.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return id;
}

RunManager::RunManager(RunDeps deps) : deps_(deps) {}

Result<CreatedRun> RunManager::OpenRun(const CreateRunOptions& options) {
  FACTORY_ASSIGN_OR_RETURN(CreatedRun created, InsertRun("", options, "planning"));
  if (created.created) {
    FACTORY_RETURN_IF_ERROR(deps_.queue->events().Append(
        {.kind = events::EventKind::kRunCreated,
         .run_id = created.run_id,
         .actor = "orchestrator",
         .payload_json = json{{"tasks_created", 0},
                              {"tasks_existing", 0},
                              {"integration_branch", created.integration_branch},
                              {"base_branch", deps_.workspace->base_branch()}}
                             .dump()}));
  }
  return created;
}

Result<CreatedRun> RunManager::InsertRun(const std::string& source, const CreateRunOptions& options,
                                         const std::string& state) {
  CreatedRun created;
  created.run_id = options.run_id.value_or(NewRunId());
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", created.run_id));
  const std::string base_branch = deps_.workspace->base_branch();
  if (!options.base_branch.empty() && options.base_branch != base_branch) {
    return InvalidArgument("base branch '" + options.base_branch +
                           "' differs from the workspace's base branch '" + base_branch + "'");
  }
  created.integration_branch = WorkspaceManager::IntegrationBranch(created.run_id);

  const int64_t now_ms = deps_.queue->clock().NowMillis();
  FACTORY_RETURN_IF_ERROR(deps_.store->Write([&](StoreTxn& txn) -> Status {
    created.created = false;
    FACTORY_ASSIGN_OR_RETURN(std::optional<Run> existing, txn.GetRun(created.run_id));
    if (existing) {
      auto metadata = ParseRunMetadata(existing->metadata_json);
      if (!metadata) return std::unexpected(metadata.error().Wrap("run " + created.run_id));
      const std::string& existing_base = metadata->base_branch;
      if (!existing_base.empty() && existing_base != base_branch) {
        return FailedPrecondition("run " + created.run_id + " was started from branch '" +
                                  existing_base + "', not '" + base_branch + "'");
      }
      return Ok();
    }
    Run run;
    run.id = created.run_id;
    run.title = options.title.empty() ? source : options.title;
    run.state = state;
    RunMetadata metadata;
    metadata.base_branch = base_branch;
    metadata.integration_branch = created.integration_branch;
    metadata.backlog = source;
    metadata.repo = deps_.workspace->repo_root();
    metadata.feature = options.feature;
    metadata.feature_request = options.feature_request;
    run.metadata_json = RunMetadataJson(metadata);
    run.created_ms = now_ms;
    run.updated_ms = now_ms;
    FACTORY_RETURN_IF_ERROR(txn.InsertRun(run));
    created.created = true;
    return Ok();
  }));
  return created;
}

Result<CreatedRun> RunManager::CreateRun(const Backlog& backlog, const CreateRunOptions& options) {
  if (backlog.tasks.empty()) return InvalidArgument("the backlog has no tasks");
  FACTORY_ASSIGN_OR_RETURN(CreatedRun created, InsertRun(backlog.source, options, "active"));
  FACTORY_ASSIGN_OR_RETURN(created.integration_tip,
                           deps_.workspace->EnsureIntegrationBranch(created.run_id));
  const std::string base_branch = deps_.workspace->base_branch();

  std::vector<EnqueueRequest> requests;
  requests.reserve(backlog.tasks.size());
  for (const BacklogTask& task : backlog.tasks) {
    EnqueueRequest request;
    request.run_id = created.run_id;
    request.title = task.title;
    request.spec = task.description;
    request.acceptance_json = json(task.acceptance).dump();
    request.type = task.type;
    request.capabilities_json = json(task.capabilities).dump();
    request.agent = task.agent;
    request.priority = task.priority;
    request.depends_on_keys = task.depends_on;
    request.idempotency_key = task.id;
    request.max_attempts = task.max_attempts.value_or(deps_.config->max_attempts);
    TaskMetadata metadata;
    metadata.backlog_id = task.id;
    metadata.allow_protected = task.allow_protected;
    metadata.scope = task.scope;
    metadata.agent = task.agent;
    metadata.type = task.type;
    metadata.capabilities = task.capabilities;
    metadata.backlog_line = task.line;
    request.metadata_json = TaskMetadataJson(metadata);
    requests.push_back(std::move(request));
  }
  FACTORY_ASSIGN_OR_RETURN(std::vector<EnqueueResult> results, deps_.queue->EnqueueMany(requests));
  for (const auto& result : results) {
    if (result.created) {
      ++created.tasks_created;
    } else {
      ++created.tasks_existing;
    }
  }
  FACTORY_RETURN_IF_ERROR(deps_.queue->events().Append(
      {.kind = created.created ? events::EventKind::kRunCreated : events::EventKind::kRunResumed,
       .run_id = created.run_id,
       .actor = "orchestrator",
       .payload_json = json{{"tasks_created", created.tasks_created},
                            {"tasks_existing", created.tasks_existing},
                            {"integration_branch", created.integration_branch},
                            {"base_branch", base_branch}}
                           .dump()}));
  return created;
}

Status RunManager::SetRunState(const std::string& run_id, const std::string& state) {
  const int64_t now_ms = deps_.queue->clock().NowMillis();
  return deps_.store->Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(std::optional<Run> run, txn.GetRun(run_id));
    if (!run) return NotFound("run " + run_id + " does not exist");
    if (run->state == state) return Ok();
    run->state = state;
    run->updated_ms = now_ms;
    return txn.UpdateRun(*run);
  });
}

Result<RunCounts> RunManager::Counts(const std::string& run_id, double cost_usd) {
  FACTORY_ASSIGN_OR_RETURN(auto stats, deps_.queue->Stats(run_id));
  RunCounts counts;
  counts.by_state = std::move(stats);
  for (const auto& [state, count] : counts.by_state) counts.total += count;
  counts.cost_usd = cost_usd;
  return counts;
}

Result<RunSummary> RunManager::ExecuteRun(const std::string& run_id,
                                          const ExecuteOptions& options) {
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", run_id));
  std::optional<Run> run;
  FACTORY_RETURN_IF_ERROR(deps_.store->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(run, txn.GetRun(run_id));
    return Ok();
  }));
  if (!run) return NotFound("run " + run_id + " does not exist");
  // Tasks created by another process (or before a crash) need the branch too.
  FACTORY_RETURN_IF_ERROR(deps_.workspace->EnsureIntegrationBranch(run_id));
  FACTORY_RETURN_IF_ERROR(SetRunState(run_id, "running"));

  // The cost of earlier executions of this run, so the live total includes them.
  FACTORY_ASSIGN_OR_RETURN(RunSummary before, Summarize(run_id));
  const double earlier_cost = before.cost_usd;

  ObserverList observers;
  observers.Add(options.observer);

  PipelineOptions pipeline_options;
  pipeline_options.keep_worktrees = options.keep_worktrees;
  pipeline_options.runner_timeout_ms = options.runner_timeout_ms;
  pipeline_options.artifacts_dir = options.artifacts_dir;
  pipeline_options.observer = observers.empty() ? nullptr : &observers;
  pipeline_options.make_runner = options.make_runner;
  PipelineExecutor executor(PipelineDeps{deps_.queue, deps_.workspace, deps_.merges, deps_.agents,
                                         deps_.sandbox, deps_.config, deps_.prompts, deps_.router,
                                         deps_.rebase_targets, deps_.rebase_off_reason},
                            std::move(pipeline_options));
  // Rebasing configured but impossible (no models): said once per execution, in the run's
  // event log and the process log; not an error.
  if (deps_.config->rebase.max_per_task > 0 &&
      (deps_.rebase_targets.empty() || deps_.router == nullptr)) {
    const std::string reason =
        deps_.rebase_off_reason.empty() ? "no model for the rebase agent" : deps_.rebase_off_reason;
    spdlog::info("run {}: rebase is off: {}", run_id, reason);
    deps_.queue->events().AppendOrWarn({.kind = events::EventKind::kRunRebaseOff,
                                        .run_id = run_id,
                                        .actor = "orchestrator",
                                        .payload_json = json{{"reason", reason}}.dump()});
  }

  WorkerOptions worker_options;
  worker_options.owner = options.worker_owner;
  worker_options.concurrency =
      options.concurrency > 0 ? options.concurrency : std::max(1, deps_.config->concurrency);
  // Every free slot's task in one claim transaction: one commit where a burst of ready tasks
  // (a run's start, a task with many dependents finishing) would otherwise take one each.
  worker_options.batch = worker_options.concurrency;
  worker_options.lease_ms = options.lease_ms;
  worker_options.poll_ms = options.poll_ms;
  worker_options.until_idle = true;
  worker_options.filter.run_id = run_id;
  worker_options.reap_interval_ms = 1'000;
  worker_options.shutdown_grace_ms = options.shutdown_grace_ms;
  worker_options.on_event = [&](const WorkerEvent& event) {
    if (observers.empty()) {
      if (event.kind != WorkerEvent::Kind::kStarted) (void)executor.TakeAttempt(event.task_id);
      return;
    }
    if (event.kind != WorkerEvent::Kind::kStarted) {
      auto finished = executor.TakeAttempt(event.task_id);
      AttemptProgress progress;
      double cost = 0;
      if (finished) {
        progress = std::move(finished->progress);
        cost = finished->cost_usd;
      } else {
        progress.run_id = run_id;
        progress.task_id = event.task_id;
        progress.task_key = event.task_id;
        progress.title = event.title;
        progress.attempt = event.attempt_number;
        progress.max_attempts = event.max_attempts;
      }
      AttemptEnd end;
      end.kind = EndKind(event.kind);
      end.will_retry = event.will_retry;
      end.message = event.message;
      end.duration_ms = event.duration_ms;
      end.cost_usd = cost;
      observers.OnAttemptFinished(progress, end);
    }
    auto counts = Counts(run_id, earlier_cost + executor.total_cost_usd());
    if (counts) observers.OnCounts(*counts);
  };

  Worker worker(*deps_.queue, executor, std::move(worker_options));
  {
    std::lock_guard lock(mu_);
    active_worker_ = &worker;
    if (cancel_requested_) {
      worker.RequestCancel();
    } else if (stop_requested_) {
      worker.RequestStop();
    }
  }
  if (!observers.empty()) {
    auto counts = Counts(run_id, earlier_cost);
    if (counts) observers.OnRunStarted(run_id, *counts);
  }
  const int64_t started_ms = SteadyMillis();
  Status ran = worker.Run();
  const int64_t wall_ms = SteadyMillis() - started_ms;
  {
    std::lock_guard lock(mu_);
    active_worker_ = nullptr;
    stop_requested_ = false;
    cancel_requested_ = false;
  }
  // Best effort: the merge worktree is recreated by the next merge if needed.
  if (auto removed = deps_.merges->RemoveMergeWorktree(run_id); !removed) {
    spdlog::warn("run {}: cannot remove the merge worktree: {}", run_id,
                 removed.error().ToString());
  }
  if (!ran) return std::unexpected(ran.error());

  FACTORY_ASSIGN_OR_RETURN(RunSummary summary, Summarize(run_id));
  summary.wall_ms = wall_ms;
  const std::string state = summary.all_done()       ? "done"
                            : summary.unfinished > 0 ? "stopped"
                                                     : "failed";
  FACTORY_RETURN_IF_ERROR(SetRunState(run_id, state));
  deps_.queue->events().AppendOrWarn({.kind = events::EventKind::kRunExecuted,
                                      .run_id = run_id,
                                      .actor = "orchestrator",
                                      .payload_json = json{
                                          {"state", state},
                                          {"done", summary.done},
                                          {"failed", summary.failed},
                                          {"blocked", summary.blocked},
                                          {"wall_ms",
                                           wall_ms}}.dump()});
  if (!observers.empty()) {
    auto counts = Counts(run_id, summary.cost_usd);
    if (counts) observers.OnRunFinished(run_id, *counts);
  }
  return summary;
}

Result<ResumeReport> RunManager::ExpireDeadLeases(const std::string& run_id) {
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", run_id));
  const std::string host = HostName();
  ResumeReport report;
  FACTORY_RETURN_IF_ERROR(deps_.store->Write([&](StoreTxn& txn) -> Status {
    report = ResumeReport{};
    FACTORY_ASSIGN_OR_RETURN(std::optional<Run> run, txn.GetRun(run_id));
    if (!run) return NotFound("run " + run_id + " does not exist");
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, txn.ListTasks(TaskQuery{.run_id = run_id}));
    const int64_t now_ms = deps_.queue->clock().NowMillis();
    for (Task& task : tasks) {
      if (!IsLeasedState(task.state) || task.lease_owner.empty()) continue;
      if (task.lease_expires_ms < now_ms) continue;  // the reaper takes it anyway
      if (!OwnerIsDeadHere(task.lease_owner, host)) continue;
      json payload{{"owner", task.lease_owner},
                   {"attempt", task.attempts},
                   {"lease_expires_ms", task.lease_expires_ms}};
      task.lease_expires_ms = now_ms - 1;
      if (task.attempts >= task.max_attempts) {
        // The crash, not the agent, ended the last attempt: give the task one more.
        task.max_attempts = task.attempts + 1;
        payload["max_attempts"] = task.max_attempts;
        ++report.last_attempts_granted;
      }
      task.updated_ms = now_ms;
      FACTORY_RETURN_IF_ERROR(txn.UpdateTask(task));
      FACTORY_RETURN_IF_ERROR(
          deps_.queue->events().AppendInTxn(txn, {.kind = events::EventKind::kTaskDeadLeaseExpired,
                                                  .run_id = run_id,
                                                  .task_id = task.id,
                                                  .actor = "orchestrator",
                                                  .payload_json = payload.dump()}));
      ++report.dead_leases_expired;
    }
    return Ok();
  }));
  if (report.dead_leases_expired > 0) {
    events::EventLog::NotifyAppended();
    spdlog::info("run {}: expired {} lease(s) of dead workers", run_id, report.dead_leases_expired);
  }
  return report;
}

Result<RunSummary> RunManager::ResumeRun(const std::string& run_id, const ExecuteOptions& options,
                                         ResumeReport* report) {
  FACTORY_ASSIGN_OR_RETURN(ResumeReport expired, ExpireDeadLeases(run_id));
  if (report != nullptr) *report = expired;
  // Reap now so the tasks are ready before the worker's first claim.
  FACTORY_RETURN_IF_ERROR(deps_.queue->ReapExpired());
  return ExecuteRun(run_id, options);
}

Result<RunSummary> RunManager::SummarizeTasks(const Run& run, const std::vector<Task>& tasks,
                                              std::vector<RunTaskView>* views) {
  RunSummary summary;
  summary.run_id = run.id;
  summary.gates = deps_.config != nullptr ? static_cast<int64_t>(deps_.config->gates.size()) : 0;
  summary.integration_branch = WorkspaceManager::IntegrationBranch(run.id);
  auto run_metadata = ParseRunMetadata(run.metadata_json);
  if (!run_metadata) return std::unexpected(run_metadata.error().Wrap("run " + run.id));
  summary.base_branch = run_metadata->base_branch;
  std::map<std::string, std::string> keys;  // task id -> key
  for (const auto& task : tasks) keys[task.id] = TaskKey(task);

  int64_t attempted = 0;
  int64_t first_try = 0;
  int64_t first_start = 0;
  int64_t last_end = 0;
  for (const auto& task : tasks) {
    ++summary.total;
    switch (task.state) {
      case TaskState::kDone:
        ++summary.done;
        break;
      case TaskState::kFailed:
        ++summary.failed;
        break;
      case TaskState::kBlocked:
        ++summary.blocked;
        break;
      case TaskState::kCancelled:
        ++summary.cancelled;
        break;
      default:
        ++summary.unfinished;
        break;
    }
    if (task.state != TaskState::kDone) {
      summary.not_done.push_back({task.id, keys[task.id], std::string(TaskStateName(task.state))});
    }
    FACTORY_ASSIGN_OR_RETURN(std::vector<Attempt> attempts, deps_.queue->ListAttempts(task.id));
    std::sort(attempts.begin(), attempts.end(),
              [](const Attempt& a, const Attempt& b) { return a.epoch < b.epoch; });
    RunTaskView view;
    view.task_id = task.id;
    view.key = keys[task.id];
    view.title = task.title;
    view.state = std::string(TaskStateName(task.state));
    view.attempts = task.attempts;
    view.max_attempts = task.max_attempts;
    {
      auto metadata = ParseTaskMetadata(task.metadata_json);
      if (!metadata) return std::unexpected(metadata.error().Wrap("task " + task.id));
      view.scope = std::move(metadata->scope);
    }
    for (const auto& dep : task.depends_on) {
      auto it = keys.find(dep);
      view.depends_on.push_back(it == keys.end() ? dep : it->second);
    }
    int64_t counted = 0;
    for (const auto& attempt : attempts) {
      if (attempt.status == AttemptStatus::kReleased) continue;
      ++counted;
      auto details = ParseAttemptDetails(attempt.details_json);
      if (!details) return std::unexpected(details.error().Wrap("attempt " + attempt.id));
      // The agent's spending plus the pipeline's own model calls for the attempt (reviewers,
      // the rebase agent), which the attempt keeps apart from the agent's usage.
      const double cost = details->TotalCostUsd();
      view.cost_usd += cost;
      summary.cost_usd += cost;
      if (!details->agent.empty()) view.agent = details->agent;
      if (attempt.status == AttemptStatus::kSucceeded) {
        view.merge_commit = details->merge_commit;
        if (attempt.number == 1) ++first_try;
      }
      if (attempt.status == AttemptStatus::kFailed || attempt.status == AttemptStatus::kExpired) {
        view.last_error = attempt.error;
      }
      if (attempt.started_ms > 0 && (first_start == 0 || attempt.started_ms < first_start)) {
        first_start = attempt.started_ms;
      }
      last_end = std::max(last_end, attempt.finished_ms);
    }
    summary.attempts += counted;
    if (counted > 0) ++attempted;
    if (views != nullptr) views->push_back(std::move(view));
  }
  summary.first_attempt_success_rate =
      attempted > 0 ? static_cast<double>(first_try) / static_cast<double>(attempted) : 0.0;
  if (first_start > 0 && last_end >= first_start) summary.wall_ms = last_end - first_start;
  summary.feature = FeatureOf(run, *run_metadata);
  if (!summary.feature.empty()) {
    FACTORY_ASSIGN_OR_RETURN(summary.planning_cost_usd, PlanningCost(run.id));
    summary.cost_usd += summary.planning_cost_usd;
  }
  if (!summary.feature.empty() && summary.all_done()) {
    FACTORY_RETURN_IF_ERROR(ReadFinalGates(summary));
  }
  return summary;
}

Result<double> RunManager::PlanningCost(const std::string& run_id) {
  double cost = 0;
  FACTORY_RETURN_IF_ERROR(deps_.store->Read([&](StoreTxn& txn) -> Status {
    cost = 0;
    FACTORY_ASSIGN_OR_RETURN(std::vector<ModelCallRow> calls,
                             txn.ListModelCalls(ModelCallQuery{.run_id = run_id}));
    for (const auto& call : calls) {
      if (call.task_id.empty()) cost += call.cost_usd;
    }
    return Ok();
  }));
  return cost;
}

Status RunManager::ReadFinalGates(RunSummary& summary) {
  std::optional<json> last;
  EventQuery query{.after_seq = 0, .run_id = summary.run_id, .task_id = "", .limit = 1000};
  while (true) {
    FACTORY_ASSIGN_OR_RETURN(std::vector<Event> page, deps_.queue->ListEvents(query));
    for (const Event& event : page) {
      const std::optional<events::EventKind> kind = events::KindOf(event);
      if (kind != events::EventKind::kFeatureFinalGatesPassed &&
          kind != events::EventKind::kFeatureFinalGatesFailed) {
        continue;
      }
      last = ParseObject(event.payload_json);
      (*last)["passed"] = kind == events::EventKind::kFeatureFinalGatesPassed;
    }
    if (page.size() < static_cast<size_t>(query.limit)) break;
    query.after_seq = page.back().seq;
  }
  const std::string branch = summary.integration_branch;
  if (!last) {
    summary.final_gates = "not run";
    summary.final_gates_detail = "the feature's final gates have not run on " + branch;
    return Ok();
  }
  const std::string commit = StringField(*last, "commit");
  if (!last->value("passed", false)) {
    summary.final_gates = "failed";
    const std::string gate = StringField(*last, "failed_gate");
    std::string detail = gate.empty() ? "the feature's final gates failed"
                                      : "the feature's final gate '" + gate + "' failed";
    if (last->value("timed_out", false)) {
      detail += " (timed out)";
    } else if (auto code = last->find("exit_code"); code != last->end() && code->is_number()) {
      detail += " (exit " + std::to_string(code->get<int64_t>()) + ")";
    }
    const std::string error = StringField(*last, "error");
    if (!error.empty()) detail += ": " + error;
    detail += " on " + branch + (commit.empty() ? "" : " at " + commit.substr(0, 12));
    summary.final_gates_detail = detail;
    return Ok();
  }
  auto tip = deps_.workspace->git().RevParse("refs/heads/" + branch);
  if (!tip) {
    summary.final_gates = "not run";
    summary.final_gates_detail = "the integration branch " + branch + " cannot be read";
    return Ok();
  }
  if (*tip != commit) {
    summary.final_gates = "not run";
    summary.final_gates_detail = "the feature's final gates passed on " + commit.substr(0, 12) +
                                 ", but " + branch + " has moved to " + tip->substr(0, 12) +
                                 " since";
    return Ok();
  }
  summary.final_gates = "passed";
  return Ok();
}

Result<std::pair<Run, std::vector<Task>>> RunManager::LoadRun(const std::string& run_id) {
  std::optional<Run> run;
  std::vector<Task> tasks;
  FACTORY_RETURN_IF_ERROR(deps_.store->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(run, txn.GetRun(run_id));
    if (!run) return Ok();
    // ListTasks fills depends_on (Store contract), so no per-task re-read is needed.
    FACTORY_ASSIGN_OR_RETURN(tasks, txn.ListTasks(TaskQuery{.run_id = run_id}));
    return Ok();
  }));
  if (!run) return NotFound("run " + run_id + " does not exist");
  return std::make_pair(std::move(*run), std::move(tasks));
}

Result<RunDetails> RunManager::ShowRun(const std::string& run_id) {
  FACTORY_ASSIGN_OR_RETURN(auto loaded, LoadRun(run_id));
  auto& [run, tasks] = loaded;
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
    return a.created_ms != b.created_ms ? a.created_ms < b.created_ms : a.id < b.id;
  });
  RunDetails details;
  details.run = run;
  FACTORY_ASSIGN_OR_RETURN(details.summary, SummarizeTasks(run, tasks, &details.tasks));
  return details;
}

Result<RunSummary> RunManager::Summarize(const std::string& run_id) {
  FACTORY_ASSIGN_OR_RETURN(auto loaded, LoadRun(run_id));
  return SummarizeTasks(loaded.first, loaded.second, nullptr);
}

Result<std::vector<RunListEntry>> RunManager::ListRuns(int limit) {
  std::vector<Run> runs;
  FACTORY_RETURN_IF_ERROR(deps_.store->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(runs, txn.ListRuns(limit));
    return Ok();
  }));
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) {
    return a.created_ms != b.created_ms ? a.created_ms > b.created_ms : a.id > b.id;
  });
  std::vector<RunListEntry> entries;
  for (const auto& run : runs) {
    RunListEntry entry;
    entry.run = run;
    FACTORY_ASSIGN_OR_RETURN(entry.summary, Summarize(run.id));
    entries.push_back(std::move(entry));
  }
  return entries;
}

Result<BaseMergeResult> RunManager::MergeRunIntoBase(const std::string& run_id,
                                                     const RunMergeOptions& options) {
  FACTORY_ASSIGN_OR_RETURN(RunSummary summary, Summarize(run_id));
  const std::vector<std::string> blockers = summary.MergeBlockers();
  if (!blockers.empty()) {
    if (!options.force) {
      std::string message = "run " + run_id + " is not mergeable: ";
      for (size_t index = 0; index < blockers.size(); ++index) {
        message += (index > 0 ? "; " : "") + blockers[index];
      }
      message += ". " + summary.NextStep() + " (`factory run merge " + run_id +
                 " --force --reason WHY` merges it anyway, recorded in the audit log)";
      return FailedPrecondition(message);
    }
    if (options.reason.find_first_not_of(" \t\r\n") == std::string::npos) {
      return InvalidArgument("forcing the merge of run " + run_id +
                             " needs a reason (--reason): it goes into the audit log");
    }
    // Recorded before merging: an override that cannot be audited does not happen.
    FACTORY_RETURN_IF_ERROR(deps_.queue->events().Append(
        {.kind = events::EventKind::kRunMergeForced,
         .run_id = run_id,
         .actor = options.actor,
         .payload_json = json{{"user", options.user},
                              {"reason", options.reason},
                              {"overridden", blockers},
                              {"base_branch", deps_.workspace->base_branch()}}
                             .dump(-1, ' ', false, json::error_handler_t::replace)}));
  }
  FACTORY_ASSIGN_OR_RETURN(BaseMergeResult merged, deps_.workspace->MergeIntoBase(run_id));
  deps_.queue->events().AppendOrWarn({.kind = events::EventKind::kRunMergedIntoBase,
                                      .run_id = run_id,
                                      .actor = options.actor,
                                      .payload_json = json{{"base_branch", merged.base_branch},
                                                           {"old_tip", merged.old_tip},
                                                           {"new_tip", merged.new_tip},
                                                           {"up_to_date", merged.up_to_date},
                                                           {"fast_forward", merged.fast_forward},
                                                           {"done", summary.done},
                                                           {"total", summary.total},
                                                           {"forced", !blockers.empty()}}
                                                          .dump()});
  return merged;
}

void RunManager::RequestStop() {
  std::lock_guard lock(mu_);
  stop_requested_ = true;
  if (active_worker_ != nullptr) active_worker_->RequestStop();
}

void RunManager::RequestCancel() {
  std::lock_guard lock(mu_);
  cancel_requested_ = true;
  stop_requested_ = true;
  if (active_worker_ != nullptr) active_worker_->RequestCancel();
}

}  // namespace factory
