#include "queue/queue.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <type_traits>

#include "core/redact.h"
#include "events/event_kind.h"
#include "queue/state_machine.h"

namespace factory {
namespace {

using json = nlohmann::json;

// What every claim needs: someone to lease to, for some time.
Status CheckClaimant(const std::string& owner, int64_t lease_ms) {
  if (owner.empty()) return InvalidArgument("lease owner is empty");
  if (lease_ms <= 0) return InvalidArgument("lease duration must be positive");
  return Ok();
}

// Every dump replaces invalid UTF-8 (a runner's output tail may hold any bytes) with U+FFFD
// instead of throwing: an event must never be lost to, or crash on, its payload.
// Payloads are built by us from trusted values; a caller-supplied payload that does not parse
// as a JSON object is kept verbatim under "data" instead of being dropped.
json ParseObject(const std::string& text) {
  if (text.empty()) return json::object();
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return json{{"data", text}};
  if (!value.is_object()) return json{{"data", value}};
  return value;
}

std::string StateName(TaskState state) { return std::string(TaskStateName(state)); }

// Runs one read primitive on a consistent snapshot and returns its result.
template <typename Fn>
auto ReadValue(Store& store, Fn&& read) -> std::invoke_result_t<Fn, StoreTxn&> {
  std::optional<std::invoke_result_t<Fn, StoreTxn&>> result;
  Status status = store.Read([&](StoreTxn& txn) -> Status {
    result.emplace(read(txn));
    if (!*result) return std::unexpected(result->error());
    return Ok();
  });
  if (!status) return std::unexpected(status.error());
  return std::move(*result);
}

constexpr auto kReplaceInvalid = json::error_handler_t::replace;

// A JSON string literal for text (ill-formed UTF-8 replaced). Hot-path payloads are assembled
// from these instead of building json objects: that was a sixth of an enqueue's cost.
std::string Quote(std::string_view text) {
  return json(text).dump(-1, ' ', false, kReplaceInvalid);
}

// Everything the queue stores passes the process redactor first: an event's payload before the
// chain hashes it (a hashed secret could never be scrubbed), an attempt's error and details, a
// task's result and metadata. The texts are JSON; the redactor's markers are JSON-safe and it
// also matches a secret's JSON-escaped form.
std::string Redacted(std::string_view text) { return ProcessRedactor().Redact(text); }

bool IsFinalFailure(TaskState state) {
  return state == TaskState::kFailed || state == TaskState::kCancelled ||
         state == TaskState::kBlocked;
}

}  // namespace

Queue::Queue(Store& store, QueueOptions options)
    : store_(store),
      clock_(options.clock != nullptr ? *options.clock : SystemClock()),
      retry_(options.retry),
      actor_(options.actor),
      ids_(clock_),
      events_(store, events::EventLogOptions{.clock = &clock_, .actor = actor_}),
      rng_(std::random_device{}()) {}

Result<Run> Queue::EnsureRun(const std::string& run_id, const std::string& title) {
  if (run_id.empty()) return InvalidArgument("run id is empty");
  Run result;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto existing, txn.GetRun(run_id));
    if (existing) {
      result = *existing;
      return Ok();
    }
    int64_t now = clock_.NowMillis();
    result = Run{run_id, title, "active", "{}", now, now};
    FACTORY_RETURN_IF_ERROR(txn.InsertRun(result));
    return events_.AppendInTxn(
        txn, {.kind = events::EventKind::kRunCreated,
              .run_id = run_id,
              .payload_json = json{{"title", title}}.dump(-1, ' ', false, kReplaceInvalid)});
  }));
  return result;
}

