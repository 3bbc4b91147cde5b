#include "core/log.h"

#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "core/redact.h"

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

// Passes every message through ProcessRedactor() before the wrapped sink formats it: a log
// line quoting a child's output or an upstream error never prints a known secret.
class RedactingSink final : public spdlog::sinks::sink {
 public:
  explicit RedactingSink(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}

  void log(const spdlog::details::log_msg& msg) override {
    const std::string payload =
        ProcessRedactor().Redact(std::string_view(msg.payload.data(), msg.payload.size()));
    spdlog::details::log_msg redacted = msg;
    redacted.payload = spdlog::string_view_t(payload.data(), payload.size());
    inner_->log(redacted);
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

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
  if (logger == nullptr) {
    logger = std::make_shared<spdlog::logger>(
        "factory",
        std::make_shared<RedactingSink>(std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
    spdlog::register_logger(logger);
  }
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
