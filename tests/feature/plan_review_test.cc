// Plan review and resuming a feature run from every stage, through the real binary on a
// temporary git repository, planned by the scripted fake provider (loopback HTTP) and built by a
// script agent: `factory run FEATURE.md --plan-only`, then `factory run --spec FEATURE` on the
// stored (and edited) BACKLOG.yaml; a done feature run again; a planning killed (SIGKILL) or
// interrupted (SIGINT) and continued by `factory run resume RUN` with the finished planners
// re-used (counted at the fake); models that cannot be used refused before any call; planning
// shown in the progress lines and counted in the run's cost.

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
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyVariable[] = "PLAN_REVIEW_TEST_KEY";

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

class PlanReviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Sh(dir(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "printf '# greeter\\n' > README.md && printf 'true\\n' > check.sh && "
       "git add -A && git commit -qm init");
    sandbox_.Ok({"init"});
    for (const char* example : {"builder.md", "claude-coder.md", "llm-coder.md"}) {
      fs::remove(sandbox_.Path(std::string(".factory/agents/") + example));
    }
    const fs::path script = sandbox_.Path(".factory/scripts/copy-task.sh");
    testing::WriteFile(script,
                       "mkdir -p out && cp \"$FACTORY_TASK_FILE\" \"out/$FACTORY_TASK_ID.json\"\n");
    testing::WriteFile(sandbox_.Path(".factory/agents/builder.md"),
                       "---\nname: builder\nrole: copies its task file\nrunner: script\n"
                       "command: sh " +
                           script.string() + "\ncapabilities: [code]\nconcurrency: 1\n---\n");
    WriteConfig("");
    testing::WriteFile(sandbox_.Path(".factory/models.yaml"),
                       testing::ModelsYaml(fake_.openai_base_url(), kKeyVariable));
    testing::WriteFile(sandbox_.Path("greetings.md"),
                       "# Greetings\n\nGreet the user, then say goodbye.\n");
  }

  void WriteConfig(const std::string& extra_gates) {
    testing::WriteFile(sandbox_.Path(".factory/config.yaml"),
                       "concurrency: 1\nmax_attempts: 2\n"
                       "gates:\n  - {name: check, command: sh check.sh, timeout: 60}\n" +
                           extra_gates + "protected: [check.sh, \".factory/**\"]\n" +
                           "sandbox: {read_paths: [\"" +
                           sandbox_.Path(".factory/scripts").string() + "\"]}\n");
  }

  const fs::path& dir() const { return sandbox_.dir(); }
  fs::path spec_dir() const { return sandbox_.Path(".factory/specs/greetings"); }
  json Metadata() const { return json::parse(testing::ReadFile(spec_dir() / "metadata.json")); }

  testing::SpawnOptions WithKey() const {
    testing::SpawnOptions options;
    options.env[kKeyVariable] = "sk-plan-review-test";
    return options;
  }
  CliResult Run(const std::vector<std::string>& args) {
    return sandbox_.Run(args, WithKey(), 120'000);
  }

  // Planners answer at once except QA, which waits qa_delay_ms; the backlog agent answers
  // `backlogs` in turn.
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

  // Starts `factory run greetings.md --run-id RUN` with a QA planner that never answers in
  // time, and waits until the spec and architecture planners' outputs are saved.
  pid_t StartPlanningThatHangs(const std::string& run_id) {
    Script({testing::ValidBacklogJson()}, /*qa_delay_ms=*/60'000);
    testing::SpawnOptions options = WithKey();
    options.cwd = dir();
    options.stderr_path = (dir() / ".." / (run_id + ".err")).lexically_normal().string();
    stderr_path_ = options.stderr_path;
    const pid_t pid =
        testing::SpawnFactory({"run", "greetings.md", "--run-id", run_id, "--plain"}, options);
    const bool saved = testing::WaitUntil(
        [&] {
          const json metadata =
              json::parse(testing::ReadFile(spec_dir() / "metadata.json"), nullptr, false);
          if (!metadata.is_object() || !metadata.contains("planners")) return false;
          const json& planners = metadata["planners"];
          auto done = [&](const char* name) {
            return planners.contains(name) && planners[name].is_object() &&
                   planners[name].value("status", "") == "done";
          };
          auto running = [&](const char* name) {
            return planners.contains(name) && planners[name].is_object() &&
                   planners[name].value("status", "") == "running";
          };
          return done("spec") && done("architecture") && running("qa");
        },
        30'000);
    EXPECT_TRUE(saved) << testing::ReadFile(spec_dir() / "metadata.json");
    return pid;
  }

  FakeProviderServer fake_;
  CliSandbox sandbox_;
  std::string stderr_path_;
};

TEST_F(PlanReviewTest, PlanOnlyPrintsTheBacklogAndSpecBuildsTheEditedPlan) {
  Script({testing::ValidBacklogJson()});
  CliResult planned = Run({"run", "greetings.md", "--run-id", "rev1", "--plan-only", "--plain"});
  ASSERT_EQ(planned.exit_code, 0) << planned.err;
  // The backlog for review: tasks, dependencies, scopes, acceptance, and how to build it.
  EXPECT_THAT(planned.out, HasSubstr("greeting: Write the greeting"));
  EXPECT_THAT(planned.out, HasSubstr("farewell: Write the farewell"));
  EXPECT_THAT(planned.out, HasSubstr("depends on: greeting"));
  EXPECT_THAT(planned.out, HasSubstr("scope: out/**"));
  EXPECT_THAT(planned.out, HasSubstr("- out/farewell.txt exists"));
  EXPECT_THAT(planned.out, HasSubstr("factory run --spec greetings"));
  EXPECT_EQ(Metadata()["status"], "planned");
  EXPECT_EQ(Steps().size(), 4u) << "3 planners and the backlog agent";
  // Nothing was built, but the run is known.
  EXPECT_THAT(Sh(dir(), "git branch --list 'factory/*'"), Not(HasSubstr("rev1")));
  const json runs = sandbox_.Ok({"runs", "--json"}).Json();
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_EQ(runs[0]["run_id"], "rev1");
  EXPECT_EQ(runs[0]["total"], 0);
  EXPECT_EQ(runs[0]["state"], "planned");
  EXPECT_EQ(runs[0]["feature_id"], "greetings");

  // The JSON form of the same plan (the stored one, checked again: no call).
  CliResult again = Run({"run", "--spec", "greetings", "--plan-only", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const json plan = again.Json();
  EXPECT_EQ(plan["feature"], "greetings");
  EXPECT_EQ(plan["run_id"], "rev1");
  ASSERT_EQ(plan["tasks"].size(), 2u) << plan.dump(2);
  EXPECT_EQ(plan["tasks"][1]["depends_on"], json::array({"greeting"}));
  EXPECT_EQ(plan["tasks"][1]["scope"], json::array({"out/**"}));
  EXPECT_EQ(plan["tasks"][1]["acceptance"], json::array({"out/farewell.txt exists"}));
  EXPECT_EQ(plan["build_command"], "factory run --spec greetings");
  EXPECT_EQ(fake_.request_count(), 4u);

  // The user drops the farewell task, then builds what is left: no planning.
  testing::WriteFile(spec_dir() / "BACKLOG.yaml",
                     "tasks:\n"
                     "  - id: greeting\n"
                     "    title: Write the greeting, edited\n"
                     "    description: Create out/greeting.txt saying hello.\n"
                     "    acceptance: [out/greeting.txt exists]\n"
                     "    capabilities: [code]\n"
                     "    scope: [\"out/**\"]\n");
  CliResult built = Run({"run", "--spec", "greetings", "--plain", "--json"});
  ASSERT_EQ(built.exit_code, 0) << built.err;
  const json summary = built.Json();
  EXPECT_EQ(summary["done"], 1) << built.out;
  EXPECT_EQ(summary["total"], 1);
  EXPECT_EQ(summary["run_id"], "rev1");
  EXPECT_EQ(summary["feature"]["status"], "done");
  EXPECT_EQ(fake_.request_count(), 4u) << "building a stored plan calls no model";
  const std::string files = Sh(dir(), "git ls-tree -r --name-only factory/rev1 out");
  EXPECT_EQ(files, "out/greeting.json\n");
  EXPECT_EQ(Metadata()["status"], "done");
}

// Without --run-id, the request of a planned (not yet built) version continues that version.
TEST_F(PlanReviewTest, RunningTheRequestAgainBuildsItsPlannedVersion) {
  Script({testing::ValidBacklogJson()});
  ASSERT_EQ(Run({"run", "greetings.md", "--plan-only"}).exit_code, 0);
  const std::string run_id = Metadata()["run_id"];
  CliResult built = Run({"run", "greetings.md", "--plain", "--json"});
  ASSERT_EQ(built.exit_code, 0) << built.err;
  EXPECT_THAT(built.err, HasSubstr("continuing version 1 of feature greetings (run " + run_id));
  EXPECT_EQ(built.Json()["run_id"], run_id);
  EXPECT_EQ(built.Json()["done"], 2);
  EXPECT_EQ(fake_.request_count(), 4u) << "planned once";
  EXPECT_EQ(Metadata()["version"], 1);
}

TEST_F(PlanReviewTest, AnEditedBacklogWithErrorsIsRefusedNamingFileAndLine) {
  Script({testing::ValidBacklogJson()});
  ASSERT_EQ(Run({"run", "greetings.md", "--run-id", "rev2", "--plan-only"}).exit_code, 0);
  // Line 7: a scope over the whole repository; the second task (line 8) has no acceptance and
  // depends on a task that does not exist.
  testing::WriteFile(spec_dir() / "BACKLOG.yaml",
                     "tasks:\n"
                     "  - id: greeting\n"
                     "    title: Write the greeting\n"
                     "    acceptance: [out/greeting.txt exists]\n"
                     "    capabilities: [code]\n"
                     "    scope:\n"
                     "      - \"**\"\n"
                     "  - id: farewell\n"
                     "    title: Write the farewell\n"
                     "    depends_on: [nowhere]\n"
                     "    capabilities: [code]\n"
                     "    scope: [\"out/**\"]\n");
  CliResult refused = Run({"run", "--spec", "greetings", "--plain"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  const std::string file = (spec_dir() / "BACKLOG.yaml").string();
  EXPECT_THAT(refused.err, HasSubstr(file + ":7: task 'greeting': field 'tasks[0].scope[0]': "
                                            "'**' matches the whole repository"));
  EXPECT_THAT(refused.err, HasSubstr(file + ":8: task 'farewell': field 'tasks[1].acceptance'"));
  EXPECT_THAT(refused.err, HasSubstr("unknown dependency 'nowhere'"));
  EXPECT_THAT(Sh(dir(), "git branch --list 'factory/*'"), Not(HasSubstr("rev2")));
  EXPECT_EQ(Metadata()["status"], "planned");

  // A feature that was never planned has no stored plan to build.
  CliResult unknown = Run({"run", "--spec", "nosuch"});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.err;
}

TEST_F(PlanReviewTest, ADoneFeatureIsNotPlannedAgainUnlessANewVersionIsAsked) {
  Script({testing::ValidBacklogJson()});
  ASSERT_EQ(Run({"run", "greetings.md", "--run-id", "rev3", "--plain"}).exit_code, 0);
  ASSERT_EQ(Metadata()["status"], "done");
  const size_t requests = fake_.request_count();

  CliResult again = Run({"run", "greetings.md", "--plain"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("feature greetings is already done (version 1, run rev3"));
  EXPECT_THAT(again.out, HasSubstr("--new-version"));
  EXPECT_EQ(fake_.request_count(), requests);
  EXPECT_EQ(Metadata()["version"], 1);
  CliResult spec = Run({"run", "--spec", "greetings", "--json"});
  EXPECT_EQ(spec.exit_code, 0) << spec.err;
  EXPECT_TRUE(spec.Json()["feature"]["already_done"]);
  EXPECT_EQ(fake_.request_count(), requests);

  CliResult fresh = Run({"run", "greetings.md", "--new-version", "--run-id", "rev3b", "--plain"});
  EXPECT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_EQ(fake_.request_count(), requests + 4) << "3 planners and the backlog agent";
  EXPECT_EQ(Metadata()["version"], 2);
  EXPECT_EQ(Metadata()["run_id"], "rev3b");
  EXPECT_TRUE(fs::exists(spec_dir() / "history/v1/metadata.json"));
}

TEST_F(PlanReviewTest, APlanningKilledAfterItsFirstPlannersResumesReusingThem) {
  const pid_t pid = StartPlanningThatHangs("rev4");
  // The run exists from its first moment.
  const json runs = sandbox_.Ok({"runs", "--json"}).Json();
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_EQ(runs[0]["run_id"], "rev4");
  EXPECT_EQ(runs[0]["state"], "planning");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  waitpid(pid, nullptr, 0);
  const size_t before = fake_.request_count();
  EXPECT_EQ(before, 3u);

  Script({testing::ValidBacklogJson()});
  CliResult resumed = Run({"run", "resume", "rev4", "--plain", "--json"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(Steps(before), (std::vector<std::string>{"qa", "backlog"}));
  EXPECT_THAT(resumed.err, HasSubstr("2 planner output(s) reused"));
  const json summary = resumed.Json();
  EXPECT_EQ(summary["done"], 2) << resumed.out;
  EXPECT_EQ(summary["feature"]["status"], "done");
  EXPECT_EQ(Metadata()["status"], "done");
  EXPECT_EQ(Metadata()["run_id"], "rev4");
}

TEST_F(PlanReviewTest, CtrlCDuringPlanningMarksThePlannersInterruptedAndSaysHowToResume) {
  const pid_t pid = StartPlanningThatHangs("rev5");
  ASSERT_EQ(kill(pid, SIGINT), 0);
  EXPECT_EQ(testing::WaitForExit(pid, 30'000), 130);
  const std::string err = testing::ReadFile(stderr_path_);
  EXPECT_THAT(err, HasSubstr("planning of feature greetings interrupted (qa marked interrupted)"));
  EXPECT_THAT(err, HasSubstr("factory run resume rev5"));
  json metadata = Metadata();
  EXPECT_EQ(metadata["status"], "interrupted");
  EXPECT_EQ(metadata["planners"]["qa"]["status"], "interrupted");
  EXPECT_EQ(metadata["planners"]["spec"]["status"], "done");
  EXPECT_EQ(sandbox_.Ok({"runs", "--json"}).Json()[0]["state"], "interrupted");

  const size_t before = fake_.request_count();
  Script({testing::ValidBacklogJson()});
  CliResult resumed = Run({"run", "resume", "rev5", "--plain"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(Steps(before), (std::vector<std::string>{"qa", "backlog"}));
  EXPECT_EQ(Metadata()["status"], "done");
}

TEST_F(PlanReviewTest, ModelsThatCannotBeUsedAreRefusedBeforeAnyCall) {
  Script({testing::ValidBacklogJson()});
  // No key variable for the planners' provider.
  CliResult no_key = sandbox_.Run({"run", "greetings.md", "--plain"}, {}, 60'000);
  EXPECT_EQ(no_key.exit_code, 4) << no_key.err;
  EXPECT_THAT(no_key.err, HasSubstr("planning:"));
  EXPECT_THAT(no_key.err, HasSubstr(kKeyVariable));
  EXPECT_EQ(fake_.request_count(), 0u);

  // A review gate whose model's provider has no key: refused before planning pays.
  std::string models = testing::ModelsYaml(fake_.openai_base_url(), kKeyVariable);
  models.replace(models.find("models:\n"), 8,
                 "  other: {kind: openai, base_url: \"" + fake_.openai_base_url() +
                     "\", api_key_env: PLAN_REVIEW_TEST_UNSET_KEY, timeout_s: 30}\nmodels:\n"
                     "  review-model: {provider: other, model: fake-review, input_per_mtok: 1.0, "
                     "output_per_mtok: 2.0, context_window: 100000, max_output_tokens: 2000}\n");
  testing::WriteFile(sandbox_.Path(".factory/models.yaml"), models);
  WriteConfig("  - {name: review, kind: review, model: review-model}\n");
  CliResult reviewer = Run({"run", "greetings.md", "--plain"});
  EXPECT_EQ(reviewer.exit_code, 4) << reviewer.err;
  EXPECT_THAT(reviewer.err, HasSubstr("review gate 'review' (model review-model)"));
  EXPECT_THAT(reviewer.err, HasSubstr("PLAN_REVIEW_TEST_UNSET_KEY"));
  EXPECT_EQ(fake_.request_count(), 0u);
}

TEST_F(PlanReviewTest, PlanningIsShownAndCountedInTheRunsCost) {
  Script({testing::ValidBacklogJson()});
  CliResult result = Run({"run", "greetings.md", "--run-id", "rev6", "--plain"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* planner : {"spec", "architecture", "qa", "backlog"}) {
    EXPECT_THAT(result.out, HasSubstr(std::string("plan   ") + planner + " running"));
    EXPECT_THAT(result.out, HasSubstr(std::string("plan   ") + planner + " done in "));
  }
  EXPECT_THAT(result.out, HasSubstr("final  check passed in "));
  // A task's start never comes before the end of the task it depends on.
  const size_t greeting_done = result.out.find("done    greeting");
  const size_t farewell_start = result.out.find("start  farewell");
  ASSERT_NE(greeting_done, std::string::npos) << result.out;
  ASSERT_NE(farewell_start, std::string::npos) << result.out;
  EXPECT_LT(greeting_done, farewell_start) << result.out;

  // The planning calls' cost (the ledger's, 3 planners + 1 backlog answer) is the run's.
  const json shown = sandbox_.Ok({"run", "show", "rev6", "--json"}).Json();
  const double planning = shown["summary"]["planning_cost_usd"].get<double>();
  // plan-model: $2/Mtok in, $8/Mtok out.
  const double expected = 3 * (500 * 2.0 + 50 * 8.0) / 1e6 + (800 * 2.0 + 100 * 8.0) / 1e6;
  EXPECT_NEAR(planning, expected, 1e-9) << shown.dump(2);
  EXPECT_NEAR(shown["summary"]["cost_usd"].get<double>(), expected, 1e-9);
  const json runs = sandbox_.Ok({"runs", "--json"}).Json();
  EXPECT_NEAR(runs[0]["cost_usd"].get<double>(), expected, 1e-9);
}

}  // namespace
}  // namespace factory
