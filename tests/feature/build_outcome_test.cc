// The feature library's build end and regeneration on real git repositories (temporary
// directories) with the rlimit sandbox: final gates on the integration tip, the feature status
// they decide, the regeneration's new version in the spec folder, and the comparisons.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "feature/final_gates.h"
#include "feature/regenerate.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory::feature {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

std::string Sh(const fs::path& dir, const std::string& command) {
  const std::string full = "cd '" + dir.string() + "' && " + command + " 2>&1";
  std::string out;
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t read_bytes = 0;
  while ((read_bytes = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, read_bytes);
  pclose(pipe);
  return out;
}

GateConfig Gate(std::string name, std::string command) {
  GateConfig gate;
  gate.name = std::move(name);
  gate.command = std::move(command);
  gate.timeout = std::chrono::seconds(30);
  return gate;
}

class BuildOutcomeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Sh(repo(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "printf 'hello\\n' > a.txt && git add -A && git commit -qm init");
    auto workspace = WorkspaceManager::Open({.repo_path = repo().string()});
    ASSERT_TRUE(workspace.has_value()) << workspace.error().ToString();
    workspace_ = std::move(*workspace);
    sandbox_ = MakeSandbox({.use_bubblewrap = false});
    testing::WriteFile(spec_dir() / "metadata.json",
                       R"({"feature_id": "greet", "version": 1, "status": "building",
                           "run_id": "r1"})");
    testing::WriteFile(spec_dir() / "BACKLOG.yaml", "tasks: []\n");
    testing::WriteFile(spec_dir() / "PLAN.md", "# Plan\n");
    testing::WriteFile(spec_dir() / "planners" / "spec.md", "spec\n");
  }

  fs::path repo() const { return temp_.path(); }
  fs::path spec_dir() const { return temp_.path() / ".factory" / "specs" / "greet"; }
  json Metadata() const { return json::parse(testing::ReadFile(spec_dir() / "metadata.json")); }

  // A commit on factory/<run>: `file` with `content`.
  std::string CommitOnRun(const std::string& run, const std::string& file,
                          const std::string& content) {
    auto tip = workspace_->EnsureIntegrationBranch(run);
    EXPECT_TRUE(tip.has_value());
    const std::string dir = (temp_.path() / ("wt-" + run)).string();
    Sh(repo(), "git worktree add -q '" + dir + "' factory/" + run + " && cd '" + dir +
                   "' && printf '" + content + "' > " + file +
                   " && git add -A && git commit -qm '" + run + ": " + file +
                   "' && cd .. && git worktree remove --force '" + dir + "'");
    return Sh(repo(), "git rev-parse factory/" + run).substr(0, 40);
  }

  FinalGatesDeps Deps() {
    return FinalGatesDeps{.workspace = workspace_.get(),
                          .sandbox = sandbox_.get(),
                          .config = &config_,
                          .events = nullptr,
                          .cancel = nullptr};
  }

  RunSummary AllDone(const std::string& run) {
    RunSummary summary;
    summary.run_id = run;
    summary.integration_branch = "factory/" + run;
    summary.done = summary.total = 2;
    summary.attempts = 3;
    return summary;
  }

  testing::TempDir temp_;
  std::unique_ptr<WorkspaceManager> workspace_;
  std::unique_ptr<Sandbox> sandbox_;
  ProjectConfig config_;
};

TEST_F(BuildOutcomeTest, FinalGatesAreTheCommandGatesInOrder) {
  ProjectConfig config;
  config.gates = {Gate("build", "make"), Gate("review", ""), Gate("test", "make test")};
  config.gates[1].kind = GateKind::kReview;
  config.gates[1].model = "cloud/frontier";
  std::vector<std::string> names;
  for (const auto& gate : FinalGateList(config)) names.push_back(gate.name);
  EXPECT_EQ(names, (std::vector<std::string>{"build", "test"}));
}

