#include "llm/models_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>

namespace factory::llm {
namespace {

using ::testing::HasSubstr;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

constexpr std::string_view kValid = R"(providers:
  local:
    kind: openai
    base_url: ${LOCAL_URL:-http://127.0.0.1:9/v1}
  cloud:
    kind: anthropic
    api_key_env: CLOUD_KEY
    rpm: 10
    tpm: 1000
    timeout_s: 0.5
models:
  small:
    provider: local
    model: small-v1
    input_per_mtok: 1
    output_per_mtok: 2
  big:
    provider: cloud
    model: big-v2
    input_per_mtok: 3
    output_per_mtok: 15
    cached_per_mtok: 0.3
    cache_write_per_mtok: 3.75
    context_window: 200000
    max_output_tokens: 8192
aliases:
  cheap: [small]
  dear: [big, small]
routing:
  - {task_type: review, chain: [dear]}
  - {complexity: low, chain: [cheap, dear]}
retry: {max_attempts: 4, base_ms: 10, max_ms: 100}
breaker: {failure_threshold: 2, cooldown_s: 5}
)";

TEST(ModelsConfigTest, ParsesAValidFile) {
  auto config = ParseModelsConfig(kValid, "models.yaml", FakeEnv({{"CLOUD_KEY", "k"}}));
  ASSERT_TRUE(config) << config.error().ToString();
  ASSERT_EQ(config->providers.size(), 2u);
  const ProviderConfig* local = config->FindProvider("local");
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(local->kind, ProviderKind::kOpenAi);
  EXPECT_EQ(local->base_url, "http://127.0.0.1:9/v1");
  EXPECT_TRUE(local->available);
  const ProviderConfig* cloud = config->FindProvider("cloud");
  EXPECT_EQ(cloud->kind, ProviderKind::kAnthropic);
  EXPECT_EQ(cloud->base_url, "https://api.anthropic.com");
  EXPECT_EQ(cloud->rpm, 10);
  EXPECT_EQ(cloud->timeout_ms, 500);
  EXPECT_TRUE(cloud->available);
  const ModelSpec* big = config->FindModel("big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->model_id, "big-v2");
  EXPECT_DOUBLE_EQ(big->cached_per_mtok, 0.3);
  EXPECT_EQ(big->max_output_tokens, 8192);
  const ModelSpec* small = config->FindModel("small");
  EXPECT_DOUBLE_EQ(small->cached_per_mtok, 1);  // defaults to the input price
  EXPECT_EQ(config->AliasRank("cheap"), 0);
  EXPECT_EQ(config->AliasRank("dear"), 1);
  EXPECT_EQ(config->retry.max_attempts, 4);
  EXPECT_EQ(config->breaker.cooldown_ms, 5'000);
  EXPECT_EQ(*config->ChainFor("review", "low"), std::vector<std::string>{"dear"});
  EXPECT_EQ(*config->ChainFor("code", "low"), (std::vector<std::string>{"cheap", "dear"}));
  EXPECT_EQ(config->ChainFor("code", "high").error().code, ErrorCode::kNotFound);
}

TEST(ModelsConfigTest, UnsetKeyMarksTheProviderUnavailableNotAnError) {
  auto config = ParseModelsConfig(kValid, "models.yaml", FakeEnv({}));
  ASSERT_TRUE(config) << config.error().ToString();
  const ProviderConfig* cloud = config->FindProvider("cloud");
  EXPECT_FALSE(cloud->available);
  EXPECT_THAT(cloud->unavailable_reason, HasSubstr("CLOUD_KEY"));
}

TEST(ModelsConfigTest, RouteProblemSaysWhyATargetCannotBeCalled) {
  auto config = ParseModelsConfig(kValid, "models.yaml", FakeEnv({}));
  ASSERT_TRUE(config) << config.error().ToString();
  // `dear` falls back to `small`, whose provider needs no key.
  EXPECT_EQ(config->RouteProblem("dear"), "");
  EXPECT_EQ(config->RouteProblem("small"), "");
  EXPECT_THAT(config->RouteProblem("big"), HasSubstr("big: "));
  EXPECT_THAT(config->RouteProblem("big"), HasSubstr("CLOUD_KEY"));
  EXPECT_THAT(config->RouteProblem("nope"), HasSubstr("neither an alias nor a model"));

  auto keyed = ParseModelsConfig(kValid, "models.yaml", FakeEnv({{"CLOUD_KEY", "k"}}));
  ASSERT_TRUE(keyed) << keyed.error().ToString();
  EXPECT_EQ(keyed->RouteProblem("big"), "");
}

TEST(ModelsConfigTest, BaseUrlConventionsAndNumbersFromTheEnvironment) {
  constexpr std::string_view yaml = R"(providers:
  ollama: {kind: openai, base_url: "http://127.0.0.1:11434/"}
  vllm: {kind: openai, base_url: "http://gpu:8000/v1"}
  claude: {kind: anthropic, base_url: "https://proxy.example/v1"}
models:
  m:
    provider: ollama
    context_window: ${CTX:-4096}
    max_output_tokens: ${MAXOUT}
)";
  auto config = ParseModelsConfig(yaml, "m.yaml", FakeEnv({{"MAXOUT", "777"}}));
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->FindProvider("ollama")->base_url, "http://127.0.0.1:11434/v1");
  EXPECT_EQ(config->FindProvider("vllm")->base_url, "http://gpu:8000/v1");
  EXPECT_EQ(config->FindProvider("claude")->base_url, "https://proxy.example");
  EXPECT_EQ(config->FindModel("m")->context_window, 4096);
  EXPECT_EQ(config->FindModel("m")->max_output_tokens, 777);
  EXPECT_EQ(config->FindModel("m")->model_id, "m");  // defaults to the name
}

TEST(ModelsConfigTest, EnvExpansion) {
  auto env = FakeEnv({{"A", "x"}, {"EMPTY", ""}});
  EXPECT_EQ(ExpandEnv("${A}/${B:-def}/${EMPTY:-e}/${B}/$A", env), "x/def/e//$A");
}

struct BadCase {
  std::string name;
  std::string yaml;
  std::string expected;  // substring of the error, which must start with "m.yaml:<line>:"
  int line;
};

class ModelsConfigErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ModelsConfigErrorTest, NamesFileAndLine) {
  const BadCase& bad = GetParam();
  auto config = ParseModelsConfig(bad.yaml, "m.yaml", FakeEnv({}));
  ASSERT_FALSE(config) << bad.name;
  EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(config.error().message, HasSubstr("m.yaml:" + std::to_string(bad.line) + ":"))
      << config.error().message;
  EXPECT_THAT(config.error().message, HasSubstr(bad.expected)) << config.error().message;
}

const char* const kProviders = "providers:\n  p: {kind: openai, base_url: http://x/v1}\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, ModelsConfigErrorTest,
    ::testing::Values(
        BadCase{"unknown_provider", std::string(kProviders) + "models:\n  m:\n    provider: nope\n",
                "unknown provider 'nope'", 5},
        BadCase{"bad_kind", "providers:\n  p:\n    kind: gemini\nmodels:\n  m: {provider: p}\n",
                "bad kind 'gemini'", 3},
        BadCase{"negative_price",
                std::string(kProviders) + "models:\n  m:\n    provider: p\n    input_per_mtok: 1\n"
                                          "    output_per_mtok: -2\n",
                "output_per_mtok: must not be negative", 7},
        BadCase{"price_not_a_number",
                std::string(kProviders) + "models:\n  m: {provider: p, input_per_mtok: cheap}\n",
                "expected a number", 4},
        BadCase{
            "unknown_model_in_alias",
            std::string(kProviders) + "models:\n  m: {provider: p}\naliases:\n  fast: [m, ghost]\n",
            "unknown model 'ghost'", 6},
        BadCase{"unknown_alias_in_rule",
                std::string(kProviders) +
                    "models:\n  m: {provider: p}\naliases:\n  fast: [m]\nrouting:\n"
                    "  - {complexity: low, chain: [fast, slow]}\n",
                "unknown alias 'slow'", 8},
        BadCase{"unknown_key", std::string(kProviders) + "models:\n  m: {provider: p, prise: 3}\n",
                "unknown key 'prise'", 4},
        BadCase{"bad_url", "providers:\n  p: {kind: openai, base_url: ftp://x}\nmodels: {}\n",
                "must start with http", 2},
        BadCase{"malformed_yaml", std::string(kProviders) + "models:\n  m: {provider: p\n", "", 5},
        BadCase{"duplicate_model",
                std::string(kProviders) + "models:\n  m: {provider: p}\n  m: {provider: p}\n",
                "defined twice", 5},
        BadCase{"alias_clashes_with_model",
                std::string(kProviders) + "models:\n  m: {provider: p}\naliases:\n  m: [m]\n",
                "clashes with a model", 6},
        BadCase{"missing_kind", "providers:\n  p:\n    base_url: http://x/v1\nmodels: {}\n",
                "missing 'kind'", 3},
        BadCase{
            "retry_attempts",
            std::string(kProviders) + "models:\n  m: {provider: p}\nretry:\n  max_attempts: 0\n",
            "max_attempts", 6}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(ModelsConfigTest, ShippedDefaultLoadsWithNoKeys) {
  auto config = ParseModelsConfig(kDefaultModelsYaml, "default", FakeEnv({}));
  ASSERT_TRUE(config) << config.error().ToString();
  for (const auto& provider : config->providers) {
    EXPECT_FALSE(provider.available) << provider.name;
  }
  EXPECT_NE(config->FindAlias("local/fast"), nullptr);
  EXPECT_NE(config->FindAlias("cloud/fast"), nullptr);
  EXPECT_NE(config->FindAlias("cloud/mid"), nullptr);
  EXPECT_NE(config->FindAlias("cloud/frontier"), nullptr);
}

TEST(ModelsConfigTest, ShippedDefaultUsesTheLocalServerAndKeysWhenSet) {
  auto config = ParseModelsConfig(kDefaultModelsYaml, "default",
                                  FakeEnv({{"FACTORY_LLM_BASE_URL", "http://127.0.0.1:8080/v1/"},
                                           {"FACTORY_LLM_MODEL", "qwen"},
                                           {"ANTHROPIC_API_KEY", "sk-ant"}}));
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_TRUE(config->FindProvider("local")->available);
  EXPECT_EQ(config->FindProvider("local")->base_url, "http://127.0.0.1:8080/v1");
  EXPECT_EQ(config->FindModel("local")->model_id, "qwen");
  EXPECT_FALSE(config->FindProvider("openai")->available);
  EXPECT_TRUE(config->FindProvider("anthropic")->available);
}

TEST(ModelsConfigTest, WriteDefaultThenLoadAndNeverOverwrite) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("models_config_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const auto path = dir / ".factory" / "models.yaml";
  ASSERT_TRUE(WriteDefaultModelsConfig(path));
  auto loaded = LoadModelsConfig(path, FakeEnv({}));
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  EXPECT_EQ(loaded->path, path.string());
  auto again = WriteDefaultModelsConfig(path);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(LoadModelsConfig(dir / "missing.yaml").error().code, ErrorCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(PricingTest, CostIsUsageTimesPrices) {
  ModelSpec model;
  model.input_per_mtok = 3;
  model.output_per_mtok = 15;
  model.cached_per_mtok = 0.3;
  model.cache_write_per_mtok = 3.75;
  // 1,000 input of which 600 cache reads and 100 cache writes; 200 output.
  Usage usage{1'000, 200, 600, 100};
  const double expected = (300 * 3 + 600 * 0.3 + 100 * 3.75 + 200 * 15) / 1e6;
  EXPECT_DOUBLE_EQ(CostUsd(model, usage), expected);
  EXPECT_DOUBLE_EQ(CostUsd(model, Usage{}), 0);
}

}  // namespace
}  // namespace factory::llm
