// Containment of agents, gates and worker commands, tried as an attacker would: a command must
// not see the factory's provider keys unless its agent (or config.yaml) names them, must not
// read the host outside its repository's git data or write outside its worktree, and must not
// fill the disk through /tmp or its worktree.

#include "workspace/sandbox.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"
#include "common/test_repo.h"
#include "common/test_util.h"
#include "runners/runner.h"
#include "verify/gates.h"
#include "workspace/worktree.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::TempRepo;
using testing::WriteFileBytes;

constexpr char kProviderKey[] = "sk-sandbox-test-provider-key-7f3a9c";
constexpr char kSecret[] = "the-secret-outside-the-repository-41d7";

// Sets a variable of this process for the test's lifetime, restoring what was there.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str()); old != nullptr) old_ = old;
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

class SandboxSecurityTest : public ::testing::Test {
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
    secret_file_ = secrets_ / "secret.txt";
    WriteFileBytes(secret_file_, std::string(kSecret) + "\n");
  }

  static std::unique_ptr<Sandbox> Make(bool bubblewrap, SandboxConfig config = {}) {
    config.use_bubblewrap = bubblewrap;
    return MakeSandbox(config);
  }

  // Runs a script agent with `command` in the attempt's worktree.
  RunnerOutcome RunScriptAgent(Sandbox& sandbox, const std::string& command,
                               std::vector<std::string> env_names = {}) {
    AgentSpec agent;
    agent.name = "attacker";
    agent.role = "tries to escape";
    agent.runner = RunnerKind::kScript;
    agent.command = command;
    agent.env = std::move(env_names);
    auto runner = MakeRunner(agent);
    EXPECT_TRUE(runner.has_value()) << runner.error().ToString();
    if (!runner) return {};
    RunnerContext context;
    context.input.run_id = "r1";
    context.input.task_id = "t1";
    context.worktree = worktree_;
    context.attempt_dir = attempt_dir_.path().string();
    context.sandbox = &sandbox;
    context.timeout_ms = 60'000;
    auto outcome = (*runner)->Run(context);
    EXPECT_TRUE(outcome.has_value()) << outcome.error().ToString();
    return outcome ? *outcome : RunnerOutcome{};
  }

  // Runs one gate with `command` on the attempt's worktree.
  GateResult RunGate(Sandbox& sandbox, const std::string& command) {
    GateConfig gate;
    gate.name = "probe";
    gate.command = command;
    gate.timeout = std::chrono::seconds(60);
    GateRunOptions options;
    options.sandbox = &sandbox;
    auto results = RunGates({gate}, worktree_, options);
    EXPECT_TRUE(results.has_value()) << results.error().ToString();
    if (!results || results->empty()) return {};
    return results->front();
  }

  TempRepo repo_;
  std::unique_ptr<WorkspaceManager> manager_;
  std::string worktree_;
  TempDir attempt_dir_;
  TempDir secrets_;
  std::string secret_file_;
};

#define REQUIRE_BWRAP()                                                                  \
  if (!BubblewrapAvailable())                                                            \
  GTEST_SKIP() << "bwrap cannot create its namespaces on this host: the file system "    \
                  "isolation under test does not exist here (the rlimit fallback's own " \
                  "tests still run)"

// --- the environment ------------------------------------------------------------------------

class EnvironmentTest : public SandboxSecurityTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool bubblewrap() const { return GetParam(); }
  void SetUp() override {
    if (bubblewrap() && !BubblewrapAvailable()) {
      GTEST_SKIP() << "bwrap cannot create its namespaces on this host: the bubblewrap "
                      "variant has nothing to check (the rlimit variant still runs)";
    }
    SandboxSecurityTest::SetUp();
  }
  ScopedEnv key_{"OPENAI_API_KEY", kProviderKey};
};

TEST_P(EnvironmentTest, ScriptAgentSeesNoProviderKeyUnlessItsFileNamesIt) {
  auto sandbox = Make(bubblewrap());
  const std::string probe = "echo \"key=$OPENAI_API_KEY\"; env";
  RunnerOutcome hidden = RunScriptAgent(*sandbox, probe);
  EXPECT_TRUE(hidden.success) << hidden.error;
  EXPECT_THAT(hidden.output_tail, HasSubstr("key=\n"));
  EXPECT_THAT(hidden.output_tail, Not(HasSubstr(kProviderKey)));
  // What does pass: the factory's own variables and the basics.
  EXPECT_THAT(hidden.output_tail, HasSubstr("FACTORY_TASK_ID=t1"));
  EXPECT_THAT(hidden.output_tail, HasSubstr("PATH="));

  RunnerOutcome named = RunScriptAgent(*sandbox, probe, {"OPENAI_API_KEY"});
  EXPECT_TRUE(named.success) << named.error;
  EXPECT_THAT(named.output_tail, HasSubstr(std::string("key=") + kProviderKey));
}

