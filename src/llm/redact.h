#pragma once
// Keeping API keys out of errors, logs, events and transcripts. Every message a provider builds
// from anything it did not write itself (an upstream error body, a libcurl error, a URL) goes
// through Redact() with the provider's secrets before it leaves the provider.

#include <string>
#include <string_view>
#include <vector>

namespace factory::llm {

inline constexpr std::string_view kRedacted = "[REDACTED]";

// Returns `text` with every occurrence of every non-empty secret replaced by "[REDACTED]".
// Secrets shorter than 4 characters are ignored (redacting them would garble the text without
// protecting anything real). Pure; thread-safe.
std::string Redact(std::string_view text, const std::vector<std::string>& secrets);

}  // namespace factory::llm
