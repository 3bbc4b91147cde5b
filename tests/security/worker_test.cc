// Worker crashes and bad numbers, through the real `factory` binary:
//  - a SIGKILLed worker takes every process of its running task with it, also one that left
//    the task's process group;
//  - a worker started after a crash on the same host claims the dead worker's task at once
//    (not after its lease), and the crash does not use up one of the task's attempts;
//  - a task that keeps losing its worker still stops (max_crashes), and `worker --until-idle`
//    exits 1 for it;
//  - every numeric option refuses nan, inf and overflow with exit 2, naming the option.

#include "queue/worker.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"

namespace factory::testing {
namespace {

using ::testing::HasSubstr;

// Pids of the live processes whose working directory is `dir` (a task inherits the worker's).
std::set<pid_t> ProcessesIn(const std::filesystem::path& dir) {
  std::set<pid_t> pids;
  const std::string wanted = std::filesystem::canonical(dir).string();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (struct dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::error_code ec;
    const auto cwd =
        std::filesystem::read_symlink(std::string("/proc/") + entry->d_name + "/cwd", ec);
    if (ec || cwd.string() != wanted) continue;
    const pid_t pid = std::stoi(entry->d_name);
    if (ProcessAlive(pid)) pids.insert(pid);
  }
  closedir(proc);
  return pids;
}

pid_t StartWorker(CliSandbox& sandbox, const std::string& log, std::vector<std::string> extra) {
  SpawnOptions options;
  options.cwd = sandbox.dir();
  options.stderr_path = sandbox.Path(log).string();
  std::vector<std::string> args = {"worker", "--lease-seconds", "600", "--poll-ms", "50"};
  args.insert(args.end(), extra.begin(), extra.end());
  return SpawnFactory(args, options);
}

TEST(WorkerSecurityTest, AKilledWorkersTaskProcessesDieWithIt) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  // The task starts a grandchild that leaves its process group (setsid), then waits; it would
  // write `finished` if it ever ended on its own.
  const std::string id =
      sandbox.AddTask({"--title", "long", "--command",
                       "setsid sleep 1000 & touch started; sleep 1000; touch finished"});
  const pid_t worker = StartWorker(sandbox, "worker.err", {});
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(sandbox.Path("started")); }, 20'000))
      << ReadFile(sandbox.Path("worker.err"));
  std::set<pid_t> task_processes = ProcessesIn(sandbox.dir());
  task_processes.erase(worker);
  // At least the shell, its sleep and the escaped sleep.
  ASSERT_GE(task_processes.size(), 3u);