TEST_P(EnvironmentTest, HomeIsPrivateAndEmpty) {
  auto sandbox = Make(bubblewrap());
  const char* host_home = std::getenv("HOME");
  RunnerOutcome outcome =
      RunScriptAgent(*sandbox,
                     "echo \"home=$HOME\"; echo \"entries=$(ls -A \"$HOME\" | wc -l)\"; "
                     "touch \"$HOME/.written\" && echo writable");
  EXPECT_TRUE(outcome.success) << outcome.error;
  EXPECT_THAT(outcome.output_tail, HasSubstr("entries=0\n"));
  EXPECT_THAT(outcome.output_tail, HasSubstr("writable\n"));
  if (host_home != nullptr) {
    EXPECT_THAT(outcome.output_tail, Not(HasSubstr("home=" + std::string(host_home) + "\n")));
  }
}

TEST_P(EnvironmentTest, GateSeesNoProviderKeyUnlessConfigNamesIt) {
  auto sandbox = Make(bubblewrap());
  const std::string probe = "echo \"key=$OPENAI_API_KEY\"";
  GateResult hidden = RunGate(*sandbox, probe);
  EXPECT_TRUE(hidden.passed) << hidden.output_tail;
  EXPECT_EQ(hidden.output_tail, "key=\n");

  SandboxConfig config;
  config.env = {"OPENAI_API_KEY"};
  auto named_sandbox = Make(bubblewrap(), config);
  GateResult named = RunGate(*named_sandbox, probe);
  EXPECT_EQ(named.output_tail, std::string("key=") + kProviderKey + "\n");
}

INSTANTIATE_TEST_SUITE_P(BothSandboxes, EnvironmentTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Bubblewrap" : "Rlimit";
                         });

TEST(WorkerCommandSecurityTest, WorkerCommandSeesNoProviderKeyUnlessConfigNamesIt) {
  testing::CliSandbox cli;
  cli.Ok({"init"});
  WriteFileBytes((cli.dir() / ".factory" / "config.yaml").string(),
                 "sandbox:\n  env: [SANDBOX_TEST_NAMED]\n");
  const std::string hidden =
      cli.AddTask({"--title", "hidden", "--max-attempts", "1", "--command",
                   "echo \"key=$OPENAI_API_KEY\"; test -z \"$OPENAI_API_KEY\""});
  const std::string named =
      cli.AddTask({"--title", "named", "--max-attempts", "1", "--command",
                   "test \"$SANDBOX_TEST_NAMED\" = visible && echo \"named=$SANDBOX_TEST_NAMED\""});
  testing::SpawnOptions options;
  options.env = {{"OPENAI_API_KEY", kProviderKey}, {"SANDBOX_TEST_NAMED", "visible"}};
  auto worker = cli.Run({"worker", "--until-idle", "--poll-ms", "50", "--quiet"}, options);
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  auto hidden_task = cli.Show(hidden);
  EXPECT_EQ(hidden_task["state"], "done") << hidden_task.dump(2);
  EXPECT_THAT(hidden_task.dump(), Not(HasSubstr(kProviderKey)));
  EXPECT_EQ(cli.Show(named)["state"], "done") << cli.Show(named).dump(2);
}

// --- the file system ------------------------------------------------------------------------

TEST_F(SandboxSecurityTest, AgentCannotReadOutsideItsRepository) {
  REQUIRE_BWRAP();
  auto sandbox = Make(true);
  const std::string shadow = ReadFileBytes("/etc/shadow");
  ASSERT_THAT(shadow, HasSubstr("root:")) << "the host has no /etc/shadow to protect";
  RunnerOutcome outcome = RunScriptAgent(
      *sandbox, "cat '" + secret_file_ + "'; cat /etc/shadow; cat /etc/gshadow; test -e '" +
                    secret_file_ + "' || echo secret-absent; cat '" + repo_.root() +
                    "/README.md'; echo done");
  EXPECT_THAT(outcome.output_tail, HasSubstr("done"));
  EXPECT_THAT(outcome.output_tail, Not(HasSubstr(kSecret)));
  EXPECT_THAT(outcome.output_tail, Not(HasSubstr("root:")));
  EXPECT_THAT(outcome.output_tail, HasSubstr("secret-absent"));
  // The main checkout's files are not there either (its worktree's copy is).
  EXPECT_THAT(outcome.output_tail, Not(HasSubstr("line two")));

  GateResult gate = RunGate(*sandbox, "cat '" + secret_file_ + "' /etc/shadow; echo done");
  EXPECT_THAT(gate.output_tail, HasSubstr("done"));
  EXPECT_THAT(gate.output_tail, Not(HasSubstr(kSecret)));
  EXPECT_THAT(gate.output_tail, Not(HasSubstr("root:")));
}

