// A worker killed with SIGKILL (as if its host crashed) loses nothing: a second worker reaps
// the dead worker's leases and finishes every task, each completed exactly once.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"

namespace factory::testing {
namespace {

TEST(CrashTest, KilledWorkerLosesNothingAndNothingCompletesTwice) {
  constexpr int kTasks = 6;
  constexpr int kConcurrency = 4;
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  std::filesystem::create_directories(sandbox.Path("runs"));
  std::filesystem::create_directories(sandbox.Path("pids"));
  std::vector<std::string> ids;
  for (int idx = 0; idx < kTasks; ++idx) {
    const std::string name = std::to_string(idx);
    // Each run appends a line, then publishes its pid. Before the crash a task runs long (the crash
    // hits it); after it (the `crashed` marker exists) it is quick.
    ids.push_back(sandbox.AddTask({"--title", "long " + name, "--max-attempts", "5", "--command",
                                   "echo run >> runs/" + name + "; echo $$ > pids/" + name +
                                       ".tmp && mv pids/" + name + ".tmp pids/" + name +
                                       "; [ -f crashed ] || sleep 30"}));
  }

  SpawnOptions options;
  options.cwd = sandbox.dir();
  options.stderr_path = sandbox.Path("worker1.err").string();
  const pid_t first = SpawnFactory({"worker", "--concurrency", std::to_string(kConcurrency),
                                    "--lease-seconds", "2", "--poll-ms", "50"},
                                   options);
  auto running_pids = [&] {
    std::vector<pid_t> pids;
    for (int idx = 0; idx < kTasks; ++idx) {
      const auto path = sandbox.Path("pids/" + std::to_string(idx));
      if (std::filesystem::exists(path)) pids.push_back(std::stoi(ReadFile(path)));
    }
    return pids;
  };
  ASSERT_TRUE(WaitUntil([&] { return running_pids().size() == kConcurrency; }, 20'000))
      << ReadFile(sandbox.Path("worker1.err"));

  // The crash: the worker dies, and its tasks' processes with it.
  ASSERT_EQ(kill(first, SIGKILL), 0);
  EXPECT_EQ(WaitForExit(first, 5'000), 128 + SIGKILL);
  WriteFile(sandbox.Path("crashed"), "");

  auto stats = sandbox.Ok({"queue", "stats", "--json"}).Json();
  EXPECT_EQ(stats["running"].get<int>() + stats["claimed"].get<int>(), kConcurrency)
      << stats.dump() << ReadFile(sandbox.Path("worker1.err"));
  EXPECT_EQ(stats["done"], 0);

  auto second = sandbox.Run(
      {"worker", "--until-idle", "--concurrency", "2", "--lease-seconds", "1", "--poll-ms", "50"});
  ASSERT_EQ(second.exit_code, 0) << second.err;

  stats = sandbox.Ok({"queue", "stats", "--json"}).Json();
  EXPECT_EQ(stats["done"], kTasks) << stats.dump();
  int expired = 0;
  for (const auto& id : ids) {
    auto task = sandbox.Show(id);
    EXPECT_EQ(task["state"], "done");
    int completions = 0;
    for (const auto& event : task["events"]) completions += event["kind"] == "task.completed";
    EXPECT_EQ(completions, 1) << task.dump(2);
    int succeeded = 0;
    for (const auto& attempt : task["attempt_history"]) {
      succeeded += attempt["status"] == "succeeded";
      expired += attempt["status"] == "expired";
    }
    EXPECT_EQ(succeeded, 1) << task.dump(2);
  }
  // The killed worker's attempts were reaped, not completed. (More than kConcurrency only when
  // a heartbeat of the first worker came later than its 2 s lease, on a very loaded machine.)
  EXPECT_GE(expired, kConcurrency) << ReadFile(sandbox.Path("worker1.err")) << second.err;
  // Each task ran at least once; the killed ones ran exactly twice.
  int reruns = 0;
  for (int idx = 0; idx < kTasks; ++idx) {
    const std::string runs = ReadFile(sandbox.Path("runs/" + std::to_string(idx)));
    const auto lines = std::count(runs.begin(), runs.end(), '\n');
    EXPECT_GE(lines, 1);
    reruns += lines == 2;
  }
  EXPECT_EQ(reruns, kConcurrency) << ReadFile(sandbox.Path("worker1.err")) << second.err;

  std::string integrity;
  ASSERT_EQ(
      Shell("sqlite3 '" + sandbox.DbPath().string() + "' 'PRAGMA integrity_check'", &integrity), 0);
  EXPECT_EQ(integrity, "ok\n");
  sandbox.Ok({"audit", "verify"});
}

}  // namespace
}  // namespace factory::testing
