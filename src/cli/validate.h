#pragma once
// Validation of user input given on the command line. Errors are InvalidArgument naming the
// flag, so they exit with the usage code.

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/result.h"

namespace factory::cli {

inline constexpr size_t kMaxTitleBytes = 1'000;
inline constexpr size_t kMaxSpecBytes = 1 << 20;  // 1 MiB
inline constexpr size_t kMaxCommandBytes = 64 << 10;
inline constexpr size_t kMaxKeyBytes = 256;

bool IsValidUtf8(std::string_view text);

// Non-empty (unless allow_empty), at most max_bytes, valid UTF-8, no NUL bytes.
Status ValidateText(std::string_view flag, std::string_view text, size_t max_bytes,
                    bool allow_empty = false);

// 1..64 characters of [A-Za-z0-9._-].
Status ValidateRunId(std::string_view flag, std::string_view run_id);

// Parses a whole option value as T: integers with std::from_chars (overflow refused), floating
// point with strtod (nan, inf and overflow refused). nullopt when it is not such a number.
template <typename T>
std::optional<T> ParseNumber(const std::string& text) {
  if (text.empty()) return std::nullopt;
  if constexpr (std::is_floating_point_v<T>) {
    errno = 0;
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(value)) {
      return std::nullopt;
    }
    return static_cast<T>(value);
  } else {
    T value{};
    const char* begin = text.data();
    if (*begin == '+') ++begin;  // from_chars takes no sign of its own but '-'
    const auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
  }
}

// The check of every numeric option: a finite T in [min, max]. CLI::Range lets nan through
// (every comparison with nan is false) and leaves overflow to the conversion; this refuses
// both, and CLI11 names the option in the error (exit 2).
template <typename T>
CLI::Validator NumberIn(T min, T max) {
  const std::string range = fmt::format("{} to {}", min, max);
  return CLI::Validator(
      [min, max, range](std::string& input) -> std::string {
        const std::optional<T> value = ParseNumber<T>(input);
        if (!value || !(*value >= min && *value <= max)) {
          return "'" + input + "' is not a number from " + range;
        }
        return {};
      },
      (std::is_floating_point_v<T> ? "NUMBER in " : "INT in ") + range);
}

// Reads a spec file: must exist, be a regular file, be readable, be at most kMaxSpecBytes and
// valid UTF-8. Errors name the path.
Result<std::string> ReadSpecFile(const std::string& path);

}  // namespace factory::cli
