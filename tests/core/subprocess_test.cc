#include "core/subprocess.h"

#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// State letter of a process from /proc, or 0 when it no longer exists.
char ProcessState(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto rparen = content.rfind(')');
  if (rparen == std::string::npos || rparen + 2 >= content.size()) return 0;
  return content[rparen + 2];
}

bool IsAlive(int pid) {
  char state = ProcessState(pid);
  return state != 0 && state != 'Z' && state != 'X';
}

// Pids of live (non-zombie) processes whose process group is `pgid`.
std::vector<int> LiveGroupMembers(int pgid) {
  std::vector<int> members;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return members;
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + entry->d_name + "/stat");
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto rparen = content.rfind(')');
    if (rparen == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    int pgrp = 0;
    if (std::sscanf(content.c_str() + rparen + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') members.push_back(std::atoi(entry->d_name));
  }
  closedir(proc);
  return members;
}

class SubprocessTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_.path().string(); }

  static SubprocessOptions Sh(const std::string& script) {
    SubprocessOptions options;
    options.argv = {"/bin/sh", "-c", script};
    return options;
  }

  testing::TempDir temp_{"factory-subprocess"};
  std::string dir_;
};

TEST_F(SubprocessTest, ReportsExitCodes) {
  auto ok = RunSubprocess(Sh("exit 0"));
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(ok->exit_code, 0);
  EXPECT_FALSE(ok->signal.has_value());
  EXPECT_FALSE(ok->timed_out);
  EXPECT_GT(ok->pid, 0);

  auto three = RunSubprocess(Sh("exit 3"));
  ASSERT_TRUE(three.has_value());
  EXPECT_EQ(three->exit_code, 3);

  // `true` found through PATH.
  SubprocessOptions path_lookup;
  path_lookup.argv = {"true"};
  auto found = RunSubprocess(path_lookup);
  ASSERT_TRUE(found.has_value()) << found.error().ToString();
  EXPECT_EQ(found->exit_code, 0);
}

TEST_F(SubprocessTest, ReportsTerminatingSignal) {
  auto result = RunSubprocess(Sh("kill -TERM $$"));
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->signal.has_value());
  EXPECT_EQ(*result->signal, SIGTERM);
  EXPECT_EQ(result->exit_code, 128 + SIGTERM);
}

TEST_F(SubprocessTest, WritesStdoutAndStderrToFilesAndTails) {
  SubprocessOptions options = Sh("printf 'out-line\\n'; printf 'err-line\\n' >&2");
  options.stdout_path = dir_ + "/stdout.log";
  options.stderr_path = dir_ + "/stderr.log";
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->stdout_tail, "out-line\n");
  EXPECT_EQ(result->stderr_tail, "err-line\n");
  EXPECT_EQ(result->stdout_bytes, 9);
  EXPECT_EQ(result->stderr_bytes, 9);
  EXPECT_EQ(ReadFile(options.stdout_path), "out-line\n");
  EXPECT_EQ(ReadFile(options.stderr_path), "err-line\n");
}

TEST_F(SubprocessTest, TailKeepsTheEndWhileTheFileKeepsEverything) {
  // 200,000 bytes of a counting sequence: the tail must be exactly the last 100 bytes.
  SubprocessOptions options = Sh("seq 1 40000");
  options.stdout_path = dir_ + "/stdout.log";
  options.tail_bytes = 100;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  std::string full = ReadFile(options.stdout_path);
  EXPECT_EQ(result->stdout_bytes, static_cast<int64_t>(full.size()));
  ASSERT_GT(full.size(), 100u);
  EXPECT_EQ(result->stdout_tail, full.substr(full.size() - 100));
  EXPECT_THAT(result->stdout_tail, HasSubstr("39999\n40000\n"));
}