Result<EnqueueResult> Queue::EnqueueInTxn(StoreTxn& txn, const EnqueueRequest& request,
                                          std::map<std::string, Run>& known_runs) {
  if (request.title.empty()) return InvalidArgument("task title is empty");
  if (request.run_id.empty()) return InvalidArgument("run id is empty");
  if (request.max_attempts < 1) {
    return InvalidArgument("max_attempts must be at least 1 (got " +
                           std::to_string(request.max_attempts) + ")");
  }
  if (request.max_crashes < 1) {
    return InvalidArgument("max_crashes must be at least 1 (got " +
                           std::to_string(request.max_crashes) + ")");
  }
  if (request.idempotency_key) {
    if (request.idempotency_key->empty()) return InvalidArgument("idempotency key is empty");
    FACTORY_ASSIGN_OR_RETURN(
        auto existing_id, txn.FindTaskByIdempotencyKey(request.run_id, *request.idempotency_key));
    if (existing_id) {
      FACTORY_ASSIGN_OR_RETURN(auto existing, txn.GetTask(*existing_id));
      if (!existing) return Internal("idempotency key points at missing task " + *existing_id);
      return EnqueueResult{std::move(*existing), false};
    }
  }
  int64_t now = clock_.NowMillis();
  if (!known_runs.contains(request.run_id)) {
    FACTORY_ASSIGN_OR_RETURN(auto run, txn.GetRun(request.run_id));
    if (!run) {
      run = Run{request.run_id, "", "active", "{}", now, now};
      FACTORY_RETURN_IF_ERROR(txn.InsertRun(*run));
      FACTORY_RETURN_IF_ERROR(events_.AppendInTxn(
          txn, {.kind = events::EventKind::kRunCreated, .run_id = request.run_id}));
    }
    known_runs.emplace(request.run_id, *run);
  }

  Task task;
  std::set<std::string> unique_deps(request.depends_on.begin(), request.depends_on.end());
  for (const auto& key : request.depends_on_keys) {
    FACTORY_ASSIGN_OR_RETURN(auto dep_id, txn.FindTaskByIdempotencyKey(request.run_id, key));
    if (!dep_id) {
      return NotFound("dependency '" + key + "' is not a task of run " + request.run_id);
    }
    unique_deps.insert(*dep_id);
  }
  bool any_failed = false;
  bool all_done = true;
  for (const auto& dep_id : unique_deps) {
    FACTORY_ASSIGN_OR_RETURN(auto dep, txn.GetTask(dep_id));
    if (!dep) return NotFound("dependency " + dep_id + " does not exist");
    if (IsFinalFailure(dep->state)) any_failed = true;
    if (dep->state != TaskState::kDone) all_done = false;
  }
  task.id = ids_.Next();
  task.run_id = request.run_id;
  task.title = request.title;
  task.spec = request.spec;
  task.acceptance_json = request.acceptance_json.empty() ? "[]" : request.acceptance_json;
  task.type = request.type;
  task.capabilities_json = request.capabilities_json.empty() ? "[]" : request.capabilities_json;
  task.agent = request.agent;
  task.command = request.command;
  task.priority = request.priority;
  task.state = any_failed ? TaskState::kBlocked
               : all_done ? TaskState::kReady
                          : TaskState::kPending;
  task.idempotency_key = request.idempotency_key;
  task.max_attempts = request.max_attempts;
  task.max_crashes = request.max_crashes;
  task.metadata_json = request.metadata_json.empty() ? "{}" : request.metadata_json;
  task.created_ms = now;
  task.updated_ms = now;
  task.depends_on.assign(unique_deps.begin(), unique_deps.end());
  FACTORY_RETURN_IF_ERROR(txn.InsertTask(task));
  std::string payload = "{\"depends_on\":[";
  for (size_t i = 0; i < task.depends_on.size(); ++i) {
    if (i > 0) payload += ',';
    payload += Quote(task.depends_on[i]);
  }
  payload += ']';
  if (task.idempotency_key) payload += ",\"idempotency_key\":" + Quote(*task.idempotency_key);
  payload += ",\"priority\":" + std::to_string(task.priority) + ",\"state\":\"" +
             StateName(task.state) + "\",\"title\":" + Quote(task.title) + "}";
  FACTORY_RETURN_IF_ERROR(AppendEvent(txn, task, events::EventKind::kTaskCreated, payload));
  return EnqueueResult{std::move(task), true};
}

Result<EnqueueResult> Queue::Enqueue(const EnqueueRequest& request) {
  EnqueueResult result;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    std::map<std::string, Run> known_runs;
    FACTORY_ASSIGN_OR_RETURN(result, EnqueueInTxn(txn, request, known_runs));
    return Ok();
  }));
  return result;
}

