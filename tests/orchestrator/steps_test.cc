// The pipeline's prompt and model steps, through RunEnvironment and ExecuteRun on a real git
// repository and a real SQLite store: script builders (which copy the prompt they were given
// into their change), the scripted fake OpenAI-compatible server (loopback HTTP) as the
// reviewer and the rebase agent.
//   - the implementation prompt is the rendered `implement` template, with a project override;
//   - a task failing its gates twice is rebased, with its spec history and a clean context;
//   - review gates: a rejection's reasons become the next attempt's feedback;
//   - a reviewer sharing a model with a builder is refused before the run.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ledger/ledger.h"
#include "llm/fake_provider.h"
#include "orchestrator/environment.h"
#include "orchestrator/rebase.h"
#include "orchestrator/task_prompts.h"
#include "run_fixture.h"
#include "stats/stats.h"

namespace factory::testing {
namespace {

using llm::Usage;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using json = nlohmann::json;

constexpr char kKeyVariable[] = "FACTORY_STEPS_TEST_KEY";

constexpr char kBacklog[] = R"(tasks:
  - id: answer
    title: Write the answer
    description: Put the answer in src/answer.txt.
    acceptance: [sh check.sh passes, src/answer.txt holds one line]
)";
constexpr char kSpec[] = "Put the answer in src/answer.txt.";

class StepsTest : public RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    setenv(kKeyVariable, "sk-steps-test", 1);
    WriteText(root_ + "/backlog.yaml", kBacklog);
  }

  void TearDown() override {
    env_.reset();
    db_.reset();
    RunFixture::TearDown();
  }

  std::string ModelsYaml() const {
    return "providers:\n"
           "  fake: {kind: openai, base_url: \"" +
           fake_.openai_base_url() + "\", api_key_env: " + kKeyVariable +
           ", timeout_s: 20}\n"
           "models:\n"
           "  fast-model: {provider: fake, model: fake-fast, input_per_mtok: 1.0, "
           "output_per_mtok: 4.0, context_window: 100000, max_output_tokens: 1000}\n"
           "  mid-model: {provider: fake, model: fake-mid, input_per_mtok: 3.0, "
           "output_per_mtok: 15.0, context_window: 100000, max_output_tokens: 1000}\n"
           "  top-model: {provider: fake, model: fake-top, input_per_mtok: 15.0, "
           "output_per_mtok: 75.0, context_window: 100000, max_output_tokens: 1000}\n"
           "aliases:\n"
           "  cloud/fast: [fast-model]\n"
           "  cloud/mid: [mid-model]\n"
           "  cloud/frontier: [top-model]\n"
           "routing:\n"
           "  - {task_type: rebase, chain: [cloud/fast]}\n"
           "  - {task_type: \"*\", chain: [cloud/fast, cloud/mid, cloud/frontier]}\n"
           "retry: {max_attempts: 1, base_ms: 10, max_ms: 50}\n"
           "cache: {enabled: false}\n";
  }
  void WriteModels() { WriteText(repo_ + "/.factory/models.yaml", ModelsYaml()); }

  // config.yaml: the check gate first (line 4), then `gates_extra` (more gates), then `extra`.
  void WriteConfig(int max_attempts, const std::string& gates_extra = "",
                   const std::string& extra = "") {
    WriteText(repo_ + "/.factory/config.yaml",
              "concurrency: 1\n"
              "max_attempts: " +
                  std::to_string(max_attempts) +
                  "\n"
                  "gates:\n"
                  "  - {name: check, command: \"sh check.sh\", timeout: 60}\n" +
                  gates_extra + "protected: [\"check.sh\"]\n" + extra);
  }

  // A script builder: it needs its prompt file, copies it into its change (notes/prompt.md), and
  // writes the right answer only when the prompt contains `marker`.
  void WriteBuilder(const std::string& marker) {
    WriteText(root_ + "/agents/builder.sh",
              "test -s \"$FACTORY_PROMPT_FILE\" || { echo 'no prompt file' >&2; exit 7; }\n"
              "mkdir -p notes && cp \"$FACTORY_PROMPT_FILE\" notes/prompt.md\n"
              "if grep -q '" +
                  marker +
                  "' \"$FACTORY_PROMPT_FILE\"; then echo ANSWER=42 > src/answer.txt; "
                  "else echo ANSWER=41 > src/answer.txt; fi\n");
    WriteText(repo_ + "/.factory/agents/builder.md",
              "---\nname: builder\nrole: writes the answer\nrunner: script\n"
              "capabilities: [code]\ncommand: sh " +
                  root_ + "/agents/builder.sh\n---\nYou write answers.\n");
  }

  Result<std::unique_ptr<RunEnvironment>> OpenEnv() {
    env_.reset();
    if (db_ == nullptr) {
      auto store = OpenSqliteStore(SqliteOptions{.path = root_ + "/steps.db"});
      if (!store) return std::unexpected(store.error());
      db_ = std::move(*store);
    }
    return RunEnvironment::Open(
        *db_, RunEnvironmentOptions{.repo_path = repo_, .use_sandbox = false, .pause_poll_ms = 50});
  }

  // Opens the environment, creates run `run_id` from backlog.yaml and executes it.
  RunSummary Execute(const std::string& run_id) {
    auto env = OpenEnv();
    EXPECT_TRUE(env.has_value()) << env.error().ToString();
    if (!env) return {};
    env_ = std::move(*env);
    auto backlog = env_->LoadBacklog(root_ + "/backlog.yaml");
    EXPECT_TRUE(backlog.has_value()) << backlog.error().ToString();
    if (!backlog) return {};
    auto created = env_->runs().CreateRun(backlog->value, CreateRunOptions{.run_id = run_id});
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    auto summary = env_->runs().ExecuteRun(
        run_id, ExecuteOptions{.poll_ms = 20, .make_runner = env_->runner_factory()});
    EXPECT_TRUE(summary.has_value()) << summary.error().ToString();
    return summary ? *summary : RunSummary{};
  }

  Task TheTask(const std::string& run_id) {
    auto tasks = env_->queue().ListTasks(TaskQuery{.run_id = run_id});
    EXPECT_TRUE(tasks.has_value() && tasks->size() == 1u);
    return tasks && !tasks->empty() ? tasks->front() : Task{};
  }
  std::vector<Attempt> Attempts(const std::string& run_id) {
    auto attempts = env_->queue().ListAttempts(TheTask(run_id).id);
    EXPECT_TRUE(attempts.has_value());
    if (!attempts) return {};
    std::sort(attempts->begin(), attempts->end(),
              [](const Attempt& a, const Attempt& b) { return a.epoch < b.epoch; });
    return *attempts;
  }
  json Details(const Attempt& attempt) { return json::parse(attempt.details_json); }
  // The payloads of the run's events of `kind`, in order.
  std::vector<json> Events(const std::string& run_id, const std::string& kind) {
    std::vector<json> payloads;
    auto events = env_->queue().ListEvents(EventQuery{.run_id = run_id, .limit = 100000});
    EXPECT_TRUE(events.has_value());
    if (!events) return payloads;
    for (const auto& event : *events) {
      if (event.kind == kind) payloads.push_back(json::parse(event.payload_json));
    }
    return payloads;
  }
  std::string AttemptDir(const std::string& run_id, int attempt) const {
    return repo_ + "/.factory/runs/" + run_id + "/answer-" + std::to_string(attempt);
  }
  std::string PromptOf(const std::string& run_id, int attempt) const {
    return ReadText(AttemptDir(run_id, attempt) + "/prompt.md");
  }
  // The user message of the fake's request `index`.
  std::string RequestText(size_t index) const {
    const auto requests = fake_.requests();
    if (index >= requests.size()) return "";
    std::string text;
    const json body = requests[index].Json();
    for (const auto& message : body["messages"]) {
      if (message["content"].is_string()) text += message["content"].get<std::string>() + "\n";
    }
    return text;
  }
  std::vector<ModelCallRow> LedgerRows(const std::string& run_id) {
    auto rows = env_->ledger().Calls(ModelCallQuery{.run_id = run_id});
    EXPECT_TRUE(rows.has_value());
    if (!rows) return {};
    std::sort(rows->begin(), rows->end(),
              [](const ModelCallRow& a, const ModelCallRow& b) { return a.id < b.id; });
    return *rows;
  }

  FakeProviderServer fake_;  // first: outlives the environment's router
  std::unique_ptr<Store> db_;
  std::unique_ptr<RunEnvironment> env_;
};

