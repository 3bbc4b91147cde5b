#pragma once
// The two client-facing wire formats of the gateway: OpenAI's and Anthropic's error bodies,
// the HTTP status each failure maps to, usage parsing and SSE framing. Internal to gateway/.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "llm/sse.h"
#include "llm/types.h"

namespace factory::gateway::internal {

enum class Protocol { kOpenAi, kAnthropic };

// An error as the client sees it.
struct ClientError {
  int status = 500;
  std::string type;            // OpenAI error.type / Anthropic error.type
  std::string code;            // OpenAI error.code ("" = null); Anthropic has none
  std::string message;         // never holds a key: callers pass redacted text
  int64_t retry_after_s = -1;  // a Retry-After header when >= 0
};

// OpenAI: {"error": {"message", "type", "param": null, "code"}};
// Anthropic: {"type": "error", "error": {"type", "message"}}.
std::string ErrorBody(Protocol protocol, const ClientError& error);

// The protocol's error for a bad or missing key (401).
ClientError Unauthenticated(Protocol protocol, std::string message);
// A request the gateway itself refuses: 400 (bad JSON, a missing field), 404 (unknown model or
// path), 413 (too large).
ClientError BadRequest(Protocol protocol, int status, std::string message);

// Maps the router's failure of a routed call to the client's status:
//   kInvalidArgument (upstream 400/413/422)  -> the upstream's status (400 otherwise)
//   kNotFound                                -> 404
//   kResourceExhausted (a budget or a pause) -> 402: OpenAI "insufficient_quota" with code
//       "budget_exceeded", Anthropic "billing_error". Not 429, which clients retry: a budget
//       does not come back by itself within a retry's wait.
//   kUnavailable after a provider 429        -> 429 with Retry-After when known
//   kUnavailable otherwise (5xx, connection, malformed, breakers open) -> 502 (503 with
//       Retry-After when only open breakers stood in the way)
//   kDeadlineExceeded                        -> 504
//   kPermissionDenied (upstream 401/403)     -> 502: the client's key was fine; the gateway's
//       upstream credentials were not
//   kFailedPrecondition (no provider configured) -> 503
ClientError FromCallError(Protocol protocol, const llm::CallError& error);

// Classifies an upstream non-2xx answer like the providers do (llm/provider.h): 429 and 5xx ->
// kUnavailable (with Retry-After), 400/413/422 -> kInvalidArgument, 401/403 ->
// kPermissionDenied, 404 -> kNotFound. The message is the upstream's own error message,
// redacted of `secrets`.
llm::CallError ClassifyUpstream(int status, const std::string& retry_after_header,
                                std::string_view body, const std::vector<std::string>& secrets,
                                int64_t now_ms);

// Usage objects, normalised as llm::Usage (input includes cached and cache-written tokens).
llm::Usage OpenAiUsage(const nlohmann::json& usage);
llm::Usage AnthropicUsage(const nlohmann::json& usage);

// One event in SSE framing ("event: X\n" when named, one "data: " line per line of data, then
// a blank line), appended to `out`.
void AppendSseEvent(std::string& out, const llm::SseEvent& event);

}  // namespace factory::gateway::internal
