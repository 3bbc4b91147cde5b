#include "gateway/internal/wire.h"

#include "llm/http_client.h"
#include "llm/redact.h"

namespace factory::gateway::internal {
namespace {

using nlohmann::json;

int64_t IntField(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return 0;
  return it->get<int64_t>();
}

std::string OpenAiType(int status) {
  switch (status) {
    case 401:
      return "invalid_request_error";
    case 402:
      return "insufficient_quota";
    case 429:
      return "rate_limit_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

std::string AnthropicType(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

ClientError Make(Protocol protocol, int status, std::string code, std::string message) {
  ClientError error;
  error.status = status;
  error.type = protocol == Protocol::kOpenAi ? OpenAiType(status) : AnthropicType(status);
  error.code = std::move(code);
  error.message = std::move(message);
  return error;
}

}  // namespace

std::string ErrorBody(Protocol protocol, const ClientError& error) {
  if (protocol == Protocol::kAnthropic) {
    return json{{"type", "error"}, {"error", {{"type", error.type}, {"message", error.message}}}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return json{{"error",
               {{"message", error.message},
                {"type", error.type},
                {"param", nullptr},
                {"code", error.code.empty() ? json(nullptr) : json(error.code)}}}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

ClientError Unauthenticated(Protocol protocol, std::string message) {
  return Make(protocol, 401, "invalid_api_key", std::move(message));
}

ClientError BadRequest(Protocol protocol, int status, std::string message) {
  std::string code;
  if (status == 404) code = "model_not_found";
  return Make(protocol, status, std::move(code), std::move(message));
}

ClientError FromCallError(Protocol protocol, const llm::CallError& error) {
  const std::string message = error.message;
  switch (error.code) {
    case ErrorCode::kInvalidArgument: {
      const int status =
          error.http_status == 413 || error.http_status == 422 ? error.http_status : 400;
      return Make(protocol, status, "", message);
    }
    case ErrorCode::kNotFound:
      return Make(protocol, 404, "model_not_found", message);
    case ErrorCode::kResourceExhausted:
      return Make(protocol, 402, "budget_exceeded", message);
    case ErrorCode::kDeadlineExceeded:
      return Make(protocol, 504, "timeout", message);
    case ErrorCode::kPermissionDenied:
      return Make(protocol, 502, "upstream_auth",
                  "the upstream provider refused the gateway's credentials: " + message);
    case ErrorCode::kFailedPrecondition:
      return Make(protocol, 503, "not_configured", message);
    case ErrorCode::kUnavailable: {
      ClientError out;
      if (error.http_status == 429) {
        out = Make(protocol, 429, "rate_limit_exceeded", message);
      } else if (error.http_status == 0 && error.retry_after_ms >= 0) {
        out = Make(protocol, 503, "unavailable", message);  // breakers open: come back later
      } else {
        out = Make(protocol, 502, "upstream_error", message);
      }
      if (error.retry_after_ms >= 0) out.retry_after_s = (error.retry_after_ms + 999) / 1000;
      return out;
    }
    default:
      return Make(protocol, 500, "internal_error", message);
  }
}

llm::CallError ClassifyUpstream(int status, const std::string& retry_after_header,
                                std::string_view body, const std::vector<std::string>& secrets,
                                int64_t now_ms) {
  llm::CallError error;
  error.http_status = status;
  if (status == 429 || status >= 500) {
    error.code = ErrorCode::kUnavailable;
  } else if (status == 401 || status == 403) {
    error.code = ErrorCode::kPermissionDenied;
  } else if (status == 404) {
    error.code = ErrorCode::kNotFound;
  } else if (status == 400 || status == 413 || status == 422) {
    error.code = ErrorCode::kInvalidArgument;
  } else {
    error.code = ErrorCode::kUnavailable;
  }
  error.retry_after_ms = llm::ParseRetryAfterMs(retry_after_header, now_ms);
  std::string detail;
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    auto it = parsed.find("error");
    if (it != parsed.end() && it->is_object()) {
      auto message = it->find("message");
      if (message != it->end() && message->is_string()) detail = message->get<std::string>();
    } else if (it != parsed.end() && it->is_string()) {
      detail = it->get<std::string>();
    }
  }
  if (detail.empty()) detail = std::string(body.substr(0, 300));
  error.message = llm::Redact("upstream HTTP " + std::to_string(status) + ": " + detail, secrets);
  return error;
}

llm::Usage OpenAiUsage(const json& usage) {
  llm::Usage out;
  if (!usage.is_object()) return out;
  out.input_tokens = IntField(usage, "prompt_tokens");
  out.output_tokens = IntField(usage, "completion_tokens");
  if (auto it = usage.find("prompt_tokens_details"); it != usage.end()) {
    out.cached_read_tokens = IntField(*it, "cached_tokens");
  }
  return out;
}

llm::Usage AnthropicUsage(const json& usage) {
  llm::Usage out;
  if (!usage.is_object()) return out;
  out.cached_read_tokens = IntField(usage, "cache_read_input_tokens");
  out.cache_write_tokens = IntField(usage, "cache_creation_input_tokens");
  out.input_tokens =
      IntField(usage, "input_tokens") + out.cached_read_tokens + out.cache_write_tokens;
  out.output_tokens = IntField(usage, "output_tokens");
  return out;
}

void AppendSseEvent(std::string& out, const llm::SseEvent& event) {
  if (!event.event.empty()) out.append("event: ").append(event.event).append("\n");
  size_t start = 0;
  while (true) {
    const size_t end = event.data.find('\n', start);
    out.append("data: ").append(event.data, start,
                                end == std::string::npos ? std::string::npos : end - start);
    out.push_back('\n');
    if (end == std::string::npos) break;
    start = end + 1;
  }
  out.push_back('\n');
}

}  // namespace factory::gateway::internal
