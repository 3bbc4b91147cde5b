#pragma once
// UTC calendar day of a timestamp, the key of daily budgets and of `costs --by day`.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace factory::ledger::internal {

// "YYYY-MM-DD" (UTC) of ms since the epoch.
inline std::string UtcDay(int64_t millis) {
  using namespace std::chrono;
  const auto days = floor<std::chrono::days>(sys_time<milliseconds>(milliseconds(millis)));
  const year_month_day ymd(days);
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return buffer;
}

}  // namespace factory::ledger::internal
