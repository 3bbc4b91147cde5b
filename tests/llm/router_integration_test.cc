// The router over real providers and loopback HTTP: fallback across an OpenAI-compatible and an
// Anthropic fake, Retry-After end to end, ledger totals equal to reported usage x prices, and no
// key in any error or record.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "llm/fake_provider.h"
#include "llm/router.h"

namespace factory::llm {
namespace {

using fake::FakeProviderServer;
using fake::FakeReply;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOpenAiKey[] = "sk-router-it-OPENAI-abcdef123456";
constexpr char kAnthropicKey[] = "sk-ant-router-it-ANTHROPIC-987654";

class Ledger final : public CallObserver {
 public:
  void OnCall(const CallRecord& record) override {
    std::lock_guard lock(mu_);
    records.push_back(record);
  }
  std::mutex mu_;
  std::vector<CallRecord> records;
};

class RouterIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("FACTORY_LLM_RIT_OPENAI_KEY", kOpenAiKey, 1);
    ::setenv("FACTORY_LLM_RIT_ANTHROPIC_KEY", kAnthropicKey, 1);
    const std::string yaml = R"(providers:
  primary: {kind: openai, base_url: "${OAI_URL}", api_key_env: FACTORY_LLM_RIT_OPENAI_KEY,
            timeout_s: 2}
  backup: {kind: anthropic, base_url: "${ANT_URL}", api_key_env: FACTORY_LLM_RIT_ANTHROPIC_KEY,
           timeout_s: 2}
models:
  fast-oai: {provider: primary, model: gpt-fake, input_per_mtok: 0.4, output_per_mtok: 1.6,
             cached_per_mtok: 0.1}
  fast-ant: {provider: backup, model: claude-fake, input_per_mtok: 0.8, output_per_mtok: 4,
             cached_per_mtok: 0.08, cache_write_per_mtok: 1}
aliases:
  cloud/fast: [fast-oai, fast-ant]
retry: {max_attempts: 3, base_ms: 10, max_ms: 100}
breaker: {failure_threshold: 3, cooldown_s: 30}
)";
    std::map<std::string, std::string> env = {{"OAI_URL", openai_.openai_base_url()},
                                              {"ANT_URL", anthropic_.anthropic_base_url()},
                                              {"FACTORY_LLM_RIT_OPENAI_KEY", kOpenAiKey},
                                              {"FACTORY_LLM_RIT_ANTHROPIC_KEY", kAnthropicKey}};
    auto config = ParseModelsConfig(yaml, "rit.yaml", [env](const std::string& name) {
      auto it = env.find(name);
      return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    });
    ASSERT_TRUE(config) << config.error().ToString();
    RouterOptions options;
    options.clock = &clock_;
    options.sleeper = [this](int64_t ms) {
      sleeps_.push_back(ms);
      clock_.Advance(ms);
    };
    options.observer = &ledger_;
    options.provider_factory = [this](const ProviderConfig& provider) {
      return MakeProvider(provider, http_.get());
    };
    auto router = Router::Create(std::move(*config), std::move(options));
    ASSERT_TRUE(router);
    router_ = std::move(*router);
  }
  void TearDown() override {
    router_.reset();
    http_.reset();  // close keep-alive connections before the servers stop
    ::unsetenv("FACTORY_LLM_RIT_OPENAI_KEY");
    ::unsetenv("FACTORY_LLM_RIT_ANTHROPIC_KEY");
  }

  static ChatRequest Ask(std::string text) {
    ChatRequest request;
    request.messages = {Message::System("be brief"), Message::User(std::move(text))};
    return request;
  }

  FakeProviderServer openai_;
  FakeProviderServer anthropic_;
  std::unique_ptr<HttpClient> http_ = std::make_unique<HttpClient>();
  FakeClock clock_;
  std::vector<int64_t> sleeps_;
  Ledger ledger_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterIntegrationTest, FallsBackFromOpenAiToAnthropicAndLedgersTheTruth) {
  openai_.Enqueue(FakeReply::Error(503, "overloaded"));
  anthropic_.Enqueue(FakeReply::Text("from claude", Usage{1'000, 200, 400, 100}));
  openai_.Enqueue(FakeReply::Text("from gpt", Usage{3'000, 500, 2'048, 0}));

  auto first = router_->Chat({"cloud/fast"}, Ask("one"), CallContext{"r", "t", "a", "coder", ""});
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->text, "from claude");
  EXPECT_EQ(first->provider, "backup");
  EXPECT_EQ(first->model_name, "fast-ant");
  EXPECT_EQ(first->retries, 1);
  auto second = router_->Chat({"cloud/fast"}, Ask("two"));
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_EQ(second->text, "from gpt");
  EXPECT_TRUE(sleeps_.empty());

  // Ledger totals equal the fakes' reported usage times the configured prices.
  const double claude = (500 * 0.8 + 400 * 0.08 + 100 * 1.0 + 200 * 4) / 1e6;
  const double gpt = ((3'000 - 2'048) * 0.4 + 2'048 * 0.1 + 500 * 1.6) / 1e6;
  ASSERT_EQ(ledger_.records.size(), 2u);
  EXPECT_NEAR(ledger_.records[0].cost_usd, claude, 1e-12);
  EXPECT_NEAR(ledger_.records[1].cost_usd, gpt, 1e-12);
  double total = 0;
  int64_t tokens = 0;
  for (const auto& record : ledger_.records) {
    total += record.cost_usd;
    tokens += record.usage.total_tokens();
  }
  EXPECT_NEAR(total, claude + gpt, 1e-12);
  EXPECT_EQ(tokens, 1'200 + 3'500);
  EXPECT_EQ(ledger_.records[0].context.agent, "coder");
  EXPECT_EQ(ledger_.records[0].provider, "backup");
  EXPECT_EQ(ledger_.records[0].alias, "cloud/fast");
  EXPECT_EQ(ledger_.records[0].attempts, 2);
  EXPECT_EQ(ledger_.records[0].usage.cached_read_tokens, 400);
  EXPECT_EQ(ledger_.records[0].usage.cache_write_tokens, 100);
}

TEST_F(RouterIntegrationTest, BackoffHonoursRetryAfterHeader) {
  FakeReply limited = FakeReply::RateLimited(3);
  openai_.Enqueue(limited);
  anthropic_.Enqueue(FakeReply::RateLimited(2));
  openai_.Enqueue(FakeReply::Text("after the wait", Usage{10, 5, 0, 0}));
  auto response = router_->Chat({"cloud/fast"}, Ask("q"));
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->text, "after the wait");
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_GE(sleeps_[0], 3'000);  // the larger of the two Retry-After values
  EXPECT_EQ(openai_.request_count(), 2u);
  EXPECT_EQ(anthropic_.request_count(), 1u);
}

TEST_F(RouterIntegrationTest, StreamFallsBackOnlyBeforeOutput) {
  // Cut before any event: nothing reached the caller, so the backup answers.
  openai_.Enqueue(FakeReply::Text("never seen").TruncatedAfter(0));
  anthropic_.Enqueue(FakeReply::Text("streamed by claude", Usage{20, 8, 0, 0}));
  std::string seen;
  auto response = router_->ChatStream({"cloud/fast"}, Ask("s"),
                                      [&](const StreamDelta& delta) { seen += delta.text; });
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(seen, "streamed by claude");
  EXPECT_EQ(response->usage.output_tokens, 8);
  EXPECT_EQ(ledger_.records.back().kind, "chat_stream");
  // The attempt cut before its first event cost nothing: the record is Claude's answer alone.
  EXPECT_EQ(ledger_.records.back().usage, (Usage{20, 8, 0, 0}));

  // Cut after some text: the caller has seen output, so the call fails (retryable).
  openai_.Enqueue(FakeReply::Text("partial output then nothing").TruncatedAfter(3));
  seen.clear();
  auto cut = router_->ChatStream({"cloud/fast"}, Ask("s2"),
                                 [&](const StreamDelta& delta) { seen += delta.text; });
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(seen.empty());
  EXPECT_EQ(anthropic_.request_count(), 1u);
  // It is ledgered with what it used: the prompt (OpenAI had not reported it yet, so the
  // router's estimate: (10 characters + 3) / 4 + 3 + 4 per message = 14 tokens) and a token
  // per streamed piece (the fake cut after its role chunk and 2 text pieces).
  const CallRecord& record = ledger_.records.back();
  EXPECT_FALSE(record.ok);
  EXPECT_EQ(record.usage, (Usage{14, 2, 0, 0}));
  EXPECT_DOUBLE_EQ(record.cost_usd, (14 * 0.4 + 2 * 1.6) / 1e6);
  EXPECT_THAT(record.error, HasSubstr("input tokens estimated from the prompt"));
}

TEST_F(RouterIntegrationTest, NoKeyInErrorsOrRecords) {
  FakeReply echo = FakeReply::Error(500, "internal error for key");
  echo.echo_credentials = true;
  openai_.SetDefault(echo);
  anthropic_.SetDefault(echo);
  auto response = router_->Chat({"cloud/fast"}, Ask("leak?"));
  ASSERT_FALSE(response);
  EXPECT_GE(openai_.request_count(), 2u);  // several passes, all echoing the key
  const std::string message = response.error().ToString();
  EXPECT_THAT(message, Not(HasSubstr(kOpenAiKey)));
  EXPECT_THAT(message, Not(HasSubstr(kAnthropicKey)));
  EXPECT_THAT(message, HasSubstr("[REDACTED]"));
  for (const auto& record : ledger_.records) {
    EXPECT_THAT(record.error, Not(HasSubstr(kOpenAiKey)));
    EXPECT_THAT(record.error, Not(HasSubstr(kAnthropicKey)));
  }
}

class RouterConcurrencyTest : public RouterIntegrationTest,
                              public ::testing::WithParamInterface<int> {};

TEST_P(RouterConcurrencyTest, ParallelCallsAreAllLedgered) {
  const int workers = GetParam();
  constexpr int kCallsPerWorker = 12;
  openai_.SetDefault(FakeReply::Text("parallel", Usage{100, 10, 20, 0}));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int worker = 0; worker < workers; ++worker) {
    threads.emplace_back([&, worker] {
      for (int call = 0; call < kCallsPerWorker; ++call) {
        auto response = router_->Chat(
            {"cloud/fast"}, Ask("w" + std::to_string(worker) + "c" + std::to_string(call)));
        if (!response || response->text != "parallel") ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const size_t calls = static_cast<size_t>(workers * kCallsPerWorker);
  ASSERT_EQ(ledger_.records.size(), calls);
  EXPECT_EQ(openai_.request_count(), calls);
  double total = 0;
  for (const auto& record : ledger_.records) total += record.cost_usd;
  const double each = ((100 - 20) * 0.4 + 20 * 0.1 + 10 * 1.6) / 1e6;
  EXPECT_NEAR(total, each * static_cast<double>(calls), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Workers, RouterConcurrencyTest, ::testing::Values(1, 2, 8));

}  // namespace
}  // namespace factory::llm