Result<std::vector<EnqueueResult>> Queue::EnqueueMany(const std::vector<EnqueueRequest>& requests) {
  std::vector<EnqueueResult> results;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    results.clear();
    results.reserve(requests.size());
    std::map<std::string, Run> known_runs;
    for (size_t i = 0; i < requests.size(); ++i) {
      auto result = EnqueueInTxn(txn, requests[i], known_runs);
      if (!result) return std::unexpected(result.error().Wrap("task #" + std::to_string(i + 1)));
      results.push_back(std::move(*result));
    }
    return Ok();
  }));
  return results;
}

Result<std::vector<ClaimedTask>> Queue::Claim(const std::string& owner, int64_t lease_ms, int limit,
                                              const ClaimFilter& filter) {
  return ClaimImpl(owner, lease_ms, limit, filter, /*start=*/false);
}

Result<std::vector<ClaimedTask>> Queue::ClaimAndStart(const std::string& owner, int64_t lease_ms,
                                                      int limit, const ClaimFilter& filter) {
  return ClaimImpl(owner, lease_ms, limit, filter, /*start=*/true);
}

Result<std::vector<ClaimedTask>> Queue::ClaimImpl(const std::string& owner, int64_t lease_ms,
                                                  int limit, const ClaimFilter& filter,
                                                  bool start) {
  FACTORY_RETURN_IF_ERROR(CheckClaimant(owner, lease_ms));
  if (limit < 1) return InvalidArgument("claim limit must be at least 1");
  std::vector<ClaimedTask> claimed;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    claimed.clear();
    return ClaimInTxn(txn, owner, lease_ms, limit, filter, start, claimed);
  }));
  return claimed;
}

Status Queue::ClaimInTxn(StoreTxn& txn, const std::string& owner, int64_t lease_ms, int limit,
                         const ClaimFilter& filter, bool start, std::vector<ClaimedTask>& claimed) {
  int64_t now = clock_.NowMillis();
  int64_t expires = now + lease_ms;
  FACTORY_ASSIGN_OR_RETURN(auto tasks, txn.ClaimReady(filter, now, owner, expires, limit,
                                                      [this] { return ids_.Next(); }));
  claimed.reserve(claimed.size() + tasks.size());
  for (auto& task : tasks) {
    // The attempt's row is written when it ends (Store::InsertAttempt); until then the task
    // row holds it.
    FACTORY_RETURN_IF_ERROR(AppendEvent(
        txn, task, events::EventKind::kTaskClaimed,
        "{\"attempt\":" + std::to_string(task.attempts) + ",\"attempt_id\":\"" + task.attempt_id +
            "\",\"from\":\"ready\",\"lease_expires_ms\":" + std::to_string(expires) +
            ",\"owner\":" + Quote(owner) + ",\"to\":\"claimed\"}",
        "worker:" + owner));
    Lease lease{task.id, owner, task.lease_epoch, task.attempt_id, task.attempts, expires};
    if (start) {
      FACTORY_RETURN_IF_ERROR(
          Transition(txn, task, TaskState::kRunning, events::EventKind::kTaskStarted,
                     json{{"attempt", lease.attempt_number}}, "worker:" + owner));
    }
    claimed.push_back(ClaimedTask{std::move(task), std::move(lease)});
  }
  return Ok();
}

Result<std::vector<ClaimedTask>> Queue::CompleteAndClaim(
    const Lease& lease, const std::string& result_json, const std::string& details_json,
    const std::string& owner, int64_t lease_ms, int claim_limit, const ClaimFilter& filter) {
  if (claim_limit > 0) FACTORY_RETURN_IF_ERROR(CheckClaimant(owner, lease_ms));
  std::vector<ClaimedTask> claimed;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    claimed.clear();
    FACTORY_RETURN_IF_ERROR(CompleteInTxn(txn, lease, result_json, details_json));
    if (claim_limit <= 0) return Ok();
    return ClaimInTxn(txn, owner, lease_ms, claim_limit, filter, /*start=*/true, claimed);
  }));
  return claimed;
}