TEST_F(SandboxSecurityTest, SystemDirectoriesAndGitStillWork) {
  REQUIRE_BWRAP();
  auto sandbox = Make(true);
  WriteFileBytes(worktree_ + "/change.txt", "x\n");
  RunnerOutcome outcome =
      RunScriptAgent(*sandbox,
                     "git status --porcelain && git log --oneline -1 && cat README.md && "
                     "getent passwd root >/dev/null && echo system-ok");
  EXPECT_TRUE(outcome.success) << outcome.error;
  EXPECT_THAT(outcome.output_tail, HasSubstr("?? change.txt"));
  EXPECT_THAT(outcome.output_tail, HasSubstr("initial"));
  EXPECT_THAT(outcome.output_tail, HasSubstr("line two"));
  EXPECT_THAT(outcome.output_tail, HasSubstr("system-ok"));
}

TEST_F(SandboxSecurityTest, AgentCannotWriteIntoTheMainCheckout) {
  REQUIRE_BWRAP();
  auto sandbox = Make(true);
  const std::string readme = ReadFileBytes(repo_.root() + "/README.md");
  const std::string git_config = ReadFileBytes(repo_.root() + "/.git/config");
  RunnerOutcome outcome = RunScriptAgent(
      *sandbox, "echo owned > '" + repo_.root() + "/README.md'; touch '" + repo_.root() +
                    "/planted'; echo '[core]' >> '" + repo_.root() + "/.git/config'; echo done");
  EXPECT_THAT(outcome.output_tail, HasSubstr("done"));
  EXPECT_EQ(ReadFileBytes(repo_.root() + "/README.md"), readme);
  EXPECT_FALSE(fs::exists(repo_.root() + "/planted"));
  EXPECT_EQ(ReadFileBytes(repo_.root() + "/.git/config"), git_config);
}

TEST_F(SandboxSecurityTest, RewrittenGitFileDoesNotBindAHostDirectory) {
  REQUIRE_BWRAP();
  auto sandbox = Make(true);
  // A fake "repository" around the secret, with an admin dir that does not point back at this
  // worktree: following the agent's `.git` file would bind it into the next command.
  const std::string fake = secrets_.path().string();
  fs::create_directories(fake + "/objects");
  fs::create_directories(fake + "/worktrees/x");
  WriteFileBytes(fake + "/worktrees/x/gitdir", "/elsewhere/.git\n");
  WriteFileBytes(fake + "/objects/stolen.txt", std::string(kSecret) + "\n");
  WriteFileBytes(worktree_ + "/.git", "gitdir: " + fake + "/worktrees/x\n");
  RunnerOutcome outcome =
      RunScriptAgent(*sandbox, "cat '" + fake + "/objects/stolen.txt'; echo done");
  EXPECT_THAT(outcome.output_tail, HasSubstr("done"));
  EXPECT_THAT(outcome.output_tail, Not(HasSubstr(kSecret)));
}

TEST_F(SandboxSecurityTest, ReadPathsMakeAPathReadable) {
  REQUIRE_BWRAP();
  SandboxConfig config;
  config.read_paths = {secrets_.path().string(), "/nonexistent/toolchain"};
  auto sandbox = Make(true, config);
  RunnerOutcome outcome =
      RunScriptAgent(*sandbox, "cat '" + secret_file_ + "' && (echo x > '" +
                                   secrets_.path().string() + "/new' || echo read-only)");
  EXPECT_TRUE(outcome.success) << outcome.error;
  EXPECT_THAT(outcome.output_tail, HasSubstr(kSecret));
  EXPECT_THAT(outcome.output_tail, HasSubstr("read-only"));
  EXPECT_FALSE(fs::exists(secrets_.path() / "new"));
}

// --- disk ------------------------------------------------------------------------------------

