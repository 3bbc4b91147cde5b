// Filling the disk one piece at a time: the disk quota (sandbox.disk_mb) holds for a whole
// attempt, not for each of its commands. An attempt that runs many commands (a script agent,
// every run_command of the llm tool loop, its gates) and writes through the llm agent's
// write_file tool on the host must not pass the quota by keeping each piece under it, nor by
// writing to its private /tmp with a command too quick for the watcher.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "common/script_project.h"
#include "common/test_repo.h"
#include "common/test_util.h"
#include "toolloop/tools.h"
#include "toolloop/workspace_fs.h"
#include "verify/gates.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;
using testing::TempRepo;

class AttemptQuotaTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (bubblewrap() && !BubblewrapAvailable()) {
      GTEST_SKIP() << "bwrap cannot create its namespaces on this host (the rlimit variant runs)";
    }
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

  bool bubblewrap() const { return GetParam(); }

  std::unique_ptr<Sandbox> Make(int64_t disk_mb, int64_t tmp_mb = 64) const {
    SandboxConfig config;
    config.use_bubblewrap = bubblewrap();
    config.disk_mb = disk_mb;
    config.tmp_mb = tmp_mb;
    return MakeSandbox(config);
  }

  SubprocessResult Run(Sandbox& sandbox, const std::string& shell, DiskQuota* quota,
                       const std::string& worktree = "") {
    SandboxedCommand command;
    command.shell = shell;
    command.worktree = worktree.empty() ? worktree_ : worktree;
    command.timeout_ms = 60'000;
    command.disk_quota = quota;
    auto result = sandbox.Run(command);
    EXPECT_TRUE(result.has_value()) << result.error().ToString();
    return result ? *result : SubprocessResult{};
  }

  TempRepo repo_;
  std::unique_ptr<WorkspaceManager> manager_;
  std::string worktree_;
};

TEST_P(AttemptQuotaTest, CommandsEachUnderTheQuotaCannotTogetherPassIt) {
  auto sandbox = Make(16);
  const std::string write6 = "dd if=/dev/zero of=blob$N bs=1M count=6 2>/dev/null";
  // The premise: without the attempt's quota each command is measured alone and passes.
  for (int index = 1; index <= 3; ++index) {
    SubprocessResult alone =
        Run(*sandbox, "N=alone" + std::to_string(index) + "; " + write6, nullptr);
    EXPECT_FALSE(alone.quota_exceeded) << index;
  }
  for (int index = 1; index <= 3; ++index)
    fs::remove(worktree_ + "/blobalone" + std::to_string(index));

  DiskQuota quota(16);
  quota.Track(worktree_);
  SubprocessResult first = Run(*sandbox, "N=1; " + write6, &quota);
  SubprocessResult second = Run(*sandbox, "N=2; " + write6, &quota);
  EXPECT_EQ(first.exit_code, 0);
  EXPECT_FALSE(first.quota_exceeded);
  EXPECT_FALSE(second.quota_exceeded);
  EXPECT_FALSE(quota.exceeded());
  SubprocessResult third = Run(*sandbox, "N=3; " + write6 + "; sleep 30", &quota);
  EXPECT_TRUE(third.quota_exceeded);
  EXPECT_FALSE(third.timed_out);
  EXPECT_TRUE(quota.exceeded());
  EXPECT_EQ(quota.Message(), "the attempt wrote more than 16 MiB (sandbox.disk_mb)");
}

TEST_P(AttemptQuotaTest, AGateCountsWhatTheAgentLeftInItsWorktree) {
  auto sandbox = Make(16);
  DiskQuota quota(16);
  quota.Track(worktree_);
  SubprocessResult agent =
      Run(*sandbox, "dd if=/dev/zero of=agent.bin bs=1M count=10 2>/dev/null", &quota);
  EXPECT_FALSE(agent.quota_exceeded);

  // The gate runs in a checkout of its own: what it builds there adds to the attempt's total.
  TempDir checkout;
  GateConfig gate;
  gate.name = "build";
  gate.command = "dd if=/dev/zero of=out.bin bs=1M count=10 2>/dev/null";
  gate.timeout = std::chrono::seconds(60);
  GateRunOptions options;
  options.sandbox = sandbox.get();
  options.disk_quota = &quota;
  auto results = RunGates({gate}, fs::canonical(checkout.path()).string(), options);
  ASSERT_TRUE(results.has_value()) << results.error().ToString();
  ASSERT_EQ(results->size(), 1u);
  EXPECT_FALSE(results->front().passed);
  EXPECT_TRUE(results->front().quota_exceeded);
  EXPECT_THAT(GateFeedback(results->front()),
              HasSubstr("was killed: the attempt wrote more than 16 MiB (sandbox.disk_mb)"));
}

TEST_P(AttemptQuotaTest, AQuickCommandsPrivateTmpIsCountedAfterItsEnd) {
  // Far quicker than the watcher's first look: only the end-of-run check can see it, after
  // the command (and, under bwrap, its mount namespace) has gone.
  auto sandbox = Make(4);
  DiskQuota quota(4);
  SubprocessResult tmp =
      Run(*sandbox, "dd if=/dev/zero of=\"$TMPDIR/blob\" bs=1M count=8 2>/dev/null", &quota);
  EXPECT_TRUE(tmp.quota_exceeded);
  EXPECT_TRUE(quota.exceeded());

  DiskQuota home_quota(4);
  SubprocessResult home =
      Run(*sandbox, "dd if=/dev/zero of=\"$HOME/blob\" bs=1M count=8 2>/dev/null", &home_quota);
  EXPECT_TRUE(home.quota_exceeded);
}

