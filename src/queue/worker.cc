#include "queue/worker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include "core/subprocess.h"
#include "core/ulid.h"

namespace factory {
namespace {

// The store keeps failing (disk gone, database replaced): give up after this many claim errors
// in a row rather than spinning forever.
constexpr int kMaxConsecutiveClaimErrors = 30;
constexpr int64_t kMinWaitMs = 10;

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view WorkerEventKindName(WorkerEvent::Kind kind) {
  switch (kind) {
    case WorkerEvent::Kind::kStarted:
      return "started";
    case WorkerEvent::Kind::kSucceeded:
      return "succeeded";
    case WorkerEvent::Kind::kFailed:
      return "failed";
    case WorkerEvent::Kind::kReleased:
      return "released";
    case WorkerEvent::Kind::kLeaseLost:
      return "lease-lost";
    case WorkerEvent::Kind::kError:
      return "error";
  }
  return "unknown";
}

namespace {

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "localhost");
  }
  return host;
}

bool AllDigits(std::string_view text) {
  return !text.empty() && text.size() <= 20 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

enum class ProcessStart { kGone, kUnknown, kKnown };

// The start time of process `pid` (field 22 of /proc/<pid>/stat), or why there is none.
ProcessStart ReadProcessStart(const std::string& pid, std::string* start) {
  std::ifstream stat("/proc/" + pid + "/stat");
  if (!stat) {
    // No such entry: no such process (a zombie still has its entry). Anything else (no /proc)
    // proves nothing.
    std::error_code ec;
    const bool proc_mounted = std::filesystem::exists("/proc/self/stat", ec);
    return proc_mounted && !std::filesystem::exists("/proc/" + pid, ec) ? ProcessStart::kGone
                                                                        : ProcessStart::kUnknown;
  }
  std::string line;
  std::getline(stat, line);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields count from the
  // last ')'. starttime is field 22, the 20th after it.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return ProcessStart::kUnknown;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  for (int idx = 3; idx <= 22; ++idx) {
    if (!(fields >> field)) return ProcessStart::kUnknown;
  }
  *start = field;
  return ProcessStart::kKnown;
}

}  // namespace

std::string DefaultWorkerOwner() {
  const std::string pid = std::to_string(getpid());
  std::string start;
  if (ReadProcessStart(pid, &start) != ProcessStart::kKnown) start = "0";
  return HostName() + ":" + pid + ":" + start + ":" + NewUlid();
}

bool OwnerIsProvablyDead(const std::string& owner) {
  const size_t host_end = owner.find(':');
  if (host_end == std::string::npos || owner.substr(0, host_end) != HostName()) return false;
  const size_t pid_end = owner.find(':', host_end + 1);
  if (pid_end == std::string::npos) return false;
  const std::string pid = owner.substr(host_end + 1, pid_end - host_end - 1);
  if (!AllDigits(pid) || pid.front() == '0') return false;
  std::string start;
  switch (ReadProcessStart(pid, &start)) {
    case ProcessStart::kGone:
      return true;
    case ProcessStart::kUnknown:
      return false;
    case ProcessStart::kKnown:
      break;
  }
  // An owner id that carries a start time ("host:pid:start:ulid") names one process; an older
  // "host:pid:ulid" cannot tell a reused pid from its owner, so a live pid is taken as alive.
  const size_t start_end = owner.find(':', pid_end + 1);
  if (start_end == std::string::npos) return false;
  const std::string owner_start = owner.substr(pid_end + 1, start_end - pid_end - 1);
  if (!AllDigits(owner_start) || owner_start == "0") return false;
  return owner_start != start;
}

Worker::Worker(Queue& queue, Executor& executor, WorkerOptions options)
    : queue_(queue), executor_(executor), options_(std::move(options)) {
  if (options_.owner.empty()) options_.owner = DefaultWorkerOwner();
}

Worker::~Worker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    pool_exit_ = true;
    CancelAllLocked();
  }
  pool_cv_.notify_all();
  start_cv_.notify_all();
  cv_.notify_all();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

void Worker::RequestStop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void Worker::RequestCancel() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cancel_now_ = true;
    CancelAllLocked();
  }
  cv_.notify_all();
}

void Worker::CancelAllLocked() {
  for (auto& [task_id, job] : active_) {
    job->shutting_down = true;
    job->cancel.store(true);
  }
}

