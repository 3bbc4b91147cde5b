// `factory run FEATURE.md` through the real binary on a temporary git repository: planned by
// the scripted fake provider (loopback HTTP), built by a script agent through the run pipeline,
// merged on the run's integration branch, then checked by the final gates on the integration
// branch's tip. Also: a feature run killed mid-planning and resumed plans nothing twice (counted
// at the fake), a backlog that stays invalid fails with exit 1 and the errors, final gates that
// fail on the merged whole fail the feature, a run killed during its final gates runs them on
// the next try, and `factory regenerate` builds the stored spec again and compares.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"
#include "common/script_project.h"
#include "common/test_repo.h"
#include "feature_test_util.h"
#include "ledger/ledger.h"
#include "llm/fake_provider.h"
#include "store/store.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using llm::fake::RecordedRequest;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyVariable[] = "FEATURE_CLI_TEST_KEY";

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

class FeatureCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The gate: no file of the project may carry planning text (clean contexts), and every
    // task's output must be there once its task is done.
    testing::InitGitRepo(dir(), {{"README.md", "# greeter\n"},
                                 {"check.sh", "! grep -rq PLANNING-MARKER out 2>/dev/null\n"}});
    sandbox_.Ok({"init"});
    project_.RemoveExampleAgents();
    // The builder copies the task file it was given into the worktree: what the test then
    // finds on the integration branch is exactly what the attempt saw.
    project_.AddScriptAgent(
        "builder", "mkdir -p out && cp \"$FACTORY_TASK_FILE\" \"out/$FACTORY_TASK_ID.json\"\n",
        "copies its task file", "concurrency: 1\n");
    project_.WriteConfig(
        "concurrency: 1\nmax_attempts: 2\n"
        "gates:\n  - {name: check, command: sh check.sh, timeout: 60}\n"
        "protected: [check.sh, \".factory/**\"]\n");
    testing::WriteFile(sandbox_.Path(".factory/models.yaml"),
                       testing::ModelsYaml(fake_.openai_base_url(), kKeyVariable));
    testing::WriteFile(sandbox_.Path("greetings.md"),
                       "# Greetings\n\nGreet the user, then say goodbye.\n");
  }

  const fs::path& dir() const { return sandbox_.dir(); }
  std::string ScriptsReadable() const { return project_.ScriptsReadable(); }
  fs::path spec_dir() const { return sandbox_.Path(".factory/specs/greetings"); }

  testing::SpawnOptions WithKey() const {
    testing::SpawnOptions options;
    options.env[kKeyVariable] = "sk-feature-cli-test";
    return options;
  }
  CliResult Run(const std::vector<std::string>& args) {
    return sandbox_.Run(args, WithKey(), 120'000);
  }

  // Planners answer after qa_delay_ms for the QA planner (0 for the others); the backlog agent
  // answers `backlogs` in turn.
  void Script(std::vector<std::string> backlogs, int qa_delay_ms = 0) {
    auto count = std::make_shared<std::atomic<int>>(0);
    fake_.SetResponder([=](const RecordedRequest& request) -> std::optional<FakeReply> {
      const std::string step = testing::StepOf(request);
      if (step == "spec" || step == "architecture" || step == "qa") {
        return FakeReply::Text(testing::PlannerDocument(step),
                               {.input_tokens = 500, .output_tokens = 50})
            .WithDelay(step == "qa" ? qa_delay_ms : 0);
      }
      if (step == "backlog" || step == "repair") {
        const size_t index = std::min<size_t>(count->fetch_add(1), backlogs.size() - 1);
        return FakeReply::Text(backlogs[index], {.input_tokens = 800, .output_tokens = 100});
      }
      return FakeReply::Error(400, "unexpected request");
    });
  }

  std::vector<std::string> Steps(size_t from = 0) const {
    std::vector<std::string> steps;
    const auto requests = fake_.requests();
    for (size_t index = from; index < requests.size(); ++index) {
      steps.push_back(testing::StepOf(requests[index]));
    }
    return steps;
  }

  json Metadata() const { return json::parse(testing::ReadFile(spec_dir() / "metadata.json")); }

  // The kinds of the run's events, in order.
  std::vector<std::string> EventKinds(const std::string& run_id) const {
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox_.DbPath().string()});
    EXPECT_TRUE(store.has_value());
    if (!store) return {};
    std::vector<std::string> kinds;
    Status read = (*store)->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto events,
                               txn.ListEvents(EventQuery{.run_id = run_id, .limit = 10'000}));
      for (const auto& event : events) kinds.push_back(event.kind);
      return Ok();
    });
    EXPECT_TRUE(read.has_value()) << read.error().ToString();
    return kinds;
  }

  // A second gate, committed on main, that fails (exit 3) on a merge commit, i.e. only on the
  // integration branch's tip (the merge queue merges with --no-ff), never on an attempt's own
  // commit: the merged whole is broken although every task passed. With WHOLE_SLEEP set it
  // sleeps there instead (to be killed mid-way).
  void AddWholeGate() {
    Sh(dir(),
       "printf 'if [ \"$(git cat-file -p HEAD | grep -c \"^parent \")\" -ge 2 ]; then\n"
       "  if [ -n \"$WHOLE_SLEEP\" ]; then sleep 60; fi\n"
       "  echo integration check: the whole is broken; exit 3\nfi\n' > whole.sh && "
       "git add whole.sh && git commit -qm whole");
    WriteConfig(true);
  }
  void WriteConfig(bool with_whole_gate) {
    testing::WriteFile(
        sandbox_.Path(".factory/config.yaml"),
        std::string("concurrency: 1\nmax_attempts: 2\n"
                    "gates:\n  - {name: check, command: sh check.sh, timeout: 60}\n") +
            (with_whole_gate ? "  - {name: whole, command: sh whole.sh, timeout: 90}\n" : "") +
            "protected: [check.sh, whole.sh, \".factory/**\"]\n" + ScriptsReadable());
  }

  // The builder writes out/<task>.txt with `content` (deterministic: two builds of the same
  // backlog give identical trees).
  void WriteDeterministicBuilder(const std::string& content) {
    testing::WriteFile(project_.ScriptsDir() / "builder.sh",
                       "mkdir -p out && echo '" + content +
                           "' \"$FACTORY_TASK_ID\" > \"out/$FACTORY_TASK_ID.txt\"\n");
  }

  std::vector<ModelCallRow> LedgerRows(const std::string& run_id) const {
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox_.DbPath().string()});
    EXPECT_TRUE(store.has_value());
    if (!store) return {};
    ledger::Ledger ledger(**store);
    auto rows = ledger.Calls(ModelCallQuery{.run_id = run_id});
    EXPECT_TRUE(rows.has_value());
    return rows ? *rows : std::vector<ModelCallRow>{};
  }

  FakeProviderServer fake_;
  CliSandbox sandbox_;
  testing::ScriptProject project_{sandbox_.dir()};
};

