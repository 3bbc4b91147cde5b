// The Worker loop (queue/worker.h) with a fake executor on a real SQLite store: every task runs
// and completes exactly once at several concurrency levels, failures retry, a stop releases
// running tasks, a lost lease cancels the executor, and an executor that splits its work into
// Start and Finish starts on the worker's start threads and finishes on the pool.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"
#include "queue/queue.h"
#include "queue/worker.h"
#include "store/store.h"

namespace factory {
namespace {

using testing::TempDir;

// Runs tasks according to their title: "fail-once" fails its first attempt, "block" waits for
// its cancel flag, anything else succeeds after sleeping `work_ms`.
class FakeExecutor final : public Executor {
 public:
  explicit FakeExecutor(int work_ms = 0) : work_ms_(work_ms) {}

  ExecResult Execute(const ClaimedTask& claimed, const std::atomic<bool>& cancel) override {
    const int running = ++running_;
    int seen = max_running_.load();
    while (running > seen && !max_running_.compare_exchange_weak(seen, running)) {
    }
    {
      std::lock_guard lock(mu_);
      runs_[claimed.task.id].push_back(claimed.lease.attempt_number);
      order_.push_back(claimed.task.id);
    }
    ExecResult result;
    if (claimed.task.title == "block") {
      started_blocking_ = true;
      while (!cancel.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      result.cancelled = true;
    } else if (claimed.task.title == "fail-once" && claimed.lease.attempt_number == 1) {
      result.error = "exit code 1: transient";
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(work_ms_));
      result.success = true;
    }
    --running_;
    return result;
  }

  std::map<std::string, std::vector<int>> runs() {
    std::lock_guard lock(mu_);
    return runs_;
  }
  std::vector<std::string> order() {
    std::lock_guard lock(mu_);
    return order_;
  }
  int max_running() const { return max_running_.load(); }
  bool started_blocking() const { return started_blocking_.load(); }

 private:
  const int work_ms_;
  std::atomic<int> running_{0};
  std::atomic<int> max_running_{0};
  std::atomic<bool> started_blocking_{false};
  std::mutex mu_;
  std::map<std::string, std::vector<int>> runs_;  // guarded by mu_
  std::vector<std::string> order_;                // guarded by mu_
};

class WorkerLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteOptions options;
    options.path = dir_ / "factory.db";
    auto store = OpenSqliteStore(options);
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    QueueOptions queue_options;
    queue_options.retry.base_delay_ms = 10;
    queue_options.retry.max_delay_ms = 20;
    queue_ = std::make_unique<Queue>(*store_, queue_options);
  }

  std::string Add(const std::string& title, std::vector<std::string> deps = {}) {
    EnqueueRequest request;
    request.title = title;
    request.command = "true";
    request.depends_on = std::move(deps);
    auto result = queue_->Enqueue(request);
    EXPECT_TRUE(result.has_value()) << result.error().ToString();
    return result.has_value() ? result->task.id : "";
  }

  WorkerOptions Options(int concurrency) {
    WorkerOptions options;
    options.concurrency = concurrency;
    options.until_idle = true;
    options.poll_ms = 10;
    options.lease_ms = 2'000;
    options.filter.require_command = true;
    return options;
  }

  int CountEvents(const std::string& task_id, const std::string& kind) {
    EventQuery query;
    query.task_id = task_id;
    auto events = queue_->ListEvents(query);
    EXPECT_TRUE(events.has_value());
    int count = 0;
    for (const auto& event : *events) count += event.kind == kind;
    return count;
  }

