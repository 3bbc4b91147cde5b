#pragma once
// Checks of request fields. Errors are InvalidArgument whose message starts with the field's
// name, as the request structs spell it (service.h: ErrorField).

#include <cstddef>
#include <string_view>

#include "core/result.h"

namespace factory::service::internal {

// Non-empty (unless allow_empty), at most max_bytes, valid UTF-8, no NUL bytes.
Status ValidateText(std::string_view field, std::string_view text, size_t max_bytes,
                    bool allow_empty = false);
// 1..64 characters of [A-Za-z0-9._-].
Status ValidateRunId(std::string_view field, std::string_view run_id);
// min <= value <= max.
Status ValidateRange(std::string_view field, int value, int min, int max);

}  // namespace factory::service::internal
