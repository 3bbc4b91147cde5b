#pragma once
// The durable task queue: enqueue with idempotency keys and dependencies, claim with leases,
// heartbeat, complete/fail with retries and backoff, reap expired leases, cancel and retry.
// Every state change appends a hash-chained event in the same transaction as the change.
//
// Thread-safe: a Queue may be shared by threads; several processes may use the same database.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "core/ulid.h"
#include "events/event_log.h"
#include "queue/backoff.h"
#include "store/store.h"

namespace factory {

inline constexpr char kDefaultRunId[] = "default";

struct EnqueueRequest {
  std::string run_id = kDefaultRunId;
  std::string title;
  std::string spec;
  std::string acceptance_json = "[]";
  std::string type;
  std::string capabilities_json = "[]";
  std::string agent;
  std::string command;
  int priority = 0;
  std::vector<std::string> depends_on;  // ids of existing tasks (or earlier in an EnqueueMany)
  // Dependencies named by their idempotency key in the same run (e.g. backlog ids); resolved
  // inside the transaction, so they may name tasks earlier in the same EnqueueMany.
  std::vector<std::string> depends_on_keys;
  std::optional<std::string> idempotency_key;
  int max_attempts = 3;
  // Attempts ended by the death of the worker running them before the task fails finally
  // (Task::max_crashes).
  int max_crashes = 5;
  std::string metadata_json = "{}";
};

struct EnqueueResult {
  Task task;
  bool created = false;  // false: the idempotency key matched an existing task
};

// The right to act on a claimed task. Only the current holder may start, advance, complete or
// fail it; a lease is stale once the task was reaped, released, cancelled or claimed again.
struct Lease {
  std::string task_id;
  std::string owner;
  int64_t epoch = 0;  // fencing token (task.lease_epoch at claim time)
  std::string attempt_id;
  int attempt_number = 0;
  int64_t expires_ms = 0;
};

struct ClaimedTask {
  Task task;
  Lease lease;
};

struct FailureOutcome {
  bool will_retry = false;  // true: back to ready after not_before_ms; false: failed finally
  int64_t not_before_ms = 0;
  std::vector<std::string> blocked;  // dependents blocked by a final failure
};

struct QueueOptions {
  const Clock* clock = nullptr;  // nullptr: SystemClock()
  RetryPolicy retry;
  std::string actor = "queue";  // recorded on events caused by this Queue
};

class Queue {
 public:
  // REQUIRES: store (and options.clock) outlive the Queue.
  Queue(Store& store, QueueOptions options = {});

  // Creates the run if missing; returns it.
  Result<Run> EnsureRun(const std::string& run_id, const std::string& title = "");

  // Creates a task, or returns the existing one when (run_id, idempotency_key) matches
  // (created = false; nothing is written). Dependencies must exist (NotFound otherwise). The new
  // task is ready when all dependencies are done, blocked when one failed finally or was
  // cancelled, pending otherwise. Creates the run if missing.
  Result<EnqueueResult> Enqueue(const EnqueueRequest& request);
  // Many tasks in one transaction; a request may depend on tasks earlier in the same batch
  // through depends_on_keys. All or nothing.
  Result<std::vector<EnqueueResult>> EnqueueMany(const std::vector<EnqueueRequest>& requests);

  // Claims up to `limit` of the best ready tasks (priority DESC, then oldest) whose not_before
  // has passed, leasing each to owner for lease_ms. Starts an attempt per task (its id is the
  // lease's attempt_id; its attempts row is written when it ends).
  Result<std::vector<ClaimedTask>> Claim(const std::string& owner, int64_t lease_ms, int limit = 1,
                                         const ClaimFilter& filter = {});
  // Claim, then claimed -> running for each claimed task, in the same transaction (both events
  // are written): what a worker that starts its tasks at once does, one commit instead of two.
  Result<std::vector<ClaimedTask>> ClaimAndStart(const std::string& owner, int64_t lease_ms,
                                                 int limit = 1, const ClaimFilter& filter = {});

