// Budgets under a client that games them: a worst case that does not fit must refuse that call
// and stop nobody; `n` multiplies the worst case; an underestimate is recorded and its scope
// refused while over the cap; a provider's Retry-After and the local rpm limit are honoured
// without silently holding calls.

#include "ledger/budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "gateway/gateway_fixture.h"
#include "ledger/ledger.h"
#include "llm/router.h"
#include "queue/queue.h"

namespace factory::gateway {
namespace {

using llm::Usage;
using llm::fake::FakeReply;
using nlohmann::json;
using ::testing::HasSubstr;

class BudgetAttackTest : public testing::GatewayFixture {
 protected:
  void TearDown() override {
    router_.reset();
    GatewayFixture::TearDown();
  }

  bool Paused(const std::string& agent) {
    ledger::BudgetGuard guard(*store_, {});
    auto paused = guard.IsPaused(agent);
    EXPECT_TRUE(paused) << paused.error().ToString();
    return paused && *paused;
  }

  // The fixture's models with other retry settings and an rpm limit on the OpenAI provider.
  llm::ModelsConfig ModelsWith(const std::string& retry, int rpm) {
    llm::ModelsConfig config = Models();
    config.retry = llm::RetryConfig{};
    json parsed = json::parse(retry);
    config.retry.max_attempts = parsed.value("max_attempts", 1);
    config.retry.base_ms = parsed.value("base_ms", 1);
    config.retry.max_ms = parsed.value("max_ms", 5);
    config.retry.max_retry_after_ms = parsed.value("max_retry_after_ms", 60'000);
    for (llm::ProviderConfig& provider : config.providers) {
      if (provider.name == "fake-openai") provider.rpm = rpm;
    }
    return config;
  }

  void StartGatewayWith(llm::ModelsConfig models, ledger::BudgetEnvelope budgets = {},
                        const Clock* clock = nullptr) {
    GatewayOptions options;
    options.budgets = std::move(budgets);
    options.cache_ttl_ms = 0;
    options.threads = 8;
    options.clock = clock;
    auto gateway = Gateway::Start(std::move(models), *store_, std::move(options));
    ASSERT_TRUE(gateway) << gateway.error().ToString();
    gateway_ = std::move(*gateway);
  }

  std::unique_ptr<llm::Router> router_;
};

TEST_F(BudgetAttackTest, ARefusedWorstCaseRefusesThatCallAndPausesNobody) {
  ledger::BudgetEnvelope budgets;
  // One call's worst case at max_tokens 1000: 1000 x $8/M = $0.008 (+ the prompt).
  budgets.project.per_agent_daily_usd = 0.005;
  budgets.global_daily_usd = 0.006;
  StartGateway(budgets);
  json greedy = Chat("mini");
  greedy["max_tokens"] = 1000;
  auto refused = Post("/v1/chat/completions", greedy, key_);
  EXPECT_EQ(refused.status, 402) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("agent coder daily"));
  EXPECT_THAT(refused.body, HasSubstr("worst case $0.008"));
  EXPECT_EQ(fake_.request_count(), 0u);
  // Nobody was paused for a call that spent nothing: a modest call goes through.
  EXPECT_FALSE(Paused("coder"));
  EXPECT_FALSE(Paused("someone-else"));
  fake_.Enqueue(FakeReply::Text("modest", Usage{10, 5, 0, 0}));
  json modest = Chat("mini");
  modest["max_tokens"] = 10;
  auto served = Post("/v1/chat/completions", modest, key_);
  EXPECT_EQ(served.status, 200) << served.body;
}

TEST_F(BudgetAttackTest, NAndBestOfMultiplyTheWorstCase) {
  ledger::BudgetEnvelope budgets;
  budgets.project.per_call_usd = 0.05;  // one answer of 1000 tokens: $0.008; eight: $0.064
  StartGateway(budgets);
  json eight = Chat("mini");
  eight["max_tokens"] = 1000;
  eight["n"] = 8;
  auto refused = Post("/v1/chat/completions", eight, key_);
  EXPECT_EQ(refused.status, 402) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("per-call"));
  json best_of = Chat("mini");
  best_of["max_tokens"] = 1000;
  best_of["best_of"] = 8;
  EXPECT_EQ(Post("/v1/chat/completions", best_of, key_).status, 402);
  EXPECT_EQ(fake_.request_count(), 0u);
  fake_.Enqueue(FakeReply::Text("one", Usage{10, 5, 0, 0}));
  eight["n"] = 1;
  EXPECT_EQ(Post("/v1/chat/completions", eight, key_).status, 200);
}

TEST_F(BudgetAttackTest, ImagesAreChargedAFixedAmountEach) {
  ledger::BudgetEnvelope budgets;
  // Ten image parts by URL: a short body, yet 10 x 2,500 tokens x $2/M = $0.05 of input.
  budgets.project.per_call_usd = 0.04;
  StartGateway(budgets);
  json parts = json::array();
  for (int index = 0; index < 10; ++index) {
    parts.push_back({{"type", "image_url"}, {"image_url", {{"url", "https://x/i.png"}}}});
  }
  json body = {
      {"model", "mini"}, {"max_tokens", 1}, {"messages", {{{"role", "user"}, {"content", parts}}}}};
  auto refused = Post("/v1/chat/completions", body, key_);
  EXPECT_EQ(refused.status, 402) << refused.body;
  EXPECT_EQ(fake_.request_count(), 0u);
}

TEST_F(BudgetAttackTest, AnOverrunIsRecordedAndItsScopeRefusedUntilBackUnderTheCap) {
  FakeClock clock(1'790'000'000'000);
  ledger::BudgetEnvelope budgets;
  budgets.project.per_agent_daily_usd = 0.01;
  StartGatewayWith(Models(), budgets, &clock);
  // The client asks for 10 tokens; the upstream bills 5,000 ($0.04): an underestimate.
  fake_.Enqueue(FakeReply::Text("long", Usage{10, 5'000, 0, 0}));
  json body = Chat("mini");
  body["max_tokens"] = 10;
  ASSERT_EQ(Post("/v1/chat/completions", body, key_).status, 200);
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NEAR(rows[0].cost_usd, (10 * 2.0 + 5'000 * 8.0) / 1e6, 1e-12);
  // The overrun is on record: $0.04002 billed against a reservation of ~$0.0002.
  Queue events(*store_);
  auto recorded = events.ListEvents(EventQuery{});
  ASSERT_TRUE(recorded) << recorded.error().ToString();
  int overruns = 0;
  for (const Event& event : *recorded) {
    if (event.kind != "budget.overrun") continue;
    ++overruns;
    const json payload = json::parse(event.payload_json);
    EXPECT_EQ(payload["agent"], "coder");
    EXPECT_GT(payload["overrun_usd"].get<double>(), 0.039);
    EXPECT_LT(payload["reserved_usd"].get<double>(), 0.001);
    EXPECT_NEAR(payload["actual_usd"].get<double>(), rows[0].cost_usd, 1e-12);
  }
  EXPECT_EQ(overruns, 1);
  // Over the cap: refused. Settled spend reached the daily cap, so the agent is paused too;
  // resumed, it is still refused while its spend is over the cap.
  auto refused = Post("/v1/chat/completions", body, key_);
  EXPECT_EQ(refused.status, 402) << refused.body;
  ledger::BudgetGuard guard(*store_, budgets);
  EXPECT_TRUE(*guard.IsPaused("coder"));
  ASSERT_TRUE(guard.Resume("coder"));
  refused = Post("/v1/chat/completions", body, key_);
  EXPECT_EQ(refused.status, 402) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("agent coder daily"));
  EXPECT_EQ(fake_.request_count(), 1u);
  // A new day: spend is back under the cap.
  clock.Advance(24 * 3600 * 1000);
  fake_.Enqueue(FakeReply::Text("again", Usage{10, 5, 0, 0}));
  EXPECT_EQ(Post("/v1/chat/completions", body, key_).status, 200);
}

TEST_F(BudgetAttackTest, ARetryAfterCoolsTheDeploymentAcrossCalls) {
  FakeClock clock(1'790'000'000'000);
  StartGatewayWith(ModelsWith(R"({"max_attempts": 1, "max_retry_after_ms": 60000})", 0), {},
                   &clock);
  fake_.Enqueue(FakeReply::RateLimited(30));
  fake_.Enqueue(FakeReply::Text("from backup", Usage{10, 5, 0, 0}));
  ASSERT_EQ(Post("/v1/chat/completions", Chat("cloud/fast"), key_).status, 200);
  ASSERT_EQ(fake_.request_count(), 2u);
  // The next call does not knock on the rate-limited deployment again: straight to the backup.
  fake_.Enqueue(FakeReply::Text("backup again", Usage{10, 5, 0, 0}));
  auto second = Post("/v1/chat/completions", Chat("cloud/fast"), key_);
  ASSERT_EQ(second.status, 200) << second.body;
  ASSERT_EQ(fake_.request_count(), 3u);
  EXPECT_EQ(fake_.requests()[2].Json()["model"], "gpt-backup");
  // Alone, the cooling deployment is answered for by the gateway: 429 with the time left.
  auto alone = Post("/v1/chat/completions", Chat("mini"), key_);
  EXPECT_EQ(alone.status, 429) << alone.body;
  EXPECT_EQ(alone.Header("retry-after"), "30");
  EXPECT_EQ(fake_.request_count(), 3u);
  // Once the Retry-After has passed it is used again.
  clock.Advance(30'001);
  fake_.Enqueue(FakeReply::Text("mini again", Usage{10, 5, 0, 0}));
  EXPECT_EQ(Post("/v1/chat/completions", Chat("mini"), key_).status, 200);
  EXPECT_EQ(fake_.requests().back().Json()["model"], "gpt-mini");
}

TEST_F(BudgetAttackTest, TheLocalRpmLimiterAnswers429InsteadOfHoldingTheCall) {
  FakeClock clock(1'790'000'000'000);
  // One request per minute; a wait of a minute is far above max_retry_after_ms.
  StartGatewayWith(ModelsWith(R"({"max_attempts": 3, "base_ms": 100, "max_ms": 20000,
                     "max_retry_after_ms": 2000})",
                              1),
                   {}, &clock);
  fake_.SetDefault(FakeReply::Text("ok", Usage{10, 5, 0, 0}));
  ASSERT_EQ(Post("/v1/chat/completions", Chat("mini"), key_).status, 200);
  auto limited = Post("/v1/chat/completions", Chat("mini"), key_);
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_THAT(limited.body, HasSubstr("local rate limit"));
  EXPECT_EQ(limited.Header("retry-after"), "60");
  EXPECT_EQ(fake_.request_count(), 1u);
}

}  // namespace
}  // namespace factory::gateway
