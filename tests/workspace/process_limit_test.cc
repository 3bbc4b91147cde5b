// A fork bomb in the sandbox is contained (forks fail at the process limit) and killed with its
// group. The limit binds root only through a pids cgroup (RLIMIT_NPROC does not apply to root),
// so as root without a usable pids cgroup these tests fail: ctest labels them `cgroup`
// (`ctest -LE cgroup` leaves them out on such a host; tests/README.md).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "common/processes.h"
#include "common/test_repo.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory {
namespace {

using ::testing::HasSubstr;
using testing::LiveProcessesWith;
using testing::TempRepo;
using testing::UniqueMarker;

class ProcessLimitTest : public ::testing::Test {
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

  void ExpectForkBombContained(Sandbox& sandbox) {
    ASSERT_TRUE(sandbox.EnforcesProcessLimit())
        << "the " << sandbox.name() << " sandbox cannot limit processes here: running as root "
        << "(uid " << geteuid() << ") without a pids cgroup it can create (cgroup v1 `pids` "
        << "hierarchy or v2 with the pids controller, writable); `ctest -LE cgroup` leaves "
        << "these tests out";
    const std::string marker = UniqueMarker("bomb");
    SandboxedCommand command;
    // $0 carries the marker; every forked copy of the shell keeps that command line. The leader
    // sleeps instead of `wait`ing: `wait` returned as soon as its direct children had forked
    // and exited, sometimes before the bomb reached the limit. A second gives the bomb time to
    // hit the limit; then the group is killed (or the sleep's own fork fails and the leader is
    // killed at the timeout).
    command.argv = {"bash", "-c", ":(){ :|:& };:; sleep 1", marker};
    command.worktree = worktree_;
    command.limits.max_processes = 64;
    command.timeout_ms = 2000;
    auto result = sandbox.Run(command);
    ASSERT_TRUE(result.has_value()) << result.error().ToString();
    // The shell either gives up once its forks keep failing or is killed at the timeout; both
    // are fine. What matters: the limit bit: forks failed instead of filling the machine's
    // process table.
    EXPECT_THAT(result->stderr_tail, HasSubstr("fork"));
    EXPECT_THAT(LiveProcessesWith(marker), ::testing::IsEmpty());
  }

  TempRepo repo_;
  std::unique_ptr<WorkspaceManager> manager_;
  std::string worktree_;
};

TEST_F(ProcessLimitTest, ForkBombIsContainedAndKilledBubblewrap) {
  auto sandbox = MakeSandbox({});
  if (sandbox->name() != "bubblewrap") {
    GTEST_SKIP() << "bwrap is missing or cannot create its namespaces on this host: the "
                    "bubblewrap variant cannot run (the rlimit variant below still does)";
  }
  ExpectForkBombContained(*sandbox);
}

TEST_F(ProcessLimitTest, ForkBombIsContainedAndKilledRlimit) {
  SandboxConfig config;
  config.use_bubblewrap = false;
  auto sandbox = MakeSandbox(config);
  ExpectForkBombContained(*sandbox);
}

}  // namespace
}  // namespace factory
