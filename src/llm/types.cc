#include "llm/types.h"

namespace factory::llm {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
    case Role::kTool:
      return "tool";
  }
  return "user";
}

std::string CallError::ToString() const {
  std::string out(ErrorCodeName(code));
  if (http_status != 0) out += " (HTTP " + std::to_string(http_status) + ")";
  out += ": " + message;
  if (retry_after_ms >= 0) out += " [retry after " + std::to_string(retry_after_ms) + " ms]";
  return out;
}

}  // namespace factory::llm
