#include "llm/redact.h"

#include <algorithm>

namespace factory::llm {

std::string Redact(std::string_view text, const std::vector<std::string>& secrets) {
  std::string out(text);
  // Longest first, so a secret that contains another is replaced whole.
  std::vector<const std::string*> ordered;
  for (const auto& secret : secrets) {
    if (secret.size() >= 4) ordered.push_back(&secret);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const std::string* a, const std::string* b) { return a->size() > b->size(); });
  for (const std::string* secret : ordered) {
    size_t pos = 0;
    while ((pos = out.find(*secret, pos)) != std::string::npos) {
      out.replace(pos, secret->size(), kRedacted);
      pos += kRedacted.size();
    }
  }
  return out;
}

}  // namespace factory::llm