Result<Task> Queue::LoadLeased(StoreTxn& txn, const Lease& lease) {
  FACTORY_ASSIGN_OR_RETURN(auto task, txn.GetTask(lease.task_id, /*with_dependencies=*/false));
  if (!task) return NotFound("task " + lease.task_id + " does not exist");
  if (!IsLeasedState(task->state) || task->lease_owner != lease.owner ||
      task->lease_epoch != lease.epoch) {
    return Aborted("lease on task " + lease.task_id + " (attempt " +
                   std::to_string(lease.attempt_number) + ", owner " + lease.owner +
                   ") is stale: the task is now " + StateName(task->state) +
                   (task->lease_owner.empty() ? "" : ", leased to " + task->lease_owner));
  }
  return std::move(*task);
}

Status Queue::AppendEvent(StoreTxn& txn, const Task& task, events::EventKind kind,
                          const std::string& payload_json, const std::string& actor) {
  return events_.AppendInTxn(txn, {.kind = kind,
                                   .run_id = task.run_id,
                                   .task_id = task.id,
                                   .actor = actor,
                                   .payload_json = payload_json});
}

Status Queue::Write(const std::function<Status(StoreTxn&)>& fn) {
  FACTORY_RETURN_IF_ERROR(store_.Write(fn));
  events::EventLog::NotifyAppended();
  return Ok();
}

Status Queue::Transition(StoreTxn& txn, Task& task, TaskState to, events::EventKind kind,
                         json payload, const std::string& actor) {
  FACTORY_RETURN_IF_ERROR(CheckTransition(task.state, to));
  payload["from"] = StateName(task.state);
  payload["to"] = StateName(to);
  task.state = to;
  task.updated_ms = clock_.NowMillis();
  if (!IsLeasedState(to)) {
    task.lease_owner.clear();
    task.lease_expires_ms = 0;
  }
  FACTORY_RETURN_IF_ERROR(txn.UpdateTask(task));
  return AppendEvent(txn, task, kind, payload.dump(-1, ' ', false, kReplaceInvalid), actor);
}

Status Queue::FinishAttempt(StoreTxn& txn, const Task& task, AttemptStatus status,
                            const std::string& error, const std::string& details_json) {
  // REQUIRES: task is leased (the attempt is the one its row holds).
  Attempt attempt{.id = task.attempt_id,
                  .task_id = task.id,
                  .epoch = task.lease_epoch,
                  .number = task.attempts,
                  .owner = task.lease_owner,
                  .status = status,
                  .started_ms = task.attempt_started_ms,
                  .finished_ms = clock_.NowMillis(),
                  .error = Redacted(error)};
  if (details_json.empty() || details_json == "{}") {
    attempt.details_json = "{}";
  } else {
    json details = ParseObject(details_json);
    if (auto it = details.find("exit_code"); it != details.end() && it->is_number_integer()) {
      attempt.exit_code = it->get<int>();
    }
    attempt.details_json = Redacted(details.dump(-1, ' ', false, kReplaceInvalid));
  }
  return txn.InsertAttempt(attempt);
}

Result<Lease> Queue::Heartbeat(const Lease& lease, int64_t lease_ms) {
  if (lease_ms <= 0) return InvalidArgument("lease duration must be positive");
  Lease renewed = lease;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(Task task, LoadLeased(txn, lease));
    task.lease_expires_ms = clock_.NowMillis() + lease_ms;
    renewed.expires_ms = task.lease_expires_ms;
    // Not a state change, so no event: heartbeats would otherwise dominate the chain.
    return txn.UpdateTask(task);
  }));
  return renewed;
}

Status Queue::Start(const Lease& lease) { return StartMany({lease}); }

Status Queue::StartMany(const std::vector<Lease>& leases) {
  return Write([&](StoreTxn& txn) -> Status {
    for (const auto& lease : leases) {
      FACTORY_ASSIGN_OR_RETURN(Task task, LoadLeased(txn, lease));
      FACTORY_RETURN_IF_ERROR(
          Transition(txn, task, TaskState::kRunning, events::EventKind::kTaskStarted,
                     json{{"attempt", lease.attempt_number}}, "worker:" + lease.owner));
    }
    return Ok();
  });
}