WorkerStats Worker::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Worker::Emit(WorkerEvent event) {
  if (!options_.on_event) return;
  try {
    options_.on_event(event);
  } catch (const std::exception& e) {
    spdlog::warn("worker: progress callback threw: {}", e.what());
  }
}

void Worker::EndCompletion(uint64_t ticket) {
  {
    std::lock_guard lock(mu_);
    completing_.erase(ticket);
  }
  start_cv_.notify_all();
}

Status Worker::Run() {
  if (options_.concurrency < 1) return InvalidArgument("worker concurrency must be >= 1");
  if (options_.batch < 1) return InvalidArgument("worker batch must be >= 1");
  if (options_.lease_ms <= 0) return InvalidArgument("worker lease must be > 0 ms");
  if (options_.poll_ms <= 0) return InvalidArgument("worker poll interval must be > 0 ms");
  if (options_.start_threads < 0) return InvalidArgument("worker start threads must be >= 0");
  if (!threads_.empty()) return FailedPrecondition("Worker::Run called twice");

  spdlog::info("worker {}: concurrency {}, lease {} ms, batch {}", options_.owner,
               options_.concurrency, options_.lease_ms, options_.batch);
  // Room for every running task's descriptors, made before the first burst of starts.
  const int descriptors = options_.concurrency * kDescriptorsPerChild + 64;
  if (const int reserved = ReserveDescriptors(descriptors); reserved < descriptors) {
    spdlog::warn("worker: the open-file limit allows {} descriptors; {} running tasks may need {}",
                 reserved, options_.concurrency, descriptors);
  }
  for (int thread_idx = 0; thread_idx < options_.concurrency; ++thread_idx) {
    threads_.emplace_back([this] { PoolThread(); });
  }
  const int cores = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  const int start_threads = options_.start_threads > 0
                                ? options_.start_threads
                                : std::min({4 * cores, 8, options_.concurrency});
  for (int thread_idx = 0; thread_idx < start_threads; ++thread_idx) {
    threads_.emplace_back([this] { StartThread(); });
  }
  threads_.emplace_back([this] { HeartbeatThread(); });

  // Leases of workers of this host that died (a crash, a SIGKILL) are reaped now rather than
  // after their expiry: their tasks are ready for this worker's first claim.
  {
    std::vector<std::string> failed;
    auto reaped = queue_.ReapDeadOwners(
        [this](const std::string& owner) {
          return owner != options_.owner && OwnerIsProvablyDead(owner);
        },
        &failed);
    if (!reaped) {
      spdlog::warn("worker: reaping leases of dead workers failed: {}", reaped.error().ToString());
    } else if (*reaped > 0) {
      spdlog::info("worker: returned {} lease(s) of dead worker(s) to ready", *reaped);
      std::lock_guard lock(mu_);
      stats_.reaped += *reaped;
      stats_.failed_finally += static_cast<int64_t>(failed.size());
    }
  }

  Status result = Ok();
  int64_t last_reap_ms = 0;
  int consecutive_errors = 0;
  while (true) {
    int64_t finished_before = 0;  // a task finishing after this wakes the wait below
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
      finished_before = finished_count_;
    }
    const int64_t now_ms = queue_.clock().NowMillis();
    if (now_ms - last_reap_ms >= options_.reap_interval_ms) {
      last_reap_ms = now_ms;
      std::vector<std::string> failed;
      auto reaped = queue_.ReapExpired(/*limit=*/1000, &failed);
      if (!reaped) {
        spdlog::warn("worker: reaping expired leases failed: {}", reaped.error().ToString());
      } else if (*reaped > 0) {
        spdlog::info("worker: returned {} expired lease(s) to ready", *reaped);
        std::lock_guard lock(mu_);
        stats_.reaped += *reaped;
        stats_.failed_finally += static_cast<int64_t>(failed.size());
      }
    }

    int free_slots = 0;
    {
      std::lock_guard lock(mu_);
      free_slots = options_.concurrency - in_flight_;
    }
    bool claimed_any = false;
    if (free_slots > 0) {
      Status claimed = ClaimAndDispatch(claimed_any);
      if (!claimed) {
        ++consecutive_errors;
        spdlog::warn("worker: claim failed ({} in a row): {}", consecutive_errors,
                     claimed.error().ToString());
        if (consecutive_errors >= kMaxConsecutiveClaimErrors) {
          result = std::unexpected(claimed.error().Wrap("worker gave up after repeated errors"));
          break;
        }
      } else {
        consecutive_errors = 0;
      }
      if (claimed_any) continue;  // maybe more are claimable right away
    }

    int in_flight = 0;
    {
      std::lock_guard lock(mu_);
      in_flight = in_flight_;
    }
    if (options_.until_idle && in_flight == 0 && consecutive_errors == 0) {
      auto active = queue_.HasActiveWork(options_.filter);
      if (!active) {
        spdlog::warn("worker: checking for active work failed: {}", active.error().ToString());
      } else if (!*active) {
        spdlog::info("worker: idle, exiting");
        break;
      }
    }

    int64_t wait_ms = options_.poll_ms;
    if (free_slots > 0 && consecutive_errors == 0) {
      auto next_ready = queue_.NextReadyAt(options_.filter);
      if (next_ready && next_ready->has_value()) {
        wait_ms =
            std::clamp(**next_ready - queue_.clock().NowMillis(), kMinWaitMs, options_.poll_ms);
      }
    }
    std::unique_lock lock(mu_);
    // Wake early when a task finishes: its dependents may have become ready.
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                 [&] { return stop_ || finished_count_ != finished_before; });
  }

  // Shutdown: no more claims. Running tasks get the grace period, then are cancelled.
  {
    std::unique_lock lock(mu_);
    stop_ = true;
    if (in_flight_ > 0) {
      spdlog::info("worker: stopping; waiting up to {} ms for {} running task(s)",
                   options_.shutdown_grace_ms, in_flight_);
      cv_.wait_for(lock, std::chrono::milliseconds(options_.shutdown_grace_ms),
                   [&] { return in_flight_ == 0 || cancel_now_; });
      if (in_flight_ > 0) {
        spdlog::info("worker: cancelling {} running task(s) and releasing their leases",
                     in_flight_);
        CancelAllLocked();
      }
    }
    cv_.wait(lock, [&] { return in_flight_ == 0; });
    pool_exit_ = true;
  }
  pool_cv_.notify_all();
  start_cv_.notify_all();
  cv_.notify_all();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  return result;
}

