// Planning a feature in process, against the scripted fake provider over loopback HTTP, with a
// real git repository, a real SQLite store (events, ledger) and the shipped prompt templates:
// the three planners overlap in time, each in a fresh context; an invalid backlog is repaired;
// one still invalid after two repairs fails with every error; a resumed run re-uses what was
// already planned; the spec folder holds the plan, backlog, context and metadata. Also the
// repo map.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>

#include "agents/registry.h"
#include "common/test_util.h"
#include "feature/feature_run.h"
#include "feature/repo_map.h"
#include "feature_test_util.h"
#include "ledger/ledger.h"
#include "llm/fake_provider.h"
#include "llm/router.h"
#include "prompts/library.h"
#include "queue/queue.h"
#include "store/store.h"

namespace factory::feature {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using llm::fake::RecordedRequest;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyVariable[] = "FEATURE_TEST_KEY";
constexpr char kRequestText[] =
    "# Greetings\n\nThe tool must greet the user and say goodbye. FEATURE-TEXT-MARKER\n";

void Shell(const fs::path& dir, const std::string& command) {
  const std::string full = "cd '" + dir.string() + "' && " + command + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(full.c_str()), 0) << command;
}

class PlanningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = temp_.path() / "repo";
    testing::WriteFile(repo_ / "README.md", "# greeter\nREADME-FIRST-LINE-MARKER\n");
    testing::WriteFile(repo_ / "src/main.sh", "echo hi\n");
    Shell(repo_,
          "git init -q -b main && git config user.email t@example.com && "
          "git config user.name t && git add -A && git commit -qm init");
    auto store = OpenSqliteStore(SqliteOptions{.path = (temp_.path() / "factory.db").string()});
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    queue_ = std::make_unique<Queue>(*store_, QueueOptions{});
    // Providers read their key from the process environment when they send.
    setenv(kKeyVariable, "sk-feature-test", 1);
    ledger_ = std::make_unique<ledger::Ledger>(*store_);
    auto models = llm::ParseModelsConfig(testing::ModelsYaml(fake_.openai_base_url(), kKeyVariable),
                                         "models.yaml");
    ASSERT_TRUE(models.has_value()) << models.error().ToString();
    llm::RouterOptions router_options;
    router_options.observer = ledger_.get();
    auto router = llm::Router::Create(std::move(*models), router_options);
    ASSERT_TRUE(router.has_value()) << router.error().ToString();
    router_ = std::move(*router);
    auto prompts = prompts::PromptLibrary::Builtin();
    ASSERT_TRUE(prompts.has_value()) << prompts.error().ToString();
    prompts_.emplace(std::move(*prompts));
    AgentSpec builder;
    builder.name = "builder";
    builder.role = "writes code";
    builder.runner = RunnerKind::kScript;
    builder.command = "true";
    builder.capabilities = {"code"};
    ASSERT_TRUE(agents_.Add(builder).has_value());
    request_ = FeatureRequest{"greetings", kRequestText, "greetings.md"};
  }

  void TearDown() override { router_.reset(); }  // its HTTP connections before the fake

  // Planners answer their document after `planner_delay_ms`; the backlog agent answers
  // `backlogs` in turn (the last one from then on).
  void Script(int planner_delay_ms, std::vector<std::string> backlogs,
              std::set<std::string> failing = {}) {
    auto count = std::make_shared<std::atomic<int>>(0);
    fake_.SetResponder([=](const RecordedRequest& request) -> std::optional<FakeReply> {
      const std::string step = testing::StepOf(request);
      if (failing.contains(step)) return FakeReply::Error(500, "scripted outage");
      if (step == "spec" || step == "architecture" || step == "qa") {
        return FakeReply::Text(testing::PlannerDocument(step),
                               {.input_tokens = 1000, .output_tokens = 100})
            .WithDelay(planner_delay_ms);
      }
      if (step == "backlog" || step == "repair") {
        const size_t index = std::min<size_t>(count->fetch_add(1), backlogs.size() - 1);
        return FakeReply::Text(backlogs[index], {.input_tokens = 2000, .output_tokens = 300});
      }
      return FakeReply::Error(400, "unexpected request");
    });
  }

  PlanningOptions Options(const std::string& run_id) const {
    PlanningOptions options;
    options.run_id = run_id;
    options.repo_root = repo_;
    options.spec_dir = spec_dir();
    return options;
  }
  Result<FeaturePlan> Plan(const std::string& run_id) {
    PlanningDeps deps;
    deps.router = router_.get();
    deps.prompts = &*prompts_;
    deps.agents = &agents_;
    deps.events = &queue_->events();
    return PlanFeature(request_, deps, Options(run_id));
  }

  fs::path spec_dir() const { return repo_ / ".factory" / "specs" / "greetings"; }
  json Metadata() const { return json::parse(ReadSpecMetadata(spec_dir())); }
  std::vector<std::string> Steps() const {
    std::vector<std::string> steps;
    for (const auto& request : fake_.requests()) steps.push_back(testing::StepOf(request));
    return steps;
  }
  std::vector<Event> Events(const std::string& kind) {
    std::vector<Event> found;
    auto listed = store_->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto events, txn.ListEvents(EventQuery{.limit = 10000}));
      for (auto& event : events) {
        if (event.kind == kind) found.push_back(event);
      }
      return Ok();
    });
    EXPECT_TRUE(listed.has_value());
    return found;
  }

  testing::TempDir temp_;
  fs::path repo_;
  FakeProviderServer fake_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<llm::Router> router_;
  std::optional<prompts::PromptLibrary> prompts_;
  AgentRegistry agents_;
  FeatureRequest request_;
};

