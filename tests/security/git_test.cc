// Host-side git against a hostile agent, through the real `factory run --backlog` with script
// agents on a real repository. Each agent does what an attacker would from inside its worktree;
// the factory's own git commands (commit, gate checkout, merge, cleanup) run on the host and
// must neither run what the agent planted, nor write outside the attempt, nor merge what the
// commit policy refuses.
//
// The agents run with --no-sandbox: the worst case for the host (the agent can even write the
// repository's own configuration), and independent of how the sandbox binds paths.

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli.h"
#include "cli/cli_test_util.h"

namespace factory::cli {
namespace {

namespace fs = std::filesystem;
using testing::CliSandbox;
using testing::TempDir;

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string full = "cd '" + dir.string() + "' && " + command + " 2>&1";
  std::string out;
  FILE* pipe = popen(full.c_str(), "r");
  char buffer[4096];
  while (pipe != nullptr && fgets(buffer, sizeof(buffer), pipe) != nullptr) out += buffer;
  if (pipe != nullptr) pclose(pipe);
  return out;
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// The test's own git commands never refresh the index (no status, no add), so a hook or
// fsmonitor an agent planted in the repository's configuration cannot fire from them either.
class GitSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = sandbox_.dir();
    Sh(repo_,
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "printf 'secret.env\\n' > .gitignore && echo hello > README.md && mkdir -p tests && "
       "echo 'assert True' > tests/test_ok.py && git add -A && git commit -qm init");
    sandbox_.Ok({"init"});
    marker_ = scripts_ / "marker";
    // The program an attacker wants the host to run: it leaves a marker and passes data through
    // (so it also works as a filter).
    testing::WriteFile(scripts_ / "evil.sh",
                       "#!/bin/sh\necho \"ran $*\" >> '" + marker_ + "'\ncat\n");
    fs::permissions(scripts_ / "evil.sh", fs::perms::owner_all, fs::perm_options::add);
  }