Status Worker::ClaimAndDispatch(bool& claimed_any) {
  claimed_any = false;
  // The free slots are reserved for the claim: a pool thread completing a task meanwhile
  // claims only what is left (Finish).
  int limit = 0;
  {
    std::lock_guard lock(mu_);
    limit = ReserveSlotsLocked(/*freeing=*/0);
  }
  if (limit == 0) return Ok();
  // The batch is claimed and moved to `running` in one transaction, before any job is queued:
  // a burst of ready tasks then costs one commit, not one per task or per pool thread racing
  // for the writer.
  auto claimed = queue_.ClaimAndStart(options_.owner, options_.lease_ms, limit, options_.filter);
  SettleClaim(limit, claimed ? &*claimed : nullptr);
  if (!claimed) return std::unexpected(claimed.error());
  claimed_any = !claimed->empty();
  return Ok();
}

int Worker::ReserveSlotsLocked(int freeing) {
  // A stop that came after the caller's own check still claims nothing new.
  if (stop_) return 0;
  const int slots =
      std::max(0, std::min(options_.batch, options_.concurrency - in_flight_ + freeing));
  in_flight_ += slots;
  return slots;
}

void Worker::SettleClaim(int reserved, std::vector<ClaimedTask>* claimed) {
  {
    std::lock_guard lock(mu_);
    in_flight_ -= reserved - (claimed != nullptr ? static_cast<int>(claimed->size()) : 0);
    if (claimed != nullptr) QueueClaimedLocked(*claimed);
  }
  if (claimed != nullptr && !claimed->empty()) start_cv_.notify_all();
}

void Worker::QueueClaimedLocked(std::vector<ClaimedTask>& claimed) {
  const int64_t interval_ms = std::max<int64_t>(options_.lease_ms / 3, 20);
  const int64_t now_ms = queue_.clock().NowMillis();
  // Every claimed job is active (heartbeated, cancellable) before the first one starts.
  for (auto& claimed_task : claimed) {
    auto job = std::make_shared<Job>();
    job->claimed = std::move(claimed_task);
    job->next_heartbeat_ms = now_ms + interval_ms;
    job->after_completion = last_completion_;
    active_[job->claimed.task.id] = job;
    ++stats_.claimed;
    // A stop that arrived meanwhile: the job starts cancelled and is released.
    if (stop_ && cancel_now_) {
      job->shutting_down = true;
      job->cancel.store(true);
    }
    to_start_.push_back(std::move(job));
  }
}

