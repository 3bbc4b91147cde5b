// The ledger: every CallRecord becomes a model_calls row; totals equal usage x prices; costs
// grouped by agent, model, day and run, with --since.

#include "ledger/ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "ledger/internal/day.h"
#include "ledger_fixture.h"
#include "llm/models_config.h"
#include "store/sqlite/migrations.h"

namespace factory::ledger {
namespace {

constexpr int64_t kDayMs = 24LL * 60 * 60 * 1000;

llm::ModelSpec Model(std::string name, double in, double out, double cached) {
  llm::ModelSpec spec;
  spec.name = std::move(name);
  spec.input_per_mtok = in;
  spec.output_per_mtok = out;
  spec.cached_per_mtok = cached;
  spec.cache_write_per_mtok = in;
  return spec;
}

llm::CallRecord Record(const llm::ModelSpec& model, const std::string& provider,
                       const std::string& agent, const std::string& run, int64_t ts,
                       llm::Usage usage) {
  llm::CallRecord record;
  record.context = llm::CallContext{.run_id = run,
                                    .task_id = run + "-t",
                                    .attempt_id = "a1",
                                    .agent = agent,
                                    .purpose = "tool_loop"};
  record.kind = "chat";
  record.provider = provider;
  record.model = model.name;
  record.model_id = model.name + "-id";
  record.alias = "cloud/fast";
  record.usage = usage;
  record.cost_usd = llm::CostUsd(model, usage);
  record.started_at_ms = ts;
  record.latency_ms = 42;
  record.ok = true;
  record.http_status = 200;
  record.attempts = 1;
  return record;
}

class LedgerTest : public LedgerFixture {};

TEST_F(LedgerTest, StoresEveryFieldOfARecord) {
  Ledger ledger(*store_);
  auto model = Model("fast", 0.4, 1.6, 0.1);
  auto record =
      Record(model, "primary", "coder", "run1", clock_.NowMillis(), llm::Usage{1'000, 200, 400, 0});
  record.retries = 2;
  record.overrun_usd = 0.0001234;
  ASSERT_TRUE(ledger.Record(record));
  llm::CallRecord failed = record;
  failed.overrun_usd = 0;
  failed.ok = false;
  failed.status = ErrorCode::kUnavailable;
  failed.usage = {};
  failed.cost_usd = 0;
  failed.http_status = 503;
  failed.error = "primary: overloaded";
  ledger.OnCall(failed);

  auto calls = ledger.Calls({});
  ASSERT_TRUE(calls) << calls.error().ToString();
  ASSERT_EQ(calls->size(), 2u);
  const ModelCallRow& row = (*calls)[0];
  EXPECT_GT(row.id, 0);
  EXPECT_EQ(row.ts_ms, clock_.NowMillis());
  EXPECT_EQ(row.run_id, "run1");
  EXPECT_EQ(row.task_id, "run1-t");
  EXPECT_EQ(row.attempt_id, "a1");
  EXPECT_EQ(row.agent, "coder");
  EXPECT_EQ(row.provider, "primary");
  EXPECT_EQ(row.model, "fast");
  EXPECT_EQ(row.alias, "cloud/fast");
  EXPECT_EQ(row.input_tokens, 1'000);
  EXPECT_EQ(row.output_tokens, 200);
  EXPECT_EQ(row.cached_tokens, 400);
  EXPECT_DOUBLE_EQ(row.cost_usd, record.cost_usd);
  EXPECT_EQ(row.latency_ms, 42);
  EXPECT_EQ(row.status, "ok");
  EXPECT_EQ(row.http_status, 200);
  EXPECT_EQ(row.retries, 2);
  EXPECT_FALSE(row.cache_hit);
  EXPECT_EQ(row.purpose, "tool_loop");
  EXPECT_DOUBLE_EQ(row.overrun_usd, 0.0001234);
  EXPECT_EQ((*calls)[1].status, "unavailable");
  EXPECT_EQ((*calls)[1].http_status, 503);
  EXPECT_EQ((*calls)[1].error, "primary: overloaded");
  EXPECT_EQ((*calls)[1].cost_usd, 0);
}

TEST_F(LedgerTest, TotalsEqualUsageTimesConfiguredPrices) {
  Ledger ledger(*store_);
  auto cheap = Model("cheap", 0.15, 0.6, 0.075);
  auto dear = Model("dear", 3.0, 15.0, 0.3);
  const llm::Usage usages[] = {
      {1'234, 567, 0, 0}, {10'000, 2'000, 8'000, 0}, {77, 3, 0, 0}, {50'000, 4'096, 12'345, 0}};
  double expected = 0;
  int64_t expected_tokens = 0;
  for (int i = 0; i < 40; ++i) {
    const auto& model = i % 3 == 0 ? dear : cheap;
    const llm::Usage& usage = usages[i % 4];
    ledger.OnCall(
        Record(model, "p", i % 2 ? "coder" : "tester", "run1", clock_.NowMillis() + i, usage));
    // The price arithmetic written out independently of CostUsd.
    expected += ((usage.input_tokens - usage.cached_read_tokens) * model.input_per_mtok +
                 usage.cached_read_tokens * model.cached_per_mtok +
                 usage.output_tokens * model.output_per_mtok) /
                1e6;
    expected_tokens += usage.input_tokens + usage.output_tokens;
  }
  for (CostGroup group : {CostGroup::kAgent, CostGroup::kModel, CostGroup::kDay, CostGroup::kRun}) {
    auto report = ledger.Costs(group);
    ASSERT_TRUE(report) << report.error().ToString();
    EXPECT_EQ(report->total.calls, 40);
    EXPECT_NEAR(report->total.cost_usd, expected, 1e-12) << CostGroupName(group);
    EXPECT_EQ(report->total.input_tokens + report->total.output_tokens, expected_tokens);
    double sum = 0;
    int64_t calls = 0;
    for (const auto& row : report->rows) {
      sum += row.cost_usd;
      calls += row.calls;
    }
    EXPECT_NEAR(sum, expected, 1e-12);
    EXPECT_EQ(calls, 40);
  }
}

TEST_F(LedgerTest, GroupsByAgentModelDayAndRunAndHonoursSince) {
  Ledger ledger(*store_);
  auto cheap = Model("cheap", 1, 2, 1);  // $1 per M input, $2 per M output
  auto dear = Model("dear", 10, 20, 10);
  const int64_t day1 = clock_.NowMillis();
  const int64_t day2 = day1 + kDayMs;
  ledger.OnCall(Record(cheap, "local", "coder", "r1", day1, {1'000'000, 0, 0, 0}));      // $1
  ledger.OnCall(Record(dear, "cloud", "coder", "r1", day1 + 5, {0, 1'000'000, 0, 0}));   // $20
  ledger.OnCall(Record(cheap, "local", "tester", "r2", day2, {0, 500'000, 0, 0}));       // $1
  ledger.OnCall(Record(dear, "cloud", "reviewer", "r2", day2 + 1, {100'000, 0, 0, 0}));  // $1

  auto by_agent = ledger.Costs(CostGroup::kAgent);
  ASSERT_TRUE(by_agent);
  ASSERT_EQ(by_agent->rows.size(), 3u);
  EXPECT_EQ(by_agent->rows[0].key, "coder");
  EXPECT_EQ(by_agent->rows[0].calls, 2);
  EXPECT_NEAR(by_agent->rows[0].cost_usd, 21, 1e-9);
  EXPECT_EQ(by_agent->rows[1].key, "reviewer");
  EXPECT_EQ(by_agent->rows[2].key, "tester");
  EXPECT_NEAR(by_agent->total.cost_usd, 23, 1e-9);

  auto by_model = ledger.Costs(CostGroup::kModel);
  ASSERT_TRUE(by_model);
  ASSERT_EQ(by_model->rows.size(), 2u);
  EXPECT_EQ(by_model->rows[0].key, "cloud/dear");
  EXPECT_NEAR(by_model->rows[0].cost_usd, 21, 1e-9);
  EXPECT_EQ(by_model->rows[0].output_tokens, 1'000'000);
  EXPECT_EQ(by_model->rows[1].key, "local/cheap");
  EXPECT_NEAR(by_model->rows[1].cost_usd, 2, 1e-9);

  auto by_day = ledger.Costs(CostGroup::kDay);
  ASSERT_TRUE(by_day);
  ASSERT_EQ(by_day->rows.size(), 2u);
  EXPECT_EQ(by_day->rows[0].key, internal::UtcDay(day1));
  EXPECT_NEAR(by_day->rows[0].cost_usd, 21, 1e-9);
  EXPECT_EQ(by_day->rows[1].key, internal::UtcDay(day2));
  EXPECT_NEAR(by_day->rows[1].cost_usd, 2, 1e-9);

  auto by_run = ledger.Costs(CostGroup::kRun);
  ASSERT_TRUE(by_run);
  ASSERT_EQ(by_run->rows.size(), 2u);
  EXPECT_EQ(by_run->rows[0].key, "r1");
  EXPECT_EQ(by_run->rows[1].key, "r2");
  EXPECT_EQ(by_run->rows[1].calls, 2);

  auto since = ledger.Costs(CostGroup::kAgent, day2);
  ASSERT_TRUE(since);
  ASSERT_EQ(since->rows.size(), 2u);
  EXPECT_EQ(since->rows[0].key, "reviewer");
  EXPECT_EQ(since->rows[1].key, "tester");
  EXPECT_EQ(since->total.calls, 2);
  EXPECT_NEAR(since->total.cost_usd, 2, 1e-9);

  auto none = ledger.Costs(CostGroup::kRun, day2 + kDayMs);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->rows.empty());
  EXPECT_EQ(none->total.calls, 0);
}

// A database made by a v1 build (only the queue's schema) gains the ledger tables on open and
// keeps its queue data.
TEST_F(LedgerTest, MigratesAVersionOneDatabase) {
  queue_.reset();
  store_.reset();
  const std::string path = dir_ / "v1.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const std::string v1 = std::string(sqlite::kMigrations[0]) +
                         "INSERT INTO runs (id, state, created_ms, updated_ms) "
                         "VALUES ('r1', 'open', 1, 1);"
                         "INSERT INTO tasks (id, run_id, title, state, created_ms, updated_ms) "
                         "VALUES ('t1', 'r1', 'kept', 'ready', 1, 1);"
                         "PRAGMA user_version = 1;";
  ASSERT_EQ(sqlite3_exec(db, v1.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto store = OpenSqliteStore(SqliteOptions{.path = path});
  ASSERT_TRUE(store) << store.error().ToString();
  EXPECT_EQ((*store)->Info().schema_version, LatestSchemaVersion());
  Queue queue(**store);
  auto tasks = queue.ListTasks({});
  ASSERT_TRUE(tasks);
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ(tasks->front().title, "kept");
  Ledger ledger(**store);
  llm::CallRecord record;
  record.ok = true;
  record.cost_usd = 0.25;
  record.overrun_usd = 0.125;  // a column the migrations added
  ASSERT_TRUE(ledger.Record(record));
  EXPECT_EQ(ledger.Costs(CostGroup::kDay)->total.cost_usd, 0.25);
  EXPECT_EQ(ledger.Costs(CostGroup::kDay)->total.overrun_usd, 0.125);
}

TEST(CostGroupTest, ParsesTheCliNames) {
  EXPECT_EQ(ParseCostGroup("agent").value(), CostGroup::kAgent);
  EXPECT_EQ(ParseCostGroup("model").value(), CostGroup::kModel);
  EXPECT_EQ(ParseCostGroup("day").value(), CostGroup::kDay);
  EXPECT_EQ(ParseCostGroup("run").value(), CostGroup::kRun);
  auto bad = ParseCostGroup("week");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("agent, model, day or run"), std::string::npos);
}

TEST(ParseSinceTest, AcceptsDatesTimesAndSpans) {
  const int64_t now = 1'790'000'000'000;
  EXPECT_EQ(ParseSince("2000-02-29", now).value(), 951'782'400'000);
  EXPECT_EQ(ParseSince("2000-02-29T23:59:59Z", now).value(), 951'868'799'000);
  EXPECT_EQ(ParseSince("2000-02-29T23:59:59.999Z", now).value(), 951'868'799'999);
  EXPECT_EQ(ParseSince("90m", now).value(), now - 90 * 60'000);
  EXPECT_EQ(ParseSince("24h", now).value(), now - kDayMs);
  EXPECT_EQ(ParseSince("7d", now).value(), now - 7 * kDayMs);
  for (const char* bad : {"", "yesterday", "2001-02-29", "2000-13-01", "5w", "h", "-1d",
                          "2000-02-29T25:00:00Z", "2000-02-29T10:00:00"}) {
    auto since = ParseSince(bad, now);
    ASSERT_FALSE(since) << bad;
    EXPECT_EQ(since.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(CostReportJsonTest, RendersRowsAndTotal) {
  CostReport report;
  report.rows.push_back(CostRow{.key = "coder", .calls = 2, .input_tokens = 10, .cost_usd = 0.5});
  report.total = report.rows[0];
  report.total.key = "total";
  auto json = nlohmann::json::parse(CostReportJson(report, CostGroup::kAgent, 123));
  EXPECT_EQ(json["by"], "agent");
  EXPECT_EQ(json["since_ms"], 123);
  ASSERT_EQ(json["rows"].size(), 1u);
  EXPECT_EQ(json["rows"][0]["key"], "coder");
  EXPECT_EQ(json["rows"][0]["calls"], 2);
  EXPECT_EQ(json["total"]["cost_usd"], 0.5);
  EXPECT_EQ(json["total"]["overrun_usd"], 0.0);
}

TEST(UtcDayTest, FormatsTheCalendarDay) {
  EXPECT_EQ(internal::UtcDay(0), "1970-01-01");
  EXPECT_EQ(internal::UtcDay(1'790'000'000'000), "2026-09-21");
  EXPECT_EQ(internal::UtcDay(951'782'400'000), "2000-02-29");
  EXPECT_EQ(internal::UtcDay(951'868'799'999), "2000-02-29");
}

}  // namespace
}  // namespace factory::ledger
