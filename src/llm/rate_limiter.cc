#include "llm/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace factory::llm {

RateLimiter::RateLimiter(int64_t rpm, int64_t tpm, const Clock& clock)
    : clock_(clock), last_refill_ms_(clock.NowMillis()) {
  requests_.capacity = static_cast<double>(std::max<int64_t>(0, rpm));
  requests_.level = requests_.capacity;
  requests_.per_ms = requests_.capacity / 60'000.0;
  tokens_.capacity = static_cast<double>(std::max<int64_t>(0, tpm));
  tokens_.level = tokens_.capacity;
  tokens_.per_ms = tokens_.capacity / 60'000.0;
}

void RateLimiter::RefillLocked() {
  const int64_t now = clock_.NowMillis();
  const double elapsed = static_cast<double>(std::max<int64_t>(0, now - last_refill_ms_));
  last_refill_ms_ = std::max(now, last_refill_ms_);
  for (Bucket* bucket : {&requests_, &tokens_}) {
    if (bucket->capacity > 0) {
      bucket->level = std::min(bucket->capacity, bucket->level + elapsed * bucket->per_ms);
    }
  }
}

int64_t RateLimiter::WaitFor(const Bucket& bucket, double amount) {
  if (bucket.capacity <= 0) return 0;
  amount = std::min(amount, bucket.capacity);
  if (bucket.level >= amount) return 0;
  return std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil((amount - bucket.level) / bucket.per_ms)));
}

int64_t RateLimiter::TryAcquire(int64_t tokens) {
  std::lock_guard lock(mu_);
  RefillLocked();
  const double token_amount = static_cast<double>(std::max<int64_t>(0, tokens));
  const int64_t wait = std::max(WaitFor(requests_, 1.0), WaitFor(tokens_, token_amount));
  if (wait > 0) return wait;
  if (requests_.capacity > 0) requests_.level -= 1.0;
  if (tokens_.capacity > 0) tokens_.level -= std::min(token_amount, tokens_.capacity);
  return 0;
}

void RateLimiter::Settle(int64_t estimated_tokens, int64_t actual_tokens) {
  std::lock_guard lock(mu_);
  if (tokens_.capacity <= 0) return;
  RefillLocked();
  const double estimated = std::min(static_cast<double>(estimated_tokens), tokens_.capacity);
  tokens_.level =
      std::min(tokens_.capacity, tokens_.level + estimated - static_cast<double>(actual_tokens));
}

double RateLimiter::available_requests() const {
  std::lock_guard lock(mu_);
  return requests_.level;
}

double RateLimiter::available_tokens() const {
  std::lock_guard lock(mu_);
  return tokens_.level;
}

}  // namespace factory::llm