void Worker::StartThread() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      start_cv_.wait(lock, [&] { return pool_exit_ || !to_start_.empty(); });
      if (to_start_.empty()) return;  // pool_exit_
      job = std::move(to_start_.front());
      to_start_.pop_front();
      // The completions that may have made it ready are reported first (see completing_).
      start_cv_.wait(lock, [&] {
        return pool_exit_ || completing_.empty() || *completing_.begin() > job->after_completion;
      });
    }
    if (!job->cancel.load()) StartJob(*job);
    {
      std::lock_guard lock(mu_);
      pending_jobs_.push_back(std::move(job));
    }
    pool_cv_.notify_one();
  }
}

namespace {

// A start that threw: finishing it reports the exception.
class FailedStart final : public StartedTask {
 public:
  explicit FailedStart(std::string error) { result_.error = std::move(error); }
  ExecResult Finish() override { return result_; }

 private:
  ExecResult result_;
};

}  // namespace

void Worker::StartJob(Job& job) {
  job.started_ms = SteadyMillis();
  try {
    job.started = executor_.Start(job.claimed, job.cancel);
  } catch (const std::exception& e) {
    job.started = std::make_unique<FailedStart>(std::string("executor threw: ") + e.what());
  } catch (...) {
    job.started = std::make_unique<FailedStart>("executor threw an unknown exception");
  }
}

void Worker::PoolThread() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      pool_cv_.wait(lock, [&] { return pool_exit_ || !pending_jobs_.empty(); });
      if (pending_jobs_.empty()) return;  // pool_exit_
      job = std::move(pending_jobs_.front());
      pending_jobs_.erase(pending_jobs_.begin());
    }
    RunJob(job);
    {
      std::lock_guard lock(mu_);
      active_.erase(job->claimed.task.id);
      --in_flight_;
      ++finished_count_;
    }
    cv_.notify_all();
  }
}

void Worker::RunJob(const std::shared_ptr<Job>& job) {
  const Task& task = job->claimed.task;
  if (job->started_ms == 0) job->started_ms = SteadyMillis();
  ExecResult result;
  // A started task is finished even when cancelled meanwhile: Finish sees the flag and stops it.
  if (job->cancel.load() && job->started == nullptr) {
    result.cancelled = true;
  } else {
    Emit({WorkerEvent::Kind::kStarted, task.id, task.title, job->claimed.lease.attempt_number,
          task.max_attempts, false, 0, ""});
    try {
      result = job->started != nullptr ? job->started->Finish()
                                       : executor_.Execute(job->claimed, job->cancel);
    } catch (const std::exception& e) {
      result = ExecResult{};
      result.error = std::string("executor threw: ") + e.what();
    } catch (...) {
      result = ExecResult{};
      result.error = "executor threw an unknown exception";
    }
  }
  Finish(job, result);
}

