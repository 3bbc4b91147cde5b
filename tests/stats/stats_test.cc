// ComputeStats over a real SQLite store filled with known tasks, attempts, events and ledger
// rows: every figure is asserted exactly (costs are binary fractions, so sums are exact).

#include "stats/stats.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_util.h"

namespace factory::stats {
namespace {

using nlohmann::json;

// details_json as the orchestrator's pipeline writes it.
std::string Details(const std::string& agent, const std::string& model, int64_t input,
                    int64_t output, int64_t cached, std::optional<double> cost,
                    int64_t prompt_bytes) {
  json usage{{"input_tokens", input}, {"output_tokens", output}, {"cached_tokens", cached}};
  if (!model.empty()) usage["model"] = model;
  if (cost) usage["cost_usd"] = *cost;
  json details{{"agent", agent}, {"runner", "llm"}, {"usage", usage}};
  if (prompt_bytes > 0) details["prompt_bytes"] = prompt_bytes;
  if (cost && *cost > 0) details["cost_usd"] = *cost;  // the pipeline's own sum, same value
  return details.dump();
}

class StatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "factory.db"});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
  }

  void Write(const std::function<Status(StoreTxn&)>& fn) {
    auto written = store_->Write(fn);
    ASSERT_TRUE(written.has_value()) << written.error().ToString();
  }

  void AddRun(const std::string& id) {
    Write([&](StoreTxn& txn) {
      return txn.InsertRun(factory::Run{.id = id, .created_ms = 1, .updated_ms = 1});
    });
  }

  void AddTask(const std::string& id, const std::string& run, TaskState state,
               const std::string& metadata = "{}", const std::string& agent = "") {
    Task task;
    task.id = id;
    task.run_id = run;
    task.title = "task " + id;
    task.state = state;
    task.metadata_json = metadata;
    task.agent = agent;
    task.created_ms = 1;
    task.updated_ms = 1;
    Write([&](StoreTxn& txn) { return txn.InsertTask(task); });
  }

  void AddAttempt(const std::string& task_id, int64_t epoch, AttemptStatus status,
                  int64_t started_ms, int64_t finished_ms, const std::string& details) {
    Attempt attempt;
    attempt.id = task_id + "-attempt-" + std::to_string(epoch);
    attempt.task_id = task_id;
    attempt.epoch = epoch;
    attempt.number = static_cast<int>(epoch);
    attempt.owner = "worker";
    attempt.status = status;
    attempt.started_ms = started_ms;
    attempt.finished_ms = finished_ms;
    attempt.details_json = details;
    Write([&](StoreTxn& txn) { return txn.InsertAttempt(attempt); });
  }

  void AddEvent(const std::string& run, const std::string& task, const std::string& kind) {
    Event event;
    event.id = "event-" + std::to_string(++events_);
    event.ts_ms = 10;
    event.run_id = run;
    event.task_id = task;
    event.kind = kind;
    event.actor = "test";
    Write([&](StoreTxn& txn) { return txn.AppendEvent(event); });
  }

  void AddCall(const std::string& run, const std::string& task, const std::string& agent,
               const std::string& model, const std::string& purpose, int64_t input, int64_t output,
               double cost, const std::string& attempt_id = "", int64_t cached = 0) {
    ModelCallRow row;
    row.attempt_id = attempt_id;
    row.cached_tokens = cached;
    row.ts_ms = 100 + (++calls_);
    row.run_id = run;
    row.task_id = task;
    row.agent = agent;
    row.provider = "p";
    row.model = model;
    row.input_tokens = input;
    row.output_tokens = output;
    row.cost_usd = cost;
    row.status = "ok";
    row.purpose = purpose;
    Write([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(int64_t id, txn.InsertModelCall(row));
      (void)id;
      return Ok();
    });
  }

  // Run r1: five tasks covering every attribution rule; run r2: one more task and call.
  void FillScenario() {
    AddRun("r1");
    AddRun("r2");
    // A: failed once (builder on m-small), then done (builder on m-big, its tool loop's call
    // in the ledger below); rebased once.
    AddTask("t-a", "r1", TaskState::kDone, R"({"backlog_id":"a"})");
    AddAttempt("t-a", 1, AttemptStatus::kFailed, 1000, 3000,
               Details("builder", "m-small", 100, 10, 0, 0.25, 1000));
    AddAttempt("t-a", 2, AttemptStatus::kSucceeded, 5000, 9000,
               Details("builder", "m-big", 200, 20, 50, 0.5, 2000));
    AddEvent("r1", "t-a", "task.rebased");
    AddEvent("r1", "t-a", "task.completed");
    // B: done at the first attempt (coder on m-small), which reports its cost only at the top
    // level of the details.
    AddTask("t-b", "r1", TaskState::kDone);
    json b_details = json::parse(Details("coder", "m-small", 50, 5, 0, std::nullopt, 4000));
    b_details["cost_usd"] = 0.125;
    AddAttempt("t-b", 1, AttemptStatus::kSucceeded, 1000, 2000, b_details.dump());
    // C: failed finally (coder on m-small); a released attempt in between does not count.
    AddTask("t-c", "r1", TaskState::kFailed);
    AddAttempt("t-c", 1, AttemptStatus::kFailed, 1000, 1500,
               Details("coder", "m-small", 10, 1, 0, 0.0, 500));
    AddAttempt("t-c", 2, AttemptStatus::kReleased, 2000, 2100,
               Details("coder", "m-small", 999, 999, 0, 8.0, 999));
    AddAttempt("t-c", 3, AttemptStatus::kFailed, 3000, 6000,
               Details("coder", "m-small", 0, 0, 0, std::nullopt, 0));
    // D: blocked, never attempted, no explicit agent.
    AddTask("t-d", "r1", TaskState::kBlocked);
    // E: its first attempt is still running (builder on m-small).
    AddTask("t-e", "r1", TaskState::kRunning);
    AddAttempt("t-e", 1, AttemptStatus::kRunning, 1000, 0,
               Details("builder", "m-small", 0, 0, 0, std::nullopt, 0));
    // Ledger: the tool loop's call of t-a's second attempt (what its details say, counted
    // once); the review call is t-a's (found by its backlog id); the planning call belongs to
    // no task.
    AddCall("r1", "t-a", "builder", "m-big", "tool_loop", 200, 20, 0.5, "t-a-attempt-2", 50);
    AddCall("r1", "a", "reviewer", "m-review", "review", 300, 30, 0.0625);
    AddCall("r1", "", "planner", "m-big", "planning", 1000, 100, 1.0);
    // Run r2.
    AddTask("t-f", "r2", TaskState::kDone, "{}", "builder");
    AddAttempt("t-f", 1, AttemptStatus::kSucceeded, 0, 500,
               Details("builder", "m-small", 1, 1, 0, 2.0, 100));
    AddCall("r2", "t-f", "reviewer", "m-review", "review", 7, 7, 4.0);
  }

  StatsReport Compute(const std::string& run) {
    auto report = ComputeStats(*store_, StatsQuery{.run_id = run});
    EXPECT_TRUE(report.has_value()) << report.error().ToString();
    return report ? *report : StatsReport{};
  }

  static const Figures& Group(const std::vector<Figures>& groups, const std::string& key) {
    for (const Figures& group : groups) {
      if (group.key == key) return group;
    }
    ADD_FAILURE() << "no group " << key;
    static const Figures kNone;
    return kNone;
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  int events_ = 0;
  int calls_ = 0;
};