  ASSERT_EQ(kill(worker, SIGKILL), 0);
  EXPECT_EQ(WaitForExit(worker, 5'000), 128 + SIGKILL);
  // The kernel kills them as the worker goes; reaping the last of them may take a moment.
  const bool all_gone = WaitUntil(
      [&] {
        const std::set<pid_t> left = ProcessesIn(sandbox.dir());
        for (pid_t pid : task_processes) {
          if (left.contains(pid)) return false;
        }
        return true;
      },
      10'000);
  std::string survivors;
  for (pid_t pid : ProcessesIn(sandbox.dir())) {
    survivors +=
        " " + std::to_string(pid) + ":" + ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    kill(pid, SIGKILL);  // leave nothing behind either way
  }
  EXPECT_TRUE(all_gone) << "task processes outlived their worker:" << survivors;
  EXPECT_FALSE(std::filesystem::exists(sandbox.Path("finished")));
}

TEST(WorkerSecurityTest, ARestartedWorkerClaimsADeadWorkersTaskAtOnceAndTheCrashIsNoAttempt) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  // First run: hangs (the crash hits it). Once `restarted` exists it succeeds at once.
  const std::string id =
      sandbox.AddTask({"--title", "t", "--max-attempts", "1", "--command",
                       "echo run >> runs; [ -f restarted ] || { touch started; sleep 1000; }"});
  const pid_t first = StartWorker(sandbox, "worker1.err", {});
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(sandbox.Path("started")); }, 20'000))
      << ReadFile(sandbox.Path("worker1.err"));
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_EQ(WaitForExit(first, 5'000), 128 + SIGKILL);
  EXPECT_EQ(sandbox.Show(id)["state"], "running");
  WriteFile(sandbox.Path("restarted"), "");

  // The dead worker's lease has 10 minutes left: only reaping it at start lets this worker
  // finish (the sandbox gives it 60 s).
  auto second =
      sandbox.Run({"worker", "--until-idle", "--lease-seconds", "600", "--poll-ms", "50"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto task = sandbox.Show(id);
  EXPECT_EQ(task["state"], "done") << task.dump(2);
  // max_attempts 1 and two runs: the crashed one was not the task's attempt.
  EXPECT_EQ(task["attempts"], 1) << task.dump(2);
  EXPECT_EQ(task["crashes"], 1) << task.dump(2);
  EXPECT_EQ(task["max_crashes"], 5);
  EXPECT_EQ(ReadFile(sandbox.Path("runs")), "run\nrun\n");
  const auto shown = sandbox.Ok({"task", "show", id});
  EXPECT_THAT(shown.out, HasSubstr("crashes:         1/5"));
}

TEST(WorkerSecurityTest, ATaskThatKeepsLosingItsWorkerStopsAtMaxCrashes) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  const std::string id = sandbox.AddTask(
      {"--title", "t", "--max-crashes", "1", "--command", "touch started; sleep 1000"});
  const pid_t first = StartWorker(sandbox, "worker1.err", {});
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(sandbox.Path("started")); }, 20'000))
      << ReadFile(sandbox.Path("worker1.err"));
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_EQ(WaitForExit(first, 5'000), 128 + SIGKILL);

  // The reaper, not an attempt of this worker, fails the task: --until-idle still says so.
  auto second = sandbox.Run({"worker", "--until-idle", "--poll-ms", "50"});
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_THAT(second.err, HasSubstr("1 task(s) failed finally"));
  const auto task = sandbox.Show(id);
  EXPECT_EQ(task["state"], "failed");
  EXPECT_EQ(task["crashes"], 1);
  EXPECT_EQ(task["attempts"], 0);
}

TEST(WorkerSecurityTest, OwnerIdsNameOneProcessOfOneHost) {
  const std::string self = DefaultWorkerOwner();
  EXPECT_FALSE(OwnerIsProvablyDead(self));
  // host:pid:start:ulid
  const auto host_end = self.find(':');
  const auto pid_end = self.find(':', host_end + 1);
  const auto start_end = self.find(':', pid_end + 1);
  ASSERT_NE(start_end, std::string::npos) << self;
  const std::string host = self.substr(0, host_end);
  const std::string start = self.substr(pid_end + 1, start_end - pid_end - 1);
  EXPECT_EQ(self.substr(host_end + 1, pid_end - host_end - 1), std::to_string(getpid()));
  EXPECT_NE(start, "0");

  // The same pid with another start time: a process that reused the pid, not the owner.
  EXPECT_TRUE(OwnerIsProvablyDead(host + ":" + std::to_string(getpid()) + ":1:X"));
  // A process that exited and was reaped.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_TRUE(OwnerIsProvablyDead(host + ":" + std::to_string(child) + ":" + start + ":X"));
  // Unknowable: another host, another format, a live process in the old format.
  EXPECT_FALSE(OwnerIsProvablyDead("other-host:" + std::to_string(child) + ":" + start + ":X"));
  EXPECT_FALSE(OwnerIsProvablyDead("my-worker"));
  EXPECT_FALSE(OwnerIsProvablyDead(host + ":" + std::to_string(getpid()) + ":01J0ULID"));
}

struct BadNumber {
  std::vector<std::string> args;
  std::string option;
};

TEST(WorkerSecurityTest, NumericOptionsRefuseNanInfAndOverflow) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  std::vector<BadNumber> cases;
  for (const std::string value : {"nan", "NaN", "inf", "1e999", "0x1p99999"}) {
    for (const std::string option : {"--lease-seconds", "--timeout-seconds", "--grace-seconds"}) {
      cases.push_back({{"worker", "--until-idle", option, value}, option});
    }
  }
  for (const std::string value : {"nan", "inf", "99999999999999999999", "1e3", "-1"}) {
    cases.push_back({{"worker", "--until-idle", "--concurrency", value}, "--concurrency"});
    cases.push_back({{"worker", "--until-idle", "--poll-ms", value}, "--poll-ms"});
    cases.push_back({{"worker", "--until-idle", "--batch", value}, "--batch"});
    cases.push_back({{"task", "add", "--title", "t", "--max-attempts", value}, "--max-attempts"});
    cases.push_back({{"task", "add", "--title", "t", "--max-crashes", value}, "--max-crashes"});
    cases.push_back({{"task", "list", "--limit", value}, "--limit"});
    cases.push_back({{"run", "--backlog", "b.yaml", "--concurrency", value}, "--concurrency"});
    cases.push_back({{"run", "resume", "r1", "--concurrency", value}, "--concurrency"});
    cases.push_back({{"regenerate", "f", "--concurrency", value}, "--concurrency"});
    cases.push_back({{"run", "--backlog", "b.yaml", "--max-repairs", value}, "--max-repairs"});
    cases.push_back({{"gateway", "--threads", value}, "--threads"});
    cases.push_back({{"gateway", "--cache-ms", value}, "--cache-ms"});
  }
  for (const std::string value : {"nan", "inf", "99999999999999999999", "2147483648"}) {
    cases.push_back({{"task", "add", "--title", "t", "--priority", value}, "--priority"});
  }
  for (const auto& bad : cases) {
    const auto result = sandbox.Run(bad.args);
    EXPECT_EQ(result.exit_code, 2) << CliSandbox::Join(bad.args) << "\n" << result.err;
    EXPECT_THAT(result.err, HasSubstr(bad.option)) << CliSandbox::Join(bad.args);
  }
  // Nothing of it reached the queue.
  EXPECT_EQ(sandbox.Ok({"task", "list", "--json"}).Json().size(), 0u);
  // The bounds themselves are fine.
  sandbox.Ok({"worker", "--until-idle", "--lease-seconds", "0.1", "--timeout-seconds", "0",
              "--grace-seconds", "86400", "--poll-ms", "10", "--quiet"});
}

TEST(WorkerSecurityTest, FilesThatAreNotTextAreRefusedNamingFileAndLine) {
  CliSandbox sandbox;
  ASSERT_EQ(Shell("cd '" + sandbox.dir().string() +
                  "' && git init -q -b main && git -c user.name=t -c user.email=t@t commit -q "
                  "--allow-empty -m init"),
            0);
  sandbox.Ok({"init"});
  // An agent, so that the run gets as far as reading its input files.
  WriteFile(sandbox.Path(".factory/agents/writer.md"),
            "---\nname: writer\nrole: writes a note\nrunner: script\ncapabilities: [code]\n"
            "command: sh -c 'echo note > note.txt'\n---\nWrites a note.\n");
  WriteFile(sandbox.Path("backlog.yaml"),
            "tasks:\n  - id: a\n    title: \"bad \xff title\"\n    spec: x\n");
  auto backlog = sandbox.Run({"run", "--backlog", "backlog.yaml"});
  EXPECT_EQ(backlog.exit_code, 2) << backlog.err;
  EXPECT_THAT(backlog.err, HasSubstr("backlog.yaml:3: invalid UTF-8"));

  WriteFile(sandbox.Path("FEATURE.md"), std::string("# Feature\n\nDo \0 it\n", 19));
  auto feature = sandbox.Run({"run", "FEATURE.md"});
  EXPECT_EQ(feature.exit_code, 2) << feature.err;
  EXPECT_THAT(feature.err, HasSubstr("FEATURE.md:3: NUL byte"));

  WriteFile(sandbox.Path(".factory/config.yaml"), "concurrency: 2\n# \xc0\xaf\n");
  auto config = sandbox.Run({"run", "--backlog", "backlog.yaml"});
  EXPECT_NE(config.exit_code, 0);
  EXPECT_THAT(config.err, HasSubstr("config.yaml:2: invalid UTF-8"));

  // A missing config is a warning on the console, not silence.
  std::filesystem::remove(sandbox.Path(".factory/config.yaml"));
  WriteFile(sandbox.Path("backlog.yaml"), "tasks: []\n");
  auto no_config = sandbox.Run({"run", "--backlog", "backlog.yaml"});
  EXPECT_THAT(no_config.err, HasSubstr("warning: no gates"));
}

}  // namespace
}  // namespace factory::testing