  // Runs a worker over one task titled "block", stops it once `blocking()` holds, and expects
  // the task back in ready with its attempt released (the lease given back, not used up).
  void ExpectStopReleasesABlockedTask(Executor& executor, const std::function<bool()>& blocking) {
    auto id = Add("block");
    WorkerOptions options = Options(2);
    options.until_idle = false;
    options.shutdown_grace_ms = 50;
    Worker worker(*queue_, executor, options);
    std::thread stopper([&] {
      while (!blocking()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      worker.RequestStop();
    });
    ASSERT_TRUE(worker.Run().has_value());
    stopper.join();
    auto task = queue_->GetTask(id);
    EXPECT_EQ(task->state, TaskState::kReady);
    EXPECT_TRUE(task->lease_owner.empty());
    EXPECT_EQ(worker.stats().released, 1);
    auto attempts = queue_->ListAttempts(id);
    ASSERT_EQ(attempts->size(), 1u);
    EXPECT_EQ((*attempts)[0].status, AttemptStatus::kReleased);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
};

class WorkerConcurrencyTest : public WorkerLoopTest, public ::testing::WithParamInterface<int> {};

TEST_P(WorkerConcurrencyTest, EveryTaskCompletesExactlyOnce) {
  const int concurrency = GetParam();
  std::vector<std::string> ids;
  for (int idx = 0; idx < 40; ++idx) ids.push_back(Add("task " + std::to_string(idx)));
  FakeExecutor executor(/*work_ms=*/2);
  WorkerOptions options = Options(concurrency);
  options.batch = 3;
  Worker worker(*queue_, executor, options);
  ASSERT_TRUE(worker.Run().has_value());

  auto runs = executor.runs();
  EXPECT_EQ(runs.size(), ids.size());
  for (const auto& id : ids) {
    EXPECT_EQ(runs[id].size(), 1u) << id;
    EXPECT_EQ(queue_->GetTask(id)->state, TaskState::kDone);
    EXPECT_EQ(CountEvents(id, "task.completed"), 1);
  }
  EXPECT_LE(executor.max_running(), concurrency);
  EXPECT_EQ(worker.stats().succeeded, 40);
  EXPECT_EQ(worker.stats().claimed, 40);
}

INSTANTIATE_TEST_SUITE_P(Concurrency, WorkerConcurrencyTest, ::testing::Values(1, 2, 8));

TEST_F(WorkerLoopTest, RunsDependenciesFirst) {
  auto root = Add("root");
  auto left = Add("left", {root});
  auto right = Add("right", {root});
  auto join = Add("join", {left, right});
  FakeExecutor executor(/*work_ms=*/5);
  Worker worker(*queue_, executor, Options(4));
  ASSERT_TRUE(worker.Run().has_value());
  auto order = executor.order();
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order.front(), root);
  EXPECT_EQ(order.back(), join);
}

TEST_F(WorkerLoopTest, ACompletionClaimsTheTaskItMadeReady) {
  auto first = Add("first");
  auto second = Add("second", {first});
  auto third = Add("third", {second});
  FakeExecutor executor;
  Worker worker(*queue_, executor, Options(1));
  ASSERT_TRUE(worker.Run().has_value());
  EXPECT_EQ(executor.order(), (std::vector<std::string>{first, second, third}));
  EXPECT_EQ(executor.max_running(), 1);
  // second and third were claimed by their dependency's completion, not by the claiming loop.
  EXPECT_EQ(worker.stats().claimed, 3);
  EXPECT_EQ(worker.stats().claimed_on_completion, 2);
  EXPECT_EQ(worker.stats().succeeded, 3);
}

// The completion of `first` claims `second` in its own transaction; another pool thread is free
// to run it. Its start must still be reported after first's end: the end's callback here waits
// (up to half a second) for second's start, which used to arrive during that wait.
TEST_F(WorkerLoopTest, ATaskStartIsReportedAfterTheEndOfItsDependency) {
  auto first = Add("first");
  auto second = Add("second", {first});
  FakeExecutor executor;
  WorkerOptions options = Options(2);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> reported;  // guarded by mu
  options.on_event = [&](const WorkerEvent& event) {
    std::unique_lock lock(mu);
    if (event.kind == WorkerEvent::Kind::kStarted) {
      reported.push_back("start " + event.task_id);
      cv.notify_all();
      return;
    }
    if (event.task_id == first) {
      cv.wait_for(lock, std::chrono::milliseconds(500), [&] {
        return std::find(reported.begin(), reported.end(), "start " + second) != reported.end();
      });
    }
    reported.push_back("end " + event.task_id);
  };
  Worker worker(*queue_, executor, options);
  ASSERT_TRUE(worker.Run().has_value());
  EXPECT_EQ(worker.stats().claimed_on_completion, 1);
  std::lock_guard lock(mu);
  EXPECT_EQ(reported, (std::vector<std::string>{"start " + first, "end " + first, "start " + second,
                                                "end " + second}));
}

TEST_F(WorkerLoopTest, FailedAttemptIsRetried) {
  auto id = Add("fail-once");
  FakeExecutor executor;
  std::mutex events_mu;
  std::vector<WorkerEvent> events;
  WorkerOptions options = Options(1);
  options.on_event = [&](const WorkerEvent& event) {
    std::lock_guard lock(events_mu);
    events.push_back(event);
  };
  Worker worker(*queue_, executor, options);
  ASSERT_TRUE(worker.Run().has_value());
  EXPECT_EQ(executor.runs()[id], (std::vector<int>{1, 2}));
  auto task = queue_->GetTask(id);
  EXPECT_EQ(task->state, TaskState::kDone);
  EXPECT_EQ(task->attempts, 2);
  auto attempts = queue_->ListAttempts(id);
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[0].status, AttemptStatus::kFailed);
  EXPECT_EQ((*attempts)[0].error, "exit code 1: transient");
  bool saw_retry = false;
  for (const auto& event : events) {
    saw_retry |= event.kind == WorkerEvent::Kind::kFailed && event.will_retry;
  }
  EXPECT_TRUE(saw_retry);
}