TEST_F(StatsTest, TotalsOfARun) {
  FillScenario();
  const StatsReport report = Compute("r1");
  const Figures& total = report.total;
  EXPECT_EQ(report.run_id, "r1");
  EXPECT_EQ(total.tasks, 5);
  EXPECT_EQ(total.done, 2);
  EXPECT_EQ(total.failed, 1);
  EXPECT_EQ(total.blocked, 1);
  EXPECT_EQ(total.cancelled, 0);
  EXPECT_EQ(total.attempts, 6);  // 2 + 1 + 2 (one released) + 1
  EXPECT_EQ(total.attempted_tasks, 4);
  EXPECT_EQ(total.attempts_of_tasks, 6);
  EXPECT_EQ(total.attempts_per_task, 1.5);
  EXPECT_EQ(total.first_attempts, 3);  // E's first attempt is still running
  EXPECT_EQ(total.first_attempt_successes, 1);
  EXPECT_EQ(total.first_attempt_success_rate, 1.0 / 3.0);
  EXPECT_EQ(total.rebases, 1);
  EXPECT_EQ(total.rebased_tasks, 1);
  EXPECT_EQ(total.model_calls, 3);  // A's tool loop call (not its details too), review, planning
  EXPECT_EQ(total.input_tokens, 100 + 200 + 50 + 10 + 300 + 1000);
  EXPECT_EQ(total.output_tokens, 10 + 20 + 5 + 1 + 30 + 100);
  EXPECT_EQ(total.cached_tokens, 50);
  EXPECT_EQ(total.cost_usd, 0.25 + 0.5 + 0.125 + 0.0625 + 1.0);
  EXPECT_EQ(total.cost_per_task_usd, 1.9375 / 5);
  // Task times: A 1000 -> 9000, B 1000 -> 2000, C 1000 -> 6000.
  EXPECT_EQ(total.task_time_ms.count, 3);
  EXPECT_EQ(total.task_time_ms.mean, (8000.0 + 1000.0 + 5000.0) / 3);
  EXPECT_EQ(total.task_time_ms.p50, 5000);
  EXPECT_EQ(total.task_time_ms.p90, 8000);
  EXPECT_EQ(total.task_time_ms.max, 8000);
  // Prompt sizes of the attempts that recorded one: 1000, 2000, 4000, 500.
  EXPECT_EQ(total.prompt_bytes.count, 4);
  EXPECT_EQ(total.prompt_bytes.mean, 1875.0);
  EXPECT_EQ(total.prompt_bytes.p50, 1000);
  EXPECT_EQ(total.prompt_bytes.p90, 4000);
  EXPECT_EQ(total.prompt_bytes.max, 4000);
}

