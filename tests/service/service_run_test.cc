// Runs through the service: a real git repository, real SQLite, script agents (no sandbox: the
// scripts coordinate through files outside the worktrees), the service's run executor.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <thread>

#include "common/script_project.h"
#include "common/test_repo.h"
#include "common/test_util.h"
#include "service/service.h"
#include "store/store.h"

namespace factory::service {
namespace {

using testing::ReadFile;
using testing::WriteFile;

// Waits for `done` (a state the run reaches by itself), failing the test after a minute.
bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

class ServiceRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ScriptProject project(repo_.root());
    project.WriteConfig(
        "concurrency: 2\nmax_attempts: 2\ngates:\n  - {name: check, command: 'true'}\n");
    // Each attempt marks the agent busy (mkdir is atomic: a second holder records an overlap),
    // logs its start, waits for the test's gate file, then writes its task's file.
    project.AddScriptAgent("worker",
                           "if ! mkdir '" + Scratch("busy") +
                               "' 2>/dev/null; then echo overlap >> '" + Scratch("log") +
                               "'; fi\n"
                               "echo \"start $FACTORY_TASK_ID\" >> '" +
                               Scratch("log") +
                               "'\n"
                               "while [ ! -f '" +
                               Scratch("gate") +
                               "' ]; do sleep 0.02; done\n"
                               "rmdir '" +
                               Scratch("busy") +
                               "' 2>/dev/null\n"
                               "echo \"$FACTORY_TASK_ID\" > \"out-$FACTORY_TASK_ID.txt\"\n",
                           "", "concurrency: 1\n");
    testing::GitIn(repo_.root(), {"add", "-A", ".factory/config.yaml", ".factory/agents"});
    testing::GitIn(repo_.root(), {"commit", "--quiet", "-m", "factory files"});
    WriteFile(scratch_.path() / "one.yaml", "tasks:\n  - id: one\n    title: One\n");
    WriteFile(scratch_.path() / "two.yaml",
              "tasks:\n  - id: a\n    title: A\n  - id: b\n    title: B\n    depends_on: [a]\n");
    auto store = OpenSqliteStore(SqliteOptions{.path = scratch_ / "factory.db"});
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    service_ = MakeService();
  }

  std::unique_ptr<Service> MakeService() {
    return Service::Create(*store_, ServiceOptions{.repo_path = repo_.root(),
                                                   .use_sandbox = false,
                                                   .actor = "test",
                                                   .shutdown_grace_ms = 0});
  }

  std::string Scratch(const std::string& name) const { return (scratch_.path() / name).string(); }
  void OpenGate() const { WriteFile(scratch_.path() / "gate", "open\n"); }
  int Starts() const {
    const std::string log = std::filesystem::exists(Scratch("log")) ? ReadFile(Scratch("log")) : "";
    int starts = 0;
    for (size_t at = log.find("start"); at != std::string::npos; at = log.find("start", at + 1)) {
      ++starts;
    }
    return starts;
  }

  Result<StartRunResult> Start(const std::string& run_id, const std::string& backlog) {
    return service_->StartRun(StartRunRequest{.run_id = run_id, .backlog_path = Scratch(backlog)});
  }

  int CountInState(const std::string& run_id, TaskState state) {
    auto tasks = service_->ListTasks(ListTasksRequest{.run = run_id});
    if (!tasks) return -1;
    int count = 0;
    for (const Task& task : tasks->tasks) count += task.state == state ? 1 : 0;
    return count;
  }

  testing::TempRepo repo_;
  testing::TempDir scratch_{"factory-service-run"};
  std::unique_ptr<Store> store_;
  std::unique_ptr<Service> service_;
};

TEST_F(ServiceRunTest, StartReturnsWhileTheRunExecutesAndWaitGivesItsSummary) {
  auto started = Start("r1", "two.yaml");
  ASSERT_TRUE(started.has_value()) << started.error().ToString();
  EXPECT_EQ(started->created.run_id, "r1");
  EXPECT_EQ(started->created.integration_branch, "factory/r1");
  EXPECT_EQ(started->created.tasks_created, 2);
  EXPECT_EQ(started->run.summary.total, 2);
  // The agent waits for the gate: the run cannot have finished, and it is listed meanwhile.
  EXPECT_TRUE(started->run.executing);
  ASSERT_TRUE(WaitFor([&] { return Starts() == 1; }));
  auto listed = service_->ListRuns({});
  ASSERT_TRUE(listed.has_value()) << listed.error().ToString();
  ASSERT_EQ(listed->runs.size(), 1u);
  EXPECT_EQ(listed->runs[0].run.id, "r1");
  EXPECT_EQ(listed->runs[0].run.state, "running");
  EXPECT_TRUE(listed->runs[0].executing);
  EXPECT_EQ(service_->StartRun(StartRunRequest{.run_id = "r1", .backlog_path = Scratch("two.yaml")})
                .error()
                .code,
            ErrorCode::kFailedPrecondition);

  OpenGate();
  auto summary = service_->WaitRun("r1");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 2);
  EXPECT_TRUE(summary->all_done());
  auto run = service_->GetRun("r1");
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(run->run.state, "done");
  EXPECT_FALSE(run->executing);
  ASSERT_EQ(run->tasks.size(), 2u);
  EXPECT_EQ(run->tasks[0].state, "done");
  EXPECT_FALSE(run->tasks[0].merge_commit.empty());

  auto merged = service_->MergeRun(MergeRunRequest{.run_id = "r1"});
  ASSERT_TRUE(merged.has_value()) << merged.error().ToString();
  EXPECT_EQ(merged->base_branch, "main");
  EXPECT_NE(testing::GitIn(repo_.root(), {"ls-tree", "--name-only", "main"}).find("out-"),
            std::string::npos);
}

