// The official `openai` npm package (installed by the gateway_npm_ci fixture) against the real
// `factory gateway` binary in front of the fake OpenAI-compatible provider: a plain and a
// streaming completion, a refused key, and the ledger `factory costs` shows afterwards.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/test_util.h"
#include "core/subprocess.h"
#include "llm/fake_provider.h"

namespace factory {
namespace {

using llm::Usage;
using llm::fake::FakeReply;
using nlohmann::json;

constexpr char kUpstreamKey[] = "sk-npm-test-UPSTREAM-5a5a5a5a";

SubprocessResult RunProcess(std::vector<std::string> argv,
                            std::map<std::string, std::string> env = {}, std::string cwd = "") {
  SubprocessOptions options;
  options.argv = std::move(argv);
  options.env_set = std::move(env);
  options.cwd = std::move(cwd);
  options.timeout_ms = 120'000;
  options.tail_bytes = 1 << 20;
  auto result = RunSubprocess(options);
  EXPECT_TRUE(result) << result.error().ToString();
  return result ? *result : SubprocessResult{};
}

TEST(OpenAiNpmTest, OfficialClientCompletesPlainAndStreamingThroughTheGateway) {
  factory::testing::TempDir dir;
  const std::string db = dir / ".factory/factory.db";
  ASSERT_EQ(RunProcess({FACTORY_BINARY, "--db", db, "init"}).exit_code, 0);
  auto created =
      RunProcess({FACTORY_BINARY, "--db", db, "keys", "create", "--agent", "npm-agent", "--json"});
  ASSERT_EQ(created.exit_code, 0) << created.stderr_tail;
  const std::string key = json::parse(created.stdout_tail)["key"];

  llm::fake::FakeProviderServer fake;
  fake.Enqueue(FakeReply::Text("Hello from the fake!", Usage{120, 8, 0, 0}));
  fake.Enqueue(FakeReply::Text("Streamed hello, word by word.", Usage{130, 9, 0, 0}));
  const std::string models = dir / "models.yaml";
  factory::testing::WriteFile(models, "providers:\n  fake: {kind: openai, base_url: \"" +
                                          fake.openai_base_url() +
                                          "\", api_key_env: GW_NPM_UPSTREAM_KEY}\n"
                                          "models:\n  mini: {provider: fake, model: gpt-mini, "
                                          "input_per_mtok: 3, output_per_mtok: 15}\n"
                                          "aliases:\n  cloud/fast: [mini]\n");

  // The gateway as its own process, stopped with SIGTERM (cancel) at the end.
  std::atomic<bool> stop{false};
  const std::string gateway_out = dir / "gateway.out";
  std::optional<SubprocessResult> gateway_result;
  std::thread gateway([&] {
    SubprocessOptions options;
    options.argv = {FACTORY_BINARY, "--db",        db,         "gateway",
                    "--listen",     "127.0.0.1:0", "--models", models};
    options.env_set = {{"GW_NPM_UPSTREAM_KEY", kUpstreamKey}};
    options.stdout_path = gateway_out;
    options.cancel = &stop;
    options.timeout_ms = 180'000;
    auto result = RunSubprocess(options);
    if (result) gateway_result = *result;
  });
  std::string url;
  // "factory gateway: listening on http://127.0.0.1:PORT" once it accepts connections.
  const std::string prefix = "listening on http://127.0.0.1:";
  for (int waited = 0; waited < 200 && url.empty(); ++waited) {
    const std::string text = factory::testing::ReadFile(gateway_out);
    const size_t at = text.find(prefix);
    if (at != std::string::npos) {
      size_t end = at + prefix.size();
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
      if (end > at + prefix.size()) url = text.substr(at + 13, end - at - 13);
    }
    if (url.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(url.empty()) << "the gateway did not start";

  auto client = RunProcess({FACTORY_NODE, "client.mjs"},
                           {{"GATEWAY_URL", url}, {"GATEWAY_KEY", key}}, GATEWAY_NPM_DIR);
  stop = true;
  gateway.join();
  ASSERT_EQ(client.exit_code, 0) << client.stderr_tail;
  const json seen = json::parse(client.stdout_tail);
  EXPECT_EQ(seen["plain"]["text"], "Hello from the fake!");
  EXPECT_EQ(seen["plain"]["usage"]["prompt_tokens"], 120);
  EXPECT_EQ(seen["stream"]["text"], "Streamed hello, word by word.");
  EXPECT_GT(seen["stream"]["chunks"].get<int>(), 3);
  EXPECT_EQ(seen["stream"]["usage"]["completion_tokens"], 9);
  EXPECT_EQ(seen["wrong_key"]["status"], 401);
  EXPECT_EQ(seen["wrong_key"]["class"], "AuthenticationError");
  EXPECT_EQ(fake.request_count(), 2u);
  ASSERT_TRUE(gateway_result.has_value());
  EXPECT_EQ(gateway_result->exit_code, 0);

  auto costs = RunProcess({FACTORY_BINARY, "--db", db, "costs", "--by", "agent", "--json"});
  ASSERT_EQ(costs.exit_code, 0) << costs.stderr_tail;
  const json report = json::parse(costs.stdout_tail);
  ASSERT_EQ(report["rows"].size(), 1u) << report.dump();
  EXPECT_EQ(report["rows"][0]["key"], "npm-agent");
  EXPECT_EQ(report["rows"][0]["calls"], 2);
  EXPECT_EQ(report["rows"][0]["input_tokens"], 250);
  EXPECT_EQ(report["rows"][0]["output_tokens"], 17);
  EXPECT_NEAR(report["rows"][0]["cost_usd"].get<double>(), (250 * 3.0 + 17 * 15.0) / 1e6, 1e-12);

  auto keys = RunProcess({FACTORY_BINARY, "--db", db, "keys", "list", "--json"});
  ASSERT_EQ(keys.exit_code, 0);
  EXPECT_THAT(keys.stdout_tail, ::testing::Not(::testing::HasSubstr(key)));
  EXPECT_EQ(json::parse(keys.stdout_tail)[0]["agent"], "npm-agent");
}

}  // namespace
}  // namespace factory
