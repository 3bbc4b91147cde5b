#include "workspace/sandbox.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/processes.h"
#include "common/test_repo.h"
#include "workspace/worktree.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::LiveProcessesWith;
using testing::ReadFileBytes;
using testing::TempRepo;
using testing::UniqueMarker;
using testing::WriteFileBytes;

// A loopback TCP listener on an ephemeral port that counts accepted connections.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t length = sizeof(address);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }
  // Connections waiting in the backlog right now (non-blocking accept).
  int AcceptPending() {
    int accepted = 0;
    pollfd entry{fd_, POLLIN, 0};
    while (poll(&entry, 1, 0) > 0) {
      int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) break;
      close(client);
      ++accepted;
    }
    return accepted;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkspaceOptions options;
    options.repo_path = repo_.root();
    auto manager = WorkspaceManager::Open(options);
    ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
    manager_ = std::move(*manager);
    ASSERT_TRUE(manager_->EnsureIntegrationBranch("r1").has_value());
    auto attempt = manager_->CreateAttempt("r1", "t1", 1);
    ASSERT_TRUE(attempt.has_value()) << attempt.error().ToString();
    worktree_ = attempt->path;
  }

  SandboxedCommand Shell(const std::string& script) const {
    SandboxedCommand command;
    command.shell = script;
    command.worktree = worktree_;
    command.timeout_ms = 30'000;  // a safety net; tests that time out set their own
    return command;
  }

  static std::unique_ptr<Sandbox> Bubblewrap() {
    auto sandbox = MakeSandbox({});
    return sandbox->name() == "bubblewrap" ? std::move(sandbox) : nullptr;
  }

  TempRepo repo_;
  std::unique_ptr<WorkspaceManager> manager_;
  std::string worktree_;
};

// Only bubblewrap isolates the file system and the network: without it there is nothing to
// check (the rlimit sandbox's own tests still run).
#define REQUIRE_BWRAP(sandbox)                                                      \
  auto sandbox = Bubblewrap();                                                      \
  if (sandbox == nullptr)                                                           \
  GTEST_SKIP() << "bwrap is missing or cannot create its namespaces on this host: " \
                  "the isolation this test checks exists only under bubblewrap"

TEST_F(SandboxTest, PicksBubblewrapWhenUsableAndRlimitWhenDisabled) {
  auto sandbox = MakeSandbox({});
  EXPECT_EQ(sandbox->name(), BubblewrapAvailable() ? "bubblewrap" : "rlimit");
  SandboxConfig config;
  config.use_bubblewrap = false;
  EXPECT_EQ(MakeSandbox(config)->name(), "rlimit");
}

TEST_F(SandboxTest, CannotWriteOutsideTheWorktree) {
  REQUIRE_BWRAP(sandbox);
  const std::string marker = UniqueMarker("outside");
  const char* home_env = std::getenv("HOME");
  const std::string home = home_env != nullptr ? home_env : "/root";
  const std::vector<std::string> outside = {
      "/work/" + marker,                 // elsewhere on the machine
      repo_.root() + "/" + marker,       // the repository root next to the worktree
      repo_.root() + "/.git/" + marker,  // the repository's git directory
      home + "/" + marker,               // $HOME
  };
  for (const auto& path : outside) {
    auto result = sandbox->Run(Shell("touch '" + path + "'"));
    ASSERT_TRUE(result.has_value()) << result.error().ToString();
    // A path below /tmp (this test's repository) lies in the sandbox's private /tmp, where the
    // write may succeed and vanish with it; elsewhere there is no writable place at all.
    if (path.rfind("/tmp/", 0) != 0) {
      EXPECT_NE(result->exit_code, 0) << path;
    }
    EXPECT_FALSE(fs::exists(path)) << path;
    std::error_code ignored;
    fs::remove(path, ignored);
  }

  // Inside the worktree it can write; /tmp is private and vanishes with the sandbox.
  auto inside = sandbox->Run(
      Shell("echo made > inside.txt && echo tmp > /tmp/" + marker + " && cat /tmp/" + marker));
  ASSERT_TRUE(inside.has_value());
  EXPECT_EQ(inside->exit_code, 0) << inside->stderr_tail;
  EXPECT_EQ(inside->stdout_tail, "tmp\n");
  EXPECT_EQ(ReadFileBytes(worktree_ + "/inside.txt"), "made\n");
  EXPECT_FALSE(fs::exists("/tmp/" + marker));
}

