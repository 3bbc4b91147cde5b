#include "llm/rate_limiter.h"

#include <gtest/gtest.h>

namespace factory::llm {
namespace {

TEST(RateLimiterTest, RequestsPerMinute) {
  FakeClock clock;
  RateLimiter limiter(/*rpm=*/60, /*tpm=*/0, clock);  // one request per second
  for (int i = 0; i < 60; ++i) ASSERT_EQ(limiter.TryAcquire(0), 0) << i;
  const int64_t wait = limiter.TryAcquire(0);
  EXPECT_GT(wait, 0);
  EXPECT_LE(wait, 1'000);
  clock.Advance(wait);
  EXPECT_EQ(limiter.TryAcquire(0), 0);
  EXPECT_GT(limiter.TryAcquire(0), 0);
}

TEST(RateLimiterTest, TokensPerMinuteAndSettle) {
  FakeClock clock;
  RateLimiter limiter(/*rpm=*/0, /*tpm=*/6'000, clock);  // 100 tokens per second
  EXPECT_EQ(limiter.TryAcquire(5'000), 0);
  EXPECT_EQ(limiter.TryAcquire(2'000), 10'000);  // needs 1,000 more: 10 s; nothing taken
  EXPECT_DOUBLE_EQ(limiter.available_tokens(), 1'000);
  // The first call used only 1,000 of its estimated 5,000 tokens: 4,000 come back.
  limiter.Settle(5'000, 1'000);
  EXPECT_EQ(limiter.TryAcquire(2'000), 0);
  // A call that used more than estimated leaves debt.
  limiter.Settle(2'000, 6'000);
  EXPECT_LT(limiter.available_tokens(), 0);
  EXPECT_GT(limiter.TryAcquire(1), 0);
}

TEST(RateLimiterTest, OversizedRequestWaitsForAFullBucket) {
  FakeClock clock;
  RateLimiter limiter(0, 1'000, clock);
  EXPECT_EQ(limiter.TryAcquire(5'000), 0);  // bigger than the bucket: allowed when full
  EXPECT_GT(limiter.TryAcquire(5'000), 0);
  clock.Advance(60'000);
  EXPECT_EQ(limiter.TryAcquire(5'000), 0);
}

TEST(RateLimiterTest, UnlimitedNeverWaits) {
  FakeClock clock;
  RateLimiter limiter(0, 0, clock);
  for (int i = 0; i < 1'000; ++i) ASSERT_EQ(limiter.TryAcquire(1'000'000), 0);
}

}  // namespace
}  // namespace factory::llm