Status Queue::Advance(const Lease& lease, TaskState to, const std::string& payload_json) {
  if (to == TaskState::kDone || to == TaskState::kFailed || to == TaskState::kReady ||
      to == TaskState::kCancelled) {
    return InvalidArgument("use Complete/Fail/Release/Cancel to move a task to " + StateName(to));
  }
  return Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(Task task, LoadLeased(txn, lease));
    return Transition(txn, task, to, events::TaskStateEventKind(to), ParseObject(payload_json),
                      "worker:" + lease.owner);
  });
}

Status Queue::CompleteInTxn(StoreTxn& txn, const Lease& lease, const std::string& result_json,
                            const std::string& details_json) {
  FACTORY_ASSIGN_OR_RETURN(Task task, LoadLeased(txn, lease));
  FACTORY_RETURN_IF_ERROR(FinishAttempt(txn, task, AttemptStatus::kSucceeded, "", details_json));
  task.result_json = Redacted(result_json);
  FACTORY_RETURN_IF_ERROR(Transition(txn, task, TaskState::kDone, events::EventKind::kTaskCompleted,
                                     json{{"attempt", lease.attempt_number}},
                                     "worker:" + lease.owner));
  return PromoteDependents(txn, task.id);
}

Status Queue::Complete(const Lease& lease, const std::string& result_json,
                       const std::string& details_json) {
  return Write([&](StoreTxn& txn) -> Status {
    return CompleteInTxn(txn, lease, result_json, details_json);
  });
}

Status Queue::CompleteMany(const std::vector<Lease>& leases) {
  return Write([&](StoreTxn& txn) -> Status {
    for (const auto& lease : leases) {
      FACTORY_RETURN_IF_ERROR(CompleteInTxn(txn, lease, "{}", "{}"));
    }
    return Ok();
  });
}

Status Queue::PromoteDependents(StoreTxn& txn, const std::string& task_id) {
  FACTORY_RETURN_IF_ERROR(CheckTransition(TaskState::kPending, TaskState::kReady));
  // One time for the rows and their events: the moment they became ready in this transaction.
  const int64_t now_ms = clock_.NowMillis();
  FACTORY_ASSIGN_OR_RETURN(auto promoted, txn.MakePendingDependentsReady(task_id, now_ms));
  if (promoted.empty()) return Ok();
  // The same payload for every dependent: made once (what Transition would write).
  const std::string payload = json{{"cause", task_id},
                                   {"from", StateName(TaskState::kPending)},
                                   {"to", StateName(TaskState::kReady)}}
                                  .dump(-1, ' ', false, kReplaceInvalid);
  for (const auto& dependent : promoted) {
    FACTORY_RETURN_IF_ERROR(events_.AppendInTxn(txn, {.kind = events::EventKind::kTaskReady,
                                                      .run_id = dependent.run_id,
                                                      .task_id = dependent.id,
                                                      .payload_json = payload}));
  }
  return Ok();
}

Result<std::vector<std::string>> Queue::BlockDependents(StoreTxn& txn, const std::string& task_id,
                                                        const std::string& cause) {
  std::vector<std::string> blocked;
  std::deque<std::string> frontier{task_id};
  while (!frontier.empty()) {
    std::string current = std::move(frontier.front());
    frontier.pop_front();
    FACTORY_ASSIGN_OR_RETURN(auto dependents, txn.ListDependents(current));
    for (const auto& dependent_id : dependents) {
      FACTORY_ASSIGN_OR_RETURN(auto dependent, txn.GetTask(dependent_id));
      if (!dependent) continue;
      // Only waiting tasks can be blocked; a blocked one's dependents are blocked already.
      if (dependent->state != TaskState::kPending && dependent->state != TaskState::kReady) {
        continue;
      }
      FACTORY_RETURN_IF_ERROR(Transition(txn, *dependent, TaskState::kBlocked,
                                         events::EventKind::kTaskBlocked,
                                         json{{"cause", cause}, {"via", current}}, ""));
      blocked.push_back(dependent_id);
      frontier.push_back(dependent_id);
    }
  }
  return blocked;
}

int64_t Queue::NextBackoff(int attempt) {
  std::lock_guard lock(rng_mu_);
  return BackoffDelayMillis(retry_, attempt, rng_);
}