void Worker::Finish(const std::shared_ptr<Job>& job, const ExecResult& result) {
  bool lease_lost = false;
  bool shutting_down = false;
  Lease lease;
  {
    std::lock_guard lock(mu_);
    lease_lost = job->lease_lost;
    shutting_down = job->shutting_down;
    lease = job->claimed.lease;
  }
  const Task& task = job->claimed.task;
  WorkerEvent event{WorkerEvent::Kind::kSucceeded,
                    task.id,
                    task.title,
                    lease.attempt_number,
                    task.max_attempts,
                    false,
                    SteadyMillis() - job->started_ms,
                    ""};

  auto lost = [&](const std::string& why) {
    {
      std::lock_guard lock(mu_);
      ++stats_.lease_lost;
    }
    event.kind = WorkerEvent::Kind::kLeaseLost;
    event.message = why;
    spdlog::warn("worker: task {}: {}", task.id, why);
    Emit(event);
  };
  auto store_error = [&](const char* what, const Error& error) {
    if (error.code == ErrorCode::kAborted) {
      lost("lease is stale (task cancelled, reaped or claimed elsewhere); result discarded: " +
           error.message);
      return;
    }
    // The lease stays ours until it expires; a reaper then returns the task to ready.
    spdlog::error("worker: task {}: {} failed: {}", task.id, what, error.ToString());
    {
      std::lock_guard lock(mu_);
      ++stats_.lease_lost;
    }
    event.kind = WorkerEvent::Kind::kError;
    event.message = std::string(what) + " failed: " + error.ToString();
    Emit(event);
  };

  if (lease_lost) {
    lost("lease is stale (task cancelled, reaped or claimed elsewhere); result discarded");
    return;
  }
  if (result.cancelled && (shutting_down || job->cancel.load())) {
    Status released = queue_.Release(lease, "worker shutting down");
    if (!released) return store_error("release", released.error());
    {
      std::lock_guard lock(mu_);
      ++stats_.released;
    }
    event.kind = WorkerEvent::Kind::kReleased;
    event.message = "released (worker shutting down)";
    Emit(event);
    return;
  }
  if (result.success) {
    // The slot this task frees (and any other free one) is refilled in the completion's own
    // transaction: no commit, wake-up and claim of the main loop in between, and the dependents
    // this completion makes ready start at once. The slots are reserved first so that the main
    // loop cannot claim them too.
    int reserved = 0;
    uint64_t ticket = 0;
    {
      std::lock_guard lock(mu_);
      reserved = ReserveSlotsLocked(/*freeing=*/1);
      ticket = ++last_completion_;
      completing_.insert(ticket);
    }
    auto claimed =
        queue_.CompleteAndClaim(lease, result.result_json, result.details_json, options_.owner,
                                options_.lease_ms, reserved, options_.filter);
    SettleClaim(reserved, claimed ? &*claimed : nullptr);
    if (!claimed) {
      EndCompletion(ticket);
      return store_error("complete", claimed.error());
    }
    {
      std::lock_guard lock(mu_);
      ++stats_.succeeded;
      stats_.claimed_on_completion += static_cast<int64_t>(claimed->size());
    }
    Emit(event);
    EndCompletion(ticket);
    return;
  }
  std::string error = result.error.empty() ? "failed" : result.error;
  auto outcome = queue_.Fail(lease, error, result.details_json, result.retryable);
  if (!outcome) return store_error("fail", outcome.error());
  {
    std::lock_guard lock(mu_);
    ++stats_.failed;
    if (!outcome->will_retry) ++stats_.failed_finally;
  }
  event.kind = WorkerEvent::Kind::kFailed;
  event.will_retry = outcome->will_retry;
  event.message = error;
  Emit(event);
}

void Worker::HeartbeatThread() {
  const int64_t interval_ms = std::max<int64_t>(options_.lease_ms / 3, 20);
  while (true) {
    std::vector<std::shared_ptr<Job>> due;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(interval_ms, 100)),
                   [&] { return pool_exit_; });
      if (pool_exit_) return;
      const int64_t now_ms = queue_.clock().NowMillis();
      for (auto& [task_id, job] : active_) {
        if (!job->lease_lost && job->next_heartbeat_ms <= now_ms) due.push_back(job);
      }
    }
    for (auto& job : due) {
      Lease lease;
      {
        std::lock_guard lock(mu_);
        lease = job->claimed.lease;
      }
      auto renewed = queue_.Heartbeat(lease, options_.lease_ms);
      const int64_t now_ms = queue_.clock().NowMillis();
      std::lock_guard lock(mu_);
      if (renewed) {
        job->claimed.lease.expires_ms = renewed->expires_ms;
        job->next_heartbeat_ms = now_ms + interval_ms;
      } else if (renewed.error().code == ErrorCode::kAborted) {
        // Cancelled, reaped or claimed by someone else: stop the work, discard its result.
        spdlog::warn("worker: task {}: lease lost: {}", lease.task_id, renewed.error().message);
        job->lease_lost = true;
        job->cancel.store(true);
      } else {
        spdlog::warn("worker: task {}: heartbeat failed, retrying: {}", lease.task_id,
                     renewed.error().ToString());
        job->next_heartbeat_ms = now_ms + std::min<int64_t>(interval_ms, 1'000);
      }
    }
  }
}

}  // namespace factory