TEST_F(SandboxTest, ExtraWritablePathsAreWritable) {
  REQUIRE_BWRAP(sandbox);
  testing::TempDir extra_dir("factory-sandbox-extra");
  const std::string extra = extra_dir.path().string();
  SandboxedCommand command = Shell("echo cache > '" + extra + "/cache.txt'");
  command.writable_paths = {extra};
  auto result = sandbox->Run(command);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->exit_code, 0) << result->stderr_tail;
  EXPECT_EQ(ReadFileBytes(extra + "/cache.txt"), "cache\n");
}

TEST_F(SandboxTest, GitWorksReadOnlyInsideTheWorktree) {
  REQUIRE_BWRAP(sandbox);
  WriteFileBytes(worktree_ + "/change.txt", "x\n");
  SandboxedCommand command;
  command.argv = {"git", "status", "--porcelain"};
  command.worktree = worktree_;
  command.timeout_ms = 30'000;
  auto result = sandbox->Run(command);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->exit_code, 0) << result->stderr_tail;
  EXPECT_THAT(result->stdout_tail, HasSubstr("?? change.txt"));
}

TEST_F(SandboxTest, NoNetworkUnlessAllowed) {
  REQUIRE_BWRAP(sandbox);
  Listener listener;
  const std::string connect =
      "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(listener.port()) + " && echo connected";
  SandboxedCommand offline;
  offline.argv = {"bash", "-c", connect};
  offline.worktree = worktree_;
  offline.timeout_ms = 30'000;
  auto blocked = sandbox->Run(offline);
  ASSERT_TRUE(blocked.has_value()) << blocked.error().ToString();
  EXPECT_NE(blocked->exit_code, 0);
  EXPECT_EQ(blocked->stdout_tail, "");
  EXPECT_EQ(listener.AcceptPending(), 0);

  SandboxedCommand online = offline;
  online.network = true;
  auto allowed = sandbox->Run(online);
  ASSERT_TRUE(allowed.has_value());
  EXPECT_EQ(allowed->exit_code, 0) << allowed->stderr_tail;
  EXPECT_EQ(allowed->stdout_tail, "connected\n");
  EXPECT_EQ(listener.AcceptPending(), 1);
}

void ExpectSleepIsKilled(Sandbox& sandbox, const std::string& worktree) {
  // A unique duration makes the sleep findable in /proc afterwards.
  const std::string duration = "1000." + std::to_string(getpid() % 100000);
  SandboxedCommand command;
  command.argv = {"sleep", duration};
  command.worktree = worktree;
  command.timeout_ms = 1000;
  auto result = sandbox.Run(command);
  ASSERT_TRUE(result.has_value()) << result.error().ToString();
  EXPECT_TRUE(result->timed_out);
  EXPECT_NE(result->exit_code, 0);
  EXPECT_THAT(LiveProcessesWith("sleep " + duration), ::testing::IsEmpty());
}

TEST_F(SandboxTest, SleepIsKilledAtTheTimeoutBubblewrap) {
  REQUIRE_BWRAP(sandbox);
  ExpectSleepIsKilled(*sandbox, worktree_);
}

TEST_F(SandboxTest, SleepIsKilledAtTheTimeoutRlimit) {
  SandboxConfig config;
  config.use_bubblewrap = false;
  auto sandbox = MakeSandbox(config);
  ExpectSleepIsKilled(*sandbox, worktree_);
}

