// `make demo` end to end: examples/demo.sh against the built binary in a temp dir, then an
// independent check of everything the demo promises (examples/demo.sh): the run is
// fully done, the `stats` task failed a gate and its retry passed using the feedback, the two
// tasks that both edit textkit/__init__.py are each merged exactly once, the project's own tests
// pass on the integration branch, the audit chain verifies and the base branch is untouched.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/test_util.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct ShellResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr
};

std::string Quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

ShellResult Sh(const fs::path& dir, const std::string& command) {
  const std::string full = "cd " + Quote(dir.string()) + " && { " + command + " ; } 2>&1";
  ShellResult result;
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t read_bytes = 0;
  while ((read_bytes = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    result.out.append(buffer, read_bytes);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string Factory(const fs::path& project, const std::string& args, int* exit_code = nullptr) {
  // The project's own database (.factory/factory.db under `project`), whatever FACTORY_DB says.
  ShellResult result = Sh(project, "env -u FACTORY_DB " + Quote(FACTORY_BINARY) + " " + args);
  if (exit_code != nullptr) *exit_code = result.exit_code;
  return result.out;
}

// One run of the demo (it takes several seconds) and the queries the checks make on it.
class DemoRun {
 public:
  DemoRun() {
    const std::string script = std::string(FACTORY_SOURCE_DIR) + "/examples/demo.sh";
    result_ = Sh(work_.path(), "FACTORY_BIN=" + Quote(FACTORY_BINARY) +
                                   " DEMO_DIR=" + Quote(work_.path().string()) +
                                   " timeout 900 bash " + Quote(script));
  }

  const ShellResult& result() const { return result_; }
  const fs::path& work() const { return work_.path(); }
  fs::path Project() const { return work_.path() / "textkit"; }

  json RunShow() const {
    int exit_code = -1;
    const std::string out = Factory(Project(), "run show demo --json", &exit_code);
    EXPECT_EQ(exit_code, 0) << out;
    return json::parse(out, nullptr, /*allow_exceptions=*/false);
  }

  // key -> the task's entry in `run show --json`.
  std::map<std::string, json> TasksByKey() const {
    std::map<std::string, json> tasks;
    const json run = RunShow();
    for (const auto& task : run["tasks"]) tasks[task["key"].get<std::string>()] = task;
    return tasks;
  }

  // How many merge commits on factory/demo carry each task's Factory-Task trailer.
  std::map<std::string, int> MergesPerTask() const {
    ShellResult log = Sh(Project(), "git log --merges --format=%B factory/demo");
    EXPECT_EQ(log.exit_code, 0) << log.out;
    std::map<std::string, int> merges;
    std::istringstream lines(log.out);
    const std::string trailer = "Factory-Task: ";
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(trailer, 0) == 0) ++merges[line.substr(trailer.size())];
    }
    return merges;
  }

 private:
  testing::TempDir work_;
  ShellResult result_;
};

void CheckEveryTaskOfTheBacklogIsDone(const DemoRun& demo) {
  json run = demo.RunShow();
  const json& summary = run["summary"];
  EXPECT_GE(summary["total"].get<int>(), 5) << "the demo backlog promises at least 5 tasks";
  EXPECT_EQ(summary["done"], summary["total"]);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["blocked"], 0);
  EXPECT_EQ(summary["all_done"], true);
  EXPECT_EQ(summary["integration_branch"], "factory/demo");
  // A real graph: some task waits for others.
  size_t with_dependencies = 0;
  for (const auto& task : run["tasks"]) {
    EXPECT_EQ(task["state"], "done") << task.dump();
    if (!task["depends_on"].empty()) ++with_dependencies;
  }
  EXPECT_GE(with_dependencies, 3u);
}

void CheckStatsFailsTheTestGateThenItsRetryPassesUsingTheFeedback(const DemoRun& demo) {
  auto tasks = demo.TasksByKey();
  ASSERT_TRUE(tasks.count("stats"));
  EXPECT_EQ(tasks["stats"]["attempts"], 2);
  int exit_code = -1;
  const std::string shown =
      Factory(demo.Project(),
              "task show " + tasks["stats"]["task_id"].get<std::string>() + " --json", &exit_code);
  ASSERT_EQ(exit_code, 0) << shown;
  const json history = json::parse(shown)["attempt_history"];
  ASSERT_EQ(history.size(), 2u) << history.dump(2);

  const json& first = history[0];
  EXPECT_EQ(first["status"], "failed");
  EXPECT_NE(first["error"].get<std::string>().find("gate 'test' failed"), std::string::npos)
      << first["error"];
  const std::string feedback = first["details"]["feedback"].get<std::string>();
  EXPECT_NE(feedback.find("FAIL: test_ties_break_alphabetically"), std::string::npos) << feedback;
  EXPECT_NE(feedback.find("FAIL: test_counts_words_not_raw_tokens"), std::string::npos) << feedback;

  const json& second = history[1];
  EXPECT_EQ(second["status"], "succeeded");
  EXPECT_EQ(second["details"]["had_feedback"], true);
  EXPECT_FALSE(second["details"]["merge_commit"].get<std::string>().empty());
  // The retry got that feedback in its task file, and the agent acted on each failure named.
  const fs::path attempt_dir = demo.Project() / ".factory/runs/demo/stats-2";
  const json task_file = json::parse(testing::ReadFile(attempt_dir / "task.json"));
  EXPECT_EQ(task_file["attempt"], 2);
  EXPECT_EQ(task_file["feedback"], feedback);
  const std::string agent_log = testing::ReadFile(attempt_dir / "runner.stdout.log");
  EXPECT_NE(agent_log.find("feedback: test_ties_break_alphabetically failed"), std::string::npos)
      << agent_log;
  EXPECT_NE(agent_log.find("feedback: test_counts_words_not_raw_tokens failed"), std::string::npos)
      << agent_log;
}

