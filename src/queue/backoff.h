#pragma once

#include <cstdint>
#include <random>

namespace factory {

struct RetryPolicy {
  int64_t base_delay_ms = 1'000;   // delay before the 2nd attempt, before jitter
  int64_t max_delay_ms = 300'000;  // cap on the un-jittered delay
};

// Exponential backoff with "equal jitter": the nominal delay is base * 2^(attempt-1), capped at
// max; the result lies in [nominal/2, nominal]. attempt is the number of the attempt that just
// failed (>= 1). Never negative.
int64_t BackoffDelayMillis(const RetryPolicy& policy, int attempt, std::mt19937_64& rng);

}  // namespace factory