Result<FailureOutcome> Queue::Fail(const Lease& lease, const std::string& error,
                                   const std::string& details_json, bool retryable) {
  FailureOutcome outcome;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    outcome = FailureOutcome{};
    FACTORY_ASSIGN_OR_RETURN(Task task, LoadLeased(txn, lease));
    FACTORY_RETURN_IF_ERROR(FinishAttempt(txn, task, AttemptStatus::kFailed, error, details_json));
    std::string actor = "worker:" + lease.owner;
    if (retryable && task.attempts < task.max_attempts) {
      int64_t delay = NextBackoff(task.attempts);
      task.not_before_ms = clock_.NowMillis() + delay;
      outcome.will_retry = true;
      outcome.not_before_ms = task.not_before_ms;
      return Transition(txn, task, TaskState::kReady, events::EventKind::kTaskRetryScheduled,
                        json{{"error", error},
                             {"attempt", lease.attempt_number},
                             {"delay_ms", delay},
                             {"not_before_ms", task.not_before_ms}},
                        actor);
    }
    FACTORY_RETURN_IF_ERROR(Transition(
        txn, task, TaskState::kFailed, events::EventKind::kTaskFailed,
        json{{"error", error}, {"attempt", lease.attempt_number}, {"final", true}}, actor));
    FACTORY_ASSIGN_OR_RETURN(outcome.blocked, BlockDependents(txn, task.id, task.id));
    return Ok();
  }));
  return outcome;
}

Status Queue::Release(const Lease& lease, const std::string& reason) {
  return Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(Task task, LoadLeased(txn, lease));
    FACTORY_RETURN_IF_ERROR(FinishAttempt(txn, task, AttemptStatus::kReleased, reason, "{}"));
    // A release is the worker's choice (shutdown), not the task's failure: give the attempt back.
    task.attempts = std::max(0, task.attempts - 1);
    return Transition(txn, task, TaskState::kReady, events::EventKind::kTaskReleased,
                      json{{"reason", reason}, {"attempt", lease.attempt_number}},
                      "worker:" + lease.owner);
  });
}

Status Queue::ReapInTxn(StoreTxn& txn, Task& task, const std::string& reason,
                        std::vector<std::string>* failed_finally) {
  const std::string owner = task.lease_owner;
  const int attempt = task.attempts;
  FACTORY_RETURN_IF_ERROR(FinishAttempt(txn, task, AttemptStatus::kExpired, reason, "{}"));
  // The worker died, not the task: the attempt is given back, the crash counted.
  task.attempts = std::max(0, task.attempts - 1);
  task.crashes += 1;
  json payload{{"owner", owner},
               {"attempt", attempt},
               {"reason", reason},
               {"crashes", task.crashes},
               {"max_crashes", task.max_crashes},
               {"lease_expires_ms", task.lease_expires_ms}};
  if (task.crashes >= task.max_crashes) {
    payload["error"] = "its worker died " + std::to_string(task.crashes) +
                       " time(s) while running it (max_crashes " +
                       std::to_string(task.max_crashes) + ")";
    payload["final"] = true;
    FACTORY_RETURN_IF_ERROR(Transition(txn, task, TaskState::kFailed,
                                       events::EventKind::kTaskFailed, payload, "reaper"));
    FACTORY_RETURN_IF_ERROR(BlockDependents(txn, task.id, task.id));
    if (failed_finally != nullptr) failed_finally->push_back(task.id);
    return Ok();
  }
  return Transition(txn, task, TaskState::kReady, events::EventKind::kTaskLeaseExpired, payload,
                    "reaper");
}

Result<int> Queue::ReapExpired(int limit, std::vector<std::string>* failed_finally) {
  int reaped = 0;
  std::vector<std::string> failed;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    reaped = 0;
    failed.clear();
    FACTORY_ASSIGN_OR_RETURN(auto expired, txn.ListExpiredLeases(clock_.NowMillis(), limit));
    for (auto& task : expired) {
      if (!IsLeasedState(task.state)) continue;
      FACTORY_RETURN_IF_ERROR(ReapInTxn(txn, task, "lease expired", &failed));
      ++reaped;
    }
    return Ok();
  }));
  if (failed_finally != nullptr)
    failed_finally->insert(failed_finally->end(), failed.begin(), failed.end());
  return reaped;
}

