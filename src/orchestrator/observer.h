#pragma once
// Progress of a run, for displays (the live run view, later the dashboard). Observers are fed
// by the pipeline (attempt start, phase changes) and by the run's worker events (attempt end,
// counts); they never reach into the scheduler (STYLE.md 8).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace factory {

// The phases of one attempt, in order. Recorded as `attempt.phase` events too.
inline constexpr char kPhaseAgent[] = "agent";          // waiting for a free agent slot
inline constexpr char kPhaseWorktree[] = "worktree";    // creating the attempt's worktree
inline constexpr char kPhaseRebase[] = "rebase";        // the rebase agent rewrites the spec
inline constexpr char kPhaseRunner[] = "runner";        // the agent is working
inline constexpr char kPhaseCommit[] = "commit";        // the factory commits the changes
inline constexpr char kPhaseProtected[] = "protected";  // protected-path check
inline constexpr char kPhaseGates[] = "gates";          // gates on a clean checkout
inline constexpr char kPhaseReview[] = "review";        // review gates (a reviewer model)
inline constexpr char kPhaseMerge[] = "merge";          // the merge queue

// One attempt as a display sees it.
struct AttemptProgress {
  std::string run_id;
  std::string task_id;   // queue id (ULID)
  std::string task_key;  // backlog id (the name used in branches); task_id when none
  std::string title;
  std::string agent;  // "" until chosen
  int attempt = 0;
  int max_attempts = 0;
  std::string phase;       // one of kPhase*; "" before the first phase
  int64_t started_ms = 0;  // wall clock, when the attempt started
  int64_t phase_started_ms = 0;
};

enum class AttemptEndKind { kSucceeded, kFailed, kReleased, kLeaseLost, kError };

struct AttemptEnd {
  AttemptEndKind kind = AttemptEndKind::kSucceeded;
  bool will_retry = false;  // kFailed: the task goes back to ready after backoff
  std::string message;      // the failure reason
  int64_t duration_ms = 0;
  double cost_usd = 0;  // what the attempt's agent reported, 0 when unknown
};

// Tasks of the run per state name (every state present), plus the run's cost so far.
struct RunCounts {
  std::map<std::string, int64_t> by_state;
  int64_t total = 0;
  double cost_usd = 0;
};

// Called from worker threads, possibly concurrently: implementations must be thread-safe and
// cheap (no blocking I/O beyond writing a line).
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void OnRunStarted(const std::string& run_id, const RunCounts& counts) {
    (void)run_id;
    (void)counts;
  }
  virtual void OnAttemptStarted(const AttemptProgress& attempt) { (void)attempt; }
  // attempt.phase is the new phase (and attempt.agent is set once chosen).
  virtual void OnPhase(const AttemptProgress& attempt) { (void)attempt; }
  virtual void OnAttemptFinished(const AttemptProgress& attempt, const AttemptEnd& end) {
    (void)attempt;
    (void)end;
  }
  virtual void OnCounts(const RunCounts& counts) { (void)counts; }
  // Once, when ExecuteRun returns (not called when it fails to start).
  virtual void OnRunFinished(const std::string& run_id, const RunCounts& counts) {
    (void)run_id;
    (void)counts;
  }
};

// Forwards every notification to several observers (not owned; they must outlive it).
class ObserverList final : public RunObserver {
 public:
  void Add(RunObserver* observer) {
    if (observer != nullptr) observers_.push_back(observer);
  }
  bool empty() const { return observers_.empty(); }
  void OnRunStarted(const std::string& run_id, const RunCounts& counts) override {
    for (auto* o : observers_) o->OnRunStarted(run_id, counts);
  }
  void OnAttemptStarted(const AttemptProgress& attempt) override {
    for (auto* o : observers_) o->OnAttemptStarted(attempt);
  }
  void OnPhase(const AttemptProgress& attempt) override {
    for (auto* o : observers_) o->OnPhase(attempt);
  }
  void OnAttemptFinished(const AttemptProgress& attempt, const AttemptEnd& end) override {
    for (auto* o : observers_) o->OnAttemptFinished(attempt, end);
  }
  void OnCounts(const RunCounts& counts) override {
    for (auto* o : observers_) o->OnCounts(counts);
  }
  void OnRunFinished(const std::string& run_id, const RunCounts& counts) override {
    for (auto* o : observers_) o->OnRunFinished(run_id, counts);
  }

 private:
  std::vector<RunObserver*> observers_;  // fixed before the run starts
};

}  // namespace factory
