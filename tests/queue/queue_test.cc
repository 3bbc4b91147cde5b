// Queue semantics on a real SQLite file, with a fake clock for leases and backoff.

#include "queue/queue.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "events/audit.h"

namespace factory {
namespace {

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "factory.db"});
    ASSERT_TRUE(store.has_value()) << store.error().message;
    store_ = std::move(*store);
    queue_ = std::make_unique<Queue>(
        *store_, QueueOptions{.clock = &clock_,
                              .retry = RetryPolicy{.base_delay_ms = 1000, .max_delay_ms = 8000}});
  }

  std::string Add(const std::string& title, std::vector<std::string> deps = {}, int priority = 0,
                  int max_attempts = 3) {
    auto result = queue_->Enqueue(EnqueueRequest{.title = title,
                                                 .priority = priority,
                                                 .depends_on = std::move(deps),
                                                 .max_attempts = max_attempts});
    EXPECT_TRUE(result.has_value()) << result.error().message;
    return result ? result->task.id : "";
  }

  TaskState StateOf(const std::string& id) {
    auto task = queue_->GetTask(id);
    EXPECT_TRUE(task.has_value());
    return task ? task->state : TaskState::kCancelled;
  }

  ClaimedTask ClaimOne(const std::string& owner = "w1", int64_t lease_ms = 10'000) {
    auto claimed = queue_->Claim(owner, lease_ms);
    EXPECT_TRUE(claimed.has_value()) << claimed.error().message;
    EXPECT_EQ(claimed->size(), 1u);
    return claimed->empty() ? ClaimedTask{} : claimed->front();
  }

  int CountEvents(const std::string& task_id, const std::string& kind) {
    auto events = queue_->ListEvents(EventQuery{.task_id = task_id, .limit = 0});
    EXPECT_TRUE(events.has_value());
    int count = 0;
    for (const auto& event : *events) count += event.kind == kind;
    return count;
  }

  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
};

TEST_F(QueueTest, IdempotencyKeyReturnsTheExistingTaskAndWritesNothing) {
  EnqueueRequest request{.title = "build", .idempotency_key = "k1"};
  auto first = queue_->Enqueue(request);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->created);
  auto events_before = queue_->ListEvents(EventQuery{.limit = 0});
  auto second = queue_->Enqueue(request);
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->task.id, first->task.id);
  EXPECT_EQ(queue_->ListEvents(EventQuery{.limit = 0})->size(), events_before->size());
  // The same key in another run is a different task.
  request.run_id = "other";
  auto other = queue_->Enqueue(request);
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(other->created);
  EXPECT_NE(other->task.id, first->task.id);
}

TEST_F(QueueTest, ClaimsByPriorityThenAge) {
  std::string low = Add("low", {}, 0);
  clock_.Advance(1);
  std::string high_old = Add("high-old", {}, 5);
  clock_.Advance(1);
  std::string high_new = Add("high-new", {}, 5);
  EXPECT_EQ(ClaimOne().task.id, high_old);
  EXPECT_EQ(ClaimOne().task.id, high_new);
  EXPECT_EQ(ClaimOne().task.id, low);
  EXPECT_TRUE(queue_->Claim("w1", 1000)->empty());
}

TEST_F(QueueTest, UnknownDependencyIsAnError) {
  auto result =
      queue_->Enqueue(EnqueueRequest{.title = "x", .depends_on = {"01JUNKNOWN0000000000000000"}});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kNotFound);
  EXPECT_NE(result.error().message.find("01JUNKNOWN0000000000000000"), std::string::npos);
  EXPECT_EQ(queue_->ListTasks({})->size(), 0u);
}

