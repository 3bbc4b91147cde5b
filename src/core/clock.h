#pragma once
// The injectable clock (leveldb Env): production code asks a Clock for the time so tests can
// drive leases, backoff and reaping with a FakeClock instead of sleeping.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace factory {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall time; used for stored timestamps and leases).
  virtual int64_t NowMillis() const = 0;
};

// The process-wide real clock. Thread-safe.
const Clock& SystemClock();

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_millis = 1'700'000'000'000) : now_(start_millis) {}
  int64_t NowMillis() const override { return now_.load(); }
  void Advance(int64_t millis) { now_.fetch_add(millis); }
  void Set(int64_t millis) { now_.store(millis); }

 private:
  std::atomic<int64_t> now_;
};

// RFC 3339 UTC with milliseconds, e.g. "2026-11-21T11:14:58.397Z".
std::string FormatTimestamp(int64_t millis_since_epoch);

}  // namespace factory
