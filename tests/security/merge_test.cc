// Merging failure: `factory run merge` must refuse a run whose tasks did not all succeed and a
// feature whose final gates failed on the integration branch, naming why (exit 4), and summaries
// must not suggest merging them. `--force --reason` overrides, recorded in the audit log. Through
// the real `factory` binary, real git, script agents and, for the feature, the scripted fake
// model provider on loopback HTTP.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "common/script_project.h"
#include "common/test_repo.h"
#include "feature/feature_test_util.h"
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

constexpr char kKeyVariable[] = "MERGE_SECURITY_TEST_KEY";

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

std::string Rev(const fs::path& dir, const std::string& ref) {
  return Sh(dir, "git rev-parse " + ref);
}

// The payloads of the run's events of `kind`, in order.
std::vector<json> EventsOf(const CliSandbox& sandbox, const std::string& run_id,
                           const std::string& kind) {
  std::vector<json> payloads;
  auto store = OpenSqliteStore(SqliteOptions{.path = sandbox.DbPath().string()});
  EXPECT_TRUE(store.has_value());
  if (!store) return payloads;
  Status read = (*store)->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto events,
                             txn.ListEvents(EventQuery{.run_id = run_id, .limit = 100'000}));
    for (const auto& event : events) {
      if (event.kind == kind) payloads.push_back(json::parse(event.payload_json));
    }
    return Ok();
  });
  EXPECT_TRUE(read.has_value()) << read.error().ToString();
  return payloads;
}

class MergeSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::InitGitRepo(dir(), {{"README.md", "hello\n"}});
    sandbox_.Ok({"init"});
    project_.RemoveExampleAgents();
    project_.WriteConfig(
        "concurrency: 1\nmax_attempts: 1\n"
        "gates:\n  - {name: check, command: 'true', timeout: 60}\n"
        "protected: [\".factory/**\"]\n");
    AddAgent("good", "echo good > good.txt\n");
    AddAgent("bad", "echo broken > bad.txt\nexit 1\n");
  }

  const fs::path& dir() const { return sandbox_.dir(); }

  void AddAgent(const std::string& name, const std::string& script) {
    project_.AddScriptAgent(name, script);
  }

  CliSandbox sandbox_;
  testing::ScriptProject project_{sandbox_.dir()};
};