TEST_F(StatsTest, PerAgent) {
  FillScenario();
  const StatsReport report = Compute("r1");
  std::vector<std::string> keys;
  for (const Figures& group : report.by_agent) keys.push_back(group.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"", "builder", "coder", "planner", "reviewer"}));

  const Figures& builder = Group(report.by_agent, "builder");  // tasks A and E
  EXPECT_EQ(builder.tasks, 2);
  EXPECT_EQ(builder.done, 1);
  EXPECT_EQ(builder.failed, 0);
  EXPECT_EQ(builder.attempts_per_task, 1.5);
  EXPECT_EQ(builder.rebases, 1);
  EXPECT_EQ(builder.task_time_ms.count, 1);
  EXPECT_EQ(builder.task_time_ms.p90, 8000);
  EXPECT_EQ(builder.attempts, 3);
  EXPECT_EQ(builder.first_attempts, 1);
  EXPECT_EQ(builder.first_attempt_successes, 0);
  EXPECT_EQ(builder.first_attempt_success_rate, 0.0);
  EXPECT_EQ(builder.input_tokens, 300);
  EXPECT_EQ(builder.cached_tokens, 50);
  EXPECT_EQ(builder.cost_usd, 0.75);
  EXPECT_EQ(builder.model_calls, 1);
  EXPECT_EQ(builder.prompt_bytes.count, 2);

  const Figures& coder = Group(report.by_agent, "coder");  // tasks B and C
  EXPECT_EQ(coder.tasks, 2);
  EXPECT_EQ(coder.done, 1);
  EXPECT_EQ(coder.failed, 1);
  EXPECT_EQ(coder.attempts, 3);
  EXPECT_EQ(coder.first_attempts, 2);
  EXPECT_EQ(coder.first_attempt_success_rate, 0.5);
  EXPECT_EQ(coder.cost_usd, 0.125);
  EXPECT_EQ(coder.task_time_ms.mean, 3000.0);
  EXPECT_EQ(coder.prompt_bytes.mean, 2250.0);

  const Figures& none = Group(report.by_agent, "");  // task D
  EXPECT_EQ(none.tasks, 1);
  EXPECT_EQ(none.blocked, 1);
  EXPECT_EQ(none.attempts, 0);
  EXPECT_FALSE(none.attempts_per_task.has_value());
  EXPECT_FALSE(none.first_attempt_success_rate.has_value());
  EXPECT_FALSE(none.task_time_ms.mean.has_value());

  const Figures& reviewer = Group(report.by_agent, "reviewer");
  EXPECT_EQ(reviewer.tasks, 0);
  EXPECT_EQ(reviewer.model_calls, 1);
  EXPECT_EQ(reviewer.input_tokens, 300);
  EXPECT_EQ(reviewer.cost_usd, 0.0625);
  EXPECT_FALSE(reviewer.cost_per_task_usd.has_value());
  EXPECT_EQ(Group(report.by_agent, "planner").cost_usd, 1.0);
}