std::string RebaseAnswer(const std::string& spec, const std::vector<std::string>& changes) {
  return json{{"spec", spec}, {"changes", changes}}.dump();
}

std::string Verdict(const std::string& verdict, const std::vector<std::string>& reasons) {
  return json{{"verdict", verdict}, {"reasons", reasons}}.dump();
}

// --- The implementation prompt -------------------------------------------------------------

TEST_F(StepsTest, EachAttemptGetsTheRenderedImplementTemplateAndNothingElse) {
  WriteConfig(3);
  WriteBuilder("expected ANSWER=42");  // only the first attempt's feedback says it
  RunSummary summary = Execute("prompt");
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(summary.attempts, 2);

  // Attempt 1: the task's id, title, spec, acceptance and attempt number, rendered by the shipped
  // template; no feedback, no repo map, nothing about other files.
  const std::string first = PromptOf("prompt", 1);
  EXPECT_THAT(first, StartsWith("# Task answer: Write the answer\n"));
  EXPECT_THAT(first, HasSubstr("Attempt 1 of 3."));
  EXPECT_THAT(first, HasSubstr(kSpec));
  EXPECT_THAT(first, HasSubstr("- sh check.sh passes\n- src/answer.txt holds one line\n"));
  EXPECT_THAT(first, Not(HasSubstr("previous attempt was rejected")));
  EXPECT_THAT(first, Not(HasSubstr("Repository map")));
  EXPECT_THAT(first, Not(HasSubstr("README")));
  EXPECT_THAT(first, Not(HasSubstr("You write answers.")));  // the agent body is the agent's
  auto builtin = prompts::PromptLibrary::Builtin();
  ASSERT_TRUE(builtin.has_value());
  auto expected = RenderImplementPrompt(
      *builtin,
      ImplementPromptInput{.task_key = "answer",
                           .title = "Write the answer",
                           .spec = kSpec,
                           .acceptance = {"sh check.sh passes", "src/answer.txt holds one line"},
                           .attempt = 1,
                           .max_attempts = 3});
  ASSERT_TRUE(expected.has_value());
  EXPECT_EQ(first, *expected);

  // Attempt 2: the same, plus why attempt 1 failed.
  const std::string second = PromptOf("prompt", 2);
  EXPECT_THAT(second, HasSubstr("Attempt 2 of 3."));
  EXPECT_THAT(second, HasSubstr("## Why the previous attempt was rejected"));
  EXPECT_THAT(second, HasSubstr("check: wrong answer in src/answer.txt: expected ANSWER=42"));
  // The agent read exactly that file (its copy is in the merged change) and the attempt records
  // its size.
  EXPECT_EQ(RunGit({"show", "factory/prompt:notes/prompt.md"}), second);
  const auto attempts = Attempts("prompt");
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(Details(attempts[0])["prompt_bytes"], static_cast<int64_t>(first.size()));
  EXPECT_EQ(Details(attempts[1])["prompt_bytes"], static_cast<int64_t>(second.size()));

  // No models.yaml: rebasing is off, said once in the run's log.
  const auto off = Events("prompt", "run.rebase_off");
  ASSERT_EQ(off.size(), 1u);
  EXPECT_THAT(off[0]["reason"].get<std::string>(), HasSubstr("models.yaml")) << off[0].dump();
}

