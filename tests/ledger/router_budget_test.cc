// End to end: a real Router over loopback HTTP to the fake provider, with the Ledger as its
// observer and the BudgetGuard as its admission.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "ledger/budget.h"
#include "ledger/ledger.h"
#include "ledger_fixture.h"
#include "llm/fake_provider.h"
#include "llm/http_client.h"
#include "llm/router.h"

namespace factory::ledger {
namespace {

using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using ::testing::HasSubstr;

constexpr char kKeyVar[] = "FACTORY_LEDGER_TEST_KEY";
constexpr char kKey[] = "sk-ledger-test-0123456789";

class RouterBudgetTest : public LedgerFixture {
 protected:
  void Start(BudgetEnvelope envelope) {
    ::setenv(kKeyVar, kKey, 1);
    const std::string yaml = R"(providers:
  primary: {kind: openai, base_url: "${URL}", api_key_env: FACTORY_LEDGER_TEST_KEY, timeout_s: 2}
models:
  fast: {provider: primary, model: gpt-fake, input_per_mtok: 0.4, output_per_mtok: 1.6,
         cached_per_mtok: 0.1, max_output_tokens: 1000}
aliases:
  cloud/fast: [fast]
retry: {max_attempts: 2, base_ms: 10, max_ms: 100}
)";
    std::map<std::string, std::string> env = {{"URL", fake_.openai_base_url()}, {kKeyVar, kKey}};
    auto config = llm::ParseModelsConfig(yaml, "ledger.yaml", [env](const std::string& name) {
      auto it = env.find(name);
      return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    });
    ASSERT_TRUE(config) << config.error().ToString();
    ledger_ = std::make_unique<Ledger>(*store_);
    guard_ = std::make_unique<BudgetGuard>(*store_, std::move(envelope), &clock_);
    llm::RouterOptions options;
    options.clock = &clock_;
    options.sleeper = [this](int64_t ms) { clock_.Advance(ms); };
    options.observer = ledger_.get();
    options.admission = guard_.get();
    options.provider_factory = [this](const llm::ProviderConfig& provider) {
      return llm::MakeProvider(provider, http_.get());
    };
    auto router = llm::Router::Create(std::move(*config), std::move(options));
    ASSERT_TRUE(router) << router.error().ToString();
    router_ = std::move(*router);
  }

  void TearDown() override {
    router_.reset();
    http_.reset();  // close keep-alive connections before the server stops
    ::unsetenv(kKeyVar);
  }

  static llm::ChatRequest Ask(std::string text) {
    llm::ChatRequest request;
    request.messages = {llm::Message::System("be brief"), llm::Message::User(std::move(text))};
    request.max_tokens = 500;
    return request;
  }

  FakeProviderServer fake_;
  std::unique_ptr<llm::HttpClient> http_ = std::make_unique<llm::HttpClient>();
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<BudgetGuard> guard_;
  std::unique_ptr<llm::Router> router_;
};

TEST_F(RouterBudgetTest, LedgerRowCostEqualsFakeUsageTimesPrices) {
  BudgetEnvelope envelope;
  envelope.project.per_task_usd = 1.0;
  envelope.project.per_run_usd = 5.0;
  envelope.global_daily_usd = 10.0;
  ASSERT_NO_FATAL_FAILURE(Start(envelope));
  fake_.Enqueue(FakeReply::Text("hello", llm::Usage{3'000, 500, 2'048, 0}));
  const llm::CallContext context{.run_id = "run1",
                                 .task_id = "task1",
                                 .attempt_id = "att1",
                                 .agent = "coder",
                                 .purpose = "tool_loop"};
  auto response = router_->Chat({"cloud/fast"}, Ask("hi"), context);
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->text, "hello");

