#include "service/internal/validate.h"

#include <string>

#include "core/text_file.h"

namespace factory::service::internal {

Status ValidateText(std::string_view field, std::string_view text, size_t max_bytes,
                    bool allow_empty) {
  if (!allow_empty && text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return InvalidArgument(std::string(field) + " must not be empty");
  }
  if (text.size() > max_bytes) {
    return InvalidArgument(std::string(field) + " is too long (" + std::to_string(text.size()) +
                           " bytes, at most " + std::to_string(max_bytes) + ")");
  }
  if (auto problem = FindTextProblem(text); problem) {
    return InvalidArgument(std::string(field) + (problem->what == "NUL byte"
                                                     ? " contains a NUL byte"
                                                     : " is not valid UTF-8"));
  }
  return Ok();
}

Status ValidateRunId(std::string_view field, std::string_view run_id) {
  if (run_id.empty() || run_id.size() > 64) {
    return InvalidArgument(std::string(field) + " must be 1 to 64 characters");
  }
  for (char c : run_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return InvalidArgument(std::string(field) + " '" + std::string(run_id) +
                             "' may only contain letters, digits, '.', '_' and '-'");
    }
  }
  return Ok();
}

Status ValidateRange(std::string_view field, int value, int min, int max) {
  if (value >= min && value <= max) return Ok();
  return InvalidArgument(std::string(field) + " " + std::to_string(value) +
                         " is not a number from " + std::to_string(min) + " to " +
                         std::to_string(max));
}

}  // namespace factory::service::internal
