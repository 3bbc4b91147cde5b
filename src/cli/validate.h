#pragma once
// Validation of user input given on the command line. Errors are InvalidArgument naming the
// flag, so they exit with the usage code.

#include <cstddef>
#include <string>
#include <string_view>

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

// Reads a spec file: must exist, be a regular file, be readable, be at most kMaxSpecBytes and
// valid UTF-8. Errors name the path.
Result<std::string> ReadSpecFile(const std::string& path);

}  // namespace factory::cli