TEST_F(BuildOutcomeTest, FinalGatesRunOnACleanCheckoutOfTheIntegrationTip) {
  const std::string tip = CommitOnRun("r1", "b.txt", "merged\\n");
  // An untracked file in the main worktree must not be seen: the checkout is of the commit.
  testing::WriteFile(repo() / "untracked.txt", "x\n");
  config_.gates = {Gate("has-b", "grep -q merged b.txt && test ! -e untracked.txt"),
                   Gate("fails", "echo broken whole; exit 5"), Gate("never", "true")};
  auto outcome = RunFinalGates(Deps(), "r1", spec_dir());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_EQ(outcome->commit, tip);
  EXPECT_EQ(outcome->branch, "factory/r1");
  ASSERT_EQ(outcome->results.size(), 2u);
  EXPECT_TRUE(outcome->results[0].passed) << outcome->results[0].output_tail;
  EXPECT_FALSE(outcome->passed());
  ASSERT_NE(outcome->failed(), nullptr);
  EXPECT_EQ(outcome->failed()->name, "fails");
  EXPECT_EQ(outcome->failed()->exit_code, 5);
  EXPECT_EQ(outcome->status(), "failed");
  EXPECT_THAT(testing::ReadFile(spec_dir() / "final-gates" / "2-fails.log"),
              HasSubstr("broken whole"));
  EXPECT_FALSE(fs::exists(workspace_->RunWorktreesDir("r1") + "/_final"));
  EXPECT_THAT(Sh(repo(), "git worktree list"), ::testing::Not(HasSubstr("_final")));

  // A run without an integration branch: an outcome that says so, not passed.
  auto missing = RunFinalGates(Deps(), "nosuch", spec_dir());
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->passed());
  EXPECT_EQ(missing->status(), "error");
  EXPECT_FALSE(RunFinalGates(Deps(), "../bad", spec_dir()).has_value());
}

TEST_F(BuildOutcomeTest, TheFeatureIsDoneOnlyWhenItsFinalGatesPass) {
  CommitOnRun("r1", "b.txt", "merged\\n");
  config_.gates = {Gate("check", "test -e b.txt"), Gate("whole", "test -e c.txt")};
  auto failed = FinishFeatureBuild(Deps(), spec_dir(), AllDone("r1"));
  ASSERT_TRUE(failed.has_value()) << failed.error().ToString();
  EXPECT_EQ(failed->status, "failed");
  EXPECT_THAT(failed->message, HasSubstr("final gate 'whole' failed (exit 1) on the integration "
                                         "branch factory/r1"));
  json metadata = Metadata();
  EXPECT_EQ(metadata["status"], "failed");
  EXPECT_EQ(metadata["build"]["done"], 2);
  EXPECT_EQ(metadata["build"]["attempts"], 3);
  EXPECT_EQ(metadata["final_gates"]["status"], "failed");
  EXPECT_EQ(metadata["final_gates"]["failed_gate"], "whole");
  EXPECT_EQ(metadata["final_gates"]["exit_code"], 1);
  EXPECT_TRUE(metadata.contains("last_generated"));

  // The tip now has what `whole` wants: the next try runs them again and passes.
  const std::string tip = CommitOnRun("r1", "c.txt", "c\\n");
  auto passed = FinishFeatureBuild(Deps(), spec_dir(), AllDone("r1"));
  ASSERT_TRUE(passed.has_value());
  EXPECT_EQ(passed->status, "done");
  EXPECT_TRUE(passed->message.empty()) << passed->message;
  ASSERT_TRUE(passed->final_gates.has_value());
  EXPECT_FALSE(passed->final_gates_reused);
  metadata = Metadata();
  EXPECT_EQ(metadata["status"], "done");
  EXPECT_EQ(metadata["final_gates"]["status"], "passed");
  EXPECT_EQ(metadata["final_gates"]["commit"], tip);
  EXPECT_FALSE(metadata["final_gates"].contains("failed_gate"));

  // Passed on this tip: not run again (a gate that would now fail proves it).
  config_.gates = {Gate("would-fail", "false")};
  auto again = FinishFeatureBuild(Deps(), spec_dir(), AllDone("r1"));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, "done");
  EXPECT_TRUE(again->final_gates_reused);
  EXPECT_FALSE(again->final_gates.has_value());
}

TEST_F(BuildOutcomeTest, AnIncompleteBuildDoesNotRunTheFinalGates) {
  CommitOnRun("r1", "b.txt", "merged\\n");
  config_.gates = {Gate("marker", "touch /nonexistent-dir/never")};
  RunSummary summary = AllDone("r1");
  summary.done = 1;
  summary.failed = 1;
  auto failed = FinishFeatureBuild(Deps(), spec_dir(), summary);
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status, "failed");
  EXPECT_THAT(failed->message, HasSubstr("1 of 2 tasks did not complete (1 failed"));
  EXPECT_FALSE(failed->final_gates.has_value());
  EXPECT_EQ(Metadata()["final_gates"]["status"], "skipped");
  EXPECT_FALSE(fs::exists(spec_dir() / "final-gates"));

  summary.failed = 0;
  summary.unfinished = 1;
  auto stopped = FinishFeatureBuild(Deps(), spec_dir(), summary);
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->status, "building");
  EXPECT_EQ(Metadata()["status"], "building");

  fs::remove(spec_dir() / "metadata.json");
  EXPECT_EQ(FinishFeatureBuild(Deps(), spec_dir(), AllDone("r1")).error().code,
            ErrorCode::kNotFound);
}