TEST_F(StatsTest, PerModel) {
  FillScenario();
  const StatsReport report = Compute("r1");
  const Figures& small = Group(report.by_model, "m-small");
  EXPECT_EQ(small.tasks, 3);  // B, C, E end on m-small
  EXPECT_EQ(small.attempts, 5);
  EXPECT_EQ(small.first_attempts, 3);  // A's, B's and C's first attempts ran on m-small
  EXPECT_EQ(small.first_attempt_successes, 1);
  EXPECT_EQ(small.cost_usd, 0.25 + 0.125);
  const Figures& big = Group(report.by_model, "m-big");
  EXPECT_EQ(big.tasks, 1);  // A ended on m-big
  EXPECT_EQ(big.done, 1);
  EXPECT_EQ(big.rebases, 1);
  EXPECT_EQ(big.attempts, 1);
  EXPECT_EQ(big.first_attempts, 0);
  EXPECT_EQ(big.model_calls, 2);  // A's tool loop call and the planning call
  EXPECT_EQ(big.input_tokens, 200 + 1000);
  EXPECT_EQ(big.cost_usd, 1.5);
  EXPECT_EQ(Group(report.by_model, "m-review").cost_usd, 0.0625);
  EXPECT_EQ(Group(report.by_model, "").tasks, 1);
}

TEST_F(StatsTest, PerTask) {
  FillScenario();
  const StatsReport report = Compute("r1");
  ASSERT_EQ(report.tasks.size(), 5u);
  const TaskFigures& a = report.tasks[0];
  EXPECT_EQ(a.id, "t-a");
  EXPECT_EQ(a.key, "a");
  EXPECT_EQ(a.state, "done");
  EXPECT_EQ(a.agent, "builder");
  EXPECT_EQ(a.model, "m-big");
  EXPECT_EQ(a.attempts, 2);
  EXPECT_EQ(a.first_attempt_succeeded, false);
  EXPECT_EQ(a.rebases, 1);
  EXPECT_EQ(a.input_tokens, 100 + 200 + 300);  // its attempts and its review call
  EXPECT_EQ(a.cost_usd, 0.25 + 0.5 + 0.0625);
  EXPECT_EQ(a.time_ms, 8000);
  EXPECT_EQ(a.max_prompt_bytes, 2000);
  const TaskFigures& c = report.tasks[2];
  EXPECT_EQ(c.attempts, 2);
  EXPECT_EQ(c.time_ms, 5000);
  EXPECT_EQ(c.cost_usd, 0.0);
  const TaskFigures& d = report.tasks[3];
  EXPECT_EQ(d.agent, "");
  EXPECT_FALSE(d.first_attempt_succeeded.has_value());
  EXPECT_FALSE(d.time_ms.has_value());
  const TaskFigures& e = report.tasks[4];
  EXPECT_FALSE(e.first_attempt_succeeded.has_value());  // still running
  EXPECT_FALSE(e.time_ms.has_value());
}