TEST_F(WorkerLoopTest, StopReleasesRunningTask) {
  FakeExecutor executor;
  ExpectStopReleasesABlockedTask(executor, [&] { return executor.started_blocking(); });
}

TEST_F(WorkerLoopTest, LostLeaseCancelsTheExecutor) {
  auto id = Add("block");
  FakeExecutor executor;
  WorkerOptions options = Options(1);
  options.lease_ms = 150;  // heartbeat every 50 ms
  Worker worker(*queue_, executor, options);
  std::thread canceller([&] {
    while (!executor.started_blocking()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(queue_->Cancel(id, "test").has_value());
  });
  ASSERT_TRUE(worker.Run().has_value());
  canceller.join();
  EXPECT_EQ(queue_->GetTask(id)->state, TaskState::kCancelled);
  EXPECT_EQ(worker.stats().lease_lost, 1);
  EXPECT_EQ(worker.stats().succeeded, 0);
}

TEST_F(WorkerLoopTest, InvalidOptionsAreRejected) {
  FakeExecutor executor;
  WorkerOptions options = Options(0);
  Worker worker(*queue_, executor, options);
  auto status = worker.Run();
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);

  options = Options(1);
  options.start_threads = -1;
  Worker negative_starters(*queue_, executor, options);
  status = negative_starters.Run();
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
}

// Records the threads that start and finish tasks: a title
// "throw" throws from Start, "block" waits in Finish for its cancel flag.
class SplitExecutor final : public Executor {
 public:
  ExecResult Execute(const ClaimedTask&, const std::atomic<bool>&) override {
    ++executed_;
    return ExecResult{};
  }

  std::unique_ptr<StartedTask> Start(const ClaimedTask& claimed,
                                     const std::atomic<bool>& cancel) override {
    if (claimed.task.title == "throw") throw std::runtime_error("no such program");
    {
      std::lock_guard lock(mu_);
      start_threads_.insert(std::this_thread::get_id());
      started_.push_back(claimed.task.id);
    }
    return std::make_unique<Started>(*this, claimed.task.title, cancel);
  }