TEST_F(MergeSecurityTest, AFailedRunIsNotMergedNorSuggestedUnlessForcedWithAReason) {
  testing::WriteFile(sandbox_.Path("backlog.yaml"),
                     "tasks:\n"
                     "  - id: fine\n    title: Fine\n    agent: good\n"
                     "  - id: broken\n    title: Broken\n    agent: bad\n");
  CliResult run = sandbox_.Run({"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--plain"});
  ASSERT_EQ(run.exit_code, cli::kExitFailed) << run.err;
  // The end summary says why the run is not mergeable and what to do, never to merge it.
  EXPECT_THAT(run.out, Not(HasSubstr("factory run merge")));
  EXPECT_THAT(run.out, HasSubstr("not mergeable: 1 of 2 tasks are not done: broken (failed)"));
  EXPECT_THAT(run.out, HasSubstr("factory task retry "));
  EXPECT_THAT(run.out, HasSubstr("factory run resume r1"));
  EXPECT_THAT(sandbox_.Ok({"run", "show", "r1"}).out, Not(HasSubstr("factory run merge")));
  const json shown = sandbox_.Ok({"run", "show", "r1", "--json"}).Json();
  EXPECT_EQ(shown["summary"]["mergeable"], false);
  EXPECT_EQ(shown["summary"]["merge_blockers"],
            json::array({"1 of 2 tasks are not done: broken (failed)"}));

  const std::string main_before = Rev(dir(), "main");
  CliResult refused = sandbox_.Run({"run", "merge", "r1"});
  EXPECT_EQ(refused.exit_code, cli::kExitPrecondition) << refused.err;
  EXPECT_THAT(refused.err,
              HasSubstr("run r1 is not mergeable: 1 of 2 tasks are not done: broken (failed)"));
  EXPECT_THAT(refused.err, HasSubstr("--force --reason"));
  EXPECT_EQ(Rev(dir(), "main"), main_before);

  // Forcing needs a reason; nothing happens without one.
  CliResult no_reason = sandbox_.Run({"run", "merge", "r1", "--force"});
  EXPECT_EQ(no_reason.exit_code, cli::kExitUsage) << no_reason.err;
  EXPECT_THAT(no_reason.err, HasSubstr("--reason"));
  EXPECT_EQ(Rev(dir(), "main"), main_before);
  EXPECT_TRUE(EventsOf(sandbox_, "r1", "run.merge_forced").empty());

  CliResult forced =
      sandbox_.Run({"run", "merge", "r1", "--force", "--reason", "ship the fine half now"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(Rev(dir(), "main"), main_before);
  EXPECT_EQ(testing::ReadFile(sandbox_.Path("good.txt")), "good\n");
  const auto overrides = EventsOf(sandbox_, "r1", "run.merge_forced");
  ASSERT_EQ(overrides.size(), 1u);
  EXPECT_EQ(overrides[0]["reason"], "ship the fine half now");
  EXPECT_FALSE(overrides[0]["user"].get<std::string>().empty());
  EXPECT_EQ(overrides[0]["overridden"],
            json::array({"1 of 2 tasks are not done: broken (failed)"}));
  const auto merges = EventsOf(sandbox_, "r1", "run.merged_into_base");
  ASSERT_EQ(merges.size(), 1u);
  EXPECT_EQ(merges[0]["forced"], true);
  sandbox_.Ok({"audit", "verify"});
}

TEST_F(MergeSecurityTest, ARunWhoseTasksAreAllDoneIsSuggestedAndMerged) {
  testing::WriteFile(sandbox_.Path("backlog.yaml"),
                     "tasks:\n  - id: fine\n    title: Fine\n    agent: good\n");
  CliResult run = sandbox_.Run({"run", "--backlog", "backlog.yaml", "--run-id", "r2", "--plain"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("merge:   factory run merge r2"));
  EXPECT_THAT(run.out, Not(HasSubstr("not mergeable")));
  ASSERT_EQ(sandbox_.Run({"run", "merge", "r2"}).exit_code, 0);
  EXPECT_EQ(Rev(dir(), "main"), Rev(dir(), "factory/r2"));
  EXPECT_TRUE(EventsOf(sandbox_, "r2", "run.merge_forced").empty());
}

// A feature whose tasks all pass but whose final gate fails on the merged whole.
class FeatureMergeSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // `whole` fails on a merge commit, i.e. only on the integration branch's tip (tasks are
    // merged with --no-ff), never on an attempt's own commit.
    testing::InitGitRepo(dir(),
                         {{"README.md", "# greeter\n"},
                          {"whole.sh",
                           "if [ \"$(git cat-file -p HEAD | grep -c \"^parent \")\" -ge 2 ]; then\n"
                           "  echo integration check: the whole is broken; exit 3\nfi\n"}});
    sandbox_.Ok({"init"});
    project_.RemoveExampleAgents();
    project_.AddScriptAgent("builder",
                            "mkdir -p out && echo \"$FACTORY_TASK_ID\" > out/$FACTORY_TASK_ID\n",
                            "writes its task id", "concurrency: 1\n");
    project_.WriteConfig(
        "concurrency: 1\nmax_attempts: 1\n"
        "gates:\n  - {name: whole, command: sh whole.sh, timeout: 60}\n"
        "protected: [whole.sh, \".factory/**\"]\n");
    testing::WriteFile(sandbox_.Path(".factory/models.yaml"),
                       testing::ModelsYaml(fake_.openai_base_url(), kKeyVariable));
    testing::WriteFile(sandbox_.Path("greetings.md"),
                       "# Greetings\n\nGreet the user, then say goodbye.\n");
    fake_.SetResponder([](const RecordedRequest& request) -> std::optional<FakeReply> {
      const std::string step = testing::StepOf(request);
      if (step == "spec" || step == "architecture" || step == "qa") {
        return FakeReply::Text(testing::PlannerDocument(step),
                               {.input_tokens = 500, .output_tokens = 50});
      }
      if (step == "backlog" || step == "repair") {
        return FakeReply::Text(testing::ValidBacklogJson(),
                               {.input_tokens = 800, .output_tokens = 100});
      }
      return FakeReply::Error(400, "unexpected request");
    });
  }

  const fs::path& dir() const { return sandbox_.dir(); }
  CliResult Run(const std::vector<std::string>& args) {
    testing::SpawnOptions options;
    options.env[kKeyVariable] = "sk-merge-security-test";
    return sandbox_.Run(args, options, 120'000);
  }

  FakeProviderServer fake_;
  CliSandbox sandbox_;
  testing::ScriptProject project_{sandbox_.dir()};
};

TEST_F(FeatureMergeSecurityTest, AFeatureWhoseFinalGatesFailedIsNotMergedUnlessForced) {
  CliResult run = Run({"run", "greetings.md", "--run-id", "feat1", "--plain"});
  ASSERT_EQ(run.exit_code, cli::kExitFailed) << run.err;
  EXPECT_THAT(run.err, HasSubstr("final gate 'whole' failed (exit 3)"));
  // Every task is done, yet the summary does not suggest merging.
  EXPECT_THAT(run.out, HasSubstr("2/2 done"));
  EXPECT_THAT(run.out, Not(HasSubstr("factory run merge")));
  EXPECT_THAT(run.out, HasSubstr("final gates: failed"));
  EXPECT_THAT(run.out,
              HasSubstr("not mergeable: the feature's final gate 'whole' failed (exit 3)"));
  const json shown = Run({"run", "show", "feat1", "--json"}).Json();
  EXPECT_EQ(shown["summary"]["all_done"], true);
  EXPECT_EQ(shown["summary"]["feature_id"], "greetings");
  EXPECT_EQ(shown["summary"]["final_gates"], "failed");
  EXPECT_EQ(shown["summary"]["mergeable"], false);

  const std::string main_before = Rev(dir(), "main");
  CliResult refused = Run({"run", "merge", "feat1"});
  EXPECT_EQ(refused.exit_code, cli::kExitPrecondition) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("run feat1 is not mergeable: the feature's final gate "
                                     "'whole' failed (exit 3) on factory/feat1"));
  EXPECT_EQ(Rev(dir(), "main"), main_before);

  CliResult forced =
      Run({"run", "merge", "feat1", "--force", "--reason", "the whole gate is known flaky"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(Rev(dir(), "main"), Rev(dir(), "factory/feat1"));
  const auto overrides = EventsOf(sandbox_, "feat1", "run.merge_forced");
  ASSERT_EQ(overrides.size(), 1u);
  EXPECT_EQ(overrides[0]["reason"], "the whole gate is known flaky");
  EXPECT_THAT(overrides[0]["overridden"][0].get<std::string>(), HasSubstr("'whole' failed"));
}

}  // namespace
}  // namespace factory
