#pragma once
// Whole text files: the one reader every loader of a user- or agent-written file uses (backlogs,
// feature requests, agent files, config.yaml, models.yaml, spec files), so that each refuses
// the same bytes the same way, and writes of text the factory produces.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace factory {

// Where a text first goes wrong: the byte offset, its 1-based line, and what is wrong there.
struct TextProblem {
  size_t offset = 0;
  int line = 1;
  std::string what;  // "invalid UTF-8" or "NUL byte"
};

// The first invalid UTF-8 sequence (overlong, surrogate, out of range, truncated) or NUL byte
// of `text`, or nullopt when it is clean.
std::optional<TextProblem> FindTextProblem(std::string_view text);

struct ReadTextOptions {
  size_t max_bytes = 16 << 20;  // larger files are refused (InvalidArgument)
};

// Reads a whole file as text. NotFound when it does not exist (or is not a regular file),
// Unavailable when it cannot be read, InvalidArgument "PATH:LINE: invalid UTF-8" or
// "PATH:LINE: NUL byte" when its content is not text, or "PATH: larger than N bytes".
Result<std::string> ReadTextFile(const std::filesystem::path& path,
                                 const ReadTextOptions& options = {});

// Writes `content`, redacted by ProcessRedactor() (core/redact.h), to `path`, truncating it:
// these files reach agents and their providers. Internal error naming the path on failure.
Status WriteTextFile(const std::string& path, std::string_view content);

}  // namespace factory
