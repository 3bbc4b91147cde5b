// Gate gaming (task scopes): an agent that breaks the code and adds a top-level `unittest/`
// package, which shadows Python's own, so that the project's `python3 -m unittest` gate "passes".
// Through the real `factory` binary, real git, the real bubblewrap sandbox and real python3:
//  - with a scoped task, the attempt fails naming the paths outside the scope;
//  - without a scope, the attempt fails because the new top-level package shadows a standard
//    module (the generic defence), and the broken code is never merged;
//  - an honest agent inside its scope still merges, and the scope shows in `run show`/`task show`;
//    a module the repository already had may still be edited.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "common/script_project.h"
#include "common/test_repo.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

// Breaks add() and hides it behind a fake `unittest` that reports success.
constexpr char kGamerScript[] =
    "printf 'def add(a, b):\\n    return a - b\\n' > src/textkit/__init__.py\n"
    "mkdir -p unittest\n"
    ": > unittest/__init__.py\n"
    "printf 'print(\"Ran 1 test\\\\n\\\\nOK\")\\n' > unittest/__main__.py\n";

// Does the task: a new helper inside the scope.
constexpr char kHonestScript[] =
    "printf 'def twice(a):\\n    return a + a\\n' > src/textkit/extra.py\n";

class ScopeSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::InitGitRepo(dir(), {{"tests/__init__.py", ""},
                                 {"src/textkit/__init__.py", "def add(a, b):\n    return a + b\n"},
                                 {"tests/test_add.py",
                                  "import unittest\nimport sys\nsys.path.insert(0, \"src\")\n"
                                  "import textkit\n\n\nclass AddTest(unittest.TestCase):\n"
                                  "    def test_add(self):\n"
                                  "        self.assertEqual(textkit.add(2, 3), 5)\n"}});
    sandbox_.Ok({"init"});
    project_.RemoveExampleAgents();
    project_.WriteConfig(
        "concurrency: 1\nmax_attempts: 1\n"
        "gates:\n"
        "  - {name: test, command: python3 -m unittest discover -s tests -t ., timeout: 60}\n"
        "protected: [\"tests/**\", \".factory/**\"]\n");
    AddAgent("gamer", kGamerScript);
    AddAgent("honest", kHonestScript);
  }

  const fs::path& dir() const { return sandbox_.dir(); }

  void AddAgent(const std::string& name, const std::string& script) {
    project_.AddScriptAgent(name, script);
  }

  // A one-task backlog for `agent`, with `scope` ("" for none).
  void WriteBacklog(const std::string& agent, const std::string& scope) {
    testing::WriteFile(sandbox_.Path("backlog.yaml"),
                       "tasks:\n  - id: add\n    title: Work on add\n    agent: " + agent + "\n" +
                           (scope.empty() ? "" : "    scope: " + scope + "\n"));
  }

  json ShowRun(const std::string& run_id) {
    return sandbox_.Ok({"run", "show", run_id, "--json"}).Json();
  }

  // The paths of `branch` under `path` (one per line).
  std::string Tree(const std::string& branch, const std::string& path) {
    return Sh(dir(), "git ls-tree -r --name-only " + branch + " -- " + path);
  }

  CliSandbox sandbox_;
  testing::ScriptProject project_{sandbox_.dir()};
};