Result<int> Queue::ReapDeadOwners(
    const std::function<bool(const std::string& owner)>& owner_is_dead,
    std::vector<std::string>* failed_finally) {
  // Every leased task, expired or not (the lease index holds exactly those).
  constexpr int64_t kEveryLease = std::numeric_limits<int64_t>::max();
  constexpr int kMaxLeases = 100'000;
  std::map<std::string, bool> dead;  // by owner: a /proc lookup per owner, not per task
  auto is_dead = [&](const std::string& owner) {
    auto it = dead.find(owner);
    if (it == dead.end()) it = dead.emplace(owner, !owner.empty() && owner_is_dead(owner)).first;
    return it->second;
  };
  // Looked for on a read snapshot first: the common case (nobody died) takes no write lock.
  bool any_dead = false;
  FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto leased, txn.ListExpiredLeases(kEveryLease, kMaxLeases));
    any_dead = std::any_of(leased.begin(), leased.end(),
                           [&](const Task& task) { return is_dead(task.lease_owner); });
    return Ok();
  }));
  if (!any_dead) return 0;
  int reaped = 0;
  std::vector<std::string> failed;
  FACTORY_RETURN_IF_ERROR(Write([&](StoreTxn& txn) -> Status {
    reaped = 0;
    failed.clear();
    FACTORY_ASSIGN_OR_RETURN(auto leased, txn.ListExpiredLeases(kEveryLease, kMaxLeases));
    for (auto& task : leased) {
      if (!IsLeasedState(task.state) || !is_dead(task.lease_owner)) continue;
      FACTORY_RETURN_IF_ERROR(
          ReapInTxn(txn, task, "lease owner " + task.lease_owner + " is dead", &failed));
      ++reaped;
    }
    return Ok();
  }));
  if (failed_finally != nullptr)
    failed_finally->insert(failed_finally->end(), failed.begin(), failed.end());
  return reaped;
}

Status Queue::Cancel(const std::string& task_id, const std::string& reason) {
  return Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto task, txn.GetTask(task_id));
    if (!task) return NotFound("task " + task_id + " does not exist");
    if (IsTerminalState(task->state)) {
      return FailedPrecondition("task " + task_id + " is already " + StateName(task->state));
    }
    if (task->state == TaskState::kFailed) {
      return FailedPrecondition("task " + task_id + " has failed; nothing to cancel");
    }
    if (IsLeasedState(task->state)) {
      FACTORY_RETURN_IF_ERROR(
          FinishAttempt(txn, *task, AttemptStatus::kCancelled, "cancelled", "{}"));
    }
    FACTORY_RETURN_IF_ERROR(Transition(txn, *task, TaskState::kCancelled,
                                       events::EventKind::kTaskCancelled, json{{"reason", reason}},
                                       ""));
    FACTORY_RETURN_IF_ERROR(BlockDependents(txn, task_id, task_id));
    return Ok();
  });
}

