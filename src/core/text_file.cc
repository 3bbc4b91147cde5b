#include "core/text_file.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <system_error>

#include "core/redact.h"

namespace factory {

std::optional<TextProblem> FindTextProblem(std::string_view text) {
  int line = 1;
  size_t idx = 0;
  auto problem = [&](const char* what) { return TextProblem{idx, line, what}; };
  while (idx < text.size()) {
    const auto byte = static_cast<unsigned char>(text[idx]);
    if (byte < 0x80) {
      if (byte == 0) return problem("NUL byte");
      if (byte == '\n') ++line;
      ++idx;
      continue;
    }
    int extra = 0;
    uint32_t code_point = 0;
    if ((byte & 0xE0) == 0xC0) {
      extra = 1;
      code_point = byte & 0x1F;
    } else if ((byte & 0xF0) == 0xE0) {
      extra = 2;
      code_point = byte & 0x0F;
    } else if ((byte & 0xF8) == 0xF0) {
      extra = 3;
      code_point = byte & 0x07;
    } else {
      return problem("invalid UTF-8");
    }
    if (idx + extra >= text.size()) return problem("invalid UTF-8");  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[idx + k]);
      if ((next & 0xC0) != 0x80) return problem("invalid UTF-8");
      code_point = (code_point << 6) | (next & 0x3F);
    }
    // Overlong encodings, surrogates and out-of-range code points.
    if ((extra == 1 && code_point < 0x80) || (extra == 2 && code_point < 0x800) ||
        (extra == 3 && code_point < 0x10000) || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return problem("invalid UTF-8");
    }
    idx += extra + 1;
  }
  return std::nullopt;
}

Result<std::string> ReadTextFile(const std::filesystem::path& path,
                                 const ReadTextOptions& options) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return NotFound(path.string() + ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return NotFound(path.string() + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Unavailable(path.string() + ": cannot be read: " + std::strerror(errno));
  std::string text;
  // Read in chunks up to one byte past the limit: the size on disk is only a hint (the file may
  // grow while it is read, or be a pipe-like file that reports 0).
  char chunk[64 << 10];
  while (text.size() <= options.max_bytes) {
    in.read(chunk, sizeof(chunk));
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (!in) break;
  }
  if (in.bad()) return Unavailable(path.string() + ": read error");
  if (text.size() > options.max_bytes) {
    return InvalidArgument(path.string() + ": larger than " + std::to_string(options.max_bytes) +
                           " bytes");
  }
  if (auto problem = FindTextProblem(text)) {
    return InvalidArgument(path.string() + ":" + std::to_string(problem->line) + ": " +
                           problem->what);
  }
  return text;
}

Status WriteTextFile(const std::string& path, std::string_view content) {
  const std::string redacted = ProcessRedactor().Redact(content);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(redacted.data(), static_cast<std::streamsize>(redacted.size()));
  out.flush();
  if (!out) return Internal("cannot write " + path);
  return Ok();
}

}  // namespace factory
