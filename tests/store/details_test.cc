// The codecs of the stored JSON columns: round trips, rows written before the types existed,
// and malformed values.

#include "store/details.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace factory {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// A failed attempt's details as the pipeline wrote them before they were typed.
constexpr char kStoredFailedAttempt[] = R"({
  "attempt": 2, "task_key": "T1", "agent": "coder", "runner": "script", "spec_version": 1,
  "worktree": "/repo/.factory/worktrees/T1-2", "start_commit": "abc123",
  "attempt_dir": "/repo/.factory/runs/r/T1-2", "had_feedback": true,
  "usage": {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 100, "cost_usd": 0.25,
            "model": "m-small"},
  "prompt_bytes": 4096, "runner_ms": 1500, "runner_exit_code": 0, "steps": 3,
  "agent_summary": "did it", "commit": "def456", "changed_paths": ["a.cc", "b.cc"],
  "gates": [{"name": "build", "passed": true, "exit_code": 0, "timed_out": false,
             "duration_ms": 10, "log": "/l/build.log"},
            {"name": "test", "passed": false, "exit_code": 1, "timed_out": false,
             "duration_ms": 20, "log": "/l/test.log"}],
  "reviews": [{"gate": "review", "model": "m-big", "verdict": "fail", "reasons": ["no tests"]},
              {"gate": "second", "error": "timeout"}],
  "review_cost_usd": 0.5, "rebase_cost_usd": 0.125,
  "rebased": {"spec_version": 2, "previous_spec_version": 1, "spec_file": "/s/spec.v2.md"},
  "saved_refs": {"snapshot_ref": "refs/factory/s", "attempt_ref": "refs/factory/a"},
  "failed_phase": "gates", "feedback": "gate 'test' failed", "cost_usd": 0.25
})";

TEST(AttemptDetailsTest, ReadsRowsWrittenBeforeTheTypes) {
  auto details = ParseAttemptDetails(kStoredFailedAttempt);
  ASSERT_TRUE(details.has_value()) << details.error().ToString();
  EXPECT_EQ(details->attempt, 2);
  EXPECT_EQ(details->task_key, "T1");
  EXPECT_EQ(details->agent, "coder");
  ASSERT_TRUE(details->usage.has_value());
  EXPECT_EQ(details->usage->input_tokens, 1200);
  EXPECT_EQ(details->usage->model, "m-small");
  ASSERT_TRUE(details->gates.has_value());
  ASSERT_EQ(details->gates->size(), 2u);
  EXPECT_EQ((*details->gates)[1].name, "test");
  EXPECT_FALSE((*details->gates)[1].passed);
  ASSERT_TRUE(details->reviews.has_value());
  EXPECT_EQ((*details->reviews)[0].reasons, std::vector<std::string>{"no tests"});
  EXPECT_EQ((*details->reviews)[1].error, "timeout");
  EXPECT_EQ(details->failed_phase, "gates");
  EXPECT_EQ(details->feedback, "gate 'test' failed");
  ASSERT_TRUE(details->rebased.has_value());
  EXPECT_EQ(details->rebased->spec_version, 2);
  EXPECT_TRUE(details->extra.empty());
  // Written back, it is the same JSON: the stored format did not change.
  EXPECT_EQ(json::parse(AttemptDetailsJson(*details)), json::parse(kStoredFailedAttempt));
}

TEST(AttemptDetailsTest, RoundTripsEveryField) {
  AttemptDetails details;
  details.attempt = 1;
  details.task_key = "K";
  details.agent = "a";
  details.runner = "cli";
  details.spec_version = 3;
  details.worktree = "/w";
  details.start_commit = "s";
  details.attempt_dir = "/d";
  details.saved_refs = SavedRefsDetails{"snap", ""};
  details.had_feedback = false;
  details.usage = AttemptUsageDetails{1, 2, 3, std::nullopt, ""};
  details.prompt_bytes = 10;
  details.runner_ms = 11;
  details.runner_exit_code = -1;
  details.steps = 0;
  details.agent_summary = "sum";
  details.budget_exceeded = true;
  details.commit = "c";
  details.changed_paths = std::vector<std::string>{};
  details.excluded_paths = std::vector<std::string>{"x"};
  details.excluded_paths_total = 99;
  details.tampering = true;
  details.protected_violations = std::vector<std::string>{"p"};
  details.scope_violations = std::vector<std::string>{"o"};
  details.shadowing_paths = std::vector<std::string>{"json.py (shadows 'json')"};
  details.gates = std::vector<GateDetails>{};
  details.reviews = std::vector<ReviewDetails>{{"r", "m", "pass", {}, ""}};
  details.gates_passed = std::vector<std::string>{"build", "r"};
  details.cost_usd = 1.5;
  details.review_cost_usd = 0.0;
  details.rebase_cost_usd = 2.0;
  details.rebase_failed = "why";
  details.failed_phase = "review_error";
  details.feedback = "";  // set and empty: no feedback for the next attempt
  details.cancelled_in = "runner";
  details.merge_commit = "m";
  details.already_merged = false;
  details.conflicts = std::vector<std::string>{"f"};
  details.extra["future_key"] = R"({"nested":[1,2]})";

  auto back = ParseAttemptDetails(AttemptDetailsJson(details));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, details);
  ASSERT_TRUE(back->feedback.has_value());
  EXPECT_EQ(*back->feedback, "");
}

