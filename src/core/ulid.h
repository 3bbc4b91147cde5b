#pragma once
// ULIDs (26 characters, Crockford base32): 48 bits of milliseconds then 80 random bits, so ids
// sort by creation time. Within one millisecond a generator increments the random part, so ids
// from one process are strictly increasing (the "monotonic" variant of the spec).

#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <string_view>

#include "core/clock.h"

namespace factory {

class UlidGenerator {
 public:
  // REQUIRES: clock outlives the generator.
  explicit UlidGenerator(const Clock& clock);
  // Thread-safe.
  std::string Next();

 private:
  const Clock& clock_;
  std::mutex mu_;
  std::mt19937_64 rng_;       // guarded by mu_
  int64_t last_millis_ = -1;  // guarded by mu_
  uint16_t rand_hi_ = 0;      // guarded by mu_; top 16 of the 80 random bits
  uint64_t rand_lo_ = 0;      // guarded by mu_; low 64 random bits
};

// A ULID from the process-wide generator on the system clock.
std::string NewUlid();

// True when text is a syntactically valid ULID.
bool IsUlid(std::string_view text);

// The millisecond timestamp encoded in a valid ULID.
int64_t UlidMillis(std::string_view ulid);

}  // namespace factory
