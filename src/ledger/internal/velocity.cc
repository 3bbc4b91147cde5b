#include "ledger/internal/velocity.h"

#include <algorithm>

namespace factory::ledger::internal {

VelocityMeter::VelocityMeter(int64_t span_ms, int64_t bucket_ms)
    : span_ms_(std::max<int64_t>(1, span_ms)), bucket_ms_(std::max<int64_t>(1, bucket_ms)) {}

bool VelocityMeter::Seeded(std::string_view agent) const {
  std::lock_guard lock(mu_);
  return agents_.find(agent) != agents_.end();
}

void VelocityMeter::Seed(const std::string& agent, const std::map<int64_t, double>& history) {
  std::lock_guard lock(mu_);
  if (agents_.find(agent) != agents_.end()) return;
  Agent& entry = agents_[agent];
  for (const auto& [at_ms, usd] : history) {
    if (usd > 0) entry.buckets[at_ms - at_ms % bucket_ms_] += usd;
  }
}

void VelocityMeter::Add(const std::string& agent, int64_t at_ms, double usd) {
  if (!(usd > 0)) return;
  std::lock_guard lock(mu_);
  Agent& entry = agents_[agent];
  entry.buckets[at_ms - at_ms % bucket_ms_] += usd;
  PruneLocked(entry, at_ms);
}

void VelocityMeter::PruneLocked(Agent& agent, int64_t now_ms) {
  // Keeps one bucket of slack: a sum's lower bound may fall inside the oldest bucket.
  const int64_t oldest = now_ms - span_ms_ - bucket_ms_;
  agent.buckets.erase(agent.buckets.begin(), agent.buckets.lower_bound(oldest));
}

double VelocityMeter::Sum(std::string_view agent, int64_t since_ms, int64_t until_ms) const {
  std::lock_guard lock(mu_);
  auto it = agents_.find(agent);
  if (it == agents_.end()) return 0;
  double sum = 0;
  const auto& buckets = it->second.buckets;
  // Dates are rounded down to their bucket, so the bucket holding `since_ms` counts whole.
  for (auto bucket = buckets.lower_bound(since_ms - since_ms % bucket_ms_);
       bucket != buckets.end() && bucket->first < until_ms; ++bucket) {
    sum += bucket->second;
  }
  return sum;
}

}  // namespace factory::ledger::internal