TEST_F(PlanningTest, PlannersRunInParallelInFreshContextsAndTheSpecFolderIsWritten) {
  Script(/*planner_delay_ms=*/500, {testing::ValidBacklogJson()});
  auto plan = Plan("r1");
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  EXPECT_EQ(plan->backlog.value.tasks.size(), 2u);
  EXPECT_EQ(plan->backlog_attempts, 1);
  EXPECT_EQ(plan->version, 1);

  // Overlap, from the saved timestamps: every planner started before any of them ended.
  const json metadata = Metadata();
  int64_t last_start = 0;
  int64_t first_end = INT64_MAX;
  for (const char* name : kPlannerNames) {
    const json& planner = metadata["planners"][name];
    ASSERT_EQ(planner.value("status", ""), "done") << name;
    last_start = std::max(last_start, planner["started_ms"].get<int64_t>());
    first_end = std::min(first_end, planner["ended_ms"].get<int64_t>());
  }
  EXPECT_LT(last_start, first_end) << "the planners did not overlap";
  // The same timestamps are in the event log, with the run id.
  const auto finished = Events("feature.planner.finished");
  ASSERT_EQ(finished.size(), 3u);
  for (const auto& event : finished) {
    EXPECT_EQ(event.run_id, "r1");
    const json payload = json::parse(event.payload_json);
    const std::string name = payload["planner"];
    EXPECT_EQ(payload["started_ms"], metadata["planners"][name]["started_ms"]);
    EXPECT_EQ(payload["ended_ms"], metadata["planners"][name]["ended_ms"]);
  }
  EXPECT_EQ(Events("feature.planner.started").size(), 3u);

  // Fresh contexts: each planner got its own template with the request and the repo map, and
  // nothing of another planner.
  for (const auto& request : fake_.requests()) {
    const std::string step = testing::StepOf(request);
    const json messages = request.Json()["messages"];
    if (step == "backlog") {
      const std::string system = messages[0]["content"];
      for (const char* name : kPlannerNames) {
        EXPECT_THAT(system, HasSubstr(std::string("PLANNING-MARKER-") + name));
      }
      continue;
    }
    ASSERT_EQ(messages.size(), 2u) << step;
    EXPECT_EQ(messages[0]["role"], "system");
    const std::string system = messages[0]["content"];
    EXPECT_THAT(system, HasSubstr("FEATURE-TEXT-MARKER"));
    EXPECT_THAT(system, HasSubstr("README-FIRST-LINE-MARKER"));
    EXPECT_THAT(system, HasSubstr("src/main.sh"));
    EXPECT_THAT(request.body, Not(HasSubstr("PLANNING-MARKER"))) << step;
  }
  std::vector<std::string> steps = Steps();
  std::sort(steps.begin(), steps.end());
  EXPECT_EQ(steps, (std::vector<std::string>{"architecture", "backlog", "qa", "spec"}));

  // The ledger has every call, attributed.
  auto calls = ledger_->Calls(ModelCallQuery{.run_id = "r1"});
  ASSERT_TRUE(calls.has_value());
  std::map<std::string, std::string> purpose_by_agent;
  for (const auto& call : *calls) purpose_by_agent[call.agent] = call.purpose;
  EXPECT_EQ(purpose_by_agent,
            (std::map<std::string, std::string>{{"architecture-planner", "plan-architecture"},
                                                {"backlog-planner", "backlog"},
                                                {"qa-planner", "plan-qa"},
                                                {"spec-planner", "plan-spec"}}));
  double ledger_cost = 0;
  for (const auto& call : *calls) ledger_cost += call.cost_usd;
  EXPECT_NEAR(plan->cost_usd, ledger_cost, 1e-9);
  EXPECT_NEAR(metadata["cost_usd"].get<double>(), ledger_cost, 1e-9);
  // 3 x (1000 in at $2/M + 100 out at $8/M) + (2000 in + 300 out).
  EXPECT_NEAR(ledger_cost, 3 * (0.002 + 0.0008) + (0.004 + 0.0024), 1e-9);

  // The spec folder.
  const std::string plan_md = testing::ReadFile(spec_dir() / "PLAN.md");
  EXPECT_THAT(plan_md, HasSubstr("FEATURE-TEXT-MARKER"));
  for (const char* name : kPlannerNames) {
    EXPECT_THAT(plan_md, HasSubstr(std::string("PLANNING-MARKER-") + name));
    EXPECT_EQ(testing::ReadFile(spec_dir() / "planners" / (std::string(name) + ".md")),
              testing::PlannerDocument(name));
  }
  EXPECT_THAT(testing::ReadFile(spec_dir() / "context.md"), HasSubstr("README-FIRST-LINE-MARKER"));
  auto reread = LoadBacklog(spec_dir() / "BACKLOG.yaml");
  ASSERT_TRUE(reread.has_value()) << reread.error().ToString();
  EXPECT_EQ(reread->value.tasks[1].id, "farewell");
  EXPECT_EQ(metadata["status"], "planned");
  EXPECT_EQ(metadata["version"], 1);
  EXPECT_EQ(metadata["attempts"], 1);
  EXPECT_EQ(metadata["run_id"], "r1");
  EXPECT_EQ(metadata["feature_id"], "greetings");
  EXPECT_TRUE(metadata["last_generated"].get<std::string>().ends_with("Z"));
}