TEST_P(AttemptQuotaTest, TheNextCommandGetsAnEmptyTmpAndWhatWasThereIsFreed) {
  auto sandbox = Make(16);
  DiskQuota quota(16);
  quota.Track(worktree_);
  for (int index = 0; index < 3; ++index) {
    SubprocessResult run = Run(*sandbox,
                               "test ! -e \"$TMPDIR/blob\" && dd if=/dev/zero of=\"$TMPDIR/blob\" "
                               "bs=1M count=10 2>/dev/null",
                               &quota);
    EXPECT_EQ(run.exit_code, 0) << index << ": " << run.stderr_tail;
    EXPECT_FALSE(run.quota_exceeded) << index;
  }
  EXPECT_FALSE(quota.exceeded());
}

TEST_P(AttemptQuotaTest, WriteFileOfTheLlmAgentIsMetered) {
  auto fs_or = toolloop::WorkspaceFs::Open(worktree_);
  ASSERT_TRUE(fs_or.has_value());
  DiskQuota quota(1);
  quota.Track(worktree_);
  toolloop::ToolEnv env;
  env.fs = &*fs_or;
  env.disk_quota = &quota;
  const std::string chunk(400 * 1024, 'x');
  auto write = [&](const std::string& path) {
    return toolloop::ExecuteTool(
        env, llm::ToolCall{"c", "write_file", json{{"path", path}, {"content", chunk}}.dump()});
  };
  EXPECT_TRUE(write("a.txt").ok);
  EXPECT_TRUE(write("b.txt").ok);
  toolloop::ToolResult refused = write("c.txt");
  EXPECT_FALSE(refused.ok);
  EXPECT_THAT(refused.output,
              HasSubstr("not written: the attempt wrote more than 1 MiB (sandbox.disk_mb)"));
  EXPECT_FALSE(fs::exists(worktree_ + "/c.txt"));
  EXPECT_TRUE(quota.exceeded());
  // edit_file goes through the same meter.
  toolloop::ToolResult edit = toolloop::ExecuteTool(
      env, llm::ToolCall{"e", "edit_file",
                         json{{"path", "a.txt"}, {"search", "xx"}, {"replace", "y"}}.dump()});
  EXPECT_FALSE(edit.ok);
}

INSTANTIATE_TEST_SUITE_P(BothSandboxes, AttemptQuotaTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Bubblewrap" : "Rlimit";
                         });

// End to end: the agent and the gate each stay under the quota, the attempt does not; it fails
// with that reason and nothing of it is merged.
TEST(AttemptQuotaRunTest, AnAttemptPastItsQuotaFailsWithThatReasonAndNothingMerges) {
  testing::CliSandbox sandbox;
  testing::InitGitRepo(sandbox.dir(), {{"README.md", "hello\n"}});
  sandbox.Ok({"init"});
  testing::ScriptProject project(sandbox.dir());
  project.RemoveExampleAgents();
  // Ignored build output stays out of the commit but is held in the worktree all the same.
  project.AddScriptAgent("filler",
                         "mkdir -p node_modules && dd if=/dev/zero of=node_modules/blob bs=1M "
                         "count=10 2>/dev/null && echo change > change.txt\n");
  testing::WriteFile(sandbox.Path(".factory/config.yaml"),
                     "concurrency: 1\nmax_attempts: 1\n"
                     "gates:\n"
                     "  - {name: build, command: 'dd if=/dev/zero of=out.bin bs=1M count=10 "
                     "2>/dev/null', timeout: 60}\n"
                     "sandbox: {disk_mb: 16, read_paths: [\"" +
                         project.ScriptsDir().string() + "\"]}\n");
  testing::WriteFile(sandbox.Path("backlog.yaml"),
                     "tasks:\n  - id: fill\n    title: Fill the disk\n    agent: filler\n");
  testing::CliResult run =
      sandbox.Run({"run", "--backlog", "backlog.yaml", "--run-id", "q1", "--json", "--plain"});
  EXPECT_EQ(run.exit_code, cli::kExitFailed) << run.err << run.out;
  EXPECT_EQ(json::parse(run.out)["failed"], 1) << run.out;
  const json shown = sandbox.Ok({"run", "show", "q1", "--json"}).Json();
  ASSERT_EQ(shown["tasks"].size(), 1u);
  EXPECT_THAT(shown["tasks"][0]["last_error"].get<std::string>(),
              HasSubstr("the attempt wrote more than 16 MiB (sandbox.disk_mb)"));
  std::string tree;
  testing::Shell("cd '" + sandbox.dir().string() + "' && git ls-tree -r --name-only factory/q1",
                 &tree);
  EXPECT_THAT(tree, Not(HasSubstr("change.txt")));
}

}  // namespace
}  // namespace factory
