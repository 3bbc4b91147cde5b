#pragma once
// Shared plumbing of the HTTP providers: key loading, error classification, timing.
// Internal to src/llm/.

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llm/http_client.h"
#include "llm/models_config.h"
#include "llm/types.h"

namespace factory::llm::internal {

// The key named by config.api_key_env from the process environment ("" when unset or unnamed).
std::string LoadApiKey(const ProviderConfig& config);

// Failure of a call with no usable HTTP response (libcurl error), redacted.
CallError TransportError(const ProviderConfig& config, const Error& error,
                         const std::vector<std::string>& secrets);

// Failure from a non-2xx HTTP response: status -> code, Retry-After -> retry_after_ms, the
// provider's error message (from {"error": {"message": ...}} when present), redacted.
CallError HttpError(const ProviderConfig& config, const HttpRequest& request,
                    const HttpResponse& response, const std::vector<std::string>& secrets);

// A 2xx answer that cannot be understood (bad JSON, missing fields, a cut stream): retryable.
CallError MalformedResponse(const ProviderConfig& config, const std::string& why,
                            const std::vector<std::string>& secrets);

// The provider refused to run (no key): kFailedPrecondition.
CallError NotConfigured(const ProviderConfig& config);

// Parses a JSON object from text; nullopt on any error. Never throws.
std::optional<nlohmann::json> ParseJson(std::string_view text);

// Parses a tool's argument/schema text into a JSON object; "" means {}.
std::optional<nlohmann::json> ParseObjectOrEmpty(std::string_view text);

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  int64_t ElapsedMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Integer field or 0, tolerant of null / missing / non-integer values.
int64_t IntOr0(const nlohmann::json& object, const char* key);
// String field or "", tolerant of null / missing / non-string values.
std::string StringOrEmpty(const nlohmann::json& object, const char* key);

// Sends a prepared model-list request and returns the `data[].id` values: OpenAI-compatible
// servers and Anthropic answer in the same shape. Errors are redacted of `secrets`.
CallResult<std::vector<std::string>> FetchModelIds(HttpClient& http, const ProviderConfig& config,
                                                   const HttpRequest& request,
                                                   const std::vector<std::string>& secrets);

}  // namespace factory::llm::internal
