#pragma once
// Provider-neutral value types of the model layer. Nothing here knows a wire format: the OpenAI
// and Anthropic providers translate to and from these types, the router and the ledger only ever
// see these. All types are plain values (copyable, no ownership of resources).

#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace factory::llm {

enum class Role { kSystem, kUser, kAssistant, kTool };

std::string_view RoleName(Role role);  // "system", "user", "assistant", "tool"

// A tool invocation requested by the model. arguments_json is the raw JSON object text as the
// model produced it (it may be invalid JSON; callers validate before use).
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments_json;

  friend bool operator==(const ToolCall&, const ToolCall&) = default;
};

// One transcript entry.
//  - kSystem / kUser: `content` is the text.
//  - kAssistant: `content` is the text (may be empty) and `tool_calls` what the model asked for.
//  - kTool: `content` is the tool's output for the call named by `tool_call_id`.
struct Message {
  Role role = Role::kUser;
  std::string content;
  std::vector<ToolCall> tool_calls;  // kAssistant only
  std::string tool_call_id;          // kTool only

  static Message System(std::string text) { return {Role::kSystem, std::move(text), {}, {}}; }
  static Message User(std::string text) { return {Role::kUser, std::move(text), {}, {}}; }
  static Message Assistant(std::string text, std::vector<ToolCall> calls = {}) {
    return {Role::kAssistant, std::move(text), std::move(calls), {}};
  }
  static Message ToolResult(std::string call_id, std::string output) {
    return {Role::kTool, std::move(output), {}, std::move(call_id)};
  }
  friend bool operator==(const Message&, const Message&) = default;
};

// A tool the model may call. parameters_json_schema is a JSON Schema object as text
// ("{}" or empty means "no parameters").
struct ToolSpec {
  std::string name;
  std::string description;
  std::string parameters_json_schema;

  friend bool operator==(const ToolSpec&, const ToolSpec&) = default;
};

struct ChatRequest {
  // The provider's model id (e.g. "gpt-4.1-mini"). The router fills it from the deployment;
  // callers of the router leave it empty.
  std::string model;
  std::vector<Message> messages;
  std::vector<ToolSpec> tools;
  std::optional<double> temperature;  // unset: the provider's default
  std::optional<int> max_tokens;      // unset: the model's max_output_tokens (router) or 4096
  bool stream = false;                // informative; ChatStream() streams regardless
  // Ask the provider to cache the stable prefix (system prompt and tools) across calls, as a tool
  // loop resends it every turn. Anthropic: cache_control breakpoints on the system prompt and the
  // last tool. OpenAI caches prefixes automatically; the flag changes nothing there.
  bool cache_prompt = false;
  std::optional<double> top_p;
  std::vector<std::string> stop;  // stop sequences (Anthropic: stop_sequences)
  // "" (provider default), "auto", "none", "required" (must call some tool), or a tool name (must
  // call that tool).
  std::string tool_choice;

  friend bool operator==(const ChatRequest&, const ChatRequest&) = default;
};

// Token counts of one call, normalised across providers:
//  - input_tokens counts ALL prompt tokens, including those read from or written to a cache
//    (OpenAI's prompt_tokens; Anthropic's input_tokens + cache_read + cache_creation);
//  - cached_read_tokens and cache_write_tokens are subsets of input_tokens.
struct Usage {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_read_tokens = 0;
  int64_t cache_write_tokens = 0;

  int64_t total_tokens() const { return input_tokens + output_tokens; }
  bool empty() const { return *this == Usage{}; }
  Usage& operator+=(const Usage& other) {
    input_tokens += other.input_tokens;
    output_tokens += other.output_tokens;
    cached_read_tokens += other.cached_read_tokens;
    cache_write_tokens += other.cache_write_tokens;
    return *this;
  }
  friend bool operator==(const Usage&, const Usage&) = default;
};

// Counts a streamed answer's events so that one that breaks off (an error event, a lost
// connection, a truncation, a client that left) is billed for what it used (CallError::usage):
// nothing before the first event; after it, the usage reported so far with at least one output
// token per content event (providers stream about a token per event). An input not reported yet
// (OpenAI reports usage only at the end) stays 0: the router puts its prompt estimate there.
class StreamMeter {
 public:
  void CountEvent() { ++events_; }
  void CountContent() { ++content_events_; }
  Usage BilledSoFar(const Usage& reported) const {
    if (events_ == 0) return {};
    Usage billed = reported;
    if (billed.output_tokens < content_events_) billed.output_tokens = content_events_;
    return billed;
  }