TEST_F(SandboxSecurityTest, TmpWritesPastTheCapFail) {
  REQUIRE_BWRAP();
  SandboxConfig config;
  config.tmp_mb = 8;
  config.disk_mb = 0;  // the tmpfs cap alone
  auto sandbox = Make(true, config);
  RunnerOutcome outcome = RunScriptAgent(
      *sandbox,
      "dd if=/dev/zero of=/tmp/a bs=1M count=6 2>/dev/null && echo first-fits; "
      "dd if=/dev/zero of=/tmp/b bs=1M count=6 2>/dev/null || echo second-refused; "
      "dd if=/dev/zero of=\"$HOME/c\" bs=1M count=4 2>/dev/null || echo home-refused");
  EXPECT_THAT(outcome.output_tail, HasSubstr("first-fits"));
  EXPECT_THAT(outcome.output_tail, HasSubstr("second-refused"));
  EXPECT_THAT(outcome.output_tail, HasSubstr("home-refused"));
}

class DiskQuotaTest : public EnvironmentTest {};

TEST_P(DiskQuotaTest, WritingPastDiskMbEndsTheAgentWithThatReason) {
  SandboxConfig config;
  config.disk_mb = 16;
  auto sandbox = Make(bubblewrap(), config);
  // 200 MiB at most, slowly: the quota must stop it long before the end.
  RunnerOutcome outcome = RunScriptAgent(
      *sandbox,
      "for i in $(seq 1 200); do dd if=/dev/zero of=blob$i bs=1M count=1 2>/dev/null; "
      "sleep 0.1; done; echo finished");
  EXPECT_FALSE(outcome.success);
  EXPECT_FALSE(outcome.timed_out);
  EXPECT_EQ(outcome.error, "the attempt wrote more than 16 MiB (sandbox.disk_mb)");
  EXPECT_THAT(outcome.output_tail, Not(HasSubstr("finished")));
  EXPECT_FALSE(fs::exists(worktree_ + "/blob200"));
}

TEST_P(DiskQuotaTest, TmpCountsTowardTheQuota) {
  SandboxConfig config;
  config.disk_mb = 16;
  config.tmp_mb = 64;
  auto sandbox = Make(bubblewrap(), config);
  // Neither part passes the quota alone; together they do. The sleep keeps /tmp alive (it
  // vanishes with the command) until the watcher has seen it.
  RunnerOutcome outcome = RunScriptAgent(
      *sandbox,
      "dd if=/dev/zero of=part bs=1M count=10 2>/dev/null; "
      "dd if=/dev/zero of=\"$TMPDIR/part\" bs=1M count=10 2>/dev/null; sleep 30; echo finished");
  EXPECT_FALSE(outcome.success);
  EXPECT_FALSE(outcome.timed_out);
  EXPECT_EQ(outcome.error, "the attempt wrote more than 16 MiB (sandbox.disk_mb)");
}

TEST_P(DiskQuotaTest, AQuickWriterIsCaughtAtTheEnd) {
  SandboxConfig config;
  config.disk_mb = 4;
  auto sandbox = Make(bubblewrap(), config);
  RunnerOutcome outcome =
      RunScriptAgent(*sandbox, "dd if=/dev/zero of=blob bs=1M count=8 2>/dev/null");
  EXPECT_FALSE(outcome.success);
  EXPECT_EQ(outcome.error, "the attempt wrote more than 4 MiB (sandbox.disk_mb)");
}

TEST_P(DiskQuotaTest, GatePastTheQuotaFailsWithThatReason) {
  SandboxConfig config;
  config.disk_mb = 8;
  auto sandbox = Make(bubblewrap(), config);
  GateResult gate =
      RunGate(*sandbox,
              "for i in $(seq 1 100); do dd if=/dev/zero of=out$i bs=1M count=1 2>/dev/null; "
              "sleep 0.1; done");
  EXPECT_FALSE(gate.passed);
  EXPECT_TRUE(gate.quota_exceeded);
  EXPECT_FALSE(gate.timed_out);
  EXPECT_THAT(GateFeedback(gate),
              HasSubstr("was killed: the attempt wrote more than 8 MiB (sandbox.disk_mb)"));
}

TEST_P(DiskQuotaTest, WithinTheQuotaNothingHappens) {
  SandboxConfig config;
  config.disk_mb = 16;
  auto sandbox = Make(bubblewrap(), config);
  // Deleting what was there before frees space rather than counting as written.
  RunnerOutcome outcome =
      RunScriptAgent(*sandbox,
                     "dd if=/dev/zero of=blob bs=1M count=4 2>/dev/null && rm -f README.md && "
                     "echo ok");
  EXPECT_TRUE(outcome.success) << outcome.error;
}

INSTANTIATE_TEST_SUITE_P(BothSandboxes, DiskQuotaTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Bubblewrap" : "Rlimit";
                         });

}  // namespace
}  // namespace factory