  const double expected = ((3'000 - 2'048) * 0.4 + 2'048 * 0.1 + 500 * 1.6) / 1e6;
  auto calls = ledger_->Calls({});
  ASSERT_TRUE(calls) << calls.error().ToString();
  ASSERT_EQ(calls->size(), 1u);
  const ModelCallRow& row = (*calls)[0];
  EXPECT_NEAR(row.cost_usd, expected, 1e-12);
  EXPECT_EQ(row.input_tokens, 3'000);
  EXPECT_EQ(row.output_tokens, 500);
  EXPECT_EQ(row.cached_tokens, 2'048);
  EXPECT_EQ(row.provider, "primary");
  EXPECT_EQ(row.model, "fast");
  EXPECT_EQ(row.alias, "cloud/fast");
  EXPECT_EQ(row.run_id, "run1");
  EXPECT_EQ(row.task_id, "task1");
  EXPECT_EQ(row.attempt_id, "att1");
  EXPECT_EQ(row.agent, "coder");
  EXPECT_EQ(row.status, "ok");
  EXPECT_EQ(row.http_status, 200);

  // The reservation was settled at the same actual cost.
  double settled = -1;
  ASSERT_TRUE(store_->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(settled,
                             txn.SumSpend(SpendQuery{.task_id = "task1", .settled_only = true}));
    return Ok();
  }));
  EXPECT_NEAR(settled, expected, 1e-12);
  auto report = ledger_->Costs(CostGroup::kAgent);
  ASSERT_TRUE(report);
  EXPECT_NEAR(report->total.cost_usd, expected, 1e-12);
}

TEST_F(RouterBudgetTest, TaskCapRefusalEndsTheCallBeforeAnythingIsSent) {
  BudgetEnvelope envelope;
  envelope.project.per_task_usd = 0.0005;  // below the worst case of 500 output tokens
  ASSERT_NO_FATAL_FAILURE(Start(envelope));
  fake_.Enqueue(FakeReply::Text("never", llm::Usage{10, 5, 0, 0}));
  auto response =
      router_->Chat({"cloud/fast"}, Ask("hi"),
                    llm::CallContext{.run_id = "run1", .task_id = "task1", .agent = "coder"});
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kResourceExhausted);
  EXPECT_THAT(response.error().message, HasSubstr("budget_exceeded"));
  EXPECT_EQ(fake_.request_count(), 0u);
  // The refused call is ledgered too, at no cost.
  auto calls = ledger_->Calls({});
  ASSERT_TRUE(calls);
  ASSERT_EQ(calls->size(), 1u);
  EXPECT_EQ((*calls)[0].status, "resource_exhausted");
  EXPECT_EQ((*calls)[0].cost_usd, 0);
}

TEST_F(RouterBudgetTest, AnUnderestimateIsAnOverrunOnItsLedgerRowAndInTheCosts) {
  BudgetEnvelope envelope;
  envelope.project.per_task_usd = 1.0;
  ASSERT_NO_FATAL_FAILURE(Start(envelope));
  // Within its reservation: no overrun.
  fake_.Enqueue(FakeReply::Text("short", llm::Usage{20, 5, 0, 0}));
  // 10 output tokens reserved, 100,000 billed: the worst case was an underestimate.
  fake_.Enqueue(FakeReply::Text("long", llm::Usage{20, 100'000, 0, 0}));
  const llm::CallContext context{.run_id = "run1", .task_id = "task1", .agent = "coder"};
  llm::ChatRequest within = Ask("hi");
  ASSERT_TRUE(router_->Chat({"cloud/fast"}, within, context));
  llm::ChatRequest under = Ask("hi");
  under.max_tokens = 10;
  ASSERT_TRUE(router_->Chat({"cloud/fast"}, under, context));

  auto calls = ledger_->Calls({});
  ASSERT_TRUE(calls) << calls.error().ToString();
  ASSERT_EQ(calls->size(), 2u);
  EXPECT_EQ((*calls)[0].overrun_usd, 0);
  const ModelCallRow& overrun = (*calls)[1];
  EXPECT_NEAR(overrun.cost_usd, (20 * 0.4 + 100'000 * 1.6) / 1e6, 1e-12);
  // The reservation held the prompt and 10 output tokens: almost all of the cost is overrun.
  EXPECT_GT(overrun.overrun_usd, 0.9 * overrun.cost_usd);
  EXPECT_LT(overrun.overrun_usd, overrun.cost_usd);
  // The same figure as the budget.overrun event the guard recorded.
  auto recorded = queue_->ListEvents(EventQuery{});
  ASSERT_TRUE(recorded) << recorded.error().ToString();
  int overrun_events = 0;
  for (const Event& event : *recorded) {
    if (event.kind != "budget.overrun") continue;
    ++overrun_events;
    const auto payload = nlohmann::json::parse(event.payload_json);
    EXPECT_NEAR(payload["overrun_usd"].get<double>(), overrun.overrun_usd, 1e-12);
  }
  EXPECT_EQ(overrun_events, 1);

  // `factory costs` sums it per group and in the total, in the table and in --json.
  auto report = ledger_->Costs(CostGroup::kAgent);
  ASSERT_TRUE(report) << report.error().ToString();
  ASSERT_EQ(report->rows.size(), 1u);
  EXPECT_NEAR(report->rows[0].overrun_usd, overrun.overrun_usd, 1e-12);
  EXPECT_NEAR(report->total.overrun_usd, overrun.overrun_usd, 1e-12);
  const auto json = nlohmann::json::parse(CostReportJson(*report, CostGroup::kAgent, 0));
  EXPECT_NEAR(json["total"]["overrun_usd"].get<double>(), overrun.overrun_usd, 1e-12);
  EXPECT_NEAR(json["rows"][0]["overrun_usd"].get<double>(), overrun.overrun_usd, 1e-12);
}

}  // namespace
}  // namespace factory::ledger
