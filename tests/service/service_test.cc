// The store-only use cases of the service (no repository): tasks, costs, stats, agent pauses,
// and the errors every caller maps (field names, HTTP statuses).

#include "service/service.h"

#include <gtest/gtest.h>

#include <string>

#include "common/test_util.h"
#include "core/clock.h"
#include "ledger/ledger.h"
#include "queue/queue.h"
#include "store/store.h"

namespace factory::service {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "factory.db"});
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    service_ = Service::Create(*store_, ServiceOptions{.repo_path = dir_.path().string()});
  }

  Task Add(const std::string& title, const std::string& run = "default") {
    auto added = service_->AddTask(AddTaskRequest{.title = title, .run = run});
    EXPECT_TRUE(added.has_value()) << added.error().ToString();
    return added ? added->task : Task{};
  }

  testing::TempDir dir_{"factory-service"};
  std::unique_ptr<Store> store_;
  std::unique_ptr<Service> service_;
};

TEST_F(ServiceTest, AddTaskCreatesOnceByIdempotencyKeyAndChecksDependencies) {
  const Task first = Add("first");
  AddTaskRequest request{.title = "second",
                         .spec = "do it",
                         .command = "true",
                         .depends_on = {first.id},
                         .priority = 5,
                         .idempotency_key = "k1"};
  auto added = service_->AddTask(request);
  ASSERT_TRUE(added.has_value()) << added.error().ToString();
  EXPECT_TRUE(added->created);
  EXPECT_EQ(added->task.title, "second");
  EXPECT_EQ(added->task.command, "true");
  EXPECT_EQ(added->task.priority, 5);
  EXPECT_EQ(added->task.depends_on, std::vector<std::string>{first.id});
  EXPECT_EQ(added->task.state, TaskState::kPending);

  auto again = service_->AddTask(request);
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->task.id, added->task.id);

  request.idempotency_key = "k2";
  request.depends_on = {"01ARZ3NDEKTSV4RRFFQ69G5FAV"};
  auto missing = service_->AddTask(request);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(ErrorField(missing.error()), "depends_on");
  EXPECT_EQ(HttpStatusFor(missing.error().code), 404);
}

TEST_F(ServiceTest, BadTaskRequestsNameTheirField) {
  struct Case {
    AddTaskRequest request;
    std::string field;
  };
  const std::vector<Case> cases = {
      {AddTaskRequest{.title = " "}, "title"},
      {AddTaskRequest{.title = std::string(1001, 'x')}, "title"},
      {AddTaskRequest{.title = "t", .spec = std::string("a\0b", 3)}, "spec"},
      {AddTaskRequest{.title = "t", .command = ""}, "command"},
      {AddTaskRequest{.title = "t", .depends_on = {"not-an-id"}}, "depends_on"},
      {AddTaskRequest{.title = "t", .priority = 2'000'000}, "priority"},
      {AddTaskRequest{.title = "t", .idempotency_key = "\xff"}, "idempotency_key"},
      {AddTaskRequest{.title = "t", .run = "a/b"}, "run"},
      {AddTaskRequest{.title = "t", .max_attempts = 0}, "max_attempts"},
      {AddTaskRequest{.title = "t", .max_crashes = 1001}, "max_crashes"},
  };
  for (const Case& test_case : cases) {
    auto added = service_->AddTask(test_case.request);
    ASSERT_FALSE(added.has_value()) << test_case.field;
    EXPECT_EQ(added.error().code, ErrorCode::kInvalidArgument) << added.error().message;
    EXPECT_EQ(ErrorField(added.error()), test_case.field) << added.error().message;
    EXPECT_EQ(HttpStatusFor(added.error().code), 400);
  }
  auto listed = service_->ListTasks({});
  ASSERT_TRUE(listed.has_value());
  EXPECT_TRUE(listed->tasks.empty()) << "a refused request stored nothing";
}

