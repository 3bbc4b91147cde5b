// Inputs the fuzz target models_config found crashing ParseModelsConfig
// (fuzz/regressions/models_config/), replayed through it.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/fuzz_regressions.h"
#include "llm/models_config.h"

namespace factory::llm {
namespace {

using ::testing::HasSubstr;

std::optional<std::string> NoEnv(const std::string&) { return std::nullopt; }

// A timeout of 1e300 or .inf seconds: converting it to milliseconds was undefined (UBSan);
// it is an error naming the field.
TEST(ModelsConfigFuzzTest, TimeoutBeyondRangeIsAnErrorNamingTheField) {
  for (const char* name : {"timeout-1e300.yaml", "timeout-inf.yaml"}) {
    auto config =
        ParseModelsConfig(testing::FuzzRegression("models_config", name), "models.yaml", NoEnv);
    ASSERT_FALSE(config.has_value()) << name;
    EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument) << name;
    EXPECT_THAT(config.error().message, HasSubstr("models.yaml:2"));
    EXPECT_THAT(config.error().message, HasSubstr("timeout_s: must be at most 1000000000 seconds"));
  }
}

TEST(ModelsConfigFuzzTest, ConnectTimeoutBeyondRangeIsAnError) {
  auto config = ParseModelsConfig(
      testing::FuzzRegression("models_config", "connect-timeout-1e20.yaml"), "models.yaml", NoEnv);
  ASSERT_FALSE(config.has_value());
  EXPECT_THAT(config.error().message, HasSubstr("connect_timeout_s: must be at most"));
}

TEST(ModelsConfigFuzzTest, CooldownBeyondRangeIsAnErrorAndALargeOneIsKept) {
  // The shipped file with its breaker's cooldown changed.
  auto with_cooldown = [](const std::string& seconds) {
    std::string text(kDefaultModelsYaml);
    const size_t at = text.find("cooldown_s: 30");
    EXPECT_NE(at, std::string::npos);
    return text.replace(at, 14, "cooldown_s: " + seconds);
  };
  auto refused = ParseModelsConfig(with_cooldown("1e30"), "models.yaml", NoEnv);
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr("breaker.cooldown_s: must be at most"));
  auto kept = ParseModelsConfig(with_cooldown("86400.5"), "models.yaml", NoEnv);
  ASSERT_TRUE(kept.has_value()) << kept.error().message;
  EXPECT_EQ(kept->breaker.cooldown_ms, 86'400'500);
}

}  // namespace
}  // namespace factory::llm