TEST_F(ServiceRunTest, TwoRunsExecuteAtOnceSharingTheAgentsSlots) {
  auto first = Start("ra", "one.yaml");
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  auto second = Start("rb", "one.yaml");
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  // Both runs have claimed their task; the agent's one slot lets only one attempt start.
  ASSERT_TRUE(WaitFor([&] {
    return CountInState("ra", TaskState::kRunning) == 1 &&
           CountInState("rb", TaskState::kRunning) == 1 && Starts() == 1;
  }));
  auto ra = service_->GetRun("ra");
  auto rb = service_->GetRun("rb");
  ASSERT_TRUE(ra.has_value() && rb.has_value());
  EXPECT_TRUE(ra->executing);
  EXPECT_TRUE(rb->executing);
  auto agents = service_->ListAgents();
  ASSERT_TRUE(agents.has_value()) << agents.error().ToString();
  ASSERT_EQ(agents->size(), 1u);
  EXPECT_EQ((*agents)[0].name, "worker");
  EXPECT_EQ((*agents)[0].runner, "script");
  EXPECT_EQ((*agents)[0].concurrency, 1);
  EXPECT_EQ((*agents)[0].in_use, 1);

  OpenGate();
  auto a = service_->WaitRun("ra");
  auto b = service_->WaitRun("rb");
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_TRUE(a->all_done());
  EXPECT_TRUE(b->all_done());
  EXPECT_EQ(Starts(), 2);
  EXPECT_EQ(ReadFile(Scratch("log")).find("overlap"), std::string::npos)
      << ReadFile(Scratch("log"));
}

TEST_F(ServiceRunTest, CancelStopsARunningRunAndResumeContinuesIt) {
  ASSERT_TRUE(Start("rc", "one.yaml").has_value());
  ASSERT_TRUE(WaitFor([&] { return Starts() == 1; }));
  auto cancelled = service_->CancelRun("rc");
  ASSERT_TRUE(cancelled.has_value()) << cancelled.error().ToString();
  EXPECT_EQ(cancelled->run.state, "cancelled");
  EXPECT_FALSE(cancelled->executing);
  EXPECT_EQ(cancelled->summary.done, 0);
  EXPECT_EQ(cancelled->summary.unfinished, 1);
  // A cancelled run is not an interrupted one.
  auto resumed_at_start = service_->ResumeInterruptedRuns();
  ASSERT_TRUE(resumed_at_start.has_value()) << resumed_at_start.error().ToString();
  EXPECT_TRUE(resumed_at_start->empty());

  OpenGate();
  auto resumed = service_->ResumeRun("rc");
  ASSERT_TRUE(resumed.has_value()) << resumed.error().ToString();
  auto summary = service_->WaitRun("rc");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_TRUE(summary->all_done());
  auto finished = service_->CancelRun("rc");
  ASSERT_FALSE(finished.has_value());
  EXPECT_EQ(finished.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(ServiceRunTest, StopEndsARunStoppedAsCtrlCDoesAndLeavesItToAnExplicitResume) {
  ASSERT_TRUE(Start("rp", "one.yaml").has_value());
  ASSERT_TRUE(WaitFor([&] { return Starts() == 1; }));
  ASSERT_TRUE(service_->StopRun("rp", StopMode::kGraceful).has_value());
  auto summary = service_->WaitRun("rp");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->unfinished, 1);
  auto run = service_->GetRun("rp");
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->run.state, "stopped");
  EXPECT_EQ(CountInState("rp", TaskState::kReady), 1) << "the attempt's task is released";
  auto resumed = service_->ResumeInterruptedRuns();
  ASSERT_TRUE(resumed.has_value());
  EXPECT_TRUE(resumed->empty());
  EXPECT_EQ(service_->StopRun("rp", StopMode::kNow).error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(ServiceRunTest, ShutdownInterruptsRunsThatTheNextServiceResumes) {
  ASSERT_TRUE(Start("rs", "two.yaml").has_value());
  ASSERT_TRUE(WaitFor([&] { return Starts() == 1; }));
  service_->Shutdown(StopMode::kNow);
  auto after = service_->GetRun("rs");
  ASSERT_TRUE(after.has_value()) << after.error().ToString();
  EXPECT_EQ(after->run.state, "interrupted");
  EXPECT_FALSE(after->executing);
  EXPECT_EQ(after->summary.done, 0);
  auto refused = Start("rt", "one.yaml");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);

  service_.reset();
  service_ = MakeService();
  OpenGate();
  auto resumed = service_->ResumeInterruptedRuns();
  ASSERT_TRUE(resumed.has_value()) << resumed.error().ToString();
  EXPECT_EQ(*resumed, std::vector<std::string>{"rs"});
  auto summary = service_->WaitRun("rs");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 2);
}