TEST_F(FeatureCliTest, AFeatureIsPlannedThenBuiltOnTheIntegrationBranch) {
  Script({testing::InvalidBacklogJson(), testing::ValidBacklogJson()});
  CliResult result = Run({"run", "greetings.md", "--run-id", "feat1", "--plain", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const json summary = result.Json();
  EXPECT_EQ(summary["done"], 2) << result.out;
  EXPECT_EQ(summary["total"], 2);
  EXPECT_THAT(result.err, HasSubstr("planned 2 tasks"));

  // Both tasks merged; each attempt saw its own task's spec and acceptance, no planning text.
  const std::string files = Sh(dir(), "git ls-tree -r --name-only factory/feat1 out");
  EXPECT_EQ(std::count(files.begin(), files.end(), '\n'), 2) << files;
  const std::string contents = Sh(dir(), "git archive factory/feat1 out | tar -xO");
  EXPECT_THAT(contents, HasSubstr("Create out/greeting.txt saying hello."));
  EXPECT_THAT(contents, HasSubstr("out/farewell.txt exists"));
  EXPECT_THAT(contents, Not(HasSubstr("PLANNING-MARKER")));
  EXPECT_THAT(contents, Not(HasSubstr("Greet the user")));

  // The spec folder, and the run's model calls in the ledger: 3 planners + 2 backlog answers.
  const json metadata = json::parse(testing::ReadFile(spec_dir() / "metadata.json"));
  EXPECT_EQ(metadata["status"], "done");
  EXPECT_EQ(metadata["attempts"], 2);
  EXPECT_EQ(metadata["build"]["done"], 2);
  EXPECT_TRUE(fs::exists(spec_dir() / "PLAN.md"));
  EXPECT_TRUE(fs::exists(spec_dir() / "context.md"));
  EXPECT_THAT(testing::ReadFile(spec_dir() / "BACKLOG.yaml"), HasSubstr("id: farewell"));
  EXPECT_EQ(LedgerRows("feat1").size(), 5u);

  // `run show` knows the run like any other.
  const json shown = sandbox_.Ok({"run", "show", "feat1", "--json"}).Json();
  EXPECT_EQ(shown["summary"]["done"], 2) << shown.dump();

  // The final gates ran on the integration branch's tip, logs in the spec folder.
  EXPECT_EQ(summary["feature"]["status"], "done") << result.out;
  EXPECT_EQ(summary["feature"]["final_gates"], "passed");
  const json final_gates = metadata["final_gates"];
  EXPECT_EQ(final_gates["status"], "passed") << metadata.dump(2);
  EXPECT_EQ(final_gates["commit"], Sh(dir(), "git rev-parse factory/feat1").substr(0, 40));
  ASSERT_EQ(final_gates["gates"].size(), 1u);
  EXPECT_EQ(final_gates["gates"][0]["name"], "check");
  EXPECT_TRUE(fs::exists(spec_dir() / "final-gates" / "1-check.log"));
  EXPECT_THAT(result.err, HasSubstr("final gates passed on factory/feat1"));
  const auto kinds = EventKinds("feat1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "feature.final_gates.passed"), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "feature.final_gates.failed"), 0);
  // The checkout is gone.
  EXPECT_THAT(Sh(dir(), "git worktree list"), Not(HasSubstr("_final")));
}

TEST_F(FeatureCliTest, FinalGatesThatFailOnTheIntegrationBranchFailTheFeature) {
  AddWholeGate();
  Script({testing::ValidBacklogJson()});
  CliResult result = Run({"run", "greetings.md", "--run-id", "feat4", "--plain", "--json"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  // Every task passed its gates (whole.sh passes on an attempt's commit)...
  const json summary = result.Json();
  EXPECT_EQ(summary["done"], 2) << result.out;
  EXPECT_EQ(summary["feature"]["status"], "failed");
  EXPECT_EQ(summary["feature"]["final_gates"], "failed");
  // ...but not the merged whole: a clear message with the gate, its exit code and its output.
  EXPECT_THAT(result.err, HasSubstr("feature greetings: final gate 'whole' failed (exit 3) on the "
                                    "integration branch factory/feat4"));
  EXPECT_THAT(result.err, HasSubstr("integration check: the whole is broken"));
  json metadata = Metadata();
  EXPECT_EQ(metadata["status"], "failed");
  EXPECT_EQ(metadata["build"]["done"], 2);
  EXPECT_EQ(metadata["final_gates"]["status"], "failed");
  EXPECT_EQ(metadata["final_gates"]["failed_gate"], "whole");
  EXPECT_EQ(metadata["final_gates"]["exit_code"], 3);
  EXPECT_THAT(metadata["final_gates"]["output_tail"].get<std::string>(),
              HasSubstr("the whole is broken"));
  EXPECT_EQ(metadata["final_gates"]["gates"].size(), 2u) << "check passed, then whole failed";
  EXPECT_THAT(testing::ReadFile(spec_dir() / "final-gates" / "2-whole.log"),
              HasSubstr("the whole is broken"));
  auto kinds = EventKinds("feat4");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "feature.final_gates.failed"), 1);

  // Without the gate that broke, the next run of the feature runs the final gates again (no
  // planning, no building) and the feature is done.
  WriteConfig(false);
  const size_t requests = fake_.request_count();
  CliResult again = Run({"run", "greetings.md", "--run-id", "feat4", "--plain", "--json"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(fake_.request_count(), requests);
  EXPECT_THAT(again.err, HasSubstr("0 new tasks, 2 already there"));
  metadata = Metadata();
  EXPECT_EQ(metadata["status"], "done");
  EXPECT_EQ(metadata["final_gates"]["status"], "passed");
  kinds = EventKinds("feat4");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "feature.final_gates.passed"), 1);

  // And once more: they passed on this tip, so they are not run again.
  CliResult third = Run({"run", "greetings.md", "--run-id", "feat4", "--plain"});
  EXPECT_EQ(third.exit_code, 0) << third.err;
  EXPECT_THAT(third.err, HasSubstr("not run again"));
  kinds = EventKinds("feat4");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "feature.final_gates.passed"), 1);
}

TEST_F(FeatureCliTest, AFeatureKilledDuringItsFinalGatesRunsThemWhenResumed) {
  AddWholeGate();
  Script({testing::ValidBacklogJson()});
  testing::SpawnOptions options = WithKey();
  options.cwd = dir();
  options.env["WHOLE_SLEEP"] = "1";
  const pid_t pid =
      testing::SpawnFactory({"run", "greetings.md", "--run-id", "feat6", "--plain"}, options);
  const bool verifying = testing::WaitUntil(
      [&] {
        const json metadata =
            json::parse(testing::ReadFile(spec_dir() / "metadata.json"), nullptr, false);
        return metadata.is_object() && metadata.value("status", "") == "verifying" &&
               fs::exists(spec_dir() / "final-gates" / "2-whole.log");
      },
      60'000);
  ASSERT_TRUE(verifying) << testing::ReadFile(spec_dir() / "metadata.json");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  waitpid(pid, nullptr, 0);
  EXPECT_FALSE(Metadata().contains("final_gates"));

  // The build is complete, its final gates never finished: resuming runs them (and only them).
  WriteConfig(false);
  const size_t requests = fake_.request_count();
  CliResult resumed = Run({"run", "greetings.md", "--run-id", "feat6", "--plain", "--json"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(fake_.request_count(), requests);
  EXPECT_EQ(resumed.Json()["feature"]["final_gates"], "passed");
  const json metadata = Metadata();
  EXPECT_EQ(metadata["status"], "done");
  EXPECT_EQ(metadata["final_gates"]["commit"],
            Sh(dir(), "git rev-parse factory/feat6").substr(0, 40));
  EXPECT_THAT(Sh(dir(), "git worktree list"), Not(HasSubstr("_final")));
}

// `factory run resume RUN` of a feature's run killed mid-build finishes the feature: the rest of
// the build, then the spec folder's status and the final gates, as `factory run FEATURE.md`
// would have at its end.
TEST_F(FeatureCliTest, RunResumeOfAFeatureKilledDuringItsBuildRunsItsFinalGates) {
  Script({testing::ValidBacklogJson()});
  const fs::path marker = sandbox_.Path(".factory/scripts/builder-sleeps");
  testing::WriteFile(marker, "");
  testing::WriteFile(
      project_.ScriptsDir() / "builder.sh",
      "if [ -f '" + marker.string() +
          "' ]; then touch builder-started; sleep 60; fi\n"
          "mkdir -p out && cp \"$FACTORY_TASK_FILE\" \"out/$FACTORY_TASK_ID.json\"\n");
  testing::SpawnOptions options = WithKey();
  options.cwd = dir();
  const pid_t pid =
      testing::SpawnFactory({"run", "greetings.md", "--run-id", "feat7", "--plain"}, options);
  // The kill lands while the builder runs (it marks its worktree, the one place the sandbox
  // lets it write), not while the factory's own git commands make that worktree: a SIGKILL
  // leaves those running, racing the resume.
  const auto builder_started = [&] {
    std::error_code error;
    for (fs::recursive_directory_iterator it(sandbox_.Path(".factory/worktrees/feat7"), error), end;
         !error && it != end; it.increment(error)) {
      if (it->path().filename() == "builder-started") return true;
    }
    return false;
  };
  const bool building = testing::WaitUntil(
      [&] {
        const json metadata =
            json::parse(testing::ReadFile(spec_dir() / "metadata.json"), nullptr, false);
        return metadata.is_object() && metadata.value("status", "") == "building" &&
               builder_started();
      },
      60'000);
  ASSERT_TRUE(building) << testing::ReadFile(spec_dir() / "metadata.json");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  waitpid(pid, nullptr, 0);
  EXPECT_EQ(Metadata()["status"], "building");
  EXPECT_FALSE(Metadata().contains("final_gates"));

  fs::remove(marker);
  const size_t requests = fake_.request_count();
  CliResult resumed = Run({"run", "resume", "feat7", "--plain"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(fake_.request_count(), requests);  // no planning
  const json metadata = Metadata();
  EXPECT_EQ(metadata["status"], "done");
  EXPECT_EQ(metadata["final_gates"]["status"], "passed");
  EXPECT_EQ(metadata["final_gates"]["commit"],
            Sh(dir(), "git rev-parse factory/feat7").substr(0, 40));
  EXPECT_THAT(EventKinds("feat7"), Contains("feature.final_gates.passed"));

  // Resuming the finished run again changes nothing: its final gates passed on this tip.
  CliResult again = Run({"run", "resume", "feat7", "--plain"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("not run again"));
  EXPECT_EQ(Metadata()["status"], "done");
}

TEST_F(FeatureCliTest, RegenerateBuildsTheStoredSpecAgainAndComparesTheResults) {
  WriteDeterministicBuilder("built");
  Script({testing::ValidBacklogJson()});
  ASSERT_EQ(Run({"run", "greetings.md", "--run-id", "feat5", "--plain"}).exit_code, 0);
  const std::string backlog_v1 = testing::ReadFile(spec_dir() / "BACKLOG.yaml");
  const size_t requests = fake_.request_count();

  // Version 2: the same backlog, no model call, a new run on a fresh integration branch. The
  // builder is deterministic, so the code is identical.
  CliResult second = Run({"regenerate", "greetings", "--plain", "--json"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(fake_.request_count(), requests) << "regenerating must not plan";
  json report = second.Json();
  EXPECT_EQ(report["feature"], "greetings");
  EXPECT_EQ(report["before"]["version"], 1);
  EXPECT_EQ(report["before"]["run_id"], "feat5");
  EXPECT_EQ(report["after"]["version"], 2);
  EXPECT_EQ(report["after"]["run_id"], "greetings-r2");
  EXPECT_EQ(report["after"]["status"], "done");
  EXPECT_EQ(report["after"]["done"], 2);
  EXPECT_EQ(report["final_gates"], "passed");
  ASSERT_EQ(report["tasks"].size(), 2u) << report.dump(2);
  for (const auto& task : report["tasks"]) {
    EXPECT_EQ(task["before"]["state"], "done");
    EXPECT_EQ(task["after"]["state"], "done");
    EXPECT_EQ(task["after"]["attempts"], 1);
    EXPECT_FALSE(task["changed"]);
  }
  EXPECT_EQ(report["tasks"][0]["id"], "greeting");
  EXPECT_TRUE(report["code"]["compared"]);
  EXPECT_TRUE(report["code"]["identical_trees"]) << report.dump(2);
  EXPECT_EQ(report["code"]["before_tip"], Sh(dir(), "git rev-parse factory/feat5").substr(0, 40));
  EXPECT_EQ(report["code"]["after_tip"],
            Sh(dir(), "git rev-parse factory/greetings-r2").substr(0, 40));
  EXPECT_NE(report["code"]["before_tip"], report["code"]["after_tip"]);

  // The spec folder: version 2 with version 1 in history/v1.
  json metadata = Metadata();
  EXPECT_EQ(metadata["version"], 2);
  EXPECT_EQ(metadata["run_id"], "greetings-r2");
  EXPECT_EQ(metadata["status"], "done");
  EXPECT_EQ(metadata["regenerated_from"]["run_id"], "feat5");
  EXPECT_EQ(metadata["regenerated_from"]["version"], 1);
  EXPECT_EQ(metadata["final_gates"]["status"], "passed");
  EXPECT_EQ(testing::ReadFile(spec_dir() / "BACKLOG.yaml"), backlog_v1);
  const json v1 = json::parse(testing::ReadFile(spec_dir() / "history/v1/metadata.json"));
  EXPECT_EQ(v1["run_id"], "feat5");
  EXPECT_EQ(v1["status"], "done");
  EXPECT_EQ(testing::ReadFile(spec_dir() / "history/v1/BACKLOG.yaml"), backlog_v1);
  EXPECT_TRUE(fs::exists(spec_dir() / "history/v1/PLAN.md"));

  // Version 3, from the request file, with other code: the text report shows the diff.
  WriteDeterministicBuilder("built again\nwith a second line");
  CliResult third = Run({"regenerate", "greetings.md", "--run-id", "greet-v3", "--plain"});
  ASSERT_EQ(third.exit_code, 0) << third.err;
  const std::string changed =
      Sh(dir(), "git diff --name-only factory/greetings-r2 factory/greet-v3");
  EXPECT_EQ(std::count(changed.begin(), changed.end(), '\n'), 2) << changed;
  EXPECT_THAT(third.out, HasSubstr("2 files changed, 4 insertions(+), 2 deletions(-)"));
  EXPECT_THAT(third.out, HasSubstr("out/greeting.txt"));
  EXPECT_THAT(third.out, HasSubstr("version 2 (run greetings-r2): done"));
  EXPECT_EQ(Metadata()["version"], 3);

  // The previous version's branch is gone: still built, but nothing to compare with (exit 4).
  Sh(dir(), "git branch -D factory/greet-v3");
  CliResult fourth = Run({"regenerate", "greetings", "--plain", "--json"});
  EXPECT_EQ(fourth.exit_code, 4) << fourth.err;
  EXPECT_THAT(fourth.err, HasSubstr("factory/greet-v3 does not exist"));
  report = fourth.Json();
  EXPECT_FALSE(report["code"]["compared"]);
  EXPECT_EQ(report["after"]["run_id"], "greetings-r4");
  EXPECT_EQ(report["after"]["status"], "done");
  EXPECT_EQ(Metadata()["status"], "done");
  EXPECT_EQ(fake_.request_count(), requests);
}

TEST_F(FeatureCliTest, RegenerateFailsWhenTheNewBuildFailsItsFinalGates) {
  Script({testing::ValidBacklogJson()});
  ASSERT_EQ(Run({"run", "greetings.md", "--run-id", "feat7", "--plain"}).exit_code, 0);
  AddWholeGate();
  CliResult result = Run({"regenerate", "greetings", "--plain", "--json"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("final gate 'whole' failed (exit 3)"));
  const json report = result.Json();
  EXPECT_EQ(report["after"]["status"], "failed");
  EXPECT_EQ(report["final_gates"], "failed");
  EXPECT_EQ(report["before"]["status"], "done");
  EXPECT_EQ(Metadata()["status"], "failed");
}

TEST_F(FeatureCliTest, RegenerateArgumentsAndUnknownFeatures) {
  CliResult help = Run({"regenerate", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--run-id"));
  EXPECT_EQ(Run({"regenerate"}).exit_code, 2);
  CliResult unknown = Run({"regenerate", "nosuch"});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("unknown feature 'nosuch'"));
  CliResult bad = Run({"regenerate", "Not a feature!"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("neither a feature id"));
  EXPECT_EQ(Run({"regenerate", "greetings", "--run-id", "..bad"}).exit_code, 2);

  // Planned but never valid: no backlog to build from.
  Script({testing::InvalidBacklogJson()});
  ASSERT_EQ(Run({"run", "greetings.md", "--run-id", "feat8", "--plain"}).exit_code, 1);
  CliResult nothing = Run({"regenerate", "greetings"});
  EXPECT_EQ(nothing.exit_code, 4) << nothing.err;
  EXPECT_THAT(nothing.err, HasSubstr("has no BACKLOG.yaml"));
  EXPECT_THAT(Sh(dir(), "git branch --list 'factory/*'"), Not(HasSubstr("greetings-r")));
}

TEST_F(FeatureCliTest, AFeatureRunKilledMidPlanningResumesWithoutPlanningTwice) {
  Script({testing::ValidBacklogJson()}, /*qa_delay_ms=*/60'000);
  testing::SpawnOptions options = WithKey();
  options.cwd = dir();
  const pid_t pid =
      testing::SpawnFactory({"run", "greetings.md", "--run-id", "feat2", "--plain"}, options);
  // Spec and architecture saved; QA still waiting for its answer.
  const bool saved = testing::WaitUntil(
      [&] {
        const std::string text = testing::ReadFile(spec_dir() / "metadata.json");
        if (text.empty()) return false;
        const json metadata = json::parse(text, nullptr, false);
        const json planners =
            metadata.is_object() ? metadata.value("planners", json::object()) : json::object();
        auto done = [&](const char* name) {
          return planners.contains(name) && planners[name].is_object() &&
                 planners[name].value("status", "") == "done";
        };
        if (planners.contains("spec") && !planners["spec"].is_object()) ADD_FAILURE() << text;
        return done("spec") && done("architecture");
      },
      30'000);
  ASSERT_TRUE(saved);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  waitpid(pid, nullptr, 0);
  const size_t before = fake_.request_count();
  EXPECT_EQ(before, 3u);

  Script({testing::ValidBacklogJson()});
  CliResult resumed = Run({"run", "greetings.md", "--run-id", "feat2", "--plain", "--json"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(Steps(before), (std::vector<std::string>{"qa", "backlog"}));
  EXPECT_THAT(resumed.err, HasSubstr("2 planner output(s) reused"));
  EXPECT_EQ(resumed.Json()["done"], 2);

  // Once built, running it again plans nothing and builds nothing.
  const size_t after = fake_.request_count();
  CliResult again = Run({"run", "greetings.md", "--run-id", "feat2", "--plain", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(fake_.request_count(), after);
  EXPECT_THAT(again.err, HasSubstr("0 new tasks, 2 already there"));
}

TEST_F(FeatureCliTest, ABacklogThatStaysInvalidFailsWithTheErrors) {
  Script({testing::InvalidBacklogJson()});
  CliResult result = Run({"run", "greetings.md", "--run-id", "feat3", "--plain"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("still invalid after 2 repairs"));
  EXPECT_THAT(result.err,
              HasSubstr("task 'greeting': field 'tasks[0].depends_on[0]': unknown dependency "
                        "'nowhere'"));
  EXPECT_EQ(Steps().size(), 6u) << "3 planners, 1 backlog answer, 2 repairs";
  // Nothing was built.
  EXPECT_THAT(Sh(dir(), "git branch --list 'factory/*'"), Not(HasSubstr("feat3")));
}

TEST_F(FeatureCliTest, BadFeatureArgumentsAreUsageErrors) {
  EXPECT_EQ(Run({"run", "missing.md"}).exit_code, 3);
  testing::WriteFile(sandbox_.Path("notes.txt"), "hello\n");
  CliResult wrong = Run({"run", "notes.txt"});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("notes.txt: a feature request is a Markdown file"));
  testing::WriteFile(sandbox_.Path("empty.md"), "\n  \n");
  EXPECT_EQ(Run({"run", "empty.md"}).exit_code, 2);
  testing::WriteFile(sandbox_.Path("backlog.yaml"), "tasks: []\n");
  CliResult both = Run({"run", "greetings.md", "--backlog", "backlog.yaml"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_THAT(both.err, HasSubstr("not both"));
  EXPECT_EQ(fake_.request_count(), 0u);
}

}  // namespace
}  // namespace factory