TEST_F(SubprocessTest, PassesEnvironment) {
  setenv("FACTORY_SUBPROCESS_TEST_INHERITED", "inherited", 1);
  SubprocessOptions options =
      Sh("printf '%s|%s' \"$FACTORY_TEST_VAR\" \"$FACTORY_SUBPROCESS_TEST_INHERITED\"");
  options.env_set["FACTORY_TEST_VAR"] = "value with spaces";
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->stdout_tail, "value with spaces|inherited");

  options.clear_env = true;
  auto cleared = RunSubprocess(options);
  ASSERT_TRUE(cleared.has_value());
  EXPECT_EQ(cleared->stdout_tail, "value with spaces|");
  unsetenv("FACTORY_SUBPROCESS_TEST_INHERITED");
}

TEST_F(SubprocessTest, RunsInWorkingDirectory) {
  SubprocessOptions options;
  options.argv = {"pwd", "-P"};
  options.cwd = dir_;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->stdout_tail, fs::canonical(dir_).string() + "\n");
}

TEST_F(SubprocessTest, FeedsStdin) {
  std::string input;
  for (int line = 0; line < 50000; ++line) input += "line " + std::to_string(line) + "\n";
  SubprocessOptions options;
  options.argv = {"cat"};
  options.stdin_data = input;
  options.stdout_path = dir_ + "/copy";
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(ReadFile(options.stdout_path), input);

  // A child that never reads its stdin must not hang the call or raise SIGPIPE in us.
  SubprocessOptions ignoring = Sh("exit 0");
  ignoring.stdin_data = std::string(1 << 20, 'x');
  auto ignored = RunSubprocess(ignoring);
  ASSERT_TRUE(ignored.has_value());
  EXPECT_EQ(ignored->exit_code, 0);
}

TEST_F(SubprocessTest, MissingProgramIsNotFound) {
  SubprocessOptions options;
  options.argv = {"factory-no-such-program-xyz"};
  auto result = RunSubprocess(options);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(result.error().message, HasSubstr("factory-no-such-program-xyz"));

  // With a path, the failure comes back from exec through the error pipe.
  options.argv = {dir_ + "/missing-binary"};
  auto by_path = RunSubprocess(options);
  ASSERT_FALSE(by_path.has_value());
  EXPECT_EQ(by_path.error().code, ErrorCode::kNotFound);

  SubprocessOptions bad_cwd = Sh("true");
  bad_cwd.cwd = dir_ + "/no-such-dir";
  auto cwd_result = RunSubprocess(bad_cwd);
  ASSERT_FALSE(cwd_result.has_value());
  EXPECT_EQ(cwd_result.error().code, ErrorCode::kNotFound);

  SubprocessOptions empty;
  auto empty_result = RunSubprocess(empty);
  ASSERT_FALSE(empty_result.has_value());
  EXPECT_EQ(empty_result.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SubprocessTest, TimeoutKillsTheWholeGroup) {
  SubprocessOptions options;
  options.argv = {"sleep", "1000"};
  options.timeout_ms = 200;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->timed_out);
  ASSERT_TRUE(result->signal.has_value());
  EXPECT_EQ(*result->signal, SIGKILL);
  EXPECT_THAT(LiveGroupMembers(result->pid), ::testing::IsEmpty());
}

TEST_F(SubprocessTest, TimeoutKillsBackgroundedGrandchild) {
  SubprocessOptions options = Sh("sleep 1000 & echo $!; sleep 1000");
  options.timeout_ms = 300;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->timed_out);
  const int background_pid = std::atoi(result->stdout_tail.c_str());
  ASSERT_GT(background_pid, 0) << "the shell did not report its background job";
  EXPECT_FALSE(IsAlive(background_pid));
  EXPECT_THAT(LiveGroupMembers(result->pid), ::testing::IsEmpty());
}

