#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <utility>

namespace factory {
namespace {

constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 7> kLevels = {{
    {"trace", spdlog::level::trace},
    {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},
    {"error", spdlog::level::err},
    {"critical", spdlog::level::critical},
    {"off", spdlog::level::off},
}};

const spdlog::level::level_enum* FindLevel(std::string_view name) {
  for (const auto& [level_name, level] : kLevels) {
    if (level_name == name) return &level;
  }
  return nullptr;
}

}  // namespace

bool IsValidLogLevel(std::string_view name) { return FindLevel(name) != nullptr; }

Status InitLogging(std::string_view level) {
  std::string source = "--log-level";
  std::string name(level);
  if (name.empty()) {
    const char* env = std::getenv("FACTORY_LOG");
    if (env != nullptr && *env != '\0') {
      name = env;
      source = "FACTORY_LOG";
    } else {
      name = kDefaultLogLevel;
    }
  }

  auto logger = spdlog::get("factory");  // InitLogging may be called again (tests)
  if (logger == nullptr) logger = spdlog::stderr_color_mt("factory");
  logger->set_pattern("[%Y-%m-%dT%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(std::move(logger));

  const auto* found = FindLevel(name);
  if (found == nullptr) {
    spdlog::set_level(*FindLevel(kDefaultLogLevel));
    return InvalidArgument(source + ": unknown log level '" + name +
                           "' (expected trace, debug, info, warn, error, critical or off)");
  }
  spdlog::set_level(*found);
  return Ok();
}

}  // namespace factory