TEST_F(StatsTest, EveryRunWhenNoneIsGiven) {
  FillScenario();
  const StatsReport report = Compute("");
  EXPECT_EQ(report.total.tasks, 6);
  EXPECT_EQ(report.total.done, 3);
  EXPECT_EQ(report.total.attempts, 7);
  EXPECT_EQ(report.total.first_attempt_successes, 2);
  EXPECT_EQ(report.total.model_calls, 4);
  EXPECT_EQ(report.total.cost_usd, 1.9375 + 2.0 + 4.0);
  EXPECT_EQ(report.tasks.back().cost_usd, 6.0);  // t-f's attempt and its review call
  EXPECT_EQ(Compute("r2").total.cost_usd, 6.0);
}

TEST_F(StatsTest, MeteredRunnerCallsReplaceWhatTheRunnerReported) {
  AddRun("r3");
  AddTask("t-g", "r3", TaskState::kDone, R"({"backlog_id":"g"})");
  // Attempt 1: a CLI agent through the gateway; its own report (1.0) is not what was metered.
  AddAttempt("t-g", 1, AttemptStatus::kFailed, 0, 100,
             Details("cli-agent", "", 10, 1, 0, 1.0, 300));
  AddCall("r3", "t-g", "cli-agent", "m-x", "gateway", 100, 10, 0.25, "t-g-attempt-1");
  AddCall("r3", "t-g", "cli-agent", "m-x", "gateway", 100, 10, 0.25, "t-g-attempt-1");
  // Attempt 2: a tool loop that named its attempt "<backlog key>-<number>".
  AddAttempt("t-g", 2, AttemptStatus::kSucceeded, 200, 300,
             Details("llm-agent", "m-y", 40, 4, 0, 2.0, 400));
  AddCall("r3", "g", "llm-agent", "m-y", "tool_loop", 30, 3, 0.125, "g-2");
  // A tool-loop call of no known attempt still counts, as an other call.
  AddCall("r3", "", "llm-agent", "m-y", "tool_loop", 5, 5, 0.0625, "nobody-1");

  const StatsReport report = Compute("r3");
  EXPECT_EQ(report.total.attempts, 2);
  EXPECT_EQ(report.total.model_calls, 4);
  EXPECT_EQ(report.total.cost_usd, 0.25 + 0.25 + 0.125 + 0.0625);
  EXPECT_EQ(report.total.input_tokens, 100 + 100 + 30 + 5);
  ASSERT_EQ(report.tasks.size(), 1u);
  EXPECT_EQ(report.tasks[0].cost_usd, 0.625);
  EXPECT_EQ(report.tasks[0].output_tokens, 23);
  // Calls go to their own model; the attempt (and its prompt) to the details' agent and model.
  EXPECT_EQ(Group(report.by_model, "m-x").cost_usd, 0.5);
  EXPECT_EQ(Group(report.by_model, "m-x").attempts, 0);
  EXPECT_EQ(Group(report.by_model, "").attempts, 1);
  EXPECT_EQ(Group(report.by_model, "").cost_usd, 0.0);
  EXPECT_EQ(Group(report.by_agent, "cli-agent").attempts, 1);
  EXPECT_EQ(Group(report.by_agent, "cli-agent").cost_usd, 0.5);
  EXPECT_EQ(Group(report.by_agent, "llm-agent").cost_usd, 0.1875);
  EXPECT_EQ(report.total.prompt_bytes.count, 2);
}