TEST_F(PlanningTest, AnInvalidBacklogIsRepairedWithItsErrors) {
  Script(0, {testing::InvalidBacklogJson(), testing::ValidBacklogJson()});
  auto plan = Plan("r1");
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  EXPECT_EQ(plan->backlog_attempts, 2);
  EXPECT_EQ(plan->backlog.value.tasks.size(), 2u);
  EXPECT_EQ(Metadata()["attempts"], 2);

  // The repair went back in the same conversation, with the answer and the error.
  std::optional<RecordedRequest> repair;
  for (const auto& request : fake_.requests()) {
    if (testing::StepOf(request) == "repair") repair = request;
  }
  ASSERT_TRUE(repair.has_value());
  const json messages = repair->Json()["messages"];
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_THAT(messages[0]["content"].get<std::string>(), HasSubstr("You are the backlog planner"));
  EXPECT_EQ(messages[2]["role"], "assistant");
  EXPECT_EQ(messages[2]["content"], testing::InvalidBacklogJson());
  EXPECT_THAT(messages[3]["content"].get<std::string>(),
              HasSubstr("task 'greeting': field 'tasks[0].depends_on[0]': unknown dependency "
                        "'nowhere'"));
  EXPECT_THAT(testing::ReadFile(spec_dir() / "planners" / "backlog.1.errors.txt"),
              HasSubstr("unknown dependency 'nowhere'"));
  EXPECT_EQ(Events("feature.backlog.invalid").size(), 1u);
  EXPECT_EQ(Events("feature.backlog.accepted").size(), 1u);
}

TEST_F(PlanningTest, ABacklogStillInvalidAfterTwoRepairsFailsWithTheErrors) {
  Script(0, {testing::InvalidBacklogJson(), "not json", testing::InvalidBacklogJson()});
  auto plan = Plan("r1");
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().code, ErrorCode::kAborted);
  EXPECT_THAT(plan.error().message, HasSubstr("still invalid after 2 repairs"));
  EXPECT_THAT(plan.error().message, HasSubstr("unknown dependency 'nowhere'"));
  std::vector<std::string> steps = Steps();
  EXPECT_EQ(std::count(steps.begin(), steps.end(), "backlog"), 1);
  EXPECT_EQ(std::count(steps.begin(), steps.end(), "repair"), 2) << "exactly two repairs";
  EXPECT_EQ(Metadata()["status"], "backlog_invalid");
  EXPECT_EQ(Metadata()["attempts"], 3);
  EXPECT_FALSE(fs::exists(spec_dir() / "BACKLOG.yaml"));
  EXPECT_THAT(testing::ReadFile(spec_dir() / "planners" / "backlog.2.errors.txt"),
              HasSubstr("invalid JSON"));
}

