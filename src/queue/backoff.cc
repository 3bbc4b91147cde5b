#include "queue/backoff.h"

#include <algorithm>

namespace factory {

int64_t BackoffDelayMillis(const RetryPolicy& policy, int attempt, std::mt19937_64& rng) {
  int64_t base = std::max<int64_t>(policy.base_delay_ms, 0);
  int64_t cap = std::max<int64_t>(policy.max_delay_ms, 0);
  int shift = std::clamp(attempt - 1, 0, 40);
  // Saturate instead of overflowing for large attempt numbers.
  int64_t nominal = base > (cap >> shift) ? cap : std::min(cap, base << shift);
  int64_t half = nominal / 2;
  std::uniform_int_distribution<int64_t> jitter(0, nominal - half);
  return half + jitter(rng);
}

}  // namespace factory