TEST_F(SubprocessTest, LeaderExitKillsWhatItLeftBehind) {
  // The leader exits at once; its background sleep still holds stdout. The call must return
  // (not wait 1000 s for the pipe) and the sleep must be gone.
  SubprocessOptions options = Sh("sleep 1000 & echo $!");
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(result->exit_code, 0);
  const int background_pid = std::atoi(result->stdout_tail.c_str());
  ASSERT_GT(background_pid, 0);
  EXPECT_FALSE(IsAlive(background_pid));
  EXPECT_THAT(LiveGroupMembers(result->pid), ::testing::IsEmpty());
}

TEST_F(SubprocessTest, CancelSendsTermToTheGroup) {
  const std::string marker = dir_ + "/started";
  SubprocessOptions options = Sh("touch '" + marker + "'; sleep 1000");
  std::atomic<bool> cancel{false};
  options.cancel = &cancel;
  // Flip the flag once the child has demonstrably started (a condition, not a fixed delay).
  std::thread canceller([&] {
    while (!fs::exists(marker)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cancel.store(true);
  });
  auto result = RunSubprocess(options);
  canceller.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->cancelled);
  EXPECT_FALSE(result->timed_out);
  ASSERT_TRUE(result->signal.has_value());
  EXPECT_EQ(*result->signal, SIGTERM);
  EXPECT_THAT(LiveGroupMembers(result->pid), ::testing::IsEmpty());
}

TEST_F(SubprocessTest, CancelEscalatesToKillWhenTermIsIgnored) {
  // The shell ignores TERM (and so does the sleep it starts) before it announces itself.
  const std::string marker = dir_ + "/started";
  SubprocessOptions options = Sh("trap '' TERM; touch '" + marker + "'; sleep 1000");
  std::atomic<bool> cancel{false};
  options.cancel = &cancel;
  options.kill_grace_ms = 100;
  std::thread canceller([&] {
    while (!fs::exists(marker)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cancel.store(true);
  });
  auto result = RunSubprocess(options);
  canceller.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->cancelled);
  ASSERT_TRUE(result->signal.has_value());
  EXPECT_EQ(*result->signal, SIGKILL);
  EXPECT_THAT(LiveGroupMembers(result->pid), ::testing::IsEmpty());
}

TEST_F(SubprocessTest, RunsInItsOwnProcessGroup) {
  auto result = RunSubprocess(Sh("ps -o pgid= -p $$ | tr -d ' '; echo $$"));
  ASSERT_TRUE(result.has_value());
  std::istringstream lines(result->stdout_tail);
  std::string pgid, pid;
  std::getline(lines, pgid);
  std::getline(lines, pid);
  EXPECT_EQ(pgid, pid);
  EXPECT_NE(std::stoi(pgid), getpgrp());
}

TEST_F(SubprocessTest, DoesNotLeakDescriptors) {
  // A descriptor opened without O_CLOEXEC, as another thread or library might.
  int fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  int high = dup2(fd, 97);
  ASSERT_EQ(high, 97);
  close(fd);
  auto result = RunSubprocess(Sh("ls /proc/$$/fd"));
  close(high);
  ASSERT_TRUE(result.has_value());
  std::istringstream listing(result->stdout_tail);
  std::vector<std::string> fds;
  for (std::string entry; listing >> entry;) fds.push_back(entry);
  EXPECT_THAT(fds, Not(::testing::Contains("97")));
  EXPECT_THAT(fds, ::testing::Contains("0"));
}