// One watcher thread serves every running command: with several commands at once, the one
// writing past the quota is stopped for that reason, one whose caller cancels is cancelled,
// and the others end on their own, untouched.
void ExpectConcurrentCommandsWatchedApart(Sandbox& sandbox, WorkspaceManager& manager, int count) {
  std::vector<std::string> worktrees;
  for (int index = 0; index < count + 2; ++index) {
    auto attempt = manager.CreateAttempt("r1", "c" + std::to_string(index), 1);
    ASSERT_TRUE(attempt.has_value()) << attempt.error().ToString();
    worktrees.push_back(attempt->path);
  }
  std::atomic<bool> cancel{true};  // set from the start: forwarded at the watcher's first look
  std::vector<std::optional<Result<SubprocessResult>>> results(worktrees.size());
  std::vector<std::thread> threads;
  for (size_t index = 0; index < worktrees.size(); ++index) {
    threads.emplace_back([&, index] {
      SandboxedCommand command;
      command.worktree = worktrees[index];
      command.timeout_ms = 60'000;
      if (index == 0) {  // past the 8 MiB quota, slowly: only the watcher can stop it
        command.shell =
            "for i in $(seq 1 300); do dd if=/dev/zero of=blob$i bs=1M count=1 2>/dev/null; "
            "sleep 0.1; done; echo finished";
      } else if (index == 1) {  // cancelled by its caller
        command.shell = "sleep 30; echo finished";
        command.cancel = &cancel;
      } else {  // well within the quota, long enough to overlap the others' measurements
        command.shell = "dd if=/dev/zero of=small bs=1M count=1 2>/dev/null; sleep 1; echo ok";
      }
      results[index] = sandbox.Run(command);
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t index = 0; index < results.size(); ++index) {
    ASSERT_TRUE(results[index].has_value()) << index;
    ASSERT_TRUE(results[index]->has_value()) << index << ": " << results[index]->error().ToString();
    const SubprocessResult& result = **results[index];
    EXPECT_FALSE(result.timed_out) << index;
    EXPECT_THAT(result.stdout_tail, ::testing::Not(HasSubstr("finished"))) << index;
    if (index == 0) {
      EXPECT_TRUE(result.quota_exceeded);
      EXPECT_FALSE(result.cancelled);
      EXPECT_FALSE(fs::exists(worktrees[index] + "/blob300"));
    } else if (index == 1) {
      EXPECT_TRUE(result.cancelled);
      EXPECT_FALSE(result.quota_exceeded);
    } else {
      EXPECT_EQ(result.exit_code, 0) << index << ": " << result.stderr_tail;
      EXPECT_EQ(result.stdout_tail, "ok\n") << index;
      EXPECT_FALSE(result.quota_exceeded) << index;
      EXPECT_FALSE(result.cancelled) << index;
    }
  }
}

class SandboxConcurrencyTest : public SandboxTest,
                               public ::testing::WithParamInterface<std::tuple<bool, int>> {};

TEST_P(SandboxConcurrencyTest, EachCommandIsWatchedApart) {
  const auto [bubblewrap, others] = GetParam();
  SandboxConfig config;
  config.use_bubblewrap = bubblewrap;
  config.disk_mb = 8;
  auto sandbox = MakeSandbox(config);
  if (bubblewrap) {
    ASSERT_EQ(sandbox->name(), "bubblewrap") << "bwrap is not usable here";
  }
  ExpectConcurrentCommandsWatchedApart(*sandbox, *manager_, others);
}

INSTANTIATE_TEST_SUITE_P(Commands, SandboxConcurrencyTest,
                         ::testing::Combine(::testing::Values(true, false),
                                            ::testing::Values(1, 2, 8)),
                         [](const ::testing::TestParamInfo<std::tuple<bool, int>>& info) {
                           return std::string(std::get<0>(info.param) ? "Bubblewrap" : "Rlimit") +
                                  "With" + std::to_string(std::get<1>(info.param)) + "Others";
                         });

TEST_F(SandboxTest, OutputBeyondTheCapKeepsTheTail) {
  auto sandbox = MakeSandbox({});
  SandboxedCommand command = Shell("seq 1 100000");
  command.tail_bytes = 64;
  command.stdout_path = repo_.root() + "/.factory/stdout.log";
  auto result = sandbox->Run(command);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(result->stdout_tail.size(), 64u);
  EXPECT_THAT(result->stdout_tail, ::testing::EndsWith("99999\n100000\n"));
  EXPECT_GT(result->stdout_bytes, 500000);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(command.stdout_path)), result->stdout_bytes);
}