TEST_F(PlanningTest, AResumedRunDoesNotPlanAgainWhatWasPlanned) {
  // The QA planner's provider is down: the run stops after spec and architecture were saved.
  Script(0, {testing::ValidBacklogJson()}, /*failing=*/{"qa"});
  auto failed = Plan("r1");
  ASSERT_FALSE(failed.has_value());
  EXPECT_THAT(failed.error().message, HasSubstr("qa planner"));
  EXPECT_EQ(Metadata()["status"], "planning_failed");
  const size_t first_requests = fake_.request_count();
  EXPECT_EQ(first_requests, 3u);

  Script(0, {testing::ValidBacklogJson()});
  auto plan = Plan("r1");
  ASSERT_TRUE(plan.has_value()) << plan.error().ToString();
  std::vector<std::string> steps = Steps();
  steps.erase(steps.begin(), steps.begin() + static_cast<long>(first_requests));
  EXPECT_EQ(steps, (std::vector<std::string>{"qa", "backlog"}));
  EXPECT_TRUE(plan->planners[0].reused);
  EXPECT_TRUE(plan->planners[1].reused);
  EXPECT_FALSE(plan->planners[2].reused);
  EXPECT_EQ(plan->version, 1);
  EXPECT_EQ(Events("feature.planner.reused").size(), 2u);

  // Once planned, the same run id plans nothing at all.
  const size_t before = fake_.request_count();
  auto again = Plan("r1");
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_TRUE(again->reused_backlog);
  EXPECT_EQ(fake_.request_count(), before);
  EXPECT_EQ(again->backlog.value.tasks.size(), 2u);
}

TEST_F(PlanningTest, ANewRunOfTheFeatureIsANewVersionAndKeepsTheOldOne) {
  Script(0, {testing::ValidBacklogJson()});
  ASSERT_TRUE(Plan("r1").has_value());
  auto second = Plan("r2");
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_EQ(second->version, 2);
  EXPECT_EQ(Metadata()["version"], 2);
  EXPECT_EQ(Metadata()["run_id"], "r2");
  EXPECT_EQ(json::parse(testing::ReadFile(spec_dir() / "history/v1/metadata.json"))["run_id"],
            "r1");
  EXPECT_TRUE(fs::exists(spec_dir() / "history/v1/BACKLOG.yaml"));
  EXPECT_EQ(fake_.request_count(), 8u) << "the new run plans everything again";
}

TEST_F(PlanningTest, TheSameRunIdWithAnotherRequestTextIsRefused) {
  Script(0, {testing::ValidBacklogJson()});
  ASSERT_TRUE(Plan("r1").has_value());
  request_.text += "\nOne more thing.\n";
  auto plan = Plan("r1");
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(plan.error().message, HasSubstr("another --run-id"));
}

TEST_F(PlanningTest, RepoMapListsTrackedFilesWithinItsCap) {
  testing::WriteFile(repo_ / "untracked.txt", "not in git\n");
  testing::WriteFile(repo_ / ".factory" / "config.yaml", "concurrency: 1\n");
  for (int index = 0; index < 200; ++index) {
    testing::WriteFile(repo_ / "data" / ("file" + std::to_string(index) + ".txt"), "x\n");
  }
  Shell(repo_, "git add -A data && git add -f .factory && git commit -qm more");
  auto full = BuildRepoMap(repo_, RepoMapOptions{.max_bytes = 64 * 1024});
  ASSERT_TRUE(full.has_value()) << full.error().ToString();
  EXPECT_THAT(*full, HasSubstr("### Files (202 tracked"));
  EXPECT_THAT(*full, HasSubstr("src/main.sh (8 B)"));
  EXPECT_THAT(*full, HasSubstr("### README.md (first lines)\n# greeter\nREADME-FIRST-LINE-MARKER"));
  EXPECT_THAT(*full, Not(HasSubstr("untracked.txt")));
  EXPECT_THAT(*full, Not(HasSubstr(".factory")));

  auto small = BuildRepoMap(repo_, RepoMapOptions{.max_bytes = 1024});
  ASSERT_TRUE(small.has_value());
  EXPECT_LE(small->size(), 1024u);
  EXPECT_THAT(*small, HasSubstr("more files not shown"));
  EXPECT_THAT(*small, HasSubstr("README-FIRST-LINE-MARKER")) << "key files keep their share";

  auto not_git = BuildRepoMap(temp_.path());
  EXPECT_FALSE(not_git.has_value());
}

}  // namespace
}  // namespace factory::feature
