// `factory worker` through the real binary: DAG order, artifacts, timeouts, signals.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_test_util.h"

namespace factory::testing {
namespace {

using ::testing::HasSubstr;

class WorkerCliTest : public ::testing::Test {
 protected:
  void SetUp() override { sandbox_.Ok({"init"}); }

  // The single attempt of a task that must have run once.
  nlohmann::json OnlyAttempt(const std::string& id) {
    auto task = sandbox_.Show(id);
    EXPECT_EQ(task["state"], "done") << task.dump(2);
    EXPECT_EQ(task["attempt_history"].size(), 1u) << task.dump(2);
    return task["attempt_history"].empty() ? nlohmann::json::object() : task["attempt_history"][0];
  }

  CliSandbox sandbox_;
};

TEST_F(WorkerCliTest, RunsDagInDependencyOrderAndWritesArtifacts) {
  auto fetch = sandbox_.AddTask({"--title", "fetch", "--command",
                                 "mkdir -p src && seq 1 100 > src/data.txt && echo fetched"});
  auto compile = sandbox_.AddTask({"--title", "compile", "--depends-on", fetch, "--command",
                                   "sleep 0.4; wc -l < src/data.txt > lines.txt"});
  auto lint = sandbox_.AddTask({"--title", "lint", "--depends-on", fetch, "--command",
                                "sleep 0.4; grep -c 5 src/data.txt > fives.txt; echo warn >&2"});
  auto package =
      sandbox_.AddTask({"--title", "package", "--depends-on", compile + "," + lint, "--command",
                        "cat lines.txt fives.txt | sha256sum > package.sha256"});
  auto worker = sandbox_.Run({"worker", "--until-idle", "--concurrency", "2", "--poll-ms", "50"});
  ASSERT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_THAT(worker.err, HasSubstr("started"));
  EXPECT_THAT(worker.err, HasSubstr(package));

  auto fetch_attempt = OnlyAttempt(fetch);
  auto compile_attempt = OnlyAttempt(compile);
  auto lint_attempt = OnlyAttempt(lint);
  auto package_attempt = OnlyAttempt(package);
  for (const auto& dependent : {compile_attempt, lint_attempt}) {
    EXPECT_GE(dependent["started_ms"].get<int64_t>(), fetch_attempt["finished_ms"].get<int64_t>());
  }
  for (const auto& dependency : {compile_attempt, lint_attempt}) {
    EXPECT_GE(package_attempt["started_ms"].get<int64_t>(),
              dependency["finished_ms"].get<int64_t>());
  }
  // Concurrency 2: compile and lint overlapped.
  EXPECT_LT(compile_attempt["started_ms"].get<int64_t>(),
            lint_attempt["finished_ms"].get<int64_t>());
  EXPECT_LT(lint_attempt["started_ms"].get<int64_t>(),
            compile_attempt["finished_ms"].get<int64_t>());

  // Event order agrees: each dependency's completion precedes the dependent's claim.
  sandbox_.Ok({"audit", "verify"});
  auto completed_seq = [&](const std::string& id) {
    const auto task = sandbox_.Show(id);  // not a temporary in the range-for
    for (const auto& event : task["events"]) {
      if (event["kind"] == "task.completed") return event["seq"].get<int64_t>();
    }
    ADD_FAILURE() << "no task.completed for " << id;
    return int64_t{-1};
  };
  auto claimed_seq = [&](const std::string& id) {
    const auto task = sandbox_.Show(id);  // not a temporary in the range-for
    for (const auto& event : task["events"]) {
      if (event["kind"] == "task.claimed") return event["seq"].get<int64_t>();
    }
    ADD_FAILURE() << "no task.claimed for " << id;
    return int64_t{-1};
  };
  EXPECT_LT(completed_seq(fetch), claimed_seq(compile));
  EXPECT_LT(completed_seq(fetch), claimed_seq(lint));
  EXPECT_LT(completed_seq(compile), claimed_seq(package));
  EXPECT_LT(completed_seq(lint), claimed_seq(package));

  // The work happened in the worker's cwd, and the artifacts are kept per attempt.
  EXPECT_EQ(ReadFile(sandbox_.Path("lines.txt")), "100\n");
  EXPECT_TRUE(std::filesystem::exists(sandbox_.Path("package.sha256")));
  const auto artifacts = sandbox_.Path(".factory/artifacts");
  EXPECT_EQ(ReadFile(artifacts / (fetch + "-1") / "stdout.log"), "fetched\n");
  EXPECT_EQ(ReadFile(artifacts / (lint + "-1") / "stderr.log"), "warn\n");
  EXPECT_TRUE(std::filesystem::exists(artifacts / (package + "-1") / "stdout.log"));
  auto stats = sandbox_.Ok({"queue", "stats", "--json"}).Json();
  EXPECT_EQ(stats["done"], 4);
}

TEST_F(WorkerCliTest, TaskEnvironmentAndRetryWithBackoff) {
  // Fails on the first attempt, succeeds on the second (a marker file remembers).
  auto id = sandbox_.AddTask({"--title", "flaky", "--max-attempts", "3", "--command",
                              "echo \"$FACTORY_TASK_ID $FACTORY_ATTEMPT\" >> env.txt; "
                              "if [ ! -f marker ]; then touch marker; echo boom >&2; exit 1; fi"});
  auto worker = sandbox_.Run({"worker", "--until-idle", "--poll-ms", "50"});
  ASSERT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_THAT(worker.err, HasSubstr("will retry"));
  EXPECT_EQ(ReadFile(sandbox_.Path("env.txt")), id + " 1\n" + id + " 2\n");
  auto task = sandbox_.Show(id);
  EXPECT_EQ(task["state"], "done");
  ASSERT_EQ(task["attempt_history"].size(), 2u);
  EXPECT_EQ(task["attempt_history"][0]["status"], "failed");
  EXPECT_THAT(task["attempt_history"][0]["error"].get<std::string>(), HasSubstr("boom"));
  EXPECT_THAT(task["attempt_history"][0]["error"].get<std::string>(), HasSubstr("exit code 1"));
  EXPECT_EQ(task["attempt_history"][1]["status"], "succeeded");
  EXPECT_EQ(ReadFile(sandbox_.Path(".factory/artifacts/" + id + "-1/stderr.log")), "boom\n");
}

TEST_F(WorkerCliTest, AnAttemptWhoseLogCannotBeWrittenFailsWithThatReasonAndIsRetried) {
  auto id = sandbox_.AddTask(
      {"--title", "logged", "--max-attempts", "2", "--command", "echo hello >> ran.txt"});
  // The first attempt's stdout.log cannot be created: a folder has its name.
  const auto blocked = sandbox_.Path(".factory/artifacts/" + id + "-1/stdout.log");
  std::filesystem::create_directories(blocked);
  auto worker = sandbox_.Run({"worker", "--until-idle", "--poll-ms", "50"});
  ASSERT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(ReadFile(sandbox_.Path("ran.txt")), "hello\nhello\n");  // it ran, then again
  auto task = sandbox_.Show(id);
  EXPECT_EQ(task["state"], "done");
  ASSERT_EQ(task["attempt_history"].size(), 2u);
  EXPECT_EQ(task["attempt_history"][0]["status"], "failed");
  EXPECT_THAT(task["attempt_history"][0]["error"].get<std::string>(),
              HasSubstr("cannot open output file " + blocked.string()));
  EXPECT_EQ(task["attempt_history"][1]["status"], "succeeded");
  EXPECT_TRUE(std::filesystem::exists(sandbox_.Path(".factory/artifacts/" + id + "-2/stdout.log")));
}

TEST_F(WorkerCliTest, PlainCommandsRunWithoutTheShellAndTheRestWithIt) {
  auto direct = sandbox_.AddTask({"--title", "plain", "--command", "printenv FACTORY_TASK_ID"});
  auto shell =
      sandbox_.AddTask({"--title", "expands", "--command", "echo attempt $FACTORY_ATTEMPT"});
  auto missing = sandbox_.AddTask(
      {"--title", "missing", "--max-attempts", "1", "--command", "no-such-program-4711 arg"});
  auto worker = sandbox_.Run({"worker", "--until-idle", "--poll-ms", "50"});
  EXPECT_NE(worker.exit_code, 0) << "one task failed";

  const auto artifacts = sandbox_.Path(".factory/artifacts");
  auto direct_attempt = OnlyAttempt(direct);
  EXPECT_EQ(direct_attempt["details"]["exec"], "direct") << direct_attempt.dump(2);
  EXPECT_EQ(ReadFile(artifacts / (direct + "-1") / "stdout.log"), direct + "\n");
  auto shell_attempt = OnlyAttempt(shell);
  EXPECT_EQ(shell_attempt["details"]["exec"], "shell") << shell_attempt.dump(2);
  EXPECT_EQ(ReadFile(artifacts / (shell + "-1") / "stdout.log"), "attempt 1\n");

  // A plain command whose program does not exist is left to the shell, which reports it.
  auto task = sandbox_.Show(missing);
  EXPECT_EQ(task["state"], "failed") << task.dump(2);
  ASSERT_EQ(task["attempt_history"].size(), 1u);
  EXPECT_EQ(task["attempt_history"][0]["details"]["exec"], "shell");
  EXPECT_THAT(task["attempt_history"][0]["error"].get<std::string>(), HasSubstr("exit code 127"));
  EXPECT_THAT(ReadFile(artifacts / (missing + "-1") / "stderr.log"), HasSubstr("not found"));
}

// A task's shell writes its pid as the host sees it: tasks run in a pid namespace of their own,
// where $$ and $! are that namespace's numbers (the host's /proc stays mounted).
const std::string kRecordPid = "read -r pid rest < /proc/self/stat; echo $pid > task.pid";

TEST_F(WorkerCliTest, TimeoutKillsTheWholeProcessGroup) {
  auto id = sandbox_.AddTask(
      {"--title", "slow", "--max-attempts", "1", "--command",
       "sh -c 'read -r pid rest < /proc/self/stat; echo $pid > bg.pid; exec sleep 30' & "
       "sleep 30"});
  const auto started = std::chrono::steady_clock::now();
  auto worker = sandbox_.Run(
      {"worker", "--until-idle", "--timeout-seconds", "1", "--poll-ms", "50", "--quiet"});
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(worker.exit_code, 1) << worker.err;  // a task failed finally
  EXPECT_LT(elapsed, std::chrono::seconds(15));
  auto task = sandbox_.Show(id);
  EXPECT_EQ(task["state"], "failed");
  ASSERT_EQ(task["attempt_history"].size(), 1u);
  EXPECT_THAT(task["attempt_history"][0]["error"].get<std::string>(), HasSubstr("timed out"));
  const pid_t background = std::stoi(ReadFile(sandbox_.Path("bg.pid")));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(background); }, 5'000))
      << "the background child of the timed-out task survived";
}

TEST_F(WorkerCliTest, SigtermReleasesRunningTask) {
  auto id = sandbox_.AddTask({"--title", "long", "--command", kRecordPid + "; sleep 30"});
  SpawnOptions options;
  options.cwd = sandbox_.dir();
  options.stderr_path = sandbox_.Path("worker.err").string();
  const pid_t worker = SpawnFactory(
      {"worker", "--lease-seconds", "30", "--grace-seconds", "0.5", "--poll-ms", "50"}, options);
  ASSERT_TRUE(
      WaitUntil([&] { return std::filesystem::exists(sandbox_.Path("task.pid")); }, 15'000));
  ASSERT_TRUE(WaitUntil([&] { return sandbox_.Show(id)["state"] == "running"; }, 5'000));
  kill(worker, SIGTERM);
  const int exit_code = WaitForExit(worker, 15'000);
  if (exit_code == -1) kill(worker, SIGKILL);
  EXPECT_EQ(exit_code, 0) << ReadFile(sandbox_.Path("worker.err"));
  EXPECT_THAT(ReadFile(sandbox_.Path("worker.err")), HasSubstr("released"));

  auto task = sandbox_.Show(id);
  EXPECT_EQ(task["state"], "ready") << task.dump(2);
  EXPECT_EQ(task["lease_owner"], nullptr);
  ASSERT_EQ(task["attempt_history"].size(), 1u);
  EXPECT_EQ(task["attempt_history"][0]["status"], "released");
  const pid_t child = std::stoi(ReadFile(sandbox_.Path("task.pid")));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(child); }, 5'000));
  sandbox_.Ok({"audit", "verify"});
}

TEST_F(WorkerCliTest, CancelStopsARunningTask) {
  auto id = sandbox_.AddTask({"--title", "doomed", "--command", kRecordPid + "; sleep 30"});
  SpawnOptions options;
  options.cwd = sandbox_.dir();
  options.stderr_path = sandbox_.Path("worker.err").string();
  const pid_t worker = SpawnFactory(
      {"worker", "--until-idle", "--lease-seconds", "0.6", "--poll-ms", "50"}, options);
  ASSERT_TRUE(
      WaitUntil([&] { return std::filesystem::exists(sandbox_.Path("task.pid")); }, 15'000));
  sandbox_.Ok({"task", "cancel", id, "--reason", "changed my mind"});
  // The next heartbeat (every 200 ms) finds the lease stale and kills the command.
  const int exit_code = WaitForExit(worker, 15'000);
  if (exit_code == -1) kill(worker, SIGKILL);
  EXPECT_EQ(exit_code, 0) << ReadFile(sandbox_.Path("worker.err"));
  EXPECT_EQ(sandbox_.Show(id)["state"], "cancelled");
  const pid_t child = std::stoi(ReadFile(sandbox_.Path("task.pid")));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(child); }, 5'000));
}

}  // namespace
}  // namespace factory::testing
