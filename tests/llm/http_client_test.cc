#include "llm/http_client.h"

#include <gtest/gtest.h>

namespace factory::llm {
namespace {

TEST(ParseRetryAfterTest, SecondsDatesAndGarbage) {
  EXPECT_EQ(ParseRetryAfterMs("2", 0), 2'000);
  EXPECT_EQ(ParseRetryAfterMs(" 0.25 ", 0), 250);
  EXPECT_EQ(ParseRetryAfterMs("0", 0), 0);
  EXPECT_EQ(ParseRetryAfterMs("", 0), -1);
  EXPECT_EQ(ParseRetryAfterMs("soon", 0), -1);
  EXPECT_EQ(ParseRetryAfterMs("-3", 0), -1);
  // HTTP-date, relative to "now" (Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s).
  const int64_t now_ms = 784'111'777'000 - 30'000;
  EXPECT_EQ(ParseRetryAfterMs("Sun, 06 Nov 1994 08:49:37 GMT", now_ms), 30'000);
  EXPECT_EQ(ParseRetryAfterMs("Sun, 06 Nov 1994 08:49:37 GMT", now_ms + 60'000), 0);
}

}  // namespace
}  // namespace factory::llm