Status Queue::Retry(const std::string& task_id) {
  return Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto task, txn.GetTask(task_id));
    if (!task) return NotFound("task " + task_id + " does not exist");
    if (task->state != TaskState::kFailed && task->state != TaskState::kBlocked) {
      return FailedPrecondition("task " + task_id + " is " + StateName(task->state) +
                                "; only failed or blocked tasks can be retried");
    }
    for (const auto& dep_id : task->depends_on) {
      FACTORY_ASSIGN_OR_RETURN(auto dep, txn.GetTask(dep_id));
      if (dep && IsFinalFailure(dep->state)) {
        return FailedPrecondition("task " + task_id + " depends on " + dep_id + ", which is " +
                                  StateName(dep->state) + "; retry that task first");
      }
    }
    FACTORY_ASSIGN_OR_RETURN(int unfinished, txn.CountUnfinishedDependencies(task_id));
    task->attempts = 0;
    task->crashes = 0;
    task->not_before_ms = 0;
    FACTORY_RETURN_IF_ERROR(Transition(txn, *task,
                                       unfinished == 0 ? TaskState::kReady : TaskState::kPending,
                                       events::EventKind::kTaskRetried, json::object(), ""));
    // Dependents blocked because of this task wait again, unless another dependency of theirs
    // still failed.
    std::deque<std::string> frontier{task_id};
    while (!frontier.empty()) {
      std::string current = std::move(frontier.front());
      frontier.pop_front();
      FACTORY_ASSIGN_OR_RETURN(auto dependents, txn.ListDependents(current));
      for (const auto& dependent_id : dependents) {
        FACTORY_ASSIGN_OR_RETURN(auto dependent, txn.GetTask(dependent_id));
        if (!dependent || dependent->state != TaskState::kBlocked) continue;
        bool still_blocked = false;
        for (const auto& dep_id : dependent->depends_on) {
          FACTORY_ASSIGN_OR_RETURN(auto dep, txn.GetTask(dep_id));
          if (dep && IsFinalFailure(dep->state)) still_blocked = true;
        }
        if (still_blocked) continue;
        FACTORY_ASSIGN_OR_RETURN(int waiting, txn.CountUnfinishedDependencies(dependent_id));
        FACTORY_RETURN_IF_ERROR(
            Transition(txn, *dependent, waiting == 0 ? TaskState::kReady : TaskState::kPending,
                       events::EventKind::kTaskUnblocked, json{{"cause", task_id}}, ""));
        frontier.push_back(dependent_id);
      }
    }
    return Ok();
  });
}

Status Queue::UpdateMetadata(const std::string& task_id, const std::string& patch_json) {
  json patch = json::parse(patch_json, nullptr, false);
  if (patch.is_discarded() || !patch.is_object()) {
    return InvalidArgument("metadata patch must be a JSON object");
  }
  return Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto task, txn.GetTask(task_id));
    if (!task) return NotFound("task " + task_id + " does not exist");
    json metadata = ParseObject(task->metadata_json);
    metadata.merge_patch(patch);
    task->metadata_json = Redacted(metadata.dump(-1, ' ', false, kReplaceInvalid));
    task->updated_ms = clock_.NowMillis();
    return txn.UpdateTask(*task);
  });
}

Result<Task> Queue::GetTask(const std::string& task_id) {
  FACTORY_ASSIGN_OR_RETURN(auto task,
                           ReadValue(store_, [&](StoreTxn& txn) { return txn.GetTask(task_id); }));
  if (!task) return NotFound("task " + task_id + " does not exist");
  return std::move(*task);
}

Result<std::vector<Task>> Queue::ListTasks(const TaskQuery& query) {
  return ReadValue(store_, [&](StoreTxn& txn) { return txn.ListTasks(query); });
}

Result<std::vector<Attempt>> Queue::ListAttempts(const std::string& task_id) {
  return ReadValue(store_, [&](StoreTxn& txn) { return txn.ListAttempts(task_id); });
}

Result<std::vector<Event>> Queue::ListEvents(const EventQuery& query) {
  return ReadValue(store_, [&](StoreTxn& txn) { return txn.ListEvents(query); });
}

Result<std::map<std::string, int64_t>> Queue::Stats(const std::string& run_id) {
  FACTORY_ASSIGN_OR_RETURN(
      auto counts, ReadValue(store_, [&](StoreTxn& txn) { return txn.CountTasksByState(run_id); }));
  std::map<std::string, int64_t> stats;
  for (TaskState state : kAllTaskStates) {
    auto it = counts.find(state);
    stats[StateName(state)] = it == counts.end() ? 0 : it->second;
  }
  return stats;
}

Result<bool> Queue::HasActiveWork(const ClaimFilter& filter) {
  bool active = false;
  FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto counts, txn.CountTasksByState(filter.run_id));
    for (const auto& [state, count] : counts) {
      if (IsLeasedState(state) && count > 0) active = true;
    }
    if (active) return Ok();
    FACTORY_ASSIGN_OR_RETURN(auto next, txn.NextReadyAt(filter));
    active = next.has_value();
    return Ok();
  }));
  return active;
}

Result<std::optional<int64_t>> Queue::NextReadyAt(const ClaimFilter& filter) {
  return ReadValue(store_, [&](StoreTxn& txn) { return txn.NextReadyAt(filter); });
}

}  // namespace factory
