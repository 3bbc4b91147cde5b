#include "llm/breaker.h"

#include <gtest/gtest.h>

namespace factory::llm {
namespace {

TEST(CircuitBreakerTest, OpensAfterThresholdAndHalfOpensAfterCooldown) {
  FakeClock clock;
  CircuitBreaker breaker(BreakerConfig{3, 10'000}, clock);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(breaker.Allow());
    breaker.RecordFailure();
  }
  EXPECT_EQ(breaker.state(), BreakerState::kClosed);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  EXPECT_EQ(breaker.state(), BreakerState::kOpen);
  EXPECT_FALSE(breaker.Allow());
  EXPECT_EQ(breaker.ProbeAtMs(), clock.NowMillis() + 10'000);

  clock.Advance(9'999);
  EXPECT_FALSE(breaker.Allow());
  clock.Advance(1);
  EXPECT_TRUE(breaker.Allow());  // the probe
  EXPECT_EQ(breaker.state(), BreakerState::kHalfOpen);
  EXPECT_FALSE(breaker.Allow());  // only one probe at a time
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.state(), BreakerState::kClosed);
  EXPECT_TRUE(breaker.Allow());
  breaker.RecordSuccess();
}

TEST(CircuitBreakerTest, FailedProbeReopens) {
  FakeClock clock;
  CircuitBreaker breaker(BreakerConfig{1, 1'000}, clock);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  clock.Advance(1'000);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  EXPECT_EQ(breaker.state(), BreakerState::kOpen);
  EXPECT_FALSE(breaker.Allow());
  clock.Advance(1'000);
  EXPECT_TRUE(breaker.Allow());
}

TEST(CircuitBreakerTest, SuccessResetsTheCountAndNeutralReleasesTheProbe) {
  FakeClock clock;
  CircuitBreaker breaker(BreakerConfig{2, 1'000}, clock);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordSuccess();
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  EXPECT_EQ(breaker.state(), BreakerState::kClosed);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  ASSERT_EQ(breaker.state(), BreakerState::kOpen);
  clock.Advance(1'000);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordNeutral();  // e.g. the probe was rate limited before going out
  EXPECT_TRUE(breaker.Allow());
}

}  // namespace
}  // namespace factory::llm
