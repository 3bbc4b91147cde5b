#include "queue/backoff.h"

#include <gtest/gtest.h>

namespace factory {
namespace {

TEST(BackoffTest, StaysWithinHalfToFullNominalDelay) {
  RetryPolicy policy{.base_delay_ms = 1000, .max_delay_ms = 60'000};
  std::mt19937_64 rng(42);
  for (int attempt = 1; attempt <= 12; ++attempt) {
    int64_t nominal = std::min<int64_t>(60'000, 1000LL << (attempt - 1));
    int64_t low = nominal, high = 0;
    for (int sample = 0; sample < 2000; ++sample) {
      int64_t delay = BackoffDelayMillis(policy, attempt, rng);
      ASSERT_GE(delay, nominal / 2) << "attempt " << attempt;
      ASSERT_LE(delay, nominal) << "attempt " << attempt;
      low = std::min(low, delay);
      high = std::max(high, delay);
    }
    // Jitter really spreads the delays (not a constant).
    EXPECT_LT(low, high) << "attempt " << attempt;
  }
}

TEST(BackoffTest, GrowsExponentiallyUntilTheCap) {
  RetryPolicy policy{.base_delay_ms = 100, .max_delay_ms = 1'000};
  std::mt19937_64 rng(7);
  // Minimum possible delay doubles: 50, 100, 200, 400, then capped at 500.
  std::vector<int64_t> minimums{50, 100, 200, 400, 500, 500};
  for (size_t i = 0; i < minimums.size(); ++i) {
    for (int sample = 0; sample < 200; ++sample) {
      EXPECT_GE(BackoffDelayMillis(policy, static_cast<int>(i) + 1, rng), minimums[i]);
    }
  }
}

TEST(BackoffTest, HugeAttemptNumbersSaturateInsteadOfOverflowing) {
  RetryPolicy policy{.base_delay_ms = 1000, .max_delay_ms = 300'000};
  std::mt19937_64 rng(1);
  for (int attempt : {30, 63, 64, 1000, 1 << 30}) {
    int64_t delay = BackoffDelayMillis(policy, attempt, rng);
    EXPECT_GE(delay, 150'000);
    EXPECT_LE(delay, 300'000);
  }
  EXPECT_GE(BackoffDelayMillis(policy, 0, rng), 0);
}

}  // namespace
}  // namespace factory
