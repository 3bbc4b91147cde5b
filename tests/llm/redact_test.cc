#include "llm/redact.h"

#include <gtest/gtest.h>

namespace factory::llm {
namespace {

TEST(RedactTest, ReplacesEveryOccurrence) {
  EXPECT_EQ(Redact("key sk-abc123 and again sk-abc123.", {"sk-abc123"}),
            "key [REDACTED] and again [REDACTED].");
}

TEST(RedactTest, SeveralSecretsLongestFirst) {
  EXPECT_EQ(Redact("a=secret-long b=secret", {"secret", "secret-long"}),
            "a=[REDACTED] b=[REDACTED]");
}

TEST(RedactTest, IgnoresEmptyAndTinySecrets) {
  EXPECT_EQ(Redact("abc", {"", "ab"}), "abc");
  EXPECT_EQ(Redact("", {"secret"}), "");
}

}  // namespace
}  // namespace factory::llm