TEST_F(StatsTest, AnEmptyRunHasZerosAndNoRatios) {
  AddRun("empty");
  const StatsReport report = Compute("empty");
  EXPECT_EQ(report.total.tasks, 0);
  EXPECT_EQ(report.total.cost_usd, 0.0);
  EXPECT_FALSE(report.total.attempts_per_task.has_value());
  EXPECT_FALSE(report.total.first_attempt_success_rate.has_value());
  EXPECT_FALSE(report.total.cost_per_task_usd.has_value());
  EXPECT_EQ(report.total.prompt_bytes.count, 0);
  EXPECT_TRUE(report.by_agent.empty());
  const json out = json::parse(StatsReportJson(report));
  EXPECT_EQ(out["run"], "empty");
  EXPECT_TRUE(out["total"]["first_attempt_success_rate"].is_null());
  EXPECT_TRUE(out["total"]["task_time_ms"]["p90"].is_null());
}

TEST_F(StatsTest, AnUnknownRunIsNotFound) {
  FillScenario();
  auto report = ComputeStats(*store_, StatsQuery{.run_id = "nope"});
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().code, ErrorCode::kNotFound);
  EXPECT_NE(report.error().message.find("nope"), std::string::npos);
}

TEST_F(StatsTest, AMalformedStoredValueIsAnErrorNamingTheField) {
  AddRun("r1");
  AddTask("t1", "r1", TaskState::kDone, R"({"backlog_id": "T1"})");
  AddAttempt("t1", 1, AttemptStatus::kSucceeded, 10, 20,
             R"({"agent": "coder", "usage": {"input_tokens": "lots"}})");
  auto report = ComputeStats(*store_, StatsQuery{.run_id = "r1"});
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(report.error().message.find("attempt t1-attempt-1"), std::string::npos)
      << report.error().message;
  EXPECT_NE(report.error().message.find("field 'usage.input_tokens'"), std::string::npos)
      << report.error().message;

  AddTask("t2", "r1", TaskState::kDone, R"({"backlog_id": 7})");
  auto by_task = ComputeStats(*store_, StatsQuery{.run_id = "r1"});
  ASSERT_FALSE(by_task.has_value());
  EXPECT_NE(by_task.error().message.find("field '"), std::string::npos) << by_task.error().message;
}

TEST_F(StatsTest, JsonCarriesTheFigures) {
  FillScenario();
  const StatsReport report = Compute("r1");
  const json out = json::parse(StatsReportJson(report));
  EXPECT_EQ(out["total"]["tasks"], 5);
  EXPECT_EQ(out["total"]["first_attempt_success_rate"].get<double>(), 1.0 / 3.0);
  EXPECT_EQ(out["total"]["cost_usd"].get<double>(), 1.9375);
  EXPECT_EQ(out["total"]["task_time_ms"]["p90"], 8000);
  EXPECT_EQ(out["total"]["prompt_bytes"]["p50"], 1000);
  EXPECT_EQ(out["by_agent"].size(), report.by_agent.size());
  EXPECT_EQ(out["by_model"].size(), report.by_model.size());
  EXPECT_EQ(out["tasks"][0]["key"], "a");
  EXPECT_EQ(out["tasks"][0]["first_attempt_succeeded"], false);
  EXPECT_TRUE(out["tasks"][3]["time_ms"].is_null());
  // The text form names the same figures.
  const std::string text = StatsReportText(report, /*with_tasks=*/true);
  EXPECT_NE(text.find("first-attempt success 1/3 (33.3%)"), std::string::npos) << text;
  EXPECT_NE(text.find("$1.9375 total"), std::string::npos) << text;
  EXPECT_NE(text.find("t-e"), std::string::npos) << text;
}

TEST(PercentileTest, NearestRank) {
  std::vector<int64_t> one_to_ten{10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  EXPECT_EQ(Percentile(one_to_ten, 50), 5);
  EXPECT_EQ(Percentile(one_to_ten, 90), 9);
  EXPECT_EQ(Percentile(one_to_ten, 91), 10);
  EXPECT_EQ(Percentile(one_to_ten, 100), 10);
  EXPECT_EQ(Percentile(one_to_ten, 1), 1);
  EXPECT_EQ(Percentile({42}, 90), 42);
  EXPECT_FALSE(Percentile({}, 90).has_value());
  EXPECT_FALSE(Percentile({1}, 0).has_value());
}

}  // namespace
}  // namespace factory::stats
