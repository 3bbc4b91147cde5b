#include "events/event_log.h"

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/test_util.h"
#include "events/audit.h"
#include "store/store.h"

extern char** environ;

namespace factory::events {
namespace {

using testing::TempDir;

// Collects what a subscription delivers; waits (bounded, not timed) for a count.
class Collector {
 public:
  EventCallback Callback() {
    return [this](const Event& event) {
      std::lock_guard lock(mu_);
      events_.push_back(event);
      cv_.notify_all();
    };
  }
  // The events once there are at least `count` (or what arrived within a minute).
  std::vector<Event> WaitFor(size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return events_.size() >= count; });
    return events_;
  }
  std::vector<Event> Snapshot() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

std::vector<int64_t> Seqs(const std::vector<Event>& events) {
  std::vector<int64_t> seqs;
  for (const auto& event : events) seqs.push_back(event.seq);
  return seqs;
}

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> seqs;
  for (int64_t seq = first; seq <= last; ++seq) seqs.push_back(seq);
  return seqs;
}

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    log_ = std::make_unique<EventLog>(*store_, EventLogOptions{.actor = "test"});
  }

  std::string db_path() const { return dir_ / "factory.db"; }

  void AppendSteps(int count, const std::string& run_id = "run-a",
                   const std::string& task_id = "") {
    for (int index = 0; index < count; ++index) {
      auto appended = log_->Append({.kind = EventKind::kAgentStep,
                                    .run_id = run_id,
                                    .task_id = task_id,
                                    .payload_json = "{\"index\":" + std::to_string(index) + "}"});
      ASSERT_TRUE(appended) << appended.error().ToString();
    }
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EventLog> log_;
};

class EventLogThreadsTest : public EventLogTest, public ::testing::WithParamInterface<int> {};

TEST_P(EventLogThreadsTest, ChainStaysIntactWhenThreadsAppendAtOnce) {
  const int threads = GetParam();
  constexpr int kPerThread = 50;
  std::vector<std::thread> workers;
  for (int worker = 0; worker < threads; ++worker) {
    workers.emplace_back([&, worker] {
      for (int index = 0; index < kPerThread; ++index) {
        auto appended = log_->Append({.kind = EventKind::kAgentStep,
                                      .run_id = "run-" + std::to_string(worker),
                                      .payload_json = "{\"index\":" + std::to_string(index) + "}"});
        EXPECT_TRUE(appended) << appended.error().ToString();
      }
    });
  }
  for (auto& worker : workers) worker.join();
  auto report = VerifyChain(*store_);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->events_checked, threads * kPerThread);
}

INSTANTIATE_TEST_SUITE_P(Workers, EventLogThreadsTest, ::testing::Values(1, 2, 8));

TEST(EventKindTest, EveryKindRoundTripsThroughItsWireName) {
  std::set<std::string_view> names;
  for (EventKind kind : AllEventKinds()) {
    std::string_view name = EventKindName(kind);
    EXPECT_TRUE(names.insert(name).second) << "duplicate wire name " << name;
    EXPECT_EQ(ParseEventKind(name), kind) << name;
  }
  EXPECT_EQ(ParseEventKind("task.created"), EventKind::kTaskCreated);
  EXPECT_EQ(ParseEventKind("no.such.kind"), std::nullopt);
  EXPECT_EQ(TaskStateEventKind(TaskState::kDone), EventKind::kTaskCompleted);
  EXPECT_EQ(TaskStateEventKind(TaskState::kVerifying), EventKind::kTaskVerifying);
}