TEST_F(ServiceRunTest, ABacklogGivenAsTextIsKeptWithTheRun) {
  OpenGate();
  auto started = service_->StartRun(StartRunRequest{
      .backlog_text = R"({"tasks": [{"id": "x", "title": "X"}]})", .title = "from the api"});
  ASSERT_TRUE(started.has_value()) << started.error().ToString();
  const std::string run_id = started->created.run_id;
  EXPECT_FALSE(run_id.empty());
  EXPECT_EQ(started->run.run.title, "from the api");
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(repo_.root()) / ".factory" / "runs" /
                                      run_id / "BACKLOG.json"));
  auto summary = service_->WaitRun(run_id);
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_TRUE(summary->all_done());
}

TEST_F(ServiceRunTest, BadRunRequestsNameTheFieldAndUnknownRunsAreNotFound) {
  struct Case {
    StartRunRequest request;
    std::string field;
  };
  const std::vector<Case> cases = {
      {StartRunRequest{}, "backlog_path"},
      {StartRunRequest{.backlog_path = Scratch("one.yaml"), .backlog_text = "{}"}, "backlog_text"},
      {StartRunRequest{.run_id = "a b", .backlog_path = Scratch("one.yaml")}, "run_id"},
      {StartRunRequest{.backlog_text = "{}", .backlog_format = "xml"}, "backlog_format"},
      {StartRunRequest{.backlog_text = "{\"tasks\": 7}"}, "backlog_text"},
      {StartRunRequest{.backlog_path = Scratch("one.yaml"), .execution = {.concurrency = 999}},
       "concurrency"},
      {StartRunRequest{.feature_text = "# A feature\n"}, "feature_text"},
  };
  for (const Case& test_case : cases) {
    auto started = service_->StartRun(test_case.request);
    ASSERT_FALSE(started.has_value()) << test_case.field;
    EXPECT_EQ(started.error().code, ErrorCode::kInvalidArgument) << started.error().message;
    EXPECT_EQ(ErrorField(started.error()), test_case.field) << started.error().message;
  }
  auto missing_file = service_->StartRun(StartRunRequest{.backlog_path = Scratch("none.yaml")});
  ASSERT_FALSE(missing_file.has_value());
  EXPECT_NE(missing_file.error().message.find("none.yaml"), std::string::npos);

  for (const auto& code :
       {service_->GetRun("nope").error().code, service_->ExecuteRun("nope").error().code,
        service_->ResumeRun("nope").error().code, service_->CancelRun("nope").error().code,
        service_->MergeRun(MergeRunRequest{.run_id = "nope"}).error().code}) {
    EXPECT_EQ(code, ErrorCode::kNotFound);
  }
  EXPECT_EQ(
      ErrorField(service_->MergeRun(MergeRunRequest{.run_id = "nope", .force = true}).error()),
      "reason");
  auto page = service_->ListRuns(ListRunsRequest{.limit = 0});
  ASSERT_FALSE(page.has_value());
  EXPECT_EQ(ErrorField(page.error()), "limit");
}

TEST_F(ServiceRunTest, AnUnfinishedRunIsNotMergedAndRunsPage) {
  auto created =
      service_->CreateRun(StartRunRequest{.run_id = "p1", .backlog_path = Scratch("one.yaml")});
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  EXPECT_FALSE(created->run.executing);
  auto merged = service_->MergeRun(MergeRunRequest{.run_id = "p1"});
  ASSERT_FALSE(merged.has_value());
  EXPECT_EQ(merged.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(merged.error().message.find("not mergeable"), std::string::npos);
  ASSERT_TRUE(
      service_->CreateRun(StartRunRequest{.run_id = "p2", .backlog_path = Scratch("one.yaml")})
          .has_value());
  ASSERT_TRUE(
      service_->CreateRun(StartRunRequest{.run_id = "p3", .backlog_path = Scratch("one.yaml")})
          .has_value());
  std::vector<std::string> seen;
  ListRunsRequest request{.limit = 2};
  while (true) {
    auto page = service_->ListRuns(request);
    ASSERT_TRUE(page.has_value()) << page.error().ToString();
    for (const RunInfo& info : page->runs) seen.push_back(info.run.id);
    if (page->next_cursor.empty()) break;
    request.cursor = page->next_cursor;
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()),
            (std::set<std::string>{"p1", "p2", "p3"}));
}

}  // namespace
}  // namespace factory::service