TEST_F(StepsTest, AProjectOverrideOfImplementIsWhatTheAgentGets) {
  WriteConfig(3);
  WriteBuilder("expected ANSWER=42");
  WriteText(repo_ + "/.factory/prompts/implement.md",
            "---\n"
            "description: the project's own implementation prompt\n"
            "required:\n"
            "  TASK_TITLE: the title\n"
            "  TASK_SPEC: the spec\n"
            "optional:\n"
            "  FEEDBACK: why the last attempt failed\n"
            "---\n"
            "PROJECT PROMPT for {{TASK_TITLE}}\n"
            "{{TASK_SPEC}}\n"
            "{{#FEEDBACK}}Fix this first: {{FEEDBACK}}\n{{/FEEDBACK}}");
  RunSummary summary = Execute("override");
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(PromptOf("override", 1),
            "PROJECT PROMPT for Write the answer\n" + std::string(kSpec) + "\n");
  const std::string second = PromptOf("override", 2);
  EXPECT_THAT(second, StartsWith("PROJECT PROMPT for Write the answer\n"));
  EXPECT_THAT(second, HasSubstr("Fix this first: "));
  EXPECT_THAT(second, HasSubstr("expected ANSWER=42"));
  EXPECT_THAT(second, Not(HasSubstr("Acceptance criteria")));

  // An override asking for a variable the factory does not provide: refused before any run.
  WriteText(repo_ + "/.factory/prompts/implement.md",
            "---\n"
            "description: asks for the plans\n"
            "required:\n"
            "  TASK_TITLE: the title\n"
            "optional:\n"
            "  PLANNING_TRANSCRIPT: what the planners said\n"
            "---\n"
            "{{TASK_TITLE}} {{PLANNING_TRANSCRIPT}}\n");
  auto refused = OpenEnv();
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr(".factory/prompts/implement.md:6: variable "
                                                 "PLANNING_TRANSCRIPT is not provided"));
  // A placeholder it does not declare: likewise, with the line.
  WriteText(repo_ + "/.factory/prompts/implement.md",
            "---\ndescription: typo\nrequired:\n  TASK_TITLE: the title\n---\n"
            "{{TASK_TITLE}}\n{{TASK_SPECC}}\n");
  refused = OpenEnv();
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr(".factory/prompts/implement.md:7"));
  EXPECT_THAT(refused.error().message, HasSubstr("TASK_SPECC"));
}