TEST_F(QueueTest, DependentsBecomeReadyOnlyWhenAllDependenciesAreDone) {
  std::string fetch = Add("fetch");
  std::string compile = Add("compile", {fetch});
  std::string lint = Add("lint", {fetch});
  std::string package = Add("package", {compile, lint});
  EXPECT_EQ(StateOf(fetch), TaskState::kReady);
  EXPECT_EQ(StateOf(compile), TaskState::kPending);
  EXPECT_EQ(StateOf(package), TaskState::kPending);

  auto claimed = ClaimOne();
  ASSERT_EQ(claimed.task.id, fetch);
  ASSERT_TRUE(queue_->Start(claimed.lease).has_value());
  ASSERT_TRUE(queue_->Complete(claimed.lease).has_value());
  EXPECT_EQ(StateOf(compile), TaskState::kReady);
  EXPECT_EQ(StateOf(lint), TaskState::kReady);
  EXPECT_EQ(StateOf(package), TaskState::kPending);

  auto first = ClaimOne();
  ASSERT_TRUE(queue_->Complete(first.lease).has_value());
  EXPECT_EQ(StateOf(package), TaskState::kPending) << "one dependency is still not done";
  auto second = ClaimOne();
  ASSERT_TRUE(queue_->Complete(second.lease).has_value());
  EXPECT_EQ(StateOf(package), TaskState::kReady);
}

TEST_F(QueueTest, FinalFailureBlocksDependentsTransitively) {
  std::string a = Add("a", {}, 0, /*max_attempts=*/1);
  std::string b = Add("b", {a});
  std::string c = Add("c", {b});
  std::string unrelated = Add("unrelated");
  auto claimed = ClaimOne();
  ASSERT_EQ(claimed.task.id, a);
  auto outcome = queue_->Fail(claimed.lease, "boom");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->will_retry);
  EXPECT_EQ(outcome->blocked, (std::vector<std::string>{b, c}));
  EXPECT_EQ(StateOf(a), TaskState::kFailed);
  EXPECT_EQ(StateOf(b), TaskState::kBlocked);
  EXPECT_EQ(StateOf(c), TaskState::kBlocked);
  EXPECT_EQ(StateOf(unrelated), TaskState::kReady);
  // A new task depending on a failed one starts blocked.
  EXPECT_EQ(StateOf(Add("late", {a})), TaskState::kBlocked);
}

TEST_F(QueueTest, RetryOfAFailedTaskUnblocksItsDependents) {
  std::string a = Add("a", {}, 0, 1);
  std::string b = Add("b", {a});
  std::string c = Add("c", {b});
  ASSERT_TRUE(queue_->Fail(ClaimOne().lease, "boom").has_value());
  // b cannot be retried while a is failed.
  auto early = queue_->Retry(b);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().code, ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(queue_->Retry(a).has_value());
  EXPECT_EQ(StateOf(a), TaskState::kReady);
  EXPECT_EQ(queue_->GetTask(a)->attempts, 0);
  EXPECT_EQ(StateOf(b), TaskState::kPending);
  EXPECT_EQ(StateOf(c), TaskState::kPending);
  auto again = ClaimOne();
  ASSERT_TRUE(queue_->Complete(again.lease).has_value());
  EXPECT_EQ(StateOf(b), TaskState::kReady);
  // Retry of a task that is not failed/blocked is refused.
  EXPECT_EQ(queue_->Retry(a).error().code, ErrorCode::kFailedPrecondition);
}

// A claimed batch starts in one transaction, all or none: one stale lease leaves every task of
// the batch as it was.
TEST_F(QueueTest, StartManyStartsAWholeBatchOrNothing) {
  std::vector<std::string> ids = {Add("a"), Add("b"), Add("c")};
  auto claimed = queue_->Claim("w1", 10'000, 3);
  ASSERT_TRUE(claimed.has_value()) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 3u);
  std::vector<Lease> leases;
  for (const auto& item : *claimed) leases.push_back(item.lease);

  // The third lease goes stale (its task is cancelled) before the batch starts.
  ASSERT_TRUE(queue_->Cancel(leases[2].task_id, "changed my mind").has_value());
  auto refused = queue_->StartMany(leases);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kAborted);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(StateOf(leases[i].task_id), TaskState::kClaimed);
    EXPECT_EQ(CountEvents(leases[i].task_id, "task.started"), 0);
  }

  leases.pop_back();
  ASSERT_TRUE(queue_->StartMany(leases).has_value());
  for (const auto& lease : leases) {
    EXPECT_EQ(StateOf(lease.task_id), TaskState::kRunning);
    EXPECT_EQ(CountEvents(lease.task_id, "task.started"), 1);
    ASSERT_TRUE(queue_->Complete(lease).has_value());
  }
}