void CheckEveryTaskIsMergedExactlyOnceIncludingTheTwoThatEditTheSameFile(const DemoRun& demo) {
  auto merges = demo.MergesPerTask();
  auto tasks = demo.TasksByKey();
  ASSERT_FALSE(tasks.empty());
  for (const auto& [key, task] : tasks) EXPECT_EQ(merges[key], 1) << "task " << key;
  EXPECT_EQ(merges.size(), tasks.size());

  // tokenize and slugify both changed textkit/__init__.py (in their merge commits), and the
  // integration branch keeps both changes.
  for (const std::string key : {"tokenize", "slugify"}) {
    const std::string merge = tasks[key]["merge_commit"].get<std::string>();
    ASSERT_FALSE(merge.empty()) << key;
    ShellResult changed = Sh(demo.Project(), "git diff --name-only " + merge + "^1 " + merge);
    EXPECT_NE(changed.out.find("textkit/__init__.py"), std::string::npos)
        << key << " merge " << merge << " changed: " << changed.out;
  }
  ShellResult init = Sh(demo.Project(), "git show factory/demo:textkit/__init__.py");
  EXPECT_NE(init.out.find("from textkit.tokenize import words"), std::string::npos) << init.out;
  EXPECT_NE(init.out.find("from textkit.slug import slugify"), std::string::npos) << init.out;
}

void CheckTheProjectsOwnTestsPassOnTheIntegrationBranch(const DemoRun& demo) {
  const fs::path checkout = demo.work() / "test-checkout";
  fs::create_directories(checkout);
  ShellResult archive =
      Sh(demo.Project(), "git archive factory/demo | tar -x -C " + Quote(checkout.string()));
  ASSERT_EQ(archive.exit_code, 0) << archive.out;
  // Every module required: a module the agents did not write fails instead of skipping.
  ShellResult tests = Sh(checkout,
                         "TEXTKIT_REQUIRE_ALL=1 PYTHONDONTWRITEBYTECODE=1 "
                         "python3 -m unittest discover -s tests -t .");
  EXPECT_EQ(tests.exit_code, 0) << tests.out;
  EXPECT_NE(tests.out.find("\nOK"), std::string::npos) << tests.out;
  EXPECT_EQ(tests.out.find("skipped"), std::string::npos) << tests.out;
  // The same suite fails on the base branch: the agents' code is what makes it pass.
  const fs::path base = demo.work() / "base-checkout";
  fs::create_directories(base);
  ASSERT_EQ(Sh(demo.Project(), "git archive main | tar -x -C " + Quote(base.string())).exit_code,
            0);
  EXPECT_NE(Sh(base,
               "TEXTKIT_REQUIRE_ALL=1 PYTHONDONTWRITEBYTECODE=1 "
               "python3 -m unittest discover -s tests -t .")
                .exit_code,
            0);
}

void CheckAuditVerifiesAndTheBaseBranchIsUntouched(const DemoRun& demo) {
  int exit_code = -1;
  const std::string audit = Factory(demo.Project(), "audit verify", &exit_code);
  EXPECT_EQ(exit_code, 0) << audit;
  EXPECT_EQ(Sh(demo.Project(), "git rev-list --count main").out, "1\n");
  EXPECT_EQ(Sh(demo.Project(), "git status --porcelain").out, "")
      << "the run left the user's checkout dirty";
}

void CheckPrintsWhereToLook(const DemoRun& demo) {
  const std::vector<std::string> expected_lines = {"git log --oneline --graph factory/demo",
                                                   "factory run show demo", "factory costs",
                                                   "factory audit verify", demo.Project().string()};
  for (const std::string& expected : expected_lines) {
    EXPECT_NE(demo.result().out.find(expected), std::string::npos) << expected << "\n"
                                                                   << demo.result().out;
  }
}

// One test, so the demo runs once; each check reports its own failures (file:line in it).
TEST(DemoTest, RunsTheBacklogEndToEndAndKeepsEveryPromise) {
  DemoRun demo;
  ASSERT_EQ(demo.result().exit_code, 0) << "examples/demo.sh failed:\n" << demo.result().out;
  CheckEveryTaskOfTheBacklogIsDone(demo);
  CheckStatsFailsTheTestGateThenItsRetryPassesUsingTheFeedback(demo);
  CheckEveryTaskIsMergedExactlyOnceIncludingTheTwoThatEditTheSameFile(demo);
  CheckTheProjectsOwnTestsPassOnTheIntegrationBranch(demo);
  CheckAuditVerifiesAndTheBaseBranchIsUntouched(demo);
  CheckPrintsWhereToLook(demo);
}

}  // namespace
}  // namespace factory