  // Writes the agent (its command runs `script` with sh in the worktree), a config with one
  // attempt per task and a `check` gate, and a one-task backlog; runs it. Returns the task.
  nlohmann::json RunAgent(const std::string& script, const std::string& extra_config = "",
                          std::map<std::string, std::string> env = {}) {
    testing::WriteFile(scripts_ / "agent.sh", "set -e\n" + script);
    testing::WriteFile(repo_ / ".factory/agents/attacker.md",
                       "---\nname: attacker\nrole: attacks the host\nrunner: script\n"
                       "capabilities: [code]\ncommand: sh " +
                           (scripts_ / "agent.sh").string() + "\n---\nAttacks.\n");
    testing::WriteFile(repo_ / ".factory/config.yaml",
                       "max_attempts: 1\nprotected: [\".factory/**\", \"tests/**\"]\n"
                       "gates:\n  - {name: check, command: \"test -f README.md\"}\n" +
                           extra_config);
    testing::WriteFile(repo_ / "backlog.yaml",
                       "tasks:\n  - id: t\n    title: Do the task\n    agent: attacker\n");
    main_before_ = Trim(Sh(repo_, "git rev-parse main"));
    testing::SpawnOptions options;
    options.env = std::move(env);
    last_run_ = sandbox_.Run(
        {"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--json", "--no-sandbox"}, options,
        120'000);
    auto show = sandbox_.Ok({"run", "show", "r1", "--json"}).Json();
    EXPECT_EQ(show["tasks"].size(), 1u) << show.dump();
    if (show["tasks"].empty()) return {};
    return sandbox_.Show(show["tasks"][0]["task_id"].get<std::string>());
  }

  static std::string Error(const nlohmann::json& task) {
    if (task["attempt_history"].empty()) return "";
    return task["attempt_history"].back()["error"].get<std::string>();
  }

  bool MarkerExists() const { return fs::exists(marker_); }

  // The run merged nothing: its integration branch is still main's commit.
  void ExpectNothingMerged() {
    EXPECT_EQ(Trim(Sh(repo_, "git rev-parse factory/r1")), main_before_);
    EXPECT_EQ(Trim(Sh(repo_, "git rev-parse main")), main_before_);
  }

  CliSandbox sandbox_;
  TempDir scripts_dir_;
  fs::path scripts_ = scripts_dir_.path();
  fs::path repo_;
  std::string marker_;
  std::string main_before_;
  testing::CliResult last_run_;
};

TEST_F(GitSecurityTest, FsmonitorOfAReplacedGitDirNeverRunsOnTheHost) {
  // The agent swaps its worktree's .git file for a repository of its own whose configuration
  // runs a program on every index refresh (and a filter on every add).
  auto task = RunAgent("rm -f .git\ngit init -q .\ngit config core.fsmonitor '" +
                       (scripts_ / "evil.sh").string() + "'\ngit config filter.x.clean '" +
                       (scripts_ / "evil.sh").string() +
                       "'\nprintf '* filter=x\\n' > .gitattributes\necho change > feature.txt\n");
  EXPECT_FALSE(MarkerExists()) << testing::ReadFile(marker_);
  EXPECT_EQ(task["state"], "failed") << task.dump();
  EXPECT_EQ(Error(task).rfind("tampering: ", 0), 0u) << Error(task);
  EXPECT_EQ(task["attempt_history"].back()["details"]["failed_phase"], "commit");
  ExpectNothingMerged();
  // Cleaned up by the factory's own path.
  EXPECT_FALSE(fs::exists(repo_ / ".factory/worktrees/r1/t-1"));
}

TEST_F(GitSecurityTest, GitdirRedirectToTheUserRepositoryTouchesNothingOfTheUser) {
  // The user has work staged in their checkout.
  Sh(repo_, "echo staged > staged.txt && git add staged.txt");
  const std::string index_before = Sh(repo_, "git diff --cached --name-only");
  ASSERT_EQ(index_before, "staged.txt\n");
  const std::string main_head = Trim(Sh(repo_, "git rev-parse main"));
  // The agent points its worktree at the user's repository and edits a protected test.
  auto task = RunAgent("printf 'gitdir: %s/.git\\n' '" + repo_.string() +
                       "' > .git\necho 'assert False' > tests/test_ok.py\n");
  EXPECT_EQ(task["state"], "failed") << task.dump();
  EXPECT_EQ(Error(task).rfind("tampering: ", 0), 0u) << Error(task);
  EXPECT_EQ(Trim(Sh(repo_, "git rev-parse main")), main_head);
  EXPECT_EQ(Sh(repo_, "git diff --cached --name-only"), index_before);
  EXPECT_EQ(Sh(repo_, "git symbolic-ref HEAD"), "refs/heads/main\n");
  EXPECT_EQ(testing::ReadFile(repo_ / "tests/test_ok.py"), "assert True\n");
  ExpectNothingMerged();
  EXPECT_FALSE(fs::exists(repo_ / ".factory/worktrees/r1/t-1"));
}

TEST_F(GitSecurityTest, FilterDriverAndFsmonitorInTheRepositoryConfigNeverRun) {
  // Without a sandbox the agent can write the repository's own configuration: a filter driver
  // its .gitattributes names (run by add, checkout and merge) and an fsmonitor. The change is
  // otherwise harmless, so it is committed, checked out for the gate and merged: by git alone.
  const std::string evil = (scripts_ / "evil.sh").string();
  auto task = RunAgent("git config core.fsmonitor '" + evil + "'\ngit config filter.x.clean '" +
                       evil + "'\ngit config filter.x.smudge '" + evil +
                       "'\ngit config filter.x.required true\ngit config diff.x.textconv '" + evil +
                       "'\nprintf '* filter=x diff=x\\n' > .gitattributes\n"
                       "echo feature > feature.txt\n");
  EXPECT_FALSE(MarkerExists()) << testing::ReadFile(marker_);
  EXPECT_EQ(task["state"], "done") << task.dump();
  EXPECT_EQ(Sh(repo_, "git show factory/r1:feature.txt"), "feature\n");
  EXPECT_EQ(Sh(repo_, "git show factory/r1:.gitattributes"), "* filter=x diff=x\n");
}

TEST_F(GitSecurityTest, SymlinksToHostFilesAndFoldersFailTheAttemptNamingThem) {
  auto task = RunAgent(
      "ln -s /etc/passwd passwd-link\nln -s /root host-folder\nmkdir -p a\n"
      "ln -s ../../.. a/up\necho ok > ok.txt\n");
  EXPECT_EQ(task["state"], "failed") << task.dump();
  const std::string error = Error(task);
  EXPECT_NE(error.find("passwd-link -> /etc/passwd"), std::string::npos) << error;
  EXPECT_NE(error.find("host-folder -> /root"), std::string::npos) << error;
  EXPECT_NE(error.find("a/up -> ../../.."), std::string::npos) << error;
  EXPECT_EQ(error.find("ok.txt"), std::string::npos) << error;
  ExpectNothingMerged();
}

TEST_F(GitSecurityTest, IgnoredAndBuildArtefactsAreLeftOutAndListed) {
  // __pycache__ is a default artefact; secret.env is ignored by the project's .gitignore, which
  // the agent tries to undo in its own copy.
  auto task = RunAgent(
      "mkdir -p pkg/__pycache__\necho bytecode > pkg/__pycache__/mod.cpython-311.pyc\n"
      "echo 'x = 1' > pkg/mod.py\necho 'TOKEN=abc' > secret.env\n"
      "printf '!secret.env\\n' > .gitignore\n");
  EXPECT_EQ(task["state"], "done") << task.dump();
  const std::string files = Sh(repo_, "git ls-tree -r --name-only factory/r1");
  EXPECT_NE(files.find("pkg/mod.py"), std::string::npos) << files;
  EXPECT_EQ(files.find("__pycache__"), std::string::npos) << files;
  EXPECT_EQ(files.find("secret.env"), std::string::npos) << files;
  const auto& details = task["attempt_history"].back()["details"];
  ASSERT_TRUE(details.contains("excluded_paths")) << details.dump();
  EXPECT_EQ(details["excluded_paths"], nlohmann::json::array({"pkg/__pycache__/", "secret.env"}));
}

TEST_F(GitSecurityTest, AFileAboveTheSizeLimitFailsTheAttempt) {
  auto task = RunAgent("head -c 6291456 /dev/zero > big.bin\necho ok > ok.txt\n");
  EXPECT_EQ(task["state"], "failed") << task.dump();
  const std::string error = Error(task);
  EXPECT_NE(error.find("big.bin (6.0 MiB)"), std::string::npos) << error;
  EXPECT_NE(error.find("5.0 MiB limit"), std::string::npos) << error;
  ExpectNothingMerged();
}

TEST_F(GitSecurityTest, TheSizeLimitIsTheProjectsToRaise) {
  auto task = RunAgent("head -c 6291456 /dev/zero > big.bin\n", "commit: {max_file_mb: 10}\n");
  EXPECT_EQ(task["state"], "done") << task.dump();
  EXPECT_EQ(Trim(Sh(repo_, "git cat-file -s factory/r1:big.bin")), "6291456");
}

TEST_F(GitSecurityTest, ASecretValueInTheChangeFailsWithoutBeingPrinted) {
  const std::string value = "sk-test-9f8e7d6c5b4a39281706";
  auto task =
      RunAgent("echo 'API = \"" + value + "\"' > settings.py\n", "", {{"DEMO_API_KEY", value}});
  EXPECT_EQ(task["state"], "failed") << task.dump();
  const std::string error = Error(task);
  EXPECT_NE(error.find("the attempt adds a secret (the value of DEMO_API_KEY) in settings.py"),
            std::string::npos)
      << error;
  EXPECT_EQ(task.dump().find(value), std::string::npos);
  EXPECT_EQ(last_run_.out.find(value), std::string::npos);
  EXPECT_EQ(last_run_.err.find(value), std::string::npos);
  ExpectNothingMerged();
}

}  // namespace
}  // namespace factory::cli