  std::set<std::thread::id> start_threads() {
    std::lock_guard lock(mu_);
    return start_threads_;
  }
  std::set<std::thread::id> finish_threads() {
    std::lock_guard lock(mu_);
    return finish_threads_;
  }
  std::vector<std::string> started() {
    std::lock_guard lock(mu_);
    return started_;
  }
  int executed() const { return executed_.load(); }
  bool blocking() const { return blocking_.load(); }

 private:
  class Started final : public StartedTask {
   public:
    Started(SplitExecutor& owner, std::string title, const std::atomic<bool>& cancel)
        : owner_(owner), title_(std::move(title)), cancel_(cancel) {}
    ExecResult Finish() override {
      {
        std::lock_guard lock(owner_.mu_);
        owner_.finish_threads_.insert(std::this_thread::get_id());
      }
      ExecResult result;
      if (title_ == "block") {
        owner_.blocking_ = true;
        while (!cancel_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        result.cancelled = true;
        return result;
      }
      result.success = true;
      return result;
    }

   private:
    SplitExecutor& owner_;
    std::string title_;
    const std::atomic<bool>& cancel_;
  };

  std::mutex mu_;
  std::set<std::thread::id> start_threads_;   // guarded by mu_
  std::set<std::thread::id> finish_threads_;  // guarded by mu_
  std::vector<std::string> started_;          // guarded by mu_
  std::atomic<int> executed_{0};
  std::atomic<bool> blocking_{false};
};

TEST_F(WorkerLoopTest, StartsOnTheStartThreadAndFinishesOnThePool) {
  std::vector<std::string> ids;
  for (int idx = 0; idx < 12; ++idx) ids.push_back(Add("task " + std::to_string(idx)));
  SplitExecutor executor;
  WorkerOptions options = Options(4);
  options.batch = 4;
  options.start_threads = 1;
  Worker worker(*queue_, executor, options);
  ASSERT_TRUE(worker.Run().has_value());

  const auto starters = executor.start_threads();
  ASSERT_EQ(starters.size(), 1u);  // one start thread: every start went through it
  EXPECT_FALSE(starters.contains(std::this_thread::get_id()));  // not the claiming loop
  const auto finishers = executor.finish_threads();
  EXPECT_FALSE(finishers.empty());
  EXPECT_FALSE(finishers.contains(std::this_thread::get_id()));
  EXPECT_FALSE(finishers.contains(*starters.begin()));
  EXPECT_EQ(executor.executed(), 0);  // Start replaced Execute
  EXPECT_EQ(executor.started().size(), ids.size());
  for (const auto& id : ids) {
    EXPECT_EQ(queue_->GetTask(id)->state, TaskState::kDone) << id;
    EXPECT_EQ(CountEvents(id, "task.completed"), 1) << id;
  }
  EXPECT_EQ(worker.stats().succeeded, 12);
}

TEST_F(WorkerLoopTest, AStartThatThrowsFailsTheAttempt) {
  auto id = Add("throw");
  SplitExecutor executor;
  WorkerOptions options = Options(1);
  Worker worker(*queue_, executor, options);
  ASSERT_TRUE(worker.Run().has_value());
  auto attempts = queue_->ListAttempts(id);
  ASSERT_TRUE(attempts.has_value());
  ASSERT_FALSE(attempts->empty());
  EXPECT_EQ(attempts->front().status, AttemptStatus::kFailed);
  EXPECT_EQ(attempts->front().error, "executor threw: no such program");
}

TEST_F(WorkerLoopTest, StopReleasesAStartedTask) {
  SplitExecutor executor;
  ExpectStopReleasesABlockedTask(executor, [&] { return executor.blocking(); });
}

TEST(WorkerOwnerTest, DefaultOwnerIsHostPidStartUlid) {
  const std::string owner = DefaultWorkerOwner();
  EXPECT_EQ(std::count(owner.begin(), owner.end(), ':'), 3) << owner;
  EXPECT_NE(owner, DefaultWorkerOwner());
}

}  // namespace
}  // namespace factory
