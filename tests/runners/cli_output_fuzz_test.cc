// Inputs the fuzz target cli_output found crashing ParseCliOutput (fuzz/regressions/cli_output/),
// replayed through it. The first byte of each picks what fuzz/cli_output.cc picks with it: the
// format (byte % 3: plain, Claude stream-json, Codex json) and the tail (bit 7: 16 bytes).

#include <gtest/gtest.h>

#include <sstream>

#include "common/fuzz_regressions.h"
#include "runners/cli_runner.h"

namespace factory {
namespace {

using testing::FuzzRegression;
using testing::FuzzRegressions;

CliOutput ParseRegression(const std::string& input) {
  const auto choice = static_cast<uint8_t>(input.empty() ? 0 : input[0]);
  const CliOutputFormat formats[] = {CliOutputFormat::kPlain, CliOutputFormat::kClaudeStreamJson,
                                     CliOutputFormat::kCodexJson};
  std::istringstream in(input.empty() ? "" : input.substr(1));
  return ParseCliOutput(formats[choice % 3], in, (choice & 0x80) != 0 ? 16 : 4096);
}

// 1e300 tokens: casting it to int64_t was undefined (UBSan); the count is clamped instead.
TEST(CliOutputFuzzTest, HugeFloatTokenCountIsClamped) {
  const CliOutput out = ParseRegression(FuzzRegression("cli_output", "claude-float-tokens"));
  EXPECT_EQ(out.usage.input_tokens, kMaxCliTokens);
  EXPECT_EQ(out.usage.output_tokens, 0);
}

// input + cache_read, each INT64_MAX: the sum overflowed; it saturates.
TEST(CliOutputFuzzTest, ClaudeTokenSumSaturates) {
  const CliOutput out = ParseRegression(FuzzRegression("cli_output", "claude-token-sum-overflow"));
  EXPECT_EQ(out.usage.input_tokens, kMaxCliTokens);
  EXPECT_EQ(out.usage.cached_tokens, kMaxCliTokens);
}

// Codex adds every turn's usage: two turns of INT64_MAX overflowed; the total saturates.
TEST(CliOutputFuzzTest, CodexTurnsSaturate) {
  const CliOutput out = ParseRegression(FuzzRegression("cli_output", "codex-token-sum-overflow"));
  EXPECT_EQ(out.usage.input_tokens, kMaxCliTokens);
}

// A negative count would make the attempt's cost negative.
TEST(CliOutputFuzzTest, NegativeTokenCountsAreZero) {
  const CliOutput out = ParseRegression(FuzzRegression("cli_output", "claude-negative-tokens"));
  EXPECT_EQ(out.usage.input_tokens, 0);
  EXPECT_EQ(out.usage.output_tokens, 0);
}

TEST(CliOutputFuzzTest, EveryRegressionInputParsesWithinBounds) {
  const auto inputs = FuzzRegressions("cli_output");
  ASSERT_FALSE(inputs.empty());
  for (const auto& [name, input] : inputs) {
    const CliOutput out = ParseRegression(input);
    EXPECT_LE(out.steps.size(), kMaxCliSteps) << name;
    EXPECT_GE(out.usage.input_tokens, 0) << name;
    EXPECT_LE(out.usage.input_tokens, kMaxCliTokens) << name;
    EXPECT_GE(out.usage.output_tokens, 0) << name;
    EXPECT_LE(out.usage.output_tokens, kMaxCliTokens) << name;
  }
}

}  // namespace
}  // namespace factory
