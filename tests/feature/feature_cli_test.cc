// `factory run FEATURE.md` through the real binary on a temporary git repository: planned by
// the scripted fake provider (loopback HTTP), built by a script agent through the run pipeline,
// merged on the run's integration branch. Also: a feature run killed mid-planning and resumed
// plans nothing twice (counted at the fake), and a backlog that stays invalid fails with exit 1
// and the errors.

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
    Sh(dir(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "printf '# greeter\\n' > README.md && "
       "printf '! grep -rq PLANNING-MARKER out 2>/dev/null\\n' > check.sh && "
       "git add -A && git commit -qm init");
    sandbox_.Ok({"init"});
    for (const char* example : {"builder.md", "claude-coder.md", "llm-coder.md"}) {
      fs::remove(sandbox_.Path(std::string(".factory/agents/") + example));
    }
    // The builder copies the task file it was given into the worktree: what the test then
    // finds on the integration branch is exactly what the attempt saw.
    const fs::path script = sandbox_.Path(".factory/scripts/copy-task.sh");
    testing::WriteFile(script,
                       "mkdir -p out && cp \"$FACTORY_TASK_FILE\" \"out/$FACTORY_TASK_ID.json\"\n");
    testing::WriteFile(sandbox_.Path(".factory/agents/builder.md"),
                       "---\nname: builder\nrole: copies its task file\nrunner: script\n"
                       "command: sh " +
                           script.string() + "\ncapabilities: [code]\nconcurrency: 1\n---\n");
    testing::WriteFile(sandbox_.Path(".factory/config.yaml"),
                       "concurrency: 1\nmax_attempts: 2\n"
                       "gates:\n  - {name: check, command: sh check.sh, timeout: 60}\n"
                       "protected: [check.sh, \".factory/**\"]\n");
    testing::WriteFile(sandbox_.Path(".factory/models.yaml"),
                       testing::ModelsYaml(fake_.openai_base_url(), kKeyVariable));
    testing::WriteFile(sandbox_.Path("greetings.md"),
                       "# Greetings\n\nGreet the user, then say goodbye.\n");
  }

  const fs::path& dir() const { return sandbox_.dir(); }
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