// --- Rebase ------------------------------------------------------------------------------

TEST_F(StepsTest, ATaskFailingItsGatesTwiceIsRebasedAndRestartsWithACleanContext) {
  WriteConfig(3);
  WriteModels();
  WriteBuilder("MAGIC-SPEC");  // only the rebased spec says it
  const std::string new_spec =
      "Write exactly `ANSWER=42` (MAGIC-SPEC) as the only line of "
      "src/answer.txt.";
  const Usage usage{1'000, 100, 0, 0};
  fake_.Enqueue(
      FakeReply::Text(RebaseAnswer(new_spec, {"named the exact line the check wants"}), usage));
  RunSummary summary = Execute("rebase");
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(summary.attempts, 3);

  // Attempts 1 and 2 had the backlog's spec; attempt 2 the feedback of attempt 1.
  EXPECT_THAT(PromptOf("rebase", 2), HasSubstr(kSpec));
  EXPECT_THAT(PromptOf("rebase", 2), HasSubstr("wrong answer in src/answer.txt"));
  // Attempt 3: the new spec, and nothing from before the rebase.
  const std::string third = PromptOf("rebase", 3);
  EXPECT_THAT(third, HasSubstr(new_spec));
  EXPECT_THAT(third, Not(HasSubstr(kSpec)));
  EXPECT_THAT(third, Not(HasSubstr("previous attempt was rejected")));
  EXPECT_THAT(third, Not(HasSubstr("wrong answer")));
  EXPECT_THAT(third, HasSubstr("Attempt 3 of 3."));

  // The rebase agent saw the current spec, the acceptance and both failure reports, in order.
  ASSERT_EQ(fake_.request_count(), 1u);
  const std::string asked = RequestText(0);
  EXPECT_THAT(asked, HasSubstr(kSpec));
  EXPECT_THAT(asked, HasSubstr("- sh check.sh passes"));
  const size_t report1 = asked.find("### Attempt 1 (failed in gates)");
  const size_t report2 = asked.find("### Attempt 2 (failed in gates)");
  ASSERT_NE(report1, std::string::npos) << asked;
  ASSERT_NE(report2, std::string::npos) << asked;
  EXPECT_LT(report1, report2);
  EXPECT_THAT(asked, HasSubstr("check: wrong answer in src/answer.txt"));
  EXPECT_EQ(fake_.requests()[0].Json()["model"], "fake-fast");  // the "rebase" routing rule

  // The new version's history: the event, and the spec file in attempt 3's artifacts.
  const auto rebased = Events("rebase", "task.rebased");
  ASSERT_EQ(rebased.size(), 1u);
  const json& event = rebased[0];
  EXPECT_EQ(event["spec_version"], 2);
  EXPECT_EQ(event["previous_spec_version"], 1);
  EXPECT_EQ(event["agent"], "rebaser");
  EXPECT_EQ(event["model"], "fast-model");
  EXPECT_EQ(event["spec"], new_spec);
  EXPECT_EQ(event["changes"], json({"named the exact line the check wants"}));
  EXPECT_THAT(event["reason"].get<std::string>(), HasSubstr("attempts 1 2"));
  EXPECT_NEAR(event["cost_usd"].get<double>(), (1'000 * 1.0 + 100 * 4.0) / 1e6, 1e-12);
  EXPECT_EQ(event["attempt"], 3);
  EXPECT_EQ(ReadText(AttemptDir("rebase", 3) + "/spec.v2.md"), new_spec);
  const auto attempts = Attempts("rebase");
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(Details(attempts[2])["spec_version"], 2);
  EXPECT_EQ(Details(attempts[1])["spec_version"], 1);

  // The call is in the ledger, attributed to the task and the attempt that asked for it.
  const auto rows = LedgerRows("rebase");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].purpose, "rebase");
  EXPECT_EQ(rows[0].agent, "rebaser");
  EXPECT_EQ(rows[0].task_id, TheTask("rebase").id);
  EXPECT_EQ(rows[0].attempt_id, attempts[2].id);

  // `factory stats` counts it.
  auto stats = stats::ComputeStats(*db_, stats::StatsQuery{.run_id = "rebase"});
  ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
  EXPECT_EQ(stats->total.rebases, 1);
  EXPECT_EQ(stats->total.rebased_tasks, 1);
}

TEST_F(StepsTest, RebasesCountFailuresSinceTheLastOneAndStopAtMaxPerTask) {
  WriteModels();
  WriteBuilder("NEVER-IN-ANY-PROMPT");  // every attempt fails its gate
  // Two rebases allowed: after attempts 1-2 and after attempts 3-4.
  WriteConfig(5, "", "rebase: {after_failures: 2, max_per_task: 2}\n");
  fake_.Enqueue(FakeReply::Text(RebaseAnswer("spec two", {"first rewrite"})));
  fake_.Enqueue(FakeReply::Text(RebaseAnswer("spec three", {"second rewrite"})));
  RunSummary twice = Execute("twice");
  EXPECT_EQ(twice.failed, 1);
  EXPECT_EQ(twice.attempts, 5);
  auto rebased = Events("twice", "task.rebased");
  ASSERT_EQ(rebased.size(), 2u);
  EXPECT_EQ(rebased[0]["spec_version"], 2);
  EXPECT_EQ(rebased[0]["attempt"], 3);
  EXPECT_EQ(rebased[1]["spec_version"], 3);
  EXPECT_EQ(rebased[1]["previous_spec_version"], 2);
  EXPECT_EQ(rebased[1]["attempt"], 5);
  ASSERT_EQ(fake_.request_count(), 2u);
  // The second rebase started from version 2 and only the failures since the first.
  const std::string second = RequestText(1);
  EXPECT_THAT(second, HasSubstr("spec two"));
  EXPECT_THAT(second, HasSubstr("(version 2)"));
  EXPECT_THAT(second, HasSubstr("### Attempt 3 (failed in gates)"));
  EXPECT_THAT(second, HasSubstr("### Attempt 4 (failed in gates)"));
  EXPECT_THAT(second, Not(HasSubstr("### Attempt 1")));
  EXPECT_THAT(PromptOf("twice", 4), HasSubstr("spec two"));
  EXPECT_THAT(PromptOf("twice", 5), HasSubstr("spec three"));

  // max_per_task 1: one rebase, however often the task fails afterwards.
  WriteConfig(5, "", "rebase: {after_failures: 2, max_per_task: 1}\n");
  fake_.Enqueue(FakeReply::Text(RebaseAnswer("the only rewrite", {"rewrote"})));
  RunSummary once = Execute("once");
  EXPECT_EQ(once.attempts, 5);
  EXPECT_EQ(Events("once", "task.rebased").size(), 1u);
  EXPECT_TRUE(Events("once", "task.rebase_failed").empty());
  EXPECT_EQ(fake_.request_count(), 3u);
  EXPECT_THAT(PromptOf("once", 5), HasSubstr("the only rewrite"));
}

TEST_F(StepsTest, AnInvalidRebaseAnswerIsSentBackOnceAndTheRepairIsUsed) {
  WriteConfig(3);
  WriteModels();
  WriteBuilder("MAGIC-SPEC");
  fake_.Enqueue(FakeReply::Text("The spec should name the value MAGIC-SPEC expects."));
  // A fenced answer is tolerated.
  fake_.Enqueue(
      FakeReply::Text("```json\n" + RebaseAnswer("Write ANSWER=42 (MAGIC-SPEC).", {}) + "\n```"));
  RunSummary summary = Execute("repair");
  EXPECT_EQ(summary.done, 1);
  ASSERT_EQ(fake_.request_count(), 2u);
  EXPECT_THAT(RequestText(1),
              HasSubstr("Your answer cannot be used: the answer is not valid JSON"));
  const auto rebased = Events("repair", "task.rebased");
  ASSERT_EQ(rebased.size(), 1u);
  EXPECT_EQ(rebased[0]["spec"], "Write ANSWER=42 (MAGIC-SPEC).");
  EXPECT_EQ(LedgerRows("repair").size(), 2u);
}

TEST_F(StepsTest, AFailedRebaseIsRecordedAndTheAttemptKeepsTheOldSpecAndFeedback) {
  WriteConfig(3);
  WriteModels();
  WriteBuilder("MAGIC-SPEC");
  fake_.Enqueue(FakeReply::Text(R"({"spec": "", "changes": []})"));
  fake_.Enqueue(FakeReply::Text(R"({"spec": "better", "changes": "all of it"})"));
  RunSummary summary = Execute("norebase");
  EXPECT_EQ(summary.failed, 1);
  EXPECT_EQ(summary.attempts, 3);
  EXPECT_TRUE(Events("norebase", "task.rebased").empty());
  const auto failed = Events("norebase", "task.rebase_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_THAT(failed[0]["reason"].get<std::string>(), HasSubstr("invalid twice"));
  EXPECT_THAT(failed[0]["reason"].get<std::string>(), HasSubstr("\"changes\" must be an array"));
  const std::string third = PromptOf("norebase", 3);
  EXPECT_THAT(third, HasSubstr(kSpec));
  EXPECT_THAT(third, HasSubstr("wrong answer in src/answer.txt"));
  EXPECT_FALSE(std::filesystem::exists(AttemptDir("norebase", 3) + "/spec.v2.md"));
}

// --- The review gate ---------------------------------------------------------------------

constexpr char kReviewGate[] =
    "  - {name: review, kind: review, model: cloud/frontier, timeout: 60}\n";

TEST_F(StepsTest, TheReviewerRejectsOnceItsReasonsAreTheFeedbackThenItPasses) {
  WriteConfig(3, kReviewGate, "rebase: {max_per_task: 0}\n");
  WriteModels();
  WriteBuilder("Task");  // always the right answer: the check gate passes every time
  const std::string reason = "src/answer.txt: add a comment line saying where 42 comes from";
  fake_.Enqueue(FakeReply::Text(Verdict("fail", {reason}), Usage{2'000, 50, 0, 0}));
  fake_.Enqueue(FakeReply::Text(Verdict("pass", {"the check passes and the file has one line"})));
  RunSummary summary = Execute("review");
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(summary.attempts, 2);
  EXPECT_EQ(MergeCount("factory/review", "answer"), 1);

  // Attempt 1 failed in review; attempt 2 was told why.
  const auto attempts = Attempts("review");
  ASSERT_EQ(attempts.size(), 2u);
  const json first = Details(attempts[0]);
  EXPECT_EQ(first["failed_phase"], "review");
  EXPECT_THAT(first["feedback"].get<std::string>(), HasSubstr(reason));
  EXPECT_THAT(attempts[0].error, HasSubstr("review gate 'review' failed"));
  EXPECT_THAT(PromptOf("review", 2), HasSubstr("## Why the previous attempt was rejected"));
  EXPECT_THAT(PromptOf("review", 2), HasSubstr(reason));

  // The reviewer read the diff, the acceptance criteria and the command gate's result.
  ASSERT_EQ(fake_.request_count(), 2u);
  const std::string asked = RequestText(0);
  EXPECT_THAT(asked, HasSubstr("+ANSWER=42"));
  EXPECT_THAT(asked, HasSubstr("- src/answer.txt holds one line"));
  EXPECT_THAT(asked, HasSubstr("- check (`sh check.sh`): passed"));
  EXPECT_THAT(asked, HasSubstr("2 files changed"));  // the diff stat
  EXPECT_EQ(fake_.requests()[0].Json()["model"], "fake-top");

  // Verdict events, and the task went verifying -> review both times.
  const auto verdicts = Events("review", "review.verdict");
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0]["gate"], "review");
  EXPECT_EQ(verdicts[0]["model"], "top-model");
  EXPECT_EQ(verdicts[0]["verdict"], "fail");
  EXPECT_EQ(verdicts[0]["reasons"], json({reason}));
  EXPECT_NEAR(verdicts[0]["cost_usd"].get<double>(), (2'000 * 15.0 + 50 * 75.0) / 1e6, 1e-12);
  EXPECT_EQ(verdicts[1]["verdict"], "pass");
  EXPECT_EQ(Events("review", "task.review").size(), 2u);

  // Both calls in the ledger as the gate, each under its own attempt.
  const auto rows = LedgerRows("review");
  ASSERT_EQ(rows.size(), 2u);
  for (size_t index = 0; index < rows.size(); ++index) {
    EXPECT_EQ(rows[index].purpose, "review");
    EXPECT_EQ(rows[index].agent, "review");
    EXPECT_EQ(rows[index].attempt_id, attempts[index].id);
  }
}

TEST_F(StepsTest, InvalidReviewerAnswersFailTheAttemptWithoutBlamingTheBuilder) {
  WriteConfig(3, kReviewGate, "rebase: {max_per_task: 0}\n");
  WriteModels();
  WriteBuilder("Task");
  fake_.Enqueue(FakeReply::Text("Looks good to me!"));
  fake_.Enqueue(FakeReply::Text(R"({"verdict": "maybe", "reasons": []})"));
  fake_.Enqueue(FakeReply::Text(Verdict("pass", {"fine"})));
  RunSummary summary = Execute("badreview");
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(summary.attempts, 2);
  ASSERT_EQ(fake_.request_count(), 3u);
  EXPECT_THAT(RequestText(1), HasSubstr("Your answer cannot be used"));
  const auto attempts = Attempts("badreview");
  ASSERT_EQ(attempts.size(), 2u);
  const json first = Details(attempts[0]);
  EXPECT_EQ(first["failed_phase"], "review_error");
  EXPECT_EQ(first["feedback"], "");
  EXPECT_THAT(attempts[0].error, HasSubstr("review gate 'review' gave no verdict"));
  EXPECT_THAT(attempts[0].error, HasSubstr("\"verdict\" must be \"pass\" or \"fail\""));
  // The builder is not told it did something wrong.
  EXPECT_EQ(Details(attempts[1])["had_feedback"], false);
  EXPECT_THAT(PromptOf("badreview", 2), Not(HasSubstr("previous attempt was rejected")));
  EXPECT_EQ(Events("badreview", "review.failed").size(), 1u);
}

TEST_F(StepsTest, CommandAndReviewGatesRunInOnePhaseCommandsFirstWhateverTheConfigOrder) {
  // The reviewer is configured first; it still runs after the command gates and reads them.
  WriteText(repo_ + "/.factory/config.yaml",
            "concurrency: 1\n"
            "max_attempts: 3\n"
            "gates:\n"
            "  - {name: review, kind: review, model: cloud/frontier, timeout: 60}\n"
            "  - {name: check, command: \"sh check.sh\", timeout: 60}\n"
            "  - {name: lint, command: \"true\", timeout: 60}\n"
            "protected: [\"check.sh\"]\n"
            "rebase: {max_per_task: 0}\n");
  WriteModels();
  // Wrong on the first attempt (the check gate fails), right once told why.
  WriteBuilder("previous attempt");
  fake_.Enqueue(FakeReply::Text(Verdict("pass", {"fine"})));
  RunSummary summary = Execute("onephase");
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(summary.attempts, 2);

  const auto attempts = Attempts("onephase");
  ASSERT_EQ(attempts.size(), 2u);
  // Attempt 1: the failed command gate stopped the phase before the reviewer.
  const json first = Details(attempts[0]);
  EXPECT_EQ(first["failed_phase"], "gates");
  ASSERT_EQ(first["gates"].size(), 1u);
  EXPECT_EQ(first["gates"][0]["name"], "check");
  EXPECT_FALSE(first.contains("reviews"));
  EXPECT_THAT(first["feedback"].get<std::string>(), HasSubstr("Gate 'check'"));
  EXPECT_EQ(Events("onephase", "gate.failed").size(), 1u);

  // Attempt 2: both command gates, then the reviewer, which read their results.
  const json second = Details(attempts[1]);
  ASSERT_EQ(second["gates"].size(), 2u);
  EXPECT_EQ(second["gates"][0]["name"], "check");
  EXPECT_EQ(second["gates"][1]["name"], "lint");
  EXPECT_THAT(second["gates"][1]["log"].get<std::string>(), EndsWith("/gates/2-lint.log"));
  ASSERT_EQ(second["reviews"].size(), 1u);
  EXPECT_EQ(second["reviews"][0]["verdict"], "pass");
  EXPECT_EQ(second["gates_passed"], json({"check", "lint", "review"}));
  ASSERT_EQ(fake_.request_count(), 1u);
  EXPECT_THAT(RequestText(0), HasSubstr("- check (`sh check.sh`): passed"));
  EXPECT_THAT(RequestText(0), HasSubstr("- lint (`true`): passed"));

  // The phase events of attempt 2: gates (two gates), then review (one).
  std::vector<json> phases;
  for (const json& phase : Events("onephase", "attempt.phase")) {
    if (phase["attempt"] == 2 && (phase["phase"] == "gates" || phase["phase"] == "review")) {
      phases.push_back(phase);
    }
  }
  ASSERT_EQ(phases.size(), 2u);
  EXPECT_EQ(phases[0]["phase"], "gates");
  EXPECT_EQ(phases[0]["gates"], 2);
  EXPECT_EQ(phases[1]["phase"], "review");
  EXPECT_EQ(phases[1]["gates"], 1);
}

// --- Validation ---------------------------------------------------------------------------

TEST_F(StepsTest, AReviewerSharingAModelWithABuilderIsRefusedWithTheConfigLine) {
  WriteModels();
  WriteText(repo_ + "/.factory/agents/coder.md",
            "---\nname: coder\nrole: llm builder\nrunner: llm\nmodel: cloud/mid\n"
            "capabilities: [code]\n---\nYou code.\n");
  ASSERT_TRUE(OpenEnv().has_value());
  auto check = [&](const std::string& reviewer_model) -> std::string {
    // The review gate's model is on config.yaml line 7.
    WriteConfig(3, "  - name: review\n    kind: review\n    model: " + reviewer_model +
                       "\n    timeout: 60\n");
    auto env = OpenEnv();
    if (!env) return "open: " + env.error().message;
    auto backlog = (*env)->LoadBacklog(root_ + "/backlog.yaml");
    return backlog ? "" : backlog.error().message;
  };
  // The builder's own alias, a cheaper rung of its cost pyramid, a model of its alias by name.
  for (const std::string model : {"cloud/mid", "cloud/fast", "mid-model"}) {
    const std::string error = check(model);
    EXPECT_THAT(error, HasSubstr("config.yaml:7: gate 'review': the reviewer's model " + model))
        << model;
    EXPECT_THAT(error, HasSubstr("is also a model of agent 'coder' (" + repo_ +
                                 "/.factory/agents/coder.md:5)"))
        << model;
    EXPECT_THAT(error, HasSubstr("which may build task 'answer' (" + root_ + "/backlog.yaml:2)"));
  }
  // A model above the builder's ceiling is a different model: accepted.
  EXPECT_EQ(check("cloud/frontier"), "");

  // A cli agent by its CLI's model name, which is the reviewer's provider model id.
  std::filesystem::remove(repo_ + "/.factory/agents/coder.md");
  WriteText(repo_ + "/.factory/agents/claude.md",
            "---\nname: claude\nrole: cli builder\nrunner: cli\npreset: claude\n"
            "model: fake-top\ncapabilities: [code]\n---\n");
  EXPECT_THAT(check("cloud/frontier"),
              HasSubstr("the reviewer's model cloud/frontier (top-model) is also a model of "
                        "agent 'claude'"));
}

TEST_F(StepsTest, ReviewAndRebaseModelsAreCheckedWhenTheEnvironmentOpens) {
  WriteBuilder("Task");
  // A review gate needs models.yaml.
  WriteConfig(3, kReviewGate);
  auto env = OpenEnv();
  ASSERT_FALSE(env.has_value());
  EXPECT_THAT(env.error().message, HasSubstr("config.yaml:5: gate 'review': a review gate needs"));
  EXPECT_THAT(env.error().message, HasSubstr("models.yaml, which does not exist"));
  // ... and models it defines; likewise the rebase agent's.
  WriteModels();
  WriteConfig(3, "  - {name: review, kind: review, model: cloud/huge}\n",
              "rebase:\n  model: nobody\n");
  env = OpenEnv();
  ASSERT_FALSE(env.has_value());
  EXPECT_THAT(env.error().message,
              HasSubstr("config.yaml:5: field 'gates[1].model': unknown model 'cloud/huge'"));
  EXPECT_THAT(env.error().message,
              HasSubstr("config.yaml:8: field 'rebase.model': unknown model 'nobody'"));
  // With both known the router exists for them, even without llm agents.
  WriteConfig(3, kReviewGate, "rebase:\n  model: cloud/mid\n");
  env = OpenEnv();
  ASSERT_TRUE(env.has_value()) << env.error().ToString();
  EXPECT_NE((*env)->router(), nullptr);
  EXPECT_EQ((*env)->rebase_targets(), std::vector<std::string>{"cloud/mid"});
}

}  // namespace
}  // namespace factory::testing