TEST_F(ServiceTest, ListTasksPagesWithACursorAndFilters) {
  std::vector<std::string> ids;
  for (int index = 0; index < 5; ++index) ids.push_back(Add("t" + std::to_string(index)).id);
  Add("other", "r2");

  std::vector<std::string> seen;
  ListTasksRequest request{.run = "default", .limit = 2};
  int pages = 0;
  while (true) {
    auto page = service_->ListTasks(request);
    ASSERT_TRUE(page.has_value()) << page.error().ToString();
    ++pages;
    for (const Task& task : page->tasks) seen.push_back(task.id);
    if (page->next_cursor.empty()) break;
    EXPECT_EQ(page->next_cursor, page->tasks.back().id);
    request.cursor = page->next_cursor;
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, ids);

  auto ready = service_->ListTasks(ListTasksRequest{.state = "ready"});
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->tasks.size(), 6u);
  EXPECT_TRUE(ready->next_cursor.empty());

  auto bad_state = service_->ListTasks(ListTasksRequest{.state = "sleeping"});
  ASSERT_FALSE(bad_state.has_value());
  EXPECT_EQ(ErrorField(bad_state.error()), "state");
  auto bad_cursor = service_->ListTasks(ListTasksRequest{.cursor = "x"});
  ASSERT_FALSE(bad_cursor.has_value());
  EXPECT_EQ(ErrorField(bad_cursor.error()), "cursor");
  auto bad_limit = service_->ListTasks(ListTasksRequest{.limit = -1});
  ASSERT_FALSE(bad_limit.has_value());
  EXPECT_EQ(ErrorField(bad_limit.error()), "limit");
}

