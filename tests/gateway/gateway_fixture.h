#pragma once
// A gateway on loopback in front of two fake providers (OpenAI-compatible and Anthropic), over a
// real SQLite store in a temp dir, with an HTTP client for the test.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "gateway/gateway.h"
#include "gateway/keys.h"
#include "ledger/ledger.h"
#include "llm/fake_provider.h"
#include "llm/http_client.h"
#include "llm/models_config.h"
#include "store/store.h"

namespace factory::gateway::testing {

inline constexpr char kOpenAiKey[] = "sk-upstream-OPENAI-0123456789abcdef";
inline constexpr char kAnthropicKey[] = "sk-ant-upstream-ANTHROPIC-fedcba9876";

// Prices per million tokens of the fixture's models.
inline constexpr double kMiniIn = 2.0, kMiniOut = 8.0, kMiniCached = 0.5;
inline constexpr double kHaikuIn = 1.0, kHaikuOut = 5.0, kHaikuCached = 0.1, kHaikuWrite = 1.25;
inline constexpr double kEmbedIn = 0.02;

class GatewayFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("GW_TEST_OPENAI_KEY", kOpenAiKey, 1);
    ::setenv("GW_TEST_ANTHROPIC_KEY", kAnthropicKey, 1);
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "factory.db"});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    auto key = IssueKey(*store_, "coder");
    ASSERT_TRUE(key) << key.error().ToString();
    key_ = key->key;
  }

  void TearDown() override {
    client_.reset();  // close keep-alive connections before the servers stop
    gateway_.reset();
    ::unsetenv("GW_TEST_OPENAI_KEY");
    ::unsetenv("GW_TEST_ANTHROPIC_KEY");
  }

  llm::ModelsConfig Models() {
    const std::string yaml = R"(providers:
  fake-openai: {kind: openai, base_url: "${OAI_URL}", api_key_env: GW_TEST_OPENAI_KEY, timeout_s: 5}
  fake-anthropic: {kind: anthropic, base_url: "${ANT_URL}", api_key_env: GW_TEST_ANTHROPIC_KEY,
                   timeout_s: 5}
models:
  mini: {provider: fake-openai, model: gpt-mini, input_per_mtok: 2.0, output_per_mtok: 8.0,
         cached_per_mtok: 0.5, max_output_tokens: 1000}
  backup: {provider: fake-openai, model: gpt-backup, input_per_mtok: 2.0, output_per_mtok: 8.0,
           cached_per_mtok: 0.5, max_output_tokens: 1000}
  haiku: {provider: fake-anthropic, model: claude-haiku, input_per_mtok: 1.0,
          output_per_mtok: 5.0, cached_per_mtok: 0.1, cache_write_per_mtok: 1.25,
          max_output_tokens: 1000}
  embed: {provider: fake-openai, model: text-embed, input_per_mtok: 0.02, output_per_mtok: 0}
aliases:
  cloud/fast: [mini, backup]
  cloud/anthropic: [haiku]
retry: {max_attempts: 1, base_ms: 1, max_ms: 5}
breaker: {failure_threshold: 100, cooldown_s: 1}
)";
    std::map<std::string, std::string> env = {{"OAI_URL", fake_.openai_base_url()},
                                              {"ANT_URL", fake_.anthropic_base_url()},
                                              {"GW_TEST_OPENAI_KEY", kOpenAiKey},
                                              {"GW_TEST_ANTHROPIC_KEY", kAnthropicKey}};
    auto config = llm::ParseModelsConfig(yaml, "gw.yaml", [env](const std::string& name) {
      auto it = env.find(name);
      return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    });
    EXPECT_TRUE(config) << config.error().ToString();
    return *config;
  }

  void StartGateway(ledger::BudgetEnvelope budgets = {}) {
    GatewayOptions options;
    options.budgets = std::move(budgets);
    options.cache_ttl_ms = 0;  // revocations and pauses take effect at once in tests
    options.threads = 16;
    auto gateway = Gateway::Start(Models(), *store_, std::move(options));
    ASSERT_TRUE(gateway) << gateway.error().ToString();
    gateway_ = std::move(*gateway);
  }

  llm::HttpResponse Send(const std::string& method, const std::string& path,
                         const std::string& body,
                         std::vector<std::pair<std::string, std::string>> headers,
                         const llm::BodyChunkHandler& on_chunk = {}) {
    llm::HttpRequest request;
    request.method = method;
    request.url = gateway_->base_url() + path;
    request.body = body;
    request.headers = std::move(headers);
    request.headers.emplace_back("Content-Type", "application/json");
    request.total_timeout_ms = 20'000;
    auto response = client_->Send(request, on_chunk);
    EXPECT_TRUE(response) << response.error().ToString();
    return response ? *response : llm::HttpResponse{};
  }
  llm::HttpResponse Post(const std::string& path, const nlohmann::json& body,
                         const std::string& key, const llm::BodyChunkHandler& on_chunk = {}) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    return Send("POST", path, body.dump(), std::move(headers), on_chunk);
  }
  llm::HttpResponse PostAnthropic(const nlohmann::json& body, const std::string& key,
                                  const llm::BodyChunkHandler& on_chunk = {}) {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"anthropic-version", "2023-06-01"}};
    if (!key.empty()) headers.emplace_back("x-api-key", key);
    return Send("POST", "/v1/messages", body.dump(), std::move(headers), on_chunk);
  }

  static nlohmann::json Chat(const std::string& model, bool stream = false) {
    nlohmann::json body = {{"model", model},
                           {"messages", {{{"role", "user"}, {"content", "say hello"}}}}};
    if (stream) body["stream"] = true;
    return body;
  }
  static nlohmann::json Message(const std::string& model, bool stream = false) {
    nlohmann::json body = {{"model", model},
                           {"max_tokens", 100},
                           {"messages", {{{"role", "user"}, {"content", "say hello"}}}}};
    if (stream) body["stream"] = true;
    return body;
  }

  // Every ledger row, after the gateway wrote what it had queued.
  std::vector<ModelCallRow> LedgerRows() {
    EXPECT_TRUE(gateway_->Flush());
    ledger::Ledger ledger(*store_);
    auto rows = ledger.Calls({});
    EXPECT_TRUE(rows) << rows.error().ToString();
    return rows ? *rows : std::vector<ModelCallRow>{};
  }

  factory::testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  llm::fake::FakeProviderServer fake_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<llm::HttpClient> client_ = std::make_unique<llm::HttpClient>();
  std::string key_;
};

}  // namespace factory::gateway::testing