TEST_F(SubprocessTest, AppliesResourceLimits) {
  SubprocessOptions options = Sh("head -c 100000 /dev/zero > big; echo done");
  options.cwd = dir_;
  options.limits.file_size_bytes = 4096;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value());
  EXPECT_LE(fs::file_size(dir_ + "/big"), 4096u);

  // Address space: the shell cannot hold 200 MB under a 64 MB limit.
  SubprocessOptions memory =
      Sh("v=$(head -c 200000000 /dev/zero | tr '\\0' a) && echo \"held ${#v}\"");
  memory.limits.memory_bytes = 64 << 20;
  auto memory_result = RunSubprocess(memory);
  ASSERT_TRUE(memory_result.has_value());
  EXPECT_NE(memory_result->exit_code, 0);
  EXPECT_THAT(memory_result->stdout_tail, Not(HasSubstr("held")));

  SubprocessOptions cpu = Sh("while :; do :; done");
  cpu.limits.cpu_seconds = 1;
  cpu.timeout_ms = 30000;  // a safety net only; the CPU limit must end it first
  auto cpu_result = RunSubprocess(cpu);
  ASSERT_TRUE(cpu_result.has_value());
  EXPECT_FALSE(cpu_result->timed_out);
  ASSERT_TRUE(cpu_result->signal.has_value());
  EXPECT_THAT(*cpu_result->signal, ::testing::AnyOf(SIGXCPU, SIGKILL));
}