TEST_F(ServiceTest, GetCancelAndRetryATask) {
  const Task parent = Add("parent");
  auto child = service_->AddTask(AddTaskRequest{.title = "child", .depends_on = {parent.id}});
  ASSERT_TRUE(child.has_value());

  auto cancelled = service_->CancelTask(parent.id, "not needed");
  ASSERT_TRUE(cancelled.has_value()) << cancelled.error().ToString();
  EXPECT_EQ(cancelled->state, TaskState::kCancelled);
  auto details = service_->GetTask(child->task.id);
  ASSERT_TRUE(details.has_value());
  EXPECT_EQ(details->task.state, TaskState::kBlocked);

  auto parent_details = service_->GetTask(parent.id);
  ASSERT_TRUE(parent_details.has_value());
  bool saw_cancel = false;
  for (const Event& event : parent_details->events) {
    saw_cancel = saw_cancel || event.kind == "task.cancelled";
  }
  EXPECT_TRUE(saw_cancel);

  auto again = service_->CancelTask(parent.id, "");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(HttpStatusFor(again.error().code), 409) << again.error().ToString();

  // Only a failed or blocked task goes back: a cancelled one stays cancelled.
  auto not_retried = service_->RetryTask(parent.id);
  ASSERT_FALSE(not_retried.has_value());
  EXPECT_EQ(HttpStatusFor(not_retried.error().code), 409);

  auto flaky = service_->AddTask(AddTaskRequest{.title = "flaky", .run = "r9", .max_attempts = 1});
  ASSERT_TRUE(flaky.has_value());
  Queue queue(*store_);
  auto claimed = queue.ClaimAndStart("test-worker", 60'000, 1, ClaimFilter{.run_id = "r9"});
  ASSERT_TRUE(claimed.has_value() && claimed->size() == 1u);
  ASSERT_TRUE(queue.Fail((*claimed)[0].lease, "boom").has_value());
  auto retried = service_->RetryTask(flaky->task.id);
  ASSERT_TRUE(retried.has_value()) << retried.error().ToString();
  EXPECT_EQ(retried->state, TaskState::kReady);
  EXPECT_EQ(retried->attempts, 0);

  for (const std::string& id : {std::string("01ARZ3NDEKTSV4RRFFQ69G5FAV"), std::string("nope")}) {
    auto missing = service_->GetTask(id);
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    EXPECT_NE(missing.error().message.find(id), std::string::npos);
    EXPECT_FALSE(service_->CancelTask(id, "").has_value());
    EXPECT_EQ(service_->RetryTask(id).error().code, ErrorCode::kNotFound);
  }
}

TEST_F(ServiceTest, CostsGroupTheLedgerAndRefuseBadGroupsAndTimes) {
  ledger::Ledger ledger(*store_);
  llm::CallRecord call;
  call.started_at_ms = SystemClock().NowMillis();
  call.ok = true;
  call.context.agent = "coder";
  call.context.run_id = "r1";
  call.provider = "local";
  call.model = "m";
  call.usage.input_tokens = 10;
  call.usage.output_tokens = 5;
  call.cost_usd = 0.5;
  ASSERT_TRUE(ledger.Record(call).has_value());
  call.context.agent = "reviewer";
  ASSERT_TRUE(ledger.Record(call).has_value());

  auto by_agent = service_->Costs(CostsRequest{.by = "agent", .since = "1d"});
  ASSERT_TRUE(by_agent.has_value()) << by_agent.error().ToString();
  EXPECT_EQ(by_agent->group, ledger::CostGroup::kAgent);
  ASSERT_EQ(by_agent->report.rows.size(), 2u);
  EXPECT_EQ(by_agent->report.rows[0].key, "coder");
  EXPECT_DOUBLE_EQ(by_agent->report.total.cost_usd, 1.0);
  EXPECT_GT(by_agent->since_ms, 0);

  auto by_run = service_->Costs(CostsRequest{.by = "run"});
  ASSERT_TRUE(by_run.has_value());
  ASSERT_EQ(by_run->report.rows.size(), 1u);
  EXPECT_EQ(by_run->report.rows[0].key, "r1");

  auto bad_by = service_->Costs(CostsRequest{.by = "colour"});
  ASSERT_FALSE(bad_by.has_value());
  EXPECT_EQ(ErrorField(bad_by.error()), "by");
  EXPECT_EQ(HttpStatusFor(bad_by.error().code), 400);
  auto bad_since = service_->Costs(CostsRequest{.since = "yesterday-ish"});
  ASSERT_FALSE(bad_since.has_value());
  EXPECT_EQ(ErrorField(bad_since.error()), "since");
}

TEST_F(ServiceTest, StatsCountTasksOfARun) {
  Add("a", "r1");
  Add("b", "r1");
  Add("c", "r2");
  auto stats = service_->Stats(StatsRequest{.run = "r1"});
  ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
  EXPECT_EQ(stats->total.tasks, 2);
  auto all = service_->Stats({});
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->total.tasks, 3);
  auto bad = service_->Stats(StatsRequest{.run = "no/such"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(ErrorField(bad.error()), "run");
}

TEST_F(ServiceTest, PauseAndResumeAnAgentInTheStore) {
  ASSERT_TRUE(service_->PauseAgent("coder", "too expensive").has_value());
  auto pauses = service_->ListPauses();
  ASSERT_TRUE(pauses.has_value());
  ASSERT_EQ(pauses->size(), 1u);
  EXPECT_EQ((*pauses)[0].agent, "coder");
  EXPECT_EQ((*pauses)[0].reason, "too expensive");
  ASSERT_TRUE(service_->ResumeAgent("coder").has_value());
  pauses = service_->ListPauses();
  ASSERT_TRUE(pauses.has_value());
  EXPECT_TRUE(pauses->empty());

  auto unnamed = service_->PauseAgent("", "x");
  ASSERT_FALSE(unnamed.has_value());
  EXPECT_EQ(ErrorField(unnamed.error()), "name");
  auto no_reason = service_->PauseAgent("coder", "");
  ASSERT_FALSE(no_reason.has_value());
  EXPECT_EQ(ErrorField(no_reason.error()), "reason");
}

TEST_F(ServiceTest, RunUseCasesOutsideARepositorySayWhy) {
  auto runs = service_->ListRuns({});
  ASSERT_FALSE(runs.has_value());
  EXPECT_NE(runs.error().message.find("git"), std::string::npos) << runs.error().message;
  auto bad = service_->GetRun("../x");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(ErrorField(bad.error()), "run_id");
  EXPECT_FALSE(service_->WaitRun("r1").has_value());
  EXPECT_EQ(HttpStatusFor(service_->StopRun("r1", StopMode::kNow).error().code), 409);
}

TEST(HttpStatusForTest, MapsEveryCode) {
  EXPECT_EQ(HttpStatusFor(ErrorCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kFailedPrecondition), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kAborted), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kDataLoss), 500);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kInternal), 500);
  EXPECT_EQ(ErrorField(Error{ErrorCode::kInvalidArgument, "no task with id 'x'"}), "");
  EXPECT_EQ(ErrorField(Error{ErrorCode::kInvalidArgument, "title must not be empty"}), "title");
  EXPECT_EQ(ErrorField(Error{ErrorCode::kInvalidArgument, "since: bad"}), "since");
}

}  // namespace
}  // namespace factory::service