TEST_F(QueueTest, ClaimAndStartLeavesTheBatchRunningWithBothEvents) {
  std::vector<std::string> ids = {Add("a"), Add("b"), Add("c")};
  auto claimed = queue_->ClaimAndStart("w1", 10'000, 2);
  ASSERT_TRUE(claimed.has_value()) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 2u);
  for (const auto& item : *claimed) {
    EXPECT_EQ(item.task.state, TaskState::kRunning);
    EXPECT_EQ(StateOf(item.lease.task_id), TaskState::kRunning);
    EXPECT_EQ(CountEvents(item.lease.task_id, "task.claimed"), 1);
    EXPECT_EQ(CountEvents(item.lease.task_id, "task.started"), 1);
    ASSERT_TRUE(queue_->Complete(item.lease).has_value());
  }
  EXPECT_EQ(StateOf(ids[2]), TaskState::kReady);  // beyond the limit: untouched
  auto none = queue_->ClaimAndStart("w1", 10'000, 5, ClaimFilter{.run_id = "elsewhere"});
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
}

TEST_F(QueueTest, CompleteAndClaimTakesTheDependentsItMadeReadyInTheSameTransaction) {
  std::string root = Add("root", {}, /*priority=*/1);
  std::string child = Add("child", {root});
  std::string other = Add("other");
  auto claimed_root = queue_->ClaimAndStart("w1", 10'000, 1);
  ASSERT_TRUE(claimed_root.has_value());
  ASSERT_EQ(claimed_root->front().lease.task_id, root);

  auto claimed = queue_->CompleteAndClaim(claimed_root->front().lease, "{}", "{}", "w1", 10'000,
                                          /*claim_limit=*/1, ClaimFilter{});
  ASSERT_TRUE(claimed.has_value()) << claimed.error().message;
  EXPECT_EQ(StateOf(root), TaskState::kDone);
  ASSERT_EQ(claimed->size(), 1u);
  // The same ordering as a separate claim (priority, then the older task): child, made ready
  // by this very completion, is taken; the limit leaves other ready.
  EXPECT_EQ(claimed->front().lease.task_id, child);
  EXPECT_EQ(StateOf(child), TaskState::kRunning);
  EXPECT_EQ(StateOf(other), TaskState::kReady);
  EXPECT_EQ(CountEvents(child, "task.ready"), 1);
  EXPECT_EQ(CountEvents(child, "task.claimed"), 1);
  EXPECT_EQ(CountEvents(child, "task.started"), 1);

  // Limit 0: only the completion.
  auto none =
      queue_->CompleteAndClaim(claimed->front().lease, "{}", "{}", "w1", 10'000, 0, ClaimFilter{});
  ASSERT_TRUE(none.has_value()) << none.error().message;
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(StateOf(child), TaskState::kDone);
  EXPECT_EQ(StateOf(other), TaskState::kReady);

  // A stale lease: Aborted, and nothing is claimed.
  auto stale =
      queue_->CompleteAndClaim(claimed->front().lease, "{}", "{}", "w1", 10'000, 5, ClaimFilter{});
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code, ErrorCode::kAborted);
  EXPECT_EQ(StateOf(other), TaskState::kReady);
  EXPECT_EQ(CountEvents(other, "task.claimed"), 0);
}

TEST_F(QueueTest, CancelCascadesAndMakesTheLeaseStale) {
  std::string a = Add("a");
  std::string b = Add("b", {a});
  auto claimed = ClaimOne();
  ASSERT_TRUE(queue_->Start(claimed.lease).has_value());
  ASSERT_TRUE(queue_->Cancel(a, "not needed").has_value());
  EXPECT_EQ(StateOf(a), TaskState::kCancelled);
  EXPECT_EQ(StateOf(b), TaskState::kBlocked);
  auto late = queue_->Complete(claimed.lease);
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, ErrorCode::kAborted);
  EXPECT_EQ(queue_->Heartbeat(claimed.lease, 1000).error().code, ErrorCode::kAborted);
  EXPECT_EQ(queue_->Cancel(a).error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(queue_->Cancel("01JNOSUCHTASK0000000000000").error().code, ErrorCode::kNotFound);
  auto attempts = queue_->ListAttempts(a);
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ(attempts->front().status, AttemptStatus::kCancelled);
}

TEST_F(QueueTest, FailureRetriesWithBackoffThenFailsFinally) {
  std::string id = Add("flaky", {}, 0, /*max_attempts=*/3);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto claimed = ClaimOne();
    ASSERT_EQ(claimed.lease.attempt_number, attempt);
    auto outcome = queue_->Fail(claimed.lease, "exit 1");
    ASSERT_TRUE(outcome.has_value());
    if (attempt < 3) {
      ASSERT_TRUE(outcome->will_retry);
      int64_t delay = outcome->not_before_ms - clock_.NowMillis();
      int64_t nominal = 1000LL << (attempt - 1);
      EXPECT_GE(delay, nominal / 2);
      EXPECT_LE(delay, nominal);
      EXPECT_EQ(StateOf(id), TaskState::kReady);
      // Not claimable before not_before.
      EXPECT_TRUE(queue_->Claim("w1", 1000)->empty());
      EXPECT_EQ(*queue_->NextReadyAt(), outcome->not_before_ms);
      clock_.Set(outcome->not_before_ms);
    } else {
      EXPECT_FALSE(outcome->will_retry);
      EXPECT_EQ(StateOf(id), TaskState::kFailed);
    }
  }
  EXPECT_EQ(queue_->ListAttempts(id)->size(), 3u);
  EXPECT_EQ(CountEvents(id, "task.retry_scheduled"), 2);
  EXPECT_EQ(CountEvents(id, "task.failed"), 1);
}

TEST_F(QueueTest, ExpiredLeaseIsReapedAndTheStaleHolderIsRefused) {
  std::string id = Add("long", {}, 0, 2);
  auto first = ClaimOne("w1", 5'000);
  ASSERT_TRUE(queue_->Start(first.lease).has_value());
  clock_.Advance(4'000);
  auto renewed = queue_->Heartbeat(first.lease, 5'000);
  ASSERT_TRUE(renewed.has_value());
  clock_.Advance(4'000);  // still within the renewed lease
  EXPECT_EQ(*queue_->ReapExpired(), 0);
  clock_.Advance(2'000);
  EXPECT_EQ(*queue_->ReapExpired(), 1);
  EXPECT_EQ(StateOf(id), TaskState::kReady);
  EXPECT_EQ(queue_->GetTask(id)->attempts, 0) << "a crash is not the task's attempt";
  EXPECT_EQ(queue_->GetTask(id)->crashes, 1);

  auto second = ClaimOne("w2", 5'000);
  EXPECT_EQ(second.lease.attempt_number, 1);
  // The first holder wakes up: all its calls are refused and nothing changes.
  EXPECT_EQ(queue_->Complete(first.lease).error().code, ErrorCode::kAborted);
  EXPECT_EQ(queue_->Fail(first.lease, "late").error().code, ErrorCode::kAborted);
  EXPECT_EQ(StateOf(id), TaskState::kClaimed);
  ASSERT_TRUE(queue_->Complete(second.lease).has_value());
  EXPECT_EQ(CountEvents(id, "task.completed"), 1);
  auto attempts = queue_->ListAttempts(id);
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[0].status, AttemptStatus::kExpired);
  EXPECT_EQ((*attempts)[1].status, AttemptStatus::kSucceeded);
}

TEST_F(QueueTest, ReapingDoesNotUseUpAttemptsButMaxCrashesFailsFinally) {
  auto added = queue_->Enqueue(EnqueueRequest{.title = "a", .max_attempts = 1, .max_crashes = 3});
  ASSERT_TRUE(added.has_value());
  const std::string a = added->task.id;
  std::string b = Add("b", {a});
  for (int crash = 1; crash <= 2; ++crash) {
    auto claimed = ClaimOne("w1", 1'000);
    EXPECT_EQ(claimed.lease.attempt_number, 1) << "crash " << crash;
    clock_.Advance(1'001);
    std::vector<std::string> failed;
    EXPECT_EQ(*queue_->ReapExpired(1000, &failed), 1);
    EXPECT_TRUE(failed.empty());
    EXPECT_EQ(StateOf(a), TaskState::kReady) << "its only attempt was never its own failure";
    EXPECT_EQ(queue_->GetTask(a)->crashes, crash);
  }
  ClaimOne("w1", 1'000);
  clock_.Advance(1'001);
  std::vector<std::string> failed;
  EXPECT_EQ(*queue_->ReapExpired(1000, &failed), 1);
  EXPECT_EQ(failed, std::vector<std::string>{a});
  EXPECT_EQ(StateOf(a), TaskState::kFailed);
  EXPECT_EQ(StateOf(b), TaskState::kBlocked);
  // `task retry` starts the count again.
  ASSERT_TRUE(queue_->Retry(a).has_value());
  EXPECT_EQ(queue_->GetTask(a)->crashes, 0);
}

TEST_F(QueueTest, LeasesOfDeadOwnersAreReapedBeforeTheyExpire) {
  std::string dead_task = Add("dead");
  std::string live_task = Add("live");
  auto first = ClaimOne("dead-owner", 60'000);
  auto second = ClaimOne("live-owner", 60'000);
  ASSERT_EQ(first.task.id, dead_task);
  ASSERT_EQ(second.task.id, live_task);
  std::vector<std::string> asked;
  auto reaped = queue_->ReapDeadOwners([&](const std::string& owner) {
    asked.push_back(owner);
    return owner == "dead-owner";
  });
  ASSERT_TRUE(reaped.has_value()) << reaped.error().message;
  EXPECT_EQ(*reaped, 1);
  EXPECT_EQ(StateOf(first.task.id), TaskState::kReady);
  EXPECT_EQ(StateOf(second.task.id), TaskState::kClaimed);
  EXPECT_EQ(queue_->GetTask(first.task.id)->crashes, 1);
  EXPECT_EQ(queue_->GetTask(first.task.id)->attempts, 0);
  EXPECT_EQ(queue_->Complete(first.lease).error().code, ErrorCode::kAborted);
  EXPECT_TRUE(queue_->Complete(second.lease).has_value());
  // Nobody dead: nothing written.
  auto events_before = queue_->ListEvents(EventQuery{.limit = 0})->size();
  EXPECT_EQ(*queue_->ReapDeadOwners([](const std::string&) { return false; }), 0);
  EXPECT_EQ(queue_->ListEvents(EventQuery{.limit = 0})->size(), events_before);
}

TEST_F(QueueTest, MaxCrashesMustBePositive) {
  auto added = queue_->Enqueue(EnqueueRequest{.title = "a", .max_crashes = 0});
  ASSERT_FALSE(added.has_value());
  EXPECT_EQ(added.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(QueueTest, SameOwnerCannotUseALeaseFromAnEarlierClaim) {
  std::string id = Add("t");
  auto first = ClaimOne("w1", 1'000);
  clock_.Advance(2'000);
  ASSERT_EQ(*queue_->ReapExpired(), 1);
  auto second = ClaimOne("w1", 1'000);  // same owner name, new epoch
  EXPECT_EQ(queue_->Complete(first.lease).error().code, ErrorCode::kAborted);
  EXPECT_TRUE(queue_->Complete(second.lease).has_value());
}

TEST_F(QueueTest, ReleaseGivesTheAttemptBack) {
  std::string id = Add("t", {}, 0, 1);
  auto claimed = ClaimOne();
  ASSERT_TRUE(queue_->Start(claimed.lease).has_value());
  ASSERT_TRUE(queue_->Release(claimed.lease, "worker shutting down").has_value());
  auto task = queue_->GetTask(id);
  EXPECT_EQ(task->state, TaskState::kReady);
  EXPECT_EQ(task->attempts, 0);
  EXPECT_TRUE(task->lease_owner.empty());
  auto again = ClaimOne();
  EXPECT_EQ(again.lease.attempt_number, 1);
}

TEST_F(QueueTest, AdvanceFollowsTheStateMachine) {
  Add("t");
  auto claimed = ClaimOne();
  // claimed -> verifying is illegal.
  auto illegal = queue_->Advance(claimed.lease, TaskState::kVerifying);
  ASSERT_FALSE(illegal.has_value());
  EXPECT_EQ(illegal.error().code, ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(queue_->Start(claimed.lease).has_value());
  ASSERT_TRUE(queue_->Advance(claimed.lease, TaskState::kVerifying).has_value());
  ASSERT_TRUE(queue_->Advance(claimed.lease, TaskState::kReview).has_value());
  EXPECT_EQ(queue_->Advance(claimed.lease, TaskState::kDone).error().code,
            ErrorCode::kInvalidArgument);
  ASSERT_TRUE(queue_->Complete(claimed.lease).has_value());
}

TEST_F(QueueTest, BatchedClaimAndCompleteMany) {
  std::vector<EnqueueRequest> requests;
  for (int i = 0; i < 50; ++i) requests.push_back(EnqueueRequest{.title = "t" + std::to_string(i)});
  auto enqueued = queue_->EnqueueMany(requests);
  ASSERT_TRUE(enqueued.has_value());
  ASSERT_EQ(enqueued->size(), 50u);
  auto claimed = queue_->Claim("w1", 10'000, 20);
  ASSERT_EQ(claimed->size(), 20u);
  for (size_t i = 1; i < claimed->size(); ++i) {
    EXPECT_LT((*claimed)[i - 1].task.id, (*claimed)[i].task.id);
  }
  std::vector<Lease> leases;
  for (const auto& item : *claimed) leases.push_back(item.lease);
  ASSERT_TRUE(queue_->CompleteMany(leases).has_value());
  auto stats = queue_->Stats();
  EXPECT_EQ((*stats)["done"], 20);
  EXPECT_EQ((*stats)["ready"], 30);
  EXPECT_EQ(stats->size(), 10u) << "every state is listed";
}

TEST_F(QueueTest, EnqueueManyIsAllOrNothing) {
  std::string existing = Add("existing");
  std::vector<EnqueueRequest> requests{EnqueueRequest{.title = "ok"}, EnqueueRequest{.title = ""}};
  auto result = queue_->EnqueueMany(requests);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message.find("task #2"), std::string::npos);
  EXPECT_EQ(queue_->ListTasks({})->size(), 1u);
}

TEST_F(QueueTest, EveryStateChangeIsAnEventAndTheChainVerifies) {
  std::string a = Add("a");
  auto claimed = ClaimOne();
  ASSERT_TRUE(queue_->Start(claimed.lease).has_value());
  ASSERT_TRUE(queue_->Complete(claimed.lease).has_value());
  auto events = queue_->ListEvents(EventQuery{.task_id = a, .limit = 0});
  std::vector<std::string> kinds;
  for (const auto& event : *events) kinds.push_back(event.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"task.created", "task.claimed", "task.started",
                                             "task.completed"}));
  auto report = VerifyChain(*store_);
  ASSERT_TRUE(report.has_value());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->events_checked, 5) << "run.created + 4 task events";
}

TEST_F(QueueTest, InvalidRequestsAreRejected) {
  EXPECT_EQ(queue_->Enqueue(EnqueueRequest{.title = ""}).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(queue_->Enqueue(EnqueueRequest{.title = "x", .max_attempts = 0}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(queue_->Enqueue(EnqueueRequest{.title = "x", .idempotency_key = ""}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(queue_->Claim("", 1000).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(queue_->Claim("w", 0).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace factory

namespace factory {
namespace {

TEST_F(QueueTest, DependenciesByIdempotencyKeyResolveInsideOneBatch) {
  std::vector<EnqueueRequest> requests{
      EnqueueRequest{.run_id = "r1", .title = "a", .idempotency_key = "a"},
      EnqueueRequest{
          .run_id = "r1", .title = "b", .depends_on_keys = {"a"}, .idempotency_key = "b"}};
  auto results = queue_->EnqueueMany(requests);
  ASSERT_TRUE(results.has_value()) << results.error().message;
  EXPECT_EQ((*results)[1].task.depends_on, std::vector<std::string>{(*results)[0].task.id});
  EXPECT_EQ((*results)[1].task.state, TaskState::kPending);
  // Running the same batch again creates nothing.
  auto again = queue_->EnqueueMany(requests);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE((*again)[0].created);
  EXPECT_FALSE((*again)[1].created);
  auto unknown =
      queue_->Enqueue(EnqueueRequest{.run_id = "r1", .title = "c", .depends_on_keys = {"nope"}});
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(unknown.error().message.find("'nope'"), std::string::npos);
}

TEST_F(QueueTest, EventBesideTheQueueAndMetadataPatch) {
  std::string id = Add("t");
  ASSERT_TRUE(queue_->events()
                  .Append({.kind = events::EventKind::kAgentStep,
                           .run_id = "default",
                           .task_id = id,
                           .actor = "agent:x",
                           .payload_json = R"({"n":1})"})
                  .has_value());
  EXPECT_EQ(CountEvents(id, "agent.step"), 1);
  ASSERT_TRUE(queue_->UpdateMetadata(id, R"({"backlog_id":"a","n":2})").has_value());
  ASSERT_TRUE(queue_->UpdateMetadata(id, R"({"n":3})").has_value());
  EXPECT_EQ(nlohmann::json::parse(queue_->GetTask(id)->metadata_json),
            nlohmann::json::parse(R"({"backlog_id":"a","n":3})"));
  EXPECT_EQ(queue_->UpdateMetadata(id, "[1]").error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(VerifyChain(*store_)->ok);
}

}  // namespace
}  // namespace factory

namespace factory {
namespace {

TEST_F(QueueTest, InvalidUtf8InAFailureTextIsStoredNotThrown) {
  std::string id = Add("binary output", {}, 0, 1);
  auto claimed = ClaimOne();
  std::string garbage = "exit 1: \xff\xfe\x80 tail";
  auto outcome = queue_->Fail(claimed.lease, garbage);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_EQ(StateOf(id), TaskState::kFailed);
  auto events = queue_->ListEvents(EventQuery{.task_id = id, .limit = 0});
  bool found = false;
  for (const auto& event : *events) {
    if (event.kind != "task.failed") continue;
    auto payload = nlohmann::json::parse(event.payload_json);
    EXPECT_NE(payload["error"].get<std::string>().find("tail"), std::string::npos);
    found = true;
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(VerifyChain(*store_)->ok);
}

}  // namespace
}  // namespace factory

namespace factory {
namespace {

TEST_F(QueueTest, CreatedAndClaimedPayloadsAreValidJsonWithTheirFields) {
  std::string dep = Add("dep");
  auto created = queue_->Enqueue(EnqueueRequest{.title = "quote \" backslash \\ newline \n é",
                                                .priority = -3,
                                                .depends_on = {dep},
                                                .idempotency_key = "k\"1"});
  ASSERT_TRUE(created.has_value());
  auto claimed = ClaimOne();
  auto events = queue_->ListEvents(EventQuery{.limit = 0});
  int checked = 0;
  for (const auto& event : *events) {
    auto payload = nlohmann::json::parse(event.payload_json);  // throws (fails) if malformed
    if (event.kind == "task.created" && event.task_id == created->task.id) {
      EXPECT_EQ(payload["title"], "quote \" backslash \\ newline \n é");
      EXPECT_EQ(payload["priority"], -3);
      EXPECT_EQ(payload["state"], "pending");
      EXPECT_EQ(payload["depends_on"], nlohmann::json::array({dep}));
      EXPECT_EQ(payload["idempotency_key"], "k\"1");
      ++checked;
    }
    if (event.kind == "task.claimed") {
      EXPECT_EQ(payload["owner"], "w1");
      EXPECT_EQ(payload["attempt"], 1);
      EXPECT_EQ(payload["attempt_id"], claimed.lease.attempt_id);
      EXPECT_EQ(payload["lease_expires_ms"], claimed.lease.expires_ms);
      EXPECT_EQ(payload["from"], "ready");
      EXPECT_EQ(payload["to"], "claimed");
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2);
}

}  // namespace
}  // namespace factory
