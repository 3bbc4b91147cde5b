#pragma once
// A reusable worker loop over the Queue: claims tasks (reaping expired leases first), runs each
// on a pool of `concurrency` threads through an Executor, heartbeats every lease, and completes,
// fails or releases by the outcome. Used by `factory worker` (shell commands) and, later, by the
// run pipeline (agents).
//
// On start, a worker reaps the leases of owners of this host that are provably dead
// (OwnerIsProvablyDead): their tasks are ready again at once instead of after the lease.
//
// Life of a claimed task:
//   Claim -> Start -> Executor::Start on a start thread, then StartedTask::Finish (or, for an
//   executor that does not split, Executor::Execute) on a pool thread; heartbeat every lease/3
//   meanwhile
//     success            -> Complete
//     failure            -> Fail (retry with backoff, or failed finally)
//     stopped by Stop    -> Release (the attempt is given back; the task is ready again)
//     lease found stale  -> the executor is cancelled and its result discarded (the task was
//                           cancelled, reaped or claimed by someone else)

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "queue/queue.h"
#include "store/store.h"

namespace factory {

// What an Executor made of one claimed task.
struct ExecResult {
  bool success = false;
  // True when the executor stopped because its cancel flag was set (the worker decides what
  // that means: release on shutdown, discard when the lease was lost).
  bool cancelled = false;
  bool retryable = true;         // false: fail finally even when attempts remain
  std::optional<int> exit_code;  // for command-like executors
  std::string error;             // failure text recorded on the attempt (exit code + stderr tail)
  std::string result_json = "{}";
  std::string details_json = "{}";
};

// A task an Executor has started (Executor::Start); the worker finishes it on a pool thread.
class StartedTask {
 public:
  virtual ~StartedTask() = default;
  // Waits for the task to end; otherwise Executor::Execute's contract (cancel, no throw).
  virtual ExecResult Finish() = 0;
};

// Runs claimed tasks. Implementations must be thread-safe: Execute is called concurrently from
// up to `concurrency` threads.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs the task to completion. Must return promptly (within a few seconds) once cancel
  // becomes true, with cancelled = true. Must not throw (an exception is recorded as a failed
  // attempt, but executors should turn their own errors into ExecResult).
  virtual ExecResult Execute(const ClaimedTask& task, const std::atomic<bool>& cancel) = 0;

  // Optional first half of Execute, for executors whose start is short and whose run is long
  // (a process). The worker calls it on its few start threads (WorkerOptions::start_threads),
  // and a pool thread then calls Finish: a burst of claimed tasks starts from a thread or two
  // instead of `concurrency` threads contending for the same kernel locks (bench/RESULTS.md,
  // dispatch latency). nullptr, the default: the worker calls Execute on a pool thread instead.
  // A start that fails returns a StartedTask whose Finish reports it. It delays every task
  // claimed after it, so it must not wait for anything slow. `cancel` outlives Finish.
  virtual std::unique_ptr<StartedTask> Start(const ClaimedTask& task,
                                             const std::atomic<bool>& cancel) {
    (void)task;
    (void)cancel;
    return nullptr;
  }
};

// Progress notifications (for a display); called from worker threads, must be thread-safe and
// cheap.
struct WorkerEvent {
  enum class Kind { kStarted, kSucceeded, kFailed, kReleased, kLeaseLost, kError };
  Kind kind = Kind::kStarted;
  std::string task_id;
  std::string title;
  int attempt_number = 0;
  int max_attempts = 0;
  bool will_retry = false;  // kFailed: the task goes back to ready after backoff
  int64_t duration_ms = 0;  // kSucceeded/kFailed/kReleased
  std::string message;      // error text, or the reason
};
std::string_view WorkerEventKindName(WorkerEvent::Kind kind);

struct WorkerOptions {
  std::string owner;  // lease owner id; empty: DefaultWorkerOwner()
  int concurrency = 1;
  int64_t lease_ms = 30'000;
  int64_t poll_ms = 500;    // longest sleep when nothing is claimable
  bool until_idle = false;  // return once no matching task is ready, leased or backing off
  int batch = 1;            // most tasks claimed in one transaction
  // Threads that start claimed tasks (Executor::Start) while the pool waits for them; 0: four
  // per core, at most 8 (and no more than concurrency). A start spends much of its time
  // blocked in the kernel (vfork waits for the child's exec; making the attempt's folder waits
  // on the file system), so a few per core keep the cores busy in a burst (bench/HISTORY.md,
  // dispatch latency, compares the counts).
  int start_threads = 0;
  ClaimFilter filter;
  int64_t reap_interval_ms = 1'000;
  // After RequestStop: how long running tasks may take to finish before they are cancelled
  // and their leases released.
  int64_t shutdown_grace_ms = 10'000;
  std::function<void(const WorkerEvent&)> on_event;  // may be empty
};

