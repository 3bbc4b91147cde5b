#pragma once
// The service's run executor: each run it is given executes on a thread of its own, with a
// RunManager of its own (a RunManager executes one run at a time) over the shared parts of one
// RunEnvironment (queue, workspace, merge queue, agent registry, sandbox, router), so runs share
// agent slots and budgets. At most max_parallel runs execute at once; the others wait.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/result.h"
#include "orchestrator/run.h"

namespace factory {
class RunEnvironment;
}

namespace factory::service::internal {

class RunExecutor {
 public:
  // What executes a run: ExecuteRun or ResumeRun's execution on `manager`.
  using Job = std::function<Result<RunSummary>(RunManager& manager, const ExecuteOptions& options)>;

  // REQUIRES: env outlives the executor.
  RunExecutor(RunEnvironment& env, int max_parallel);
  ~RunExecutor();  // Shutdown(stop now)
  RunExecutor(const RunExecutor&) = delete;
  RunExecutor& operator=(const RunExecutor&) = delete;

  // Starts executing the run on its own thread; returns at once. FailedPrecondition when it is
  // executing already; Unavailable after Shutdown.
  Status Submit(const std::string& run_id, ExecuteOptions options, Job job);
  bool IsExecuting(const std::string& run_id);
  // Blocks until the run's current (or last) execution ends. NotFound when none was submitted.
  Result<RunSummary> Wait(const std::string& run_id);
  // Stops the run's execution: no new claims; running attempts finish within the grace period
  // (or are cancelled at once when `now`) and unfinished tasks are released. FailedPrecondition
  // when it is not executing. When the execution then ends with tasks unfinished (or with an
  // error), the run's state becomes `state_after` instead of ExecuteRun's "stopped" ("" keeps
  // it).
  Status Stop(const std::string& run_id, bool now, const std::string& state_after = "");
  // Stops every run as Stop(run, now, "interrupted") and refuses new ones; returns once every
  // execution has ended.
  void Shutdown(bool now);

 private:
  struct Execution {
    std::string run_id;
    std::unique_ptr<RunManager> manager;
    std::thread thread;
    bool started = false;         // guarded by mu_: holds one of the max_parallel places
    bool stop_requested = false;  // guarded by mu_
    bool finished = false;        // guarded by mu_
    std::string state_after;      // guarded by mu_: see Stop
    std::optional<Result<RunSummary>> outcome;  // guarded by mu_, set when finished
  };

  void Execute(std::shared_ptr<Execution> execution, ExecuteOptions options, Job job);

  RunEnvironment& env_;
  const int max_parallel_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Execution>> executions_;  // guarded by mu_
  int running_ = 0;                                               // guarded by mu_
  bool shutting_down_ = false;                                    // guarded by mu_
};

}  // namespace factory::service::internal