TEST_F(SubprocessTest, ConcurrentSpawnsAreIndependent) {
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<std::string> outputs(kThreads);
  std::vector<int> codes(kThreads, -1);
  for (int index = 0; index < kThreads; ++index) {
    threads.emplace_back([&, index] {
      for (int round = 0; round < 5; ++round) {
        SubprocessOptions options;
        options.argv = {"/bin/sh", "-c", "cat; exit $0", std::to_string(index)};
        options.stdin_data = "thread " + std::to_string(index);
        auto result = RunSubprocess(options);
        if (!result.has_value()) return;
        outputs[index] = result->stdout_tail;
        codes[index] = result->exit_code;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int index = 0; index < kThreads; ++index) {
    EXPECT_EQ(outputs[index], "thread " + std::to_string(index));
    EXPECT_EQ(codes[index], index);
  }
}

TEST_F(SubprocessTest, StartReturnsARunningChildThatWaitFinishes) {
  const std::string out = dir_ + "/out.log";
  SubprocessOptions options = Sh("echo started; read line; echo \"got $line\"; exit 3");
  options.stdout_path = out;
  options.stdin_data = "input\n";
  auto child = Subprocess::Start(options);
  ASSERT_TRUE(child.has_value()) << child.error().ToString();
  EXPECT_GT(child->pid(), 0);
  EXPECT_GT(child->started_us(), 0);
  EXPECT_TRUE(fs::exists(out));  // created by Start, before the child writes
  const SubprocessResult result = child->Wait();
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.pid, child->pid());
  EXPECT_EQ(result.started_us, child->started_us());
  EXPECT_EQ(result.stdout_tail, "started\ngot input\n");
  EXPECT_EQ(ReadFile(out), "started\ngot input\n");
}

TEST_F(SubprocessTest, OutputFilesCreatedOnWaitAppearWithTheOutput) {
  const std::string out = dir_ + "/out.log";
  const std::string err = dir_ + "/err.log";
  SubprocessOptions options = Sh("read line; echo \"got $line\"");
  options.stdout_path = out;
  options.stderr_path = err;
  options.create_output_files_on_wait = true;
  options.stdin_data = "input\n";
  auto child = Subprocess::Start(options);
  ASSERT_TRUE(child.has_value()) << child.error().ToString();
  EXPECT_FALSE(fs::exists(out));  // the start made no file
  EXPECT_FALSE(fs::exists(err));
  const SubprocessResult result = child->Wait();
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.output_error, "");
  EXPECT_EQ(ReadFile(out), "got input\n");
  EXPECT_TRUE(fs::exists(err));  // a silent stream still gets its (empty) file
  EXPECT_EQ(ReadFile(err), "");
}

TEST_F(SubprocessTest, AnOutputFileThatCannotBeCreatedOnWaitIsReportedAfterTheRun) {
  const std::string out = dir_ + "/missing-folder/out.log";
  SubprocessOptions options = Sh("echo ran; echo oops >&2; exit 0");
  options.stdout_path = out;
  options.stderr_path = dir_ + "/err.log";
  options.create_output_files_on_wait = true;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result.has_value()) << result.error().ToString();  // not a start error
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_NE(result->output_error.find("cannot open output file " + out), std::string::npos)
      << result->output_error;
  EXPECT_EQ(result->stdout_tail, "ran\n");  // the output is still in the tail
  EXPECT_EQ(ReadFile(dir_ + "/err.log"), "oops\n");
  // Without the option the same file is a start error.
  options.create_output_files_on_wait = false;
  auto refused = RunSubprocess(options);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(SubprocessTest, StartReportsWhatRunSubprocessReports) {
  SubprocessOptions options;
  options.argv = {"/nonexistent/program"};
  auto child = Subprocess::Start(options);
  ASSERT_FALSE(child.has_value());
  EXPECT_EQ(child.error().code, ErrorCode::kNotFound);
  options.argv = {};
  EXPECT_EQ(Subprocess::Start(options).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SubprocessTest, AStartedChildNeverWaitedForIsKilledWithItsGroup) {
  const std::string pid_file = dir_ + "/grandchild.pid";
  int leader = 0;
  int grandchild = 0;
  {
    auto child = Subprocess::Start(Sh("sleep 1000 & echo $! > " + pid_file + "; sleep 1000"));
    ASSERT_TRUE(child.has_value()) << child.error().ToString();
    leader = child->pid();
    for (int tries = 0; tries < 500 && ReadFile(pid_file).empty(); ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    grandchild = std::atoi(ReadFile(pid_file).c_str());
    ASSERT_GT(grandchild, 0);
    EXPECT_TRUE(IsAlive(leader));
    EXPECT_TRUE(IsAlive(grandchild));
  }                                    // destroyed without Wait
  EXPECT_EQ(ProcessState(leader), 0);  // killed and reaped
  for (int tries = 0; tries < 200 && IsAlive(grandchild); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(IsAlive(grandchild));
  // The shell's foreground sleep got the same SIGKILL; it may still be exiting (not yet a
  // zombie) when the leader has been reaped.
  for (int tries = 0; tries < 200 && !LiveGroupMembers(leader).empty(); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(LiveGroupMembers(leader).empty());
}

// FDSize in /proc/self/status: how many descriptors the process's table holds now.
int DescriptorTableSize() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("FDSize:", 0) == 0) return std::atoi(line.c_str() + 7);
  }
  return 0;
}

TEST(ReserveDescriptorsTest, RaisesTheSoftLimitAndGrowsTheTableNow) {
  struct rlimit original {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  if (original.rlim_max != RLIM_INFINITY && original.rlim_max < 3000) {
    GTEST_SKIP() << "hard open-file limit " << original.rlim_max
                 << " is below the 3000 descriptors this test reserves";
  }
  struct rlimit lowered = original;
  lowered.rlim_cur = 256;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  const int table_before = DescriptorTableSize();
  ASSERT_LT(table_before, 2500) << "the test needs a table smaller than what it reserves";

  EXPECT_EQ(ReserveDescriptors(2500), 2500);
  struct rlimit now {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_GE(now.rlim_cur, 2500u);
  EXPECT_GE(DescriptorTableSize(), 2500);
  EXPECT_EQ(fcntl(2499, F_GETFD), -1);  // the slot used to grow the table is free again

  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
}

TEST(ReserveDescriptorsTest, StopsAtTheHardLimit) {
  struct rlimit original {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  if (original.rlim_max == RLIM_INFINITY || original.rlim_max > 65536) {
    GTEST_SKIP() << "hard open-file limit is unlimited or above 65536: too many descriptors "
                    "to fill in a test";
  }
  const int hard = static_cast<int>(original.rlim_max);
  EXPECT_EQ(ReserveDescriptors(hard + 100), hard);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
}

}  // namespace
}  // namespace factory