 private:
  int64_t events_ = 0;          // events seen
  int64_t content_events_ = 0;  // of them, those carrying generated text or tool input
};

struct ChatResponse {
  std::string text;
  std::vector<ToolCall> tool_calls;
  // Normalised: "stop", "tool_calls", "length", "content_filter", or the provider's own value
  // when it has no neutral equivalent.
  std::string finish_reason;
  Usage usage;
  std::string provider;  // configured provider name (e.g. "openai")
  std::string model;     // model id the provider reports having used
  int64_t latency_ms = 0;
  int http_status = 0;

  // Filled by the Router (left at their defaults by a Provider).
  std::string alias;       // alias the call was routed through ("" when called by model name)
  std::string model_name;  // configured model name (key under `models:` in models.yaml)
  double cost_usd = 0;     // usage x the model's prices; 0 on a cache hit
  bool cache_hit = false;
  int retries = 0;  // attempts beyond the first
};

// One increment of a streamed answer. Text deltas carry `text`; tool-call deltas carry the
// index of the call within the response, and the id/name on the first delta of that call and
// successive fragments of its arguments JSON after.
struct StreamDelta {
  enum class Kind { kText, kToolCall };
  Kind kind = Kind::kText;
  std::string text;
  int tool_index = 0;
  std::string tool_call_id;
  std::string tool_name;
  std::string arguments_fragment;
};

// Called on the calling thread, in order, as deltas arrive. Must not throw.
using StreamCallback = std::function<void(const StreamDelta&)>;

struct EmbeddingRequest {
  std::string model;  // filled by the router, like ChatRequest::model
  std::vector<std::string> inputs;
};

struct EmbeddingResponse {
  std::vector<std::vector<float>> embeddings;  // one per input, in input order
  Usage usage;                                 // input_tokens only
  std::string provider;
  std::string model;
  int64_t latency_ms = 0;
  int http_status = 0;
  std::string model_name;  // filled by the Router
  double cost_usd = 0;     // filled by the Router
};

// The failure of a model call, richer than core Error so the router can decide how to retry and
// the gateway can answer with the right status.
//   code: kUnavailable (retry: 429, 5xx, connection errors, malformed or truncated answers),
//         kDeadlineExceeded (timeout; retry), kInvalidArgument (400/413/422: the request is bad,
//         do not retry anywhere), kPermissionDenied (401/403: this provider's key is wrong; try
//         another provider, not this one again), kNotFound (404: model unknown here),
//         kFailedPrecondition (provider not configured / not available),
//         kResourceExhausted (a budget refused the call; never returned for a provider 429).
// `message` never contains an API key (it has gone through Redact()).
struct CallError {
  ErrorCode code = ErrorCode::kUnavailable;
  int http_status = 0;          // 0 when no HTTP response was received
  int64_t retry_after_ms = -1;  // from a Retry-After header; -1 when absent
  std::string message;
  // What the failed attempt is billed for: nonzero when the provider had started answering (a
  // stream cut short by the client, an error event or a truncation: the prompt was read and
  // some output produced; see StreamMeter); zero when the request was refused. The router
  // prices it and charges it to the call's record and budget.
  Usage usage;

  // True when trying the same call again later can succeed.
  bool retryable() const {
    return code == ErrorCode::kUnavailable || code == ErrorCode::kDeadlineExceeded;
  }
  // True when another deployment (another provider or model) may succeed where this failed.
  bool fallback_allowed() const {
    return code != ErrorCode::kInvalidArgument && code != ErrorCode::kResourceExhausted;
  }
  Error ToError() const { return Error{code, message}; }
  std::string ToString() const;
};

template <typename T>
using CallResult = std::expected<T, CallError>;

inline std::unexpected<CallError> MakeCallError(ErrorCode code, std::string message,
                                                int http_status = 0, int64_t retry_after_ms = -1) {
  return std::unexpected(CallError{code, http_status, retry_after_ms, std::move(message)});
}

}  // namespace factory::llm