TEST_F(BuildOutcomeTest, ResolveFeatureTakesAnIdOrARequestFile) {
  auto by_id = ResolveFeature(repo(), "greet");
  ASSERT_TRUE(by_id.has_value()) << by_id.error().ToString();
  EXPECT_EQ(by_id->spec_dir, spec_dir());
  auto by_file = ResolveFeature(repo(), "docs/Greet.md");
  ASSERT_TRUE(by_file.has_value());
  EXPECT_EQ(by_file->id, "greet");
  auto unknown = ResolveFeature(repo(), "other");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(unknown.error().message, HasSubstr("unknown feature 'other'"));
  EXPECT_THAT(unknown.error().message, HasSubstr("known features: greet"));
  for (const char* bad : {"Greet", "-x", "a/b", "", "x y"}) {
    auto result = ResolveFeature(repo(), bad);
    ASSERT_FALSE(result.has_value()) << bad;
    EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST_F(BuildOutcomeTest, StartRegenerationMakesANewVersionFromTheStoredSpec) {
  auto start = StartRegeneration(spec_dir(), "");
  ASSERT_TRUE(start.has_value()) << start.error().ToString();
  EXPECT_EQ(start->version, 2);
  EXPECT_EQ(start->run_id, "greet-r2");
  EXPECT_EQ(start->previous_version, 1);
  EXPECT_EQ(start->previous_run_id, "r1");
  EXPECT_EQ(start->previous_status, "building");
  EXPECT_FALSE(start->resumed);
  // The previous version in history, the plan kept for the new one.
  EXPECT_EQ(json::parse(testing::ReadFile(spec_dir() / "history/v1/metadata.json"))["run_id"],
            "r1");
  EXPECT_EQ(testing::ReadFile(spec_dir() / "history/v1/planners/spec.md"), "spec\n");
  EXPECT_EQ(testing::ReadFile(spec_dir() / "BACKLOG.yaml"), "tasks: []\n");
  EXPECT_EQ(testing::ReadFile(spec_dir() / "PLAN.md"), "# Plan\n");
  json metadata = Metadata();
  EXPECT_EQ(metadata["version"], 2);
  EXPECT_EQ(metadata["run_id"], "greet-r2");
  EXPECT_EQ(metadata["status"], "building");
  EXPECT_EQ(metadata["plan_version"], 1);
  EXPECT_EQ(metadata["regenerated_from"],
            (json{{"version", 1}, {"run_id", "r1"}, {"status", "building"}}));

  // The same run id continues it; the version planned first cannot be "regenerated" under its
  // own id, nor can an earlier version's run id be reused.
  auto resumed = StartRegeneration(spec_dir(), "greet-r2");
  ASSERT_TRUE(resumed.has_value());
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(resumed->version, 2);
  EXPECT_EQ(resumed->previous_run_id, "r1");
  EXPECT_FALSE(fs::exists(spec_dir() / "history/v2"));
  auto reused = StartRegeneration(spec_dir(), "r1");
  ASSERT_FALSE(reused.has_value());
  EXPECT_EQ(reused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(reused.error().message, HasSubstr("run id r1 was v1"));

  auto third = StartRegeneration(spec_dir(), "custom");
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->version, 3);
  EXPECT_EQ(third->previous_run_id, "greet-r2");
  EXPECT_EQ(Metadata()["plan_version"], 1) << "still the plan of version 1";
  EXPECT_EQ(json::parse(testing::ReadFile(spec_dir() / "history/v2/metadata.json"))["version"], 2);
}

TEST_F(BuildOutcomeTest, StartRegenerationNeedsAStoredBacklog) {
  auto planned = StartRegeneration(spec_dir(), "r1");
  ASSERT_FALSE(planned.has_value());
  EXPECT_EQ(planned.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(planned.error().message, HasSubstr("factory run FEATURE.md --run-id r1"));
  fs::remove(spec_dir() / "BACKLOG.yaml");
  auto nothing = StartRegeneration(spec_dir(), "");
  ASSERT_FALSE(nothing.has_value());
  EXPECT_EQ(nothing.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(nothing.error().message, HasSubstr("has no BACKLOG.yaml"));
  EXPECT_EQ(Metadata()["version"], 1) << "nothing changed";
  EXPECT_FALSE(fs::exists(spec_dir() / "history"));
}

TEST_F(BuildOutcomeTest, CompareCodeReportsIdenticalTreesAndDiffStats) {
  const std::string first = CommitOnRun("r1", "b.txt", "same\\n");
  CommitOnRun("r2", "b.txt", "same\\n");
  auto same = CompareCode(workspace_->git(), "r1", "r2");
  ASSERT_TRUE(same.has_value()) << same.error().ToString();
  EXPECT_TRUE(same->compared);
  EXPECT_TRUE(same->identical_trees);
  EXPECT_EQ(same->before_tip, first);
  EXPECT_NE(same->before_tip, same->after_tip);
  EXPECT_EQ(same->files_changed, 0);

  CommitOnRun("r3", "b.txt", "other\\nlines\\n");
  CommitOnRun("r3", "c.txt", "new\\n");
  auto changed = CompareCode(workspace_->git(), "r1", "r3");
  ASSERT_TRUE(changed.has_value());
  EXPECT_FALSE(changed->identical_trees);
  EXPECT_EQ(changed->files_changed, 2);
  EXPECT_EQ(changed->insertions, 3);
  EXPECT_EQ(changed->deletions, 1);
  EXPECT_THAT(changed->diff_stat, HasSubstr("b.txt"));
  EXPECT_THAT(changed->diff_stat, HasSubstr("2 files changed, 3 insertions(+), 1 deletion(-)"));

  auto missing = CompareCode(workspace_->git(), "gone", "r3");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->compared);
  EXPECT_THAT(missing->reason, HasSubstr("factory/gone does not exist"));
  EXPECT_FALSE(CompareCode(workspace_->git(), "r1", "gone").has_value());

  // The text report shows the stat; JSON carries the figures.
  RegenerationReport report;
  report.feature_id = "greet";
  report.code = *changed;
  EXPECT_THAT(FormatRegenerationReport(report, false),
              HasSubstr("2 files changed, 3 insertions(+), 1 deletions(-)"));
  const json as_json = json::parse(FormatRegenerationReport(report, true));
  EXPECT_EQ(as_json["code"]["insertions"], 3);
  EXPECT_EQ(as_json["code"]["after_branch"], "factory/r3");
}

TEST(CompareTasksTest, PairsTasksByBacklogId) {
  auto view = [](std::string key, std::string state, int attempts, double cost) {
    RunTaskView task;
    task.key = std::move(key);
    task.state = std::move(state);
    task.attempts = attempts;
    task.cost_usd = cost;
    return task;
  };
  RunDetails before;
  before.tasks = {view("a", "done", 1, 0.5), view("b", "failed", 3, 1.0),
                  view("old", "done", 1, 0)};
  RunDetails after;
  after.tasks = {view("a", "done", 1, 0.25), view("b", "done", 2, 0.75), view("new", "done", 1, 0)};
  const auto tasks = CompareTasks(&before, after);
  ASSERT_EQ(tasks.size(), 4u);
  EXPECT_EQ(tasks[0].key, "a");
  EXPECT_FALSE(tasks[0].changed()) << "same state and attempts; cost may differ";
  EXPECT_EQ(tasks[0].before->cost_usd, 0.5);
  EXPECT_EQ(tasks[1].key, "b");
  EXPECT_TRUE(tasks[1].changed());
  EXPECT_EQ(tasks[1].before->state, "failed");
  EXPECT_EQ(tasks[1].after->attempts, 2);
  EXPECT_EQ(tasks[2].key, "new");
  EXPECT_FALSE(tasks[2].before.has_value());
  EXPECT_EQ(tasks[3].key, "old");
  EXPECT_FALSE(tasks[3].after.has_value());

  const auto alone = CompareTasks(nullptr, after);
  ASSERT_EQ(alone.size(), 3u);
  for (const auto& task : alone) EXPECT_TRUE(task.changed());
}

}  // namespace
}  // namespace factory::feature