TEST_F(EventLogTest, StoredKindsReadBackTypedAndUnknownKindsStayReadable) {
  for (EventKind kind : AllEventKinds()) {
    ASSERT_TRUE(log_->Append({.kind = kind, .run_id = "run-a"}));
  }
  // An event a newer build wrote, with a kind this build does not know.
  ASSERT_TRUE(store_->Write([](StoreTxn& txn) -> Status {
    Event event{.id = "01JFUTURE00000000000000000",
                .ts_ms = 1,
                .kind = "future.kind",
                .actor = "newer",
                .payload_json = "{}"};
    return txn.AppendEvent(event);
  }));
  auto events = log_->List(EventQuery{.limit = 10'000});
  ASSERT_TRUE(events) << events.error().ToString();
  ASSERT_EQ(events->size(), AllEventKinds().size() + 1);
  for (size_t index = 0; index < AllEventKinds().size(); ++index) {
    EXPECT_EQ(KindOf((*events)[index]), AllEventKinds()[index]);
    EXPECT_EQ((*events)[index].actor, "test");
  }
  EXPECT_EQ(events->back().kind, "future.kind");
  EXPECT_EQ(KindOf(events->back()), std::nullopt);

  // A subscription without a kind filter delivers it; one with a kind filter does not.
  Collector all;
  auto everything = log_->Subscribe(0, {}, all.Callback());
  EXPECT_EQ(all.WaitFor(events->size()).back().kind, "future.kind");
  EXPECT_TRUE(EventFilter{}.Matches(events->back()));
  EXPECT_FALSE(EventFilter{.kinds = {EventKind::kAgentStep}}.Matches(events->back()));
}

TEST_F(EventLogTest, PayloadIsAlwaysAJsonObject) {
  auto plain = log_->Append({.kind = EventKind::kAgentStep, .payload_json = "not json"});
  ASSERT_TRUE(plain);
  EXPECT_EQ(nlohmann::json::parse(plain->payload_json), (nlohmann::json{{"data", "not json"}}));
  auto array = log_->Append({.kind = EventKind::kAgentStep, .payload_json = "[1,2]"});
  ASSERT_TRUE(array);
  EXPECT_EQ(nlohmann::json::parse(array->payload_json),
            (nlohmann::json{{"data", nlohmann::json::array({1, 2})}}));
  auto empty = log_->Append({.kind = EventKind::kAgentStep});
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->payload_json, "{}");
  EXPECT_EQ(empty->actor, "test");
  EXPECT_GT(empty->seq, array->seq);
}

TEST_F(EventLogTest, ResumingAfterSeqDeliversExactlyTheRestThenNewEvents) {
  AppendSteps(100);
  Collector resumed;
  auto subscription = log_->Subscribe(40, {}, resumed.Callback());
  EXPECT_EQ(Seqs(resumed.WaitFor(60)), Range(41, 100));
  AppendSteps(10);
  EXPECT_EQ(Seqs(resumed.WaitFor(70)), Range(41, 110));
  // A second resume at a seq the first one passed: the same events again, each once.
  Collector again;
  auto second = log_->Subscribe(105, {}, again.Callback());
  EXPECT_EQ(Seqs(again.WaitFor(5)), Range(106, 110));
  AppendSteps(1);
  EXPECT_EQ(Seqs(again.WaitFor(6)), Range(106, 111));
  EXPECT_EQ(Seqs(resumed.WaitFor(71)), Range(41, 111));
  EXPECT_EQ(log_->subscriber_count(), 2);
}

TEST_F(EventLogTest, ResumingFurtherBackThanTheLiveWindowReadsTheStoreWithoutGapOrDuplicate) {
  Collector live;
  auto first = log_->Subscribe(0, {}, live.Callback());
  // More events than the poller keeps in memory, appended while it runs.
  constexpr int kCount = 6000;
  AppendSteps(kCount);
  EXPECT_EQ(Seqs(live.WaitFor(kCount)), Range(1, kCount));
  Collector late;
  auto second = log_->Subscribe(10, {}, late.Callback());
  AppendSteps(5);
  EXPECT_EQ(Seqs(late.WaitFor(kCount + 5 - 10)), Range(11, kCount + 5));
  EXPECT_EQ(Seqs(live.WaitFor(kCount + 5)), Range(1, kCount + 5));
}

TEST_F(EventLogTest, FiltersByRunTaskAndKind) {
  ASSERT_TRUE(log_->Append({.kind = EventKind::kTaskCreated, .run_id = "r1", .task_id = "t1"}));
  ASSERT_TRUE(log_->Append({.kind = EventKind::kAgentStep, .run_id = "r1", .task_id = "t1"}));
  ASSERT_TRUE(log_->Append({.kind = EventKind::kTaskCreated, .run_id = "r1", .task_id = "t2"}));
  ASSERT_TRUE(log_->Append({.kind = EventKind::kTaskCreated, .run_id = "r2", .task_id = "t3"}));
  ASSERT_TRUE(log_->Append({.kind = EventKind::kRunCreated, .run_id = "r2"}));
  Collector by_run;
  Collector by_task;
  Collector by_kind;
  Collector by_run_and_kind;
  auto s1 = log_->Subscribe(0, {.run_id = "r1"}, by_run.Callback());
  auto s2 = log_->Subscribe(0, {.task_id = "t1"}, by_task.Callback());
  auto s3 = log_->Subscribe(0, {.kinds = {EventKind::kTaskCreated, EventKind::kRunCreated}},
                            by_kind.Callback());
  auto s4 = log_->Subscribe(0, {.run_id = "r2", .kinds = {EventKind::kTaskCreated}},
                            by_run_and_kind.Callback());
  // Live events go through the same filters.
  ASSERT_TRUE(log_->Append({.kind = EventKind::kAgentStep, .run_id = "r2", .task_id = "t3"}));
  ASSERT_TRUE(log_->Append({.kind = EventKind::kTaskCreated, .run_id = "r1", .task_id = "t1"}));
  EXPECT_EQ(Seqs(by_run.WaitFor(4)), (std::vector<int64_t>{1, 2, 3, 7}));
  EXPECT_EQ(Seqs(by_task.WaitFor(3)), (std::vector<int64_t>{1, 2, 7}));
  EXPECT_EQ(Seqs(by_kind.WaitFor(5)), (std::vector<int64_t>{1, 3, 4, 5, 7}));
  // Every subscription has passed the whole chain once the last one to match is delivered.
  auto last = log_->Append({.kind = EventKind::kTaskCreated, .run_id = "r2", .task_id = "t4"});
  ASSERT_TRUE(last);
  EXPECT_EQ(Seqs(by_run_and_kind.WaitFor(2)), (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(Seqs(by_run.Snapshot()), (std::vector<int64_t>{1, 2, 3, 7}));
}

TEST_F(EventLogTest, CancelledSubscriptionGetsNothingMore) {
  Collector collector;
  auto subscription = log_->Subscribe(0, {}, collector.Callback());
  AppendSteps(3);
  EXPECT_EQ(collector.WaitFor(3).size(), 3u);
  subscription->Cancel();
  EXPECT_EQ(log_->subscriber_count(), 0);
  AppendSteps(3);
  // A later subscription seeing the new events shows the poller has passed them.
  Collector later;
  auto witness = log_->Subscribe(3, {}, later.Callback());
  EXPECT_EQ(later.WaitFor(3).size(), 3u);
  EXPECT_EQ(collector.Snapshot().size(), 3u);
}

TEST_F(EventLogTest, SubscriberGetsEventsAnotherProcessAppends) {
  AppendSteps(2, "run-local");
  Collector collector;
  auto subscription = log_->Subscribe(0, {.run_id = "run-other"}, collector.Callback());
  constexpr int kCount = 40;
  std::string count = std::to_string(kCount);
  std::string path = db_path();
  const char* argv[] = {APPEND_EVENTS_BINARY, path.c_str(), count.c_str(), "run-other", nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, APPEND_EVENTS_BINARY, nullptr, nullptr,
                        const_cast<char* const*>(argv), environ),
            0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<Event> events = collector.WaitFor(kCount);
  ASSERT_EQ(Seqs(events), Range(3, 2 + kCount));
  for (int index = 0; index < kCount; ++index) {
    EXPECT_EQ(events[index].actor, "helper");
    EXPECT_EQ(nlohmann::json::parse(events[index].payload_json)["index"], index);
  }
  auto report = VerifyChain(*store_);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok) << report->problem;
}

}  // namespace
}  // namespace factory::events