  // Extends the lease to now + lease_ms. Aborted when the lease is stale.
  Result<Lease> Heartbeat(const Lease& lease, int64_t lease_ms);
  // claimed -> running.
  Status Start(const Lease& lease);
  // claimed -> running for several leases in one transaction, all or none (Aborted when any
  // lease is stale): what a worker does with a batch it has just claimed, one commit instead of
  // one per task.
  Status StartMany(const std::vector<Lease>& leases);
  // A lease-holding state change: running -> verifying -> review (see state_machine.h).
  Status Advance(const Lease& lease, TaskState to, const std::string& payload_json = "{}");
  // -> done. Promotes dependents whose dependencies are now all done. Aborted when stale.
  Status Complete(const Lease& lease, const std::string& result_json = "{}",
                  const std::string& details_json = "{}");
  // Completes many leases in one transaction (batched workers). All or nothing.
  Status CompleteMany(const std::vector<Lease>& leases);
  // Complete, then ClaimAndStart up to `claim_limit` tasks (0: none) for `owner`, in the same
  // transaction: a worker refills the slot a finished task frees, and takes the dependents the
  // completion made ready, without a commit of its own. All or nothing (Aborted when the lease
  // is stale, and then nothing is claimed).
  Result<std::vector<ClaimedTask>> CompleteAndClaim(const Lease& lease,
                                                    const std::string& result_json,
                                                    const std::string& details_json,
                                                    const std::string& owner, int64_t lease_ms,
                                                    int claim_limit, const ClaimFilter& filter);
  // The attempt failed: back to ready after backoff while attempts remain and `retryable`,
  // otherwise failed finally, blocking dependents transitively. Aborted when stale.
  Result<FailureOutcome> Fail(const Lease& lease, const std::string& error,
                              const std::string& details_json = "{}", bool retryable = true);
  // Gives the task back without using up the attempt (graceful shutdown). Aborted when stale.
  Status Release(const Lease& lease, const std::string& reason);
  // Returns expired leases to ready. An expired lease means its worker died or stalled, not
  // that the task failed: the attempt is given back (it does not count toward max_attempts)
  // and counted as a crash instead; the task fails finally at max_crashes. Returns the number
  // reaped; the ids of tasks that failed finally are appended to *failed_finally when given.
  Result<int> ReapExpired(int limit = 1000, std::vector<std::string>* failed_finally = nullptr);
  // Reaps (as ReapExpired does) every lease, expired or not, whose owner `owner_is_dead`
  // says is provably dead: a worker starting after a crash need not wait for the dead owner's
  // leases to expire. owner_is_dead must be side-effect free (it may run more than once).
  Result<int> ReapDeadOwners(const std::function<bool(const std::string& owner)>& owner_is_dead,
                             std::vector<std::string>* failed_finally = nullptr);

  // Cancels a task that is not done/cancelled; its dependents become blocked (transitively).
  // A worker holding its lease finds the lease stale at its next call.
  Status Cancel(const std::string& task_id, const std::string& reason = "");
  // A failed or blocked task back to ready (pending while dependencies are not yet done),
  // attempts reset; blocked dependents whose dependencies are no longer failed become pending
  // again. FailedPrecondition when a dependency is itself failed or cancelled.
  Status Retry(const std::string& task_id);

  // Merges `patch` (a JSON object) into the task's metadata. NotFound / InvalidArgument.
  Status UpdateMetadata(const std::string& task_id, const std::string& patch_json);

  Result<Task> GetTask(const std::string& task_id);
  Result<std::vector<Task>> ListTasks(const TaskQuery& query);
  Result<std::vector<Attempt>> ListAttempts(const std::string& task_id);
  Result<std::vector<Event>> ListEvents(const EventQuery& query);
  // Count per state name, every state present (zero when none). run_id empty: all runs.
  Result<std::map<std::string, int64_t>> Stats(const std::string& run_id = "");
  // True when a task matching filter is ready, claimed, running, verifying or in review.
  Result<bool> HasActiveWork(const ClaimFilter& filter = {});
  // Earliest not_before of a ready task matching filter (to sleep until then).
  Result<std::optional<int64_t>> NextReadyAt(const ClaimFilter& filter = {});

  Store& store() { return store_; }
  // The log the queue appends its state changes to (inside the changes' transactions); shared
  // with whoever records events next to the queue's work.
  events::EventLog& events() { return events_; }
  const Clock& clock() const { return clock_; }

 private:
  Result<EnqueueResult> EnqueueInTxn(StoreTxn& txn, const EnqueueRequest& request,
                                     std::map<std::string, Run>& known_runs);
  Result<Task> LoadLeased(StoreTxn& txn, const Lease& lease);
  Result<std::vector<ClaimedTask>> ClaimImpl(const std::string& owner, int64_t lease_ms, int limit,
                                             const ClaimFilter& filter, bool start);
  Status ClaimInTxn(StoreTxn& txn, const std::string& owner, int64_t lease_ms, int limit,
                    const ClaimFilter& filter, bool start, std::vector<ClaimedTask>& claimed);
  // Checks and applies a state change and appends its event (payload gains "from" and "to").
  // actor empty: the Queue's own actor.
  Status Transition(StoreTxn& txn, Task& task, TaskState to, events::EventKind kind,
                    nlohmann::json payload, const std::string& actor);
  // store_.Write, then wakes the process's event subscriptions (the write appended events).
  Status Write(const std::function<Status(StoreTxn&)>& fn);
  Status AppendEvent(StoreTxn& txn, const Task& task, events::EventKind kind,
                     const std::string& payload_json, const std::string& actor = "");
  Status CompleteInTxn(StoreTxn& txn, const Lease& lease, const std::string& result_json,
                       const std::string& details_json);
  Status FinishAttempt(StoreTxn& txn, const Task& task, AttemptStatus status,
                       const std::string& error, const std::string& details_json);
  Status PromoteDependents(StoreTxn& txn, const std::string& task_id);
  // Ends a leased task's attempt as a crash (see ReapExpired). Appends the task's id to
  // *failed_finally (when given) when it failed finally.
  Status ReapInTxn(StoreTxn& txn, Task& task, const std::string& reason,
                   std::vector<std::string>* failed_finally);
  Result<std::vector<std::string>> BlockDependents(StoreTxn& txn, const std::string& task_id,
                                                   const std::string& cause);
  int64_t NextBackoff(int attempt);

  Store& store_;
  const Clock& clock_;
  RetryPolicy retry_;
  std::string actor_;
  UlidGenerator ids_;
  events::EventLog events_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // guarded by rng_mu_
};

}  // namespace factory
