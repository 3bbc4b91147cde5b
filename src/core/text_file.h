#pragma once
// Whole-file writes of text the factory produces (task files, prompts, spec versions).

#include <string>
#include <string_view>

#include "core/result.h"

namespace factory {

// Writes `content`, redacted by ProcessRedactor() (core/redact.h), to `path`, truncating it:
// these files reach agents and their providers. Internal error naming the path on failure.
Status WriteTextFile(const std::string& path, std::string_view content);

}  // namespace factory
