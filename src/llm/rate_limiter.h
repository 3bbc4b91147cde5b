#pragma once
// Per-provider rate limiting: two token buckets, requests per minute and tokens per minute,
// refilled continuously (rpm/60000 per ms) and starting full. A call takes one request and its
// estimated tokens up front; Settle() corrects the token bucket with the actual usage after.

#include <cstdint>
#include <mutex>

#include "core/clock.h"

namespace factory::llm {

// Thread-safe.
class RateLimiter {
 public:
  // rpm/tpm of 0 mean unlimited. `clock` must outlive the limiter.
  RateLimiter(int64_t rpm, int64_t tpm, const Clock& clock);

  // Takes one request and `tokens` tokens when both buckets hold enough and returns 0; otherwise
  // takes nothing and returns the milliseconds until they would (> 0). A request for more tokens
  // than the bucket holds when full is granted once the bucket is full (it cannot ever fit).
  int64_t TryAcquire(int64_t tokens);

  // After the call: returns (estimated - actual) tokens to the bucket; a call that used more than
  // estimated leaves the bucket in debt, delaying later calls.
  void Settle(int64_t estimated_tokens, int64_t actual_tokens);

  double available_requests() const;
  double available_tokens() const;

 private:
  struct Bucket {
    double capacity = 0;  // 0 = unlimited
    double level = 0;
    double per_ms = 0;
  };
  void RefillLocked();
  // ms until `bucket` holds `amount`, 0 when it does.
  static int64_t WaitFor(const Bucket& bucket, double amount);

  const Clock& clock_;
  mutable std::mutex mu_;
  Bucket requests_;         // guarded by mu_
  Bucket tokens_;           // guarded by mu_
  int64_t last_refill_ms_;  // guarded by mu_
};

}  // namespace factory::llm
