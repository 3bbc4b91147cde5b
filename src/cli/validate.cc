#include "cli/validate.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/text_file.h"

namespace factory::cli {

bool IsValidUtf8(std::string_view text) {
  size_t idx = 0;
  while (idx < text.size()) {
    const auto byte = static_cast<unsigned char>(text[idx]);
    int extra = 0;
    uint32_t code_point = 0;
    if (byte < 0x80) {
      ++idx;
      continue;
    } else if ((byte & 0xE0) == 0xC0) {
      extra = 1;
      code_point = byte & 0x1F;
    } else if ((byte & 0xF0) == 0xE0) {
      extra = 2;
      code_point = byte & 0x0F;
    } else if ((byte & 0xF8) == 0xF0) {
      extra = 3;
      code_point = byte & 0x07;
    } else {
      return false;
    }
    if (idx + extra >= text.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[idx + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    // Overlong encodings, surrogates and out-of-range code points.
    if ((extra == 1 && code_point < 0x80) || (extra == 2 && code_point < 0x800) ||
        (extra == 3 && code_point < 0x10000) || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    idx += extra + 1;
  }
  return true;
}

Status ValidateText(std::string_view flag, std::string_view text, size_t max_bytes,
                    bool allow_empty) {
  if (!allow_empty && text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return InvalidArgument(std::string(flag) + " must not be empty");
  }
  if (text.size() > max_bytes) {
    return InvalidArgument(std::string(flag) + " is too long (" + std::to_string(text.size()) +
                           " bytes, at most " + std::to_string(max_bytes) + ")");
  }
  if (text.find('\0') != std::string_view::npos) {
    return InvalidArgument(std::string(flag) + " contains a NUL byte");
  }
  if (!IsValidUtf8(text)) {
    return InvalidArgument(std::string(flag) + " is not valid UTF-8");
  }
  return Ok();
}

Status ValidateRunId(std::string_view flag, std::string_view run_id) {
  if (run_id.empty() || run_id.size() > 64) {
    return InvalidArgument(std::string(flag) + " must be 1 to 64 characters");
  }
  for (char c : run_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return InvalidArgument(std::string(flag) + " '" + std::string(run_id) +
                             "' may only contain letters, digits, '.', '_' and '-'");
    }
  }
  return Ok();
}

Result<std::string> ReadSpecFile(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return InvalidArgument("--spec-file " + path + ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return InvalidArgument("--spec-file " + path + ": not a regular file");
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxSpecBytes) {
    return InvalidArgument("--spec-file " + path + ": too large (" + std::to_string(size) +
                           " bytes, at most " + std::to_string(kMaxSpecBytes) + ")");
  }
  auto text = ReadTextFile(path, ReadTextOptions{.max_bytes = kMaxSpecBytes});
  // Every failure is the flag's (exit 2): "--spec-file PATH:LINE: invalid UTF-8".
  if (!text) return InvalidArgument("--spec-file " + text.error().message);
  return text;
}

}  // namespace factory::cli
