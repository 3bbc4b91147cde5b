#pragma once
// Keeping API keys out of errors, logs, events and transcripts. Every message a provider builds
// from anything it did not write itself (an upstream error body, a libcurl error, a URL) goes
// through Redact() with the provider's secrets before it leaves the provider. The redaction
// itself is core/redact.h's; this is its form for a list of secrets held by the caller.

#include <string>
#include <string_view>
#include <vector>

namespace factory::llm {

inline constexpr std::string_view kRedacted = "[REDACTED]";

// Returns `text` with every occurrence of every secret of `secrets` replaced by "[REDACTED]",
// then redacted by ProcessRedactor() (whose markers name the variable). Secrets of `secrets`
// shorter than 4 characters are ignored (redacting them would garble the text without
// protecting anything real). Thread-safe.
std::string Redact(std::string_view text, const std::vector<std::string>& secrets);

}  // namespace factory::llm
