#include "service/internal/run_executor.h"

#include <spdlog/spdlog.h>

#include <utility>
#include <vector>

#include "orchestrator/environment.h"

namespace factory::service::internal {

RunExecutor::RunExecutor(RunEnvironment& env, int max_parallel)
    : env_(env), max_parallel_(max_parallel < 1 ? 1 : max_parallel) {}

RunExecutor::~RunExecutor() { Shutdown(/*now=*/true); }

Status RunExecutor::Submit(const std::string& run_id, ExecuteOptions options, Job job) {
  std::thread finished_thread;  // the run's previous execution, joined outside the lock
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return Unavailable("the factory is shutting down; no run starts now");
    auto found = executions_.find(run_id);
    if (found != executions_.end()) {
      if (!found->second->finished) {
        return FailedPrecondition("run " + run_id + " is executing already");
      }
      finished_thread = std::move(found->second->thread);
      executions_.erase(found);
    }
    auto execution = std::make_shared<Execution>();
    execution->run_id = run_id;
    // A manager per execution: RunManager executes one run at a time, and its stop/cancel
    // requests must reach this run only.
    execution->manager = std::make_unique<RunManager>(
        RunDeps{&env_.store(), &env_.queue(), &env_.workspace(), &env_.merges(), &env_.agents(),
                &env_.sandbox(), &env_.config(), &env_.prompts(), env_.router(),
                env_.rebase_targets(), env_.rebase_off_reason()});
    if (!options.make_runner) options.make_runner = env_.runner_factory();
    executions_[run_id] = execution;
    execution->thread = std::thread(
        [this, execution, options = std::move(options), job = std::move(job)]() mutable {
          Execute(std::move(execution), std::move(options), std::move(job));
        });
  }
  if (finished_thread.joinable()) finished_thread.join();
  return Ok();
}

void RunExecutor::Execute(std::shared_ptr<Execution> execution, ExecuteOptions options, Job job) {
  {
    std::unique_lock lock(mu_);
    // A run waiting for a place starts anyway when it is stopped: its worker then claims
    // nothing, and the run is recorded as stopped like any other.
    cv_.wait(lock, [&] {
      return running_ < max_parallel_ || shutting_down_ || execution->stop_requested;
    });
    ++running_;
    execution->started = true;
  }
  Result<RunSummary> outcome = [&]() -> Result<RunSummary> {
    try {
      return job(*execution->manager, options);
    } catch (const std::exception& error) {
      // Nothing below is meant to throw; a run must not take the process down if it does.
      return Internal("run " + execution->run_id + ": " + error.what());
    }
  }();
  if (!outcome) {
    spdlog::warn("run {}: execution ended with an error: {}", execution->run_id,
                 outcome.error().ToString());
  }
  std::string state_after;
  {
    std::lock_guard lock(mu_);
    state_after = execution->state_after;
  }
  if (!state_after.empty() && (!outcome || outcome->unfinished > 0)) {
    if (auto set = execution->manager->SetRunState(execution->run_id, state_after); !set) {
      spdlog::warn("run {}: cannot record it {}: {}", execution->run_id, state_after,
                   set.error().ToString());
    }
  }
  {
    std::lock_guard lock(mu_);
    --running_;
    execution->outcome = std::move(outcome);
    execution->finished = true;
  }
  cv_.notify_all();
}

bool RunExecutor::IsExecuting(const std::string& run_id) {
  std::lock_guard lock(mu_);
  auto found = executions_.find(run_id);
  return found != executions_.end() && !found->second->finished;
}

Result<RunSummary> RunExecutor::Wait(const std::string& run_id) {
  std::unique_lock lock(mu_);
  auto found = executions_.find(run_id);
  if (found == executions_.end()) {
    return NotFound("run " + run_id + " is not executing in this process");
  }
  std::shared_ptr<Execution> execution = found->second;
  cv_.wait(lock, [&] { return execution->finished; });
  return *execution->outcome;
}

Status RunExecutor::Stop(const std::string& run_id, bool now, const std::string& state_after) {
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard lock(mu_);
    auto found = executions_.find(run_id);
    if (found == executions_.end() || found->second->finished) {
      return FailedPrecondition("run " + run_id + " is not executing in this process");
    }
    execution = found->second;
    execution->stop_requested = true;
    if (!state_after.empty()) execution->state_after = state_after;
  }
  cv_.notify_all();
  if (now) {
    execution->manager->RequestCancel();
  } else {
    execution->manager->RequestStop();
  }
  return Ok();
}

void RunExecutor::Shutdown(bool now) {
  std::vector<std::shared_ptr<Execution>> executions;
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
    for (auto& [id, execution] : executions_) {
      executions.push_back(execution);
      if (!execution->finished) {
        execution->stop_requested = true;
        execution->state_after = "interrupted";
      }
    }
  }
  cv_.notify_all();
  for (auto& execution : executions) {
    if (now) {
      execution->manager->RequestCancel();
    } else {
      execution->manager->RequestStop();
    }
  }
  for (auto& execution : executions) {
    if (execution->thread.joinable()) execution->thread.join();
  }
}

}  // namespace factory::service::internal