TEST_F(SandboxTest, PassesEnvironmentAndRunsInTheWorktree) {
  auto sandbox = MakeSandbox({});
  SandboxedCommand command = Shell("printf '%s %s' \"$FACTORY_TASK_ID\" \"$(pwd -P)\"");
  command.env["FACTORY_TASK_ID"] = "t1";
  auto result = sandbox->Run(command);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->stdout_tail, "t1 " + fs::canonical(worktree_).string());
}

TEST(CleanEnvironmentTest, KeepsOnlyTheBasicsAndTheNamedVariables) {
  ::setenv("SANDBOX_UNIT_KEY", "sk-unit", 1);
  ::setenv("SANDBOX_UNIT_NAMED", "named", 1);
  ::setenv("LC_SANDBOX_UNIT", "C.UTF-8", 1);
  auto env = CleanEnvironment({"SANDBOX_UNIT_NAMED", "SANDBOX_UNIT_ABSENT"},
                              {{"FACTORY_TASK_ID", "t1"}, {"SANDBOX_UNIT_NAMED", "set wins"}});
  ::unsetenv("SANDBOX_UNIT_KEY");
  ::unsetenv("SANDBOX_UNIT_NAMED");
  ::unsetenv("LC_SANDBOX_UNIT");
  EXPECT_EQ(env.count("SANDBOX_UNIT_KEY"), 0u);
  EXPECT_EQ(env.count("SANDBOX_UNIT_ABSENT"), 0u);
  EXPECT_EQ(env.count("HOME"), 0u);  // the sandbox sets its own
  EXPECT_EQ(env["SANDBOX_UNIT_NAMED"], "set wins");
  EXPECT_EQ(env["LC_SANDBOX_UNIT"], "C.UTF-8");
  EXPECT_EQ(env["FACTORY_TASK_ID"], "t1");
  EXPECT_FALSE(env["PATH"].empty());
}

TEST(SecretEtcPathsTest, MasksShadowAndEveryFileOthersCannotRead) {
  const auto& paths = SecretEtcPaths();
  if (fs::exists("/etc/shadow")) {
    EXPECT_THAT(paths, ::testing::Contains("/etc/shadow"));
  }
  for (const auto& path : paths) {
    EXPECT_EQ(path.rfind("/etc/", 0), 0u) << path;
    // Never one below another: the inner bind would have no mount point.
    for (const auto& other : paths) {
      EXPECT_FALSE(other != path && other.rfind(path + "/", 0) == 0) << other << " in " << path;
    }
  }
}

TEST_F(SandboxTest, BadCommandsAreErrors) {
  auto sandbox = MakeSandbox({});
  SandboxedCommand missing;
  missing.argv = {"factory-no-such-program"};
  missing.worktree = worktree_;
  auto not_found = sandbox->Run(missing);
  ASSERT_FALSE(not_found.has_value());
  EXPECT_EQ(not_found.error().code, ErrorCode::kNotFound);

  SandboxedCommand both = Shell("true");
  both.argv = {"true"};
  auto invalid = sandbox->Run(both);
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code, ErrorCode::kInvalidArgument);

  SandboxedCommand no_tree = Shell("true");
  no_tree.worktree = worktree_ + "/does-not-exist";
  auto no_worktree = sandbox->Run(no_tree);
  ASSERT_FALSE(no_worktree.has_value());
  EXPECT_EQ(no_worktree.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace factory
