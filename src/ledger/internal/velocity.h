#pragma once
// Settled spend per agent over a sliding span, in memory, so the velocity check can run on
// every call without a store query. Internal to ledger/.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace factory::ledger::internal {

// Thread-safe.
class VelocityMeter {
 public:
  // `span_ms`: how far back sums are asked for (the velocity window plus its baseline); older
  // spend is forgotten. `bucket_ms`: spend is added up in buckets of this width (dates are
  // rounded down to it).
  VelocityMeter(int64_t span_ms, int64_t bucket_ms);

  // Whether `agent` has been seeded (see Seed) in this process.
  bool Seeded(std::string_view agent) const;
  // Marks `agent` seeded and adds `usd` spent at each `at_ms` of `history` (the settled spend
  // the store held before this process counted any). A second seed of an agent is ignored.
  void Seed(const std::string& agent, const std::map<int64_t, double>& history);
  // Records `usd` spent by `agent`, dated `at_ms`.
  void Add(const std::string& agent, int64_t at_ms, double usd);
  // Spend of `agent` dated in [since_ms, until_ms).
  double Sum(std::string_view agent, int64_t since_ms, int64_t until_ms) const;

 private:
  struct Agent {
    std::map<int64_t, double> buckets;  // bucket start (ms) -> spend
  };
  void PruneLocked(Agent& agent, int64_t now_ms);

  const int64_t span_ms_;
  const int64_t bucket_ms_;
  mutable std::mutex mu_;
  std::map<std::string, Agent, std::less<>> agents_;  // guarded by mu_
};

}  // namespace factory::ledger::internal