struct WorkerStats {
  int64_t claimed = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t released = 0;
  int64_t lease_lost = 0;
  int64_t reaped = 0;
  // Tasks this worker saw fail finally: its own attempts that failed with no retry left, and
  // tasks its reaping failed (max_crashes).
  int64_t failed_finally = 0;
  // Of `claimed`: taken in the transaction that completed another task (its freed slot).
  int64_t claimed_on_completion = 0;
};

// "<hostname>:<pid>:<start>:<ulid>", where <start> is the process's start time (field 22 of
// /proc/<pid>/stat, clock ticks since boot): with the pid it names this process and no later
// one that reuses the pid.
std::string DefaultWorkerOwner();

// True when `owner` names a process of this host ("<hostname>:<pid>:...") that is provably
// gone: no process has that pid, or the one that has it started at another time than the
// owner's <start> (the pid was reused). Owners of other hosts, in another format, or of a live
// process are never dead. Reads /proc.
bool OwnerIsProvablyDead(const std::string& owner);

class Worker {
 public:
  // REQUIRES: queue and executor outlive the Worker. options.concurrency, batch >= 1,
  // lease_ms > 0 (checked by Run).
  Worker(Queue& queue, Executor& executor, WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the loop on the calling thread until stopped (RequestStop, or idle with until_idle).
  // Returns an error only when the options are invalid or the store keeps failing; per-task
  // failures are recorded in the queue, not returned. Call at most once.
  Status Run();

  // Stops claiming; running tasks get shutdown_grace_ms to finish, then are cancelled and
  // released. Thread-safe; not async-signal-safe (call it from a signal-watching thread).
  void RequestStop();
  // Cancels running tasks now (a second Ctrl-C) and releases their leases. Thread-safe.
  void RequestCancel();

  WorkerStats stats() const;
  const std::string& owner() const { return options_.owner; }

 private:
  struct Job {
    ClaimedTask claimed;
    std::atomic<bool> cancel{false};
    bool lease_lost = false;        // guarded by mu_
    bool shutting_down = false;     // guarded by mu_: cancel came from RequestStop/Cancel
    int64_t next_heartbeat_ms = 0;  // guarded by mu_
    // The completions begun before this job was claimed (tickets up to this one): it starts
    // only once they have all been reported. Guarded by mu_.
    uint64_t after_completion = 0;
    int64_t started_ms = 0;
    // Set by the start thread that took the job (Executor::Start), then owned by the pool
    // thread that takes it next.
    std::unique_ptr<StartedTask> started;
  };

  void PoolThread();
  void StartThread();
  void HeartbeatThread();
  void RunJob(const std::shared_ptr<Job>& job);
  void Finish(const std::shared_ptr<Job>& job, const ExecResult& result);
  void Emit(WorkerEvent event);
  // A completion's event was emitted: the jobs waiting for it may start.
  void EndCompletion(uint64_t ticket);
  // Cancels every running job as part of shutdown.
  void CancelAllLocked();
  Status ClaimAndDispatch(bool& claimed_any);
  // Reserves (counts in in_flight_) the slots a claim may fill: the free ones, plus `freeing`
  // held by a task that is completing, at most `batch`; none once stopping. REQUIRES: mu_ held.
  int ReserveSlotsLocked(int freeing);
  // After a claim for `reserved` slots: gives back the ones it did not fill and queues what it
  // claimed (nullptr: the claim failed, nothing was claimed).
  void SettleClaim(int reserved, std::vector<ClaimedTask>* claimed);
  // Makes claimed tasks active jobs and queues them for the start threads. REQUIRES: mu_ held;
  // in_flight_ already counts them.
  void QueueClaimedLocked(std::vector<ClaimedTask>& claimed);
  // Executor::Start for a claimed job, on a start thread (exceptions become failures).
  void StartJob(Job& job);

  Queue& queue_;
  Executor& executor_;
  WorkerOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;                          // state changes for the main loop
  std::condition_variable pool_cv_;                     // work for the pool
  std::condition_variable start_cv_;                    // work for the start threads
  std::deque<std::shared_ptr<Job>> to_start_;           // guarded by mu_: claimed, not started
  std::vector<std::shared_ptr<Job>> pending_jobs_;      // guarded by mu_: claimed, not yet running
  std::map<std::string, std::shared_ptr<Job>> active_;  // guarded by mu_: by task id
  int in_flight_ = 0;                                   // guarded by mu_: pending + running
  int64_t finished_count_ = 0;                          // guarded by mu_: jobs done, any outcome
  bool stop_ = false;                                   // guarded by mu_
  bool cancel_now_ = false;                             // guarded by mu_
  bool pool_exit_ = false;                              // guarded by mu_
  WorkerStats stats_;                                   // guarded by mu_
  // Successful completions between their commit and their kSucceeded event, by ticket. A task
  // their commit made ready may be claimed (by this completion or another thread's) before the
  // event is emitted; it starts only after, so a display never shows a task start before the
  // end of a dependency.
  uint64_t last_completion_ = 0;   // guarded by mu_
  std::set<uint64_t> completing_;  // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace factory
