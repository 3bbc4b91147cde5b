#include "llm/internal/provider_common.h"

#include <cmath>
#include <cstdlib>

#include "core/clock.h"
#include "llm/redact.h"

namespace factory::llm::internal {

std::string LoadApiKey(const ProviderConfig& config) {
  if (config.api_key_env.empty()) return "";
  const char* value = std::getenv(config.api_key_env.c_str());
  return value == nullptr ? "" : std::string(value);
}

CallError TransportError(const ProviderConfig& config, const Error& error,
                         const std::vector<std::string>& secrets) {
  ErrorCode code = error.code;
  if (code != ErrorCode::kDeadlineExceeded && code != ErrorCode::kInvalidArgument) {
    code = ErrorCode::kUnavailable;
  }
  return CallError{code, 0, -1, Redact(config.name + ": " + error.message, secrets)};
}

CallError HttpError(const ProviderConfig& config, const HttpRequest& request,
                    const HttpResponse& response, const std::vector<std::string>& secrets) {
  CallError error;
  error.http_status = response.status;
  const int status = response.status;
  if (status == 429 || status == 408 || status >= 500) {
    error.code = status == 408 ? ErrorCode::kDeadlineExceeded : ErrorCode::kUnavailable;
  } else if (status == 401 || status == 403) {
    error.code = ErrorCode::kPermissionDenied;
  } else if (status == 404) {
    error.code = ErrorCode::kNotFound;
  } else if (status >= 400) {
    error.code = ErrorCode::kInvalidArgument;
  } else {
    error.code = ErrorCode::kUnavailable;  // 1xx/3xx where a 2xx was expected
  }
  // OpenAI sends retry-after-ms as well; prefer the finer one.
  const std::string retry_after_ms = response.Header("retry-after-ms");
  if (!retry_after_ms.empty()) {
    char* end = nullptr;
    const double ms = std::strtod(retry_after_ms.c_str(), &end);
    if (end != retry_after_ms.c_str() && *end == '\0' && ms >= 0 && ms < 1e12) {
      error.retry_after_ms = static_cast<int64_t>(std::ceil(ms));
    }
  }
  if (error.retry_after_ms < 0) {
    error.retry_after_ms =
        ParseRetryAfterMs(response.Header("retry-after"), SystemClock().NowMillis());
  }
  std::string detail;
  if (auto body = ParseJson(response.body); body && body->is_object()) {
    const auto& err = body->contains("error") ? (*body)["error"] : *body;
    if (err.is_object()) {
      detail = StringOrEmpty(err, "message");
      const std::string type = StringOrEmpty(err, "type");
      if (!type.empty()) detail = type + (detail.empty() ? "" : ": " + detail);
    } else if (err.is_string()) {
      detail = err.get<std::string>();
    }
  }
  if (detail.empty()) {
    detail = response.body.substr(0, 300);
    if (response.body.size() > 300) detail += "...";
  }
  error.message = Redact(config.name + ": HTTP " + std::to_string(status) + " from " +
                             request.method + " " + request.url + ": " + detail,
                         secrets);
  return error;
}

CallError MalformedResponse(const ProviderConfig& config, const std::string& why,
                            const std::vector<std::string>& secrets) {
  return CallError{ErrorCode::kUnavailable, 200, -1,
                   Redact(config.name + ": unusable response (retryable): " + why, secrets)};
}

CallError NotConfigured(const ProviderConfig& config) {
  std::string reason = config.unavailable_reason;
  if (reason.empty()) reason = "environment variable " + config.api_key_env + " is not set";
  return CallError{ErrorCode::kFailedPrecondition, 0, -1,
                   config.name + ": provider not available: " + reason};
}

std::optional<nlohmann::json> ParseJson(std::string_view text) {
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

std::optional<nlohmann::json> ParseObjectOrEmpty(std::string_view text) {
  bool blank = true;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) blank = false;
  }
  if (blank) return nlohmann::json::object();
  auto value = ParseJson(text);
  if (!value || !value->is_object()) return std::nullopt;
  return value;
}

int64_t IntOr0(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return 0;
  return it->get<int64_t>();
}

std::string StringOrEmpty(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

CallResult<std::vector<std::string>> FetchModelIds(HttpClient& http, const ProviderConfig& config,
                                                   const HttpRequest& request,
                                                   const std::vector<std::string>& secrets) {
  auto result = http.Send(request);
  if (!result) return std::unexpected(TransportError(config, result.error(), secrets));
  if (result->status / 100 != 2) {
    return std::unexpected(HttpError(config, request, *result, secrets));
  }
  auto parsed = ParseJson(result->body);
  if (!parsed || !parsed->is_object() || !(*parsed)["data"].is_array()) {
    return std::unexpected(
        MalformedResponse(config, "model list is not the expected JSON", secrets));
  }
  std::vector<std::string> ids;
  for (const nlohmann::json& item : (*parsed)["data"]) ids.push_back(StringOrEmpty(item, "id"));
  return ids;
}

}  // namespace factory::llm::internal