TEST(AttemptDetailsTest, UnknownKeysSurviveARoundTrip) {
  // What the CLI's shell executor writes: none of it is the pipeline's.
  const std::string stored = R"({"runner":"shell","exec":"direct","exit_code":0,"signal":null,
                                 "stdout_path":"/o","pid":42})";
  auto details = ParseAttemptDetails(stored);
  ASSERT_TRUE(details.has_value()) << details.error().ToString();
  EXPECT_EQ(details->runner, "shell");
  EXPECT_EQ(details->extra.size(), 5u);
  EXPECT_EQ(json::parse(AttemptDetailsJson(*details)), json::parse(stored));
}

TEST(AttemptDetailsTest, EmptyTextIsEmptyDetails) {
  for (const char* text : {"", "{}"}) {
    auto details = ParseAttemptDetails(text);
    ASSERT_TRUE(details.has_value()) << text;
    EXPECT_EQ(*details, AttemptDetails{});
  }
  EXPECT_EQ(AttemptDetailsJson(AttemptDetails{}), "{}");
}

TEST(AttemptDetailsTest, MalformedValuesNameTheField) {
  const struct {
    const char* stored;
    const char* message;
  } cases[] = {
      {"not json", "attempt details: not valid JSON"},
      {"[1,2]", "attempt details: expected a JSON object, got array"},
      {R"({"agent": 7})", "field 'agent': expected a string, got number"},
      {R"({"attempt": "2"})", "field 'attempt': expected an integer, got string"},
      {R"({"attempt": 1.5})", "field 'attempt': expected an integer, got number"},
      {R"({"usage": []})", "field 'usage': expected an object, got array"},
      {R"({"usage": {"input_tokens": "many"}})",
       "field 'usage.input_tokens': expected an integer, got string"},
      {R"({"usage": {"cost_usd": "1"}})", "field 'usage.cost_usd': expected a number"},
      {R"({"gates": {}})", "field 'gates': expected an array, got object"},
      {R"({"gates": [{"name": "b"}, 3]})", "field 'gates[1]': expected an object, got number"},
      {R"({"gates": [{"passed": "yes"}]})", "field 'gates[0].passed': expected a boolean"},
      {R"({"reviews": [{"reasons": ["a", 1]}]})",
       "field 'reviews[0].reasons[1]': expected a string, got number"},
      {R"({"changed_paths": "a.cc"})", "field 'changed_paths': expected an array of strings"},
      {R"({"feedback": null})", "field 'feedback': expected a string, got null"},
  };
  for (const auto& test : cases) {
    auto details = ParseAttemptDetails(test.stored);
    ASSERT_FALSE(details.has_value()) << test.stored;
    EXPECT_EQ(details.error().code, ErrorCode::kInvalidArgument) << test.stored;
    EXPECT_THAT(details.error().message, HasSubstr(test.message)) << test.stored;
  }
}

TEST(AttemptDetailsTest, CostsAreCountedOnce) {
  // The pipeline writes the agent's cost in usage and its sum again at the top level.
  auto details = ParseAttemptDetails(
      R"({"usage": {"input_tokens": 1, "output_tokens": 1, "cached_tokens": 0, "cost_usd": 0.25},
          "cost_usd": 0.25, "review_cost_usd": 0.5, "rebase_cost_usd": 0.125})");
  ASSERT_TRUE(details.has_value()) << details.error().ToString();
  EXPECT_DOUBLE_EQ(details->AgentCostUsd(), 0.25);
  EXPECT_DOUBLE_EQ(details->TotalCostUsd(), 0.875);
  // Only the top-level sum (a row without usage cost): that is the agent's cost.
  auto summed = ParseAttemptDetails(R"({"cost_usd": 0.5})");
  ASSERT_TRUE(summed.has_value());
  EXPECT_DOUBLE_EQ(summed->AgentCostUsd(), 0.5);
  EXPECT_DOUBLE_EQ(summed->TotalCostUsd(), 0.5);
}

TEST(RunMetadataTest, RoundTripAndStoredRows) {
  const std::string stored =
      R"({"base_branch":"main","integration_branch":"factory/run/r1","backlog":"BACKLOG.yaml",
          "repo":"/repo","feature":"specs/f","feature_request":"feature.md","later":true})";
  auto metadata = ParseRunMetadata(stored);
  ASSERT_TRUE(metadata.has_value()) << metadata.error().ToString();
  EXPECT_EQ(metadata->base_branch, "main");
  EXPECT_EQ(metadata->feature, "specs/f");
  EXPECT_EQ(metadata->extra.at("later"), "true");
  EXPECT_EQ(json::parse(RunMetadataJson(*metadata)), json::parse(stored));

  auto bad = ParseRunMetadata(R"({"base_branch": ["main"]})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message,
              HasSubstr("run metadata: field 'base_branch': expected a string, got array"));
}

TEST(TaskMetadataTest, RoundTripAndStoredRows) {
  const std::string stored =
      R"({"backlog_id":"T1","allow_protected":["tests/**"],"scope":["src/**"],"agent":"",
          "type":"code","capabilities":["cpp"],"backlog_line":12})";
  auto metadata = ParseTaskMetadata(stored);
  ASSERT_TRUE(metadata.has_value()) << metadata.error().ToString();
  EXPECT_EQ(metadata->backlog_id, "T1");
  EXPECT_EQ(metadata->scope, std::vector<std::string>{"src/**"});
  EXPECT_EQ(metadata->backlog_line, 12);
  EXPECT_EQ(json::parse(TaskMetadataJson(*metadata)), json::parse(stored));
  // A task added by hand has no metadata.
  auto empty = ParseTaskMetadata("{}");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->scope.empty());

  auto bad = ParseTaskMetadata(R"({"scope": "src/**"})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message,
              HasSubstr("task metadata: field 'scope': expected an array of strings"));
}

}  // namespace
}  // namespace factory
