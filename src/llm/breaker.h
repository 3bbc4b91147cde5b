#pragma once
// A circuit breaker per deployment (a model on a provider): after N consecutive failures it opens
// and calls skip the deployment; after a cool-down it lets one probe through (half-open); the
// probe's success closes it, its failure re-opens it for another cool-down.
// Failures are what says "this deployment is unhealthy": 5xx, timeouts, connection errors,
// malformed answers. 429s, client errors and budget refusals are neutral. A Retry-After is
// remembered separately, as the deployment's cool-down (CoolUntil).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/clock.h"
#include "llm/models_config.h"

namespace factory::llm {

enum class BreakerState { kClosed, kOpen, kHalfOpen };
std::string_view BreakerStateName(BreakerState state);

// Thread-safe.
class CircuitBreaker {
 public:
  // `clock` must outlive the breaker.
  CircuitBreaker(const BreakerConfig& config, const Clock& clock);

  // True when a call may go out now. Closed: always. Open: false until the cool-down has
  // passed, then the breaker turns half-open and admits exactly one probe. Half-open with a probe
  // in flight: false.
  // Every true answer must be followed by exactly one RecordSuccess/RecordFailure/RecordNeutral.
  bool Allow();
  void RecordSuccess();
  void RecordFailure();
  // The admitted call was not made or failed for a reason that says nothing about health.
  void RecordNeutral();

  // The deployment asked callers to come back later (a Retry-After): it is cooling down until
  // `until_ms` (ms since epoch), across calls. A later time than the current one wins. Cooling
  // is not a breaker state: it says nothing about health, Allow() ignores it, and the router
  // skips or waits for a cooling deployment itself.
  void CoolUntil(int64_t until_ms);
  // The end of the cool-down (ms since epoch); 0 or a past time when not cooling.
  int64_t CoolingUntilMs() const;

  BreakerState state() const;
  // When an open breaker will admit a probe (ms since epoch); 0 unless open.
  int64_t ProbeAtMs() const;
  int consecutive_failures() const;

 private:
  const BreakerConfig config_;
  const Clock& clock_;
  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;  // guarded by mu_
  int failures_ = 0;                            // guarded by mu_
  int64_t opened_at_ms_ = 0;                    // guarded by mu_
  bool probe_in_flight_ = false;                // guarded by mu_
  int64_t cooling_until_ms_ = 0;                // guarded by mu_
};

// Breakers by deployment key, created on first use. Thread-safe; returned references stay valid
// for the set's lifetime.
class BreakerSet {
 public:
  BreakerSet(const BreakerConfig& config, const Clock& clock) : config_(config), clock_(clock) {}
  CircuitBreaker& Get(const std::string& key);

 private:
  const BreakerConfig config_;
  const Clock& clock_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<CircuitBreaker>> breakers_;  // guarded by mu_
};

}  // namespace factory::llm
