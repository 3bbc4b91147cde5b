#pragma once
// Process-wide logging setup: spdlog's default logger writes to stderr, so stdout stays clean
// for command output (ids, JSON, tables).

#include <string>
#include <string_view>

#include "core/result.h"

namespace factory {

// The level used when neither a flag nor FACTORY_LOG says otherwise.
inline constexpr char kDefaultLogLevel[] = "warn";

// Configures the default logger: stderr, "[time] [level] message", the given level, every
// message redacted by ProcessRedactor() (core/redact.h). An empty
// level means the env var FACTORY_LOG, or kDefaultLogLevel when that is unset or empty.
// Accepted names: trace, debug, info, warn, error, critical, off.
// InvalidArgument naming the level (and where it came from) when it is unknown; the logger is
// then left at kDefaultLogLevel. Call once at start-up, before other threads log.
Status InitLogging(std::string_view level = "");

// True when name is one of the accepted level names.
bool IsValidLogLevel(std::string_view name);

}  // namespace factory