TEST_F(ScopeSecurityTest, TheShadowingAttackFoolsTheBareGate) {
  // The premise: on the agent's tree, the project's own gate command exits 0 with broken code.
  testing::TempDir attack;
  Sh(dir(), "git archive HEAD | tar -x -C '" + attack.path().string() + "'");
  ASSERT_TRUE(fs::exists(attack.path() / "src/textkit/__init__.py"));
  Sh(attack.path(), kGamerScript);
  std::string out;
  EXPECT_EQ(testing::Shell("cd '" + attack.path().string() +
                               "' && python3 -m unittest discover -s tests -t . 2>&1",
                           &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("OK"));
  EXPECT_THAT(Sh(attack.path(), "cat src/textkit/__init__.py"), HasSubstr("a - b"));
}

TEST_F(ScopeSecurityTest, AScopedTaskChangingPathsOutsideItsScopeFailsNamingThem) {
  WriteBacklog("gamer", "[\"src/textkit/**\"]");
  CliResult run =
      sandbox_.Run({"run", "--backlog", "backlog.yaml", "--run-id", "s1", "--json", "--plain"});
  EXPECT_EQ(run.exit_code, cli::kExitFailed) << run.err;
  const json summary = json::parse(run.out);
  EXPECT_EQ(summary["failed"], 1) << run.out;
  EXPECT_EQ(summary["done"], 0);

  const json shown = ShowRun("s1");
  ASSERT_EQ(shown["tasks"].size(), 1u);
  const json& task = shown["tasks"][0];
  EXPECT_EQ(task["scope"], json::array({"src/textkit/**"}));
  const std::string error = task["last_error"].get<std::string>();
  EXPECT_THAT(error, HasSubstr("the attempt changed paths outside the task's scope "
                               "(src/textkit/**): unittest/__init__.py, unittest/__main__.py"));
  EXPECT_THAT(error, Not(HasSubstr("src/textkit/__init__.py")));

  // The agent is told which paths, and the task shows its scope.
  const std::string task_id = task["task_id"].get<std::string>();
  const json details = sandbox_.Ok({"task", "show", task_id, "--json"}).Json();
  ASSERT_EQ(details["attempt_history"].size(), 1u);
  const json attempt = details["attempt_history"][0]["details"];
  EXPECT_EQ(attempt["failed_phase"], "protected");
  EXPECT_EQ(attempt["scope_violations"],
            json::array({"unittest/__init__.py", "unittest/__main__.py"}));
  EXPECT_THAT(attempt["feedback"].get<std::string>(), HasSubstr("unittest/__main__.py"));
  EXPECT_EQ(details["metadata"]["scope"], json::array({"src/textkit/**"}));
  // The agent was told its scope up front.
  const std::string prompt =
      testing::ReadFile(fs::path(attempt["attempt_dir"].get<std::string>()) / "prompt.md");
  EXPECT_THAT(prompt, HasSubstr("## Scope"));
  EXPECT_THAT(prompt, HasSubstr("- src/textkit/**\n"));
  EXPECT_THAT(sandbox_.Ok({"task", "show", task_id}).out,
              HasSubstr("scope:           src/textkit/**"));

  // Nothing of it reached the integration branch or main.
  EXPECT_EQ(Tree("factory/s1", "unittest"), "");
  EXPECT_THAT(Sh(dir(), "git show factory/s1:src/textkit/__init__.py"), HasSubstr("a + b"));
  EXPECT_EQ(Sh(dir(), "git rev-list --count main"), "1\n");
}

TEST_F(ScopeSecurityTest, WithoutAScopeTheShadowingPackageFailsTheAttemptAndNothingMerges) {
  WriteBacklog("gamer", "");
  CliResult run =
      sandbox_.Run({"run", "--backlog", "backlog.yaml", "--run-id", "s2", "--json", "--plain"});
  EXPECT_EQ(run.exit_code, cli::kExitFailed) << run.err;
  EXPECT_EQ(json::parse(run.out)["failed"], 1) << run.out;

  const json shown = ShowRun("s2");
  const json& task = shown["tasks"][0];
  EXPECT_EQ(task["scope"], json::array()) << "no scope: the whole repository";
  EXPECT_THAT(task["last_error"].get<std::string>(),
              HasSubstr("unittest/__init__.py (shadows 'unittest')"));
  EXPECT_EQ(Tree("factory/s2", "unittest"), "");
  EXPECT_THAT(Sh(dir(), "git show factory/s2:src/textkit/__init__.py"), HasSubstr("a + b"));
  EXPECT_THAT(Sh(dir(), "git log --merges --format=%B factory/s2"), Not(HasSubstr("Factory-Task")));
}

TEST_F(ScopeSecurityTest, AnHonestAgentInsideItsScopeMerges) {
  WriteBacklog("honest", "[\"src/textkit/**\"]");
  CliResult run =
      sandbox_.Run({"run", "--backlog", "backlog.yaml", "--run-id", "s3", "--json", "--plain"});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_EQ(json::parse(run.out)["done"], 1);
  EXPECT_EQ(Tree("factory/s3", "src/textkit/extra.py"), "src/textkit/extra.py\n");
  EXPECT_THAT(sandbox_.Ok({"run", "show", "s3"}).out, HasSubstr("scope: src/textkit/**"));
}

TEST_F(ScopeSecurityTest, AShadowingModuleTheRepositoryAlreadyHadMayBeChanged) {
  // The project's own choice, made before any agent: editing it is not gate gaming.
  Sh(dir(), "printf 'X = 1\\n' > this.py && git add this.py && git commit -qm this");
  AddAgent("editor", "printf 'X = 2\\n' > this.py\n");
  WriteBacklog("editor", "");
  CliResult run =
      sandbox_.Run({"run", "--backlog", "backlog.yaml", "--run-id", "s4", "--json", "--plain"});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_THAT(Sh(dir(), "git show factory/s4:this.py"), HasSubstr("X = 2"));
}

}  // namespace
}  // namespace factory
