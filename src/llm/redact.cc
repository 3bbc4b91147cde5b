#include "llm/redact.h"

#include "core/redact.h"

namespace factory::llm {

std::string Redact(std::string_view text, const std::vector<std::string>& secrets) {
  constexpr size_t kMinLength = 4;
  std::string out(text);
  if (!secrets.empty()) {
    Redactor local(kMinLength);
    for (const auto& secret : secrets) local.Add("", secret);
    out = local.Redact(out);
  }
  return ProcessRedactor().Redact(out);
}

}  // namespace factory::llm
