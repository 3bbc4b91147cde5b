#include "llm/breaker.h"

#include <algorithm>

namespace factory::llm {

std::string_view BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(const BreakerConfig& config, const Clock& clock)
    : config_(config), clock_(clock) {}

void CircuitBreaker::CoolUntil(int64_t until_ms) {
  std::lock_guard lock(mu_);
  cooling_until_ms_ = std::max(cooling_until_ms_, until_ms);
}

int64_t CircuitBreaker::CoolingUntilMs() const {
  std::lock_guard lock(mu_);
  return cooling_until_ms_;
}

bool CircuitBreaker::Allow() {
  std::lock_guard lock(mu_);
  switch (state_) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      if (clock_.NowMillis() < opened_at_ms_ + config_.cooldown_ms) return false;
      state_ = BreakerState::kHalfOpen;
      probe_in_flight_ = true;
      return true;
    case BreakerState::kHalfOpen:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::RecordSuccess() {
  std::lock_guard lock(mu_);
  state_ = BreakerState::kClosed;
  failures_ = 0;
  probe_in_flight_ = false;
}

void CircuitBreaker::RecordFailure() {
  std::lock_guard lock(mu_);
  ++failures_;
  if (state_ == BreakerState::kHalfOpen ||
      (state_ == BreakerState::kClosed && failures_ >= config_.failure_threshold)) {
    state_ = BreakerState::kOpen;
    opened_at_ms_ = clock_.NowMillis();
  }
  probe_in_flight_ = false;
}

void CircuitBreaker::RecordNeutral() {
  std::lock_guard lock(mu_);
  probe_in_flight_ = false;  // half-open: the next caller may probe
}

BreakerState CircuitBreaker::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

int64_t CircuitBreaker::ProbeAtMs() const {
  std::lock_guard lock(mu_);
  return state_ == BreakerState::kOpen ? opened_at_ms_ + config_.cooldown_ms : 0;
}

int CircuitBreaker::consecutive_failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

CircuitBreaker& BreakerSet::Get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto& slot = breakers_[key];
  if (!slot) slot = std::make_unique<CircuitBreaker>(config_, clock_);
  return *slot;
}

}  // namespace factory::llm
