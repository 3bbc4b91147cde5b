// OpenAI-compatible Chat Completions, embeddings and model list.
// Wire format: POST {base_url}/chat/completions with
//   {"model", "messages": [{"role", "content", "tool_calls"?, "tool_call_id"?}],
//    "tools": [{"type": "function", "function": {"name", "description", "parameters"}}],
//    "temperature"?, "top_p"?, "stop"?, "tool_choice"?, "max_tokens"?, "stream"?,
//    "stream_options": {"include_usage": true}?}
// answered by {"choices": [{"message": {...}, "finish_reason"}], "usage": {"prompt_tokens",
// "completion_tokens", "prompt_tokens_details": {"cached_tokens"}}} or, streaming, by SSE chunks
// {"choices": [{"delta": {"content" | "tool_calls": [{"index", "id"?, "function": {"name"?,
// "arguments"}}]}, "finish_reason"}]}, a final usage-only chunk, and "data: [DONE]".

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "llm/internal/provider_common.h"
#include "llm/provider.h"
#include "llm/sse.h"

namespace factory::llm {
namespace {

using internal::IntOr0;
using internal::StringOrEmpty;
using nlohmann::json;

CallResult<json> BuildChatBody(const ChatRequest& request, bool stream) {
  json body;
  body["model"] = request.model;
  json messages = json::array();
  for (const Message& message : request.messages) {
    json entry;
    entry["role"] = std::string(RoleName(message.role));
    switch (message.role) {
      case Role::kSystem:
      case Role::kUser:
        entry["content"] = message.content;
        break;
      case Role::kAssistant: {
        entry["content"] = message.content.empty() && !message.tool_calls.empty()
                               ? json(nullptr)
                               : json(message.content);
        if (!message.tool_calls.empty()) {
          json calls = json::array();
          for (const ToolCall& call : message.tool_calls) {
            calls.push_back({{"id", call.id},
                             {"type", "function"},
                             {"function",
                              {{"name", call.name},
                               {"arguments", call.arguments_json.empty() ? std::string("{}")
                                                                         : call.arguments_json}}}});
          }
          entry["tool_calls"] = std::move(calls);
        }
        break;
      }
      case Role::kTool:
        entry["tool_call_id"] = message.tool_call_id;
        entry["content"] = message.content;
        break;
    }
    messages.push_back(std::move(entry));
  }
  body["messages"] = std::move(messages);
  if (!request.tools.empty()) {
    json tools = json::array();
    for (const ToolSpec& tool : request.tools) {
      auto schema = internal::ParseObjectOrEmpty(tool.parameters_json_schema);
      if (!schema) {
        return MakeCallError(ErrorCode::kInvalidArgument,
                             "tool '" + tool.name + "': parameters schema is not a JSON object");
      }
      if (schema->empty()) *schema = {{"type", "object"}, {"properties", json::object()}};
      json function = {{"name", tool.name}, {"parameters", *schema}};
      if (!tool.description.empty()) function["description"] = tool.description;
      tools.push_back({{"type", "function"}, {"function", std::move(function)}});
    }
    body["tools"] = std::move(tools);
  }
  if (request.temperature) body["temperature"] = *request.temperature;
  if (request.top_p) body["top_p"] = *request.top_p;
  if (!request.stop.empty()) body["stop"] = request.stop;
  if (!request.tool_choice.empty()) {
    const std::string& choice = request.tool_choice;
    if (choice == "auto" || choice == "none" || choice == "required") {
      body["tool_choice"] = choice;
    } else {
      body["tool_choice"] = {{"type", "function"}, {"function", {{"name", choice}}}};
    }
  }
  if (request.max_tokens) body["max_tokens"] = *request.max_tokens;
  if (stream) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
  }
  return body;
}

Usage ParseUsage(const json& usage) {
  Usage out;
  if (!usage.is_object()) return out;
  out.input_tokens = IntOr0(usage, "prompt_tokens");
  out.output_tokens = IntOr0(usage, "completion_tokens");
  if (auto it = usage.find("prompt_tokens_details"); it != usage.end()) {
    out.cached_read_tokens = IntOr0(*it, "cached_tokens");
  }
  return out;
}

std::string ContentText(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (content.is_array()) {  // some servers answer with content parts
    for (const auto& part : content) text += StringOrEmpty(part, "text");
  }
  return text;
}

// Assembles a streamed answer from its chunks.
class StreamAssembler {
 public:
  // Returns an error message for a chunk that cannot be understood or reports an error.
  std::optional<std::string> OnData(const std::string& data, const StreamCallback& on_delta,
                                    ChatResponse& response) {
    meter_.CountEvent();
    if (data == "[DONE]") {
      done_ = true;
      return std::nullopt;
    }
    auto chunk = internal::ParseJson(data);
    if (!chunk || !chunk->is_object()) return "malformed stream chunk: " + data.substr(0, 200);
    if (auto err = chunk->find("error"); err != chunk->end()) {
      return "error event in stream: " +
             (err->is_object() ? StringOrEmpty(*err, "message") : err->dump());
    }
    if (std::string model = StringOrEmpty(*chunk, "model"); !model.empty()) {
      response.model = model;
    }
    if (auto usage = chunk->find("usage"); usage != chunk->end() && usage->is_object()) {
      response.usage = ParseUsage(*usage);
      saw_usage_ = true;
    }
    auto choices = chunk->find("choices");
    if (choices == chunk->end() || !choices->is_array() || choices->empty()) return std::nullopt;
    const json& choice = (*choices)[0];
    if (auto reason = choice.find("finish_reason"); reason != choice.end() && reason->is_string()) {
      response.finish_reason = reason->get<std::string>();
      saw_finish_ = true;
    }
    auto delta_it = choice.find("delta");
    if (delta_it == choice.end() || !delta_it->is_object()) return std::nullopt;
    const json& delta = *delta_it;
    if (auto content = delta.find("content"); content != delta.end()) {
      std::string text = ContentText(*content);
      if (!text.empty()) {
        meter_.CountContent();
        response.text += text;
        if (on_delta) on_delta(StreamDelta{StreamDelta::Kind::kText, text, 0, "", "", ""});
      }
    }
    if (auto calls = delta.find("tool_calls"); calls != delta.end() && calls->is_array()) {
      for (const json& call : *calls) {
        meter_.CountContent();
        const int wire_index = static_cast<int>(IntOr0(call, "index"));
        auto [it, inserted] =
            index_of_.try_emplace(wire_index, static_cast<int>(response.tool_calls.size()));
        if (inserted) response.tool_calls.emplace_back();
        ToolCall& target = response.tool_calls[it->second];
        StreamDelta out;
        out.kind = StreamDelta::Kind::kToolCall;
        out.tool_index = it->second;
        if (std::string id = StringOrEmpty(call, "id"); !id.empty()) {
          target.id = id;
          out.tool_call_id = id;
        }
        if (auto function = call.find("function"); function != call.end()) {
          if (std::string name = StringOrEmpty(*function, "name"); !name.empty()) {
            target.name += name;
            out.tool_name = name;
          }
          std::string fragment = StringOrEmpty(*function, "arguments");
          target.arguments_json += fragment;
          out.arguments_fragment = fragment;
        }
        if (on_delta) on_delta(out);
      }
    }
    return std::nullopt;
  }

  // Complete when [DONE] arrived, or when both the finish reason and the usage did (servers that
  // omit [DONE]).
  bool complete() const { return done_ || (saw_finish_ && saw_usage_); }
  bool saw_finish() const { return saw_finish_; }

  // What a stream that broke off is billed for (see StreamMeter).
  Usage BilledSoFar(const ChatResponse& response) const {
    return meter_.BilledSoFar(response.usage);
  }

 private:
  std::map<int, int> index_of_;  // wire index -> position in tool_calls
  bool done_ = false;
  bool saw_finish_ = false;
  bool saw_usage_ = false;
  StreamMeter meter_;  // content: deltas carrying text or a tool call fragment
};

class OpenAiProvider final : public Provider {
 public:
  OpenAiProvider(const ProviderConfig& config, HttpClient* http)
      : config_(config),
        http_(http != nullptr ? http : &HttpClient::Shared()),
        api_key_(internal::LoadApiKey(config)) {
    if (!api_key_.empty()) secrets_.push_back(api_key_);
  }

  const std::string& name() const override { return config_.name; }

  CallResult<ChatResponse> Chat(const ChatRequest& request) override {
    return DoChat(request, nullptr);
  }

  CallResult<ChatResponse> ChatStream(const ChatRequest& request,
                                      const StreamCallback& on_delta) override {
    return DoChat(request, &on_delta);
  }

  CallResult<EmbeddingResponse> Embed(const EmbeddingRequest& request) override {
    if (!Usable()) return std::unexpected(internal::NotConfigured(config_));
    json body = {{"model", request.model}, {"input", request.inputs}};
    HttpRequest http = MakeRequest("POST", "/embeddings", body.dump());
    internal::Stopwatch watch;
    auto result = http_->Send(http);
    if (!result)
      return std::unexpected(internal::TransportError(config_, result.error(), secrets_));
    if (result->status / 100 != 2) {
      return std::unexpected(internal::HttpError(config_, http, *result, secrets_));
    }
    auto parsed = internal::ParseJson(result->body);
    if (!parsed || !parsed->is_object() || !parsed->contains("data") ||
        !(*parsed)["data"].is_array()) {
      return std::unexpected(internal::MalformedResponse(
          config_, "embeddings body is not the expected JSON", secrets_));
    }
    EmbeddingResponse response;
    response.embeddings.resize(request.inputs.size());
    for (const json& item : (*parsed)["data"]) {
      const int64_t index = IntOr0(item, "index");
      auto vector = item.find("embedding");
      if (index < 0 || index >= static_cast<int64_t>(response.embeddings.size()) ||
          vector == item.end() || !vector->is_array()) {
        return std::unexpected(
            internal::MalformedResponse(config_, "bad embedding entry", secrets_));
      }
      auto& out = response.embeddings[static_cast<size_t>(index)];
      for (const json& number : *vector) {
        if (!number.is_number()) {
          return std::unexpected(
              internal::MalformedResponse(config_, "non-numeric embedding", secrets_));
        }
        out.push_back(number.get<float>());
      }
    }
    response.usage.input_tokens = IntOr0((*parsed).value("usage", json::object()), "prompt_tokens");
    response.provider = config_.name;
    response.model = StringOrEmpty(*parsed, "model");
    if (response.model.empty()) response.model = request.model;
    response.latency_ms = watch.ElapsedMs();
    response.http_status = result->status;
    return response;
  }

  CallResult<std::vector<std::string>> ListModels() override {
    if (!Usable()) return std::unexpected(internal::NotConfigured(config_));
    HttpRequest http = MakeRequest("GET", "/models", "");
    http.total_timeout_ms = std::min<int64_t>(config_.timeout_ms, 15'000);
    return internal::FetchModelIds(*http_, config_, http, secrets_);
  }

 private:
  bool Usable() const {
    return config_.api_key_optional || config_.api_key_env.empty() || !api_key_.empty();
  }

  HttpRequest MakeRequest(const std::string& method, const std::string& path, std::string body) {
    HttpRequest http;
    http.method = method;
    http.url = config_.base_url + path;
    http.headers.emplace_back("Content-Type", "application/json");
    if (!api_key_.empty()) http.headers.emplace_back("Authorization", "Bearer " + api_key_);
    http.body = std::move(body);
    http.connect_timeout_ms = config_.connect_timeout_ms;
    http.total_timeout_ms = config_.timeout_ms;
    return http;
  }

  CallResult<ChatResponse> DoChat(const ChatRequest& request, const StreamCallback* on_delta) {
    if (!Usable()) return std::unexpected(internal::NotConfigured(config_));
    const bool stream = on_delta != nullptr;
    auto body = BuildChatBody(request, stream);
    if (!body) return std::unexpected(body.error());
    HttpRequest http = MakeRequest("POST", "/chat/completions", body->dump());
    ChatResponse response;
    response.provider = config_.name;
    response.model = request.model;
    internal::Stopwatch watch;

    if (!stream) {
      auto result = http_->Send(http);
      if (!result) {
        return std::unexpected(internal::TransportError(config_, result.error(), secrets_));
      }
      if (result->status / 100 != 2) {
        return std::unexpected(internal::HttpError(config_, http, *result, secrets_));
      }
      auto parsed = internal::ParseJson(result->body);
      if (!parsed || !parsed->is_object()) {
        return std::unexpected(internal::MalformedResponse(
            config_, "body is not JSON: " + result->body.substr(0, 200), secrets_));
      }
      auto choices = parsed->find("choices");
      if (choices == parsed->end() || !choices->is_array() || choices->empty() ||
          !(*choices)[0].is_object() || !(*choices)[0].contains("message")) {
        return std::unexpected(
            internal::MalformedResponse(config_, "no choices[0].message in the answer", secrets_));
      }
      const json& choice = (*choices)[0];
      const json& message = choice["message"];
      if (message.contains("content")) response.text = ContentText(message["content"]);
      if (auto calls = message.find("tool_calls"); calls != message.end() && calls->is_array()) {
        for (const json& call : *calls) {
          ToolCall out;
          out.id = StringOrEmpty(call, "id");
          if (auto function = call.find("function"); function != call.end()) {
            out.name = StringOrEmpty(*function, "name");
            auto arguments = function->find("arguments");
            if (arguments != function->end()) {
              out.arguments_json =
                  arguments->is_string() ? arguments->get<std::string>() : arguments->dump();
            }
          }
          response.tool_calls.push_back(std::move(out));
        }
      }
      response.finish_reason = StringOrEmpty(choice, "finish_reason");
      response.usage = ParseUsage(parsed->value("usage", json::object()));
      if (std::string model = StringOrEmpty(*parsed, "model"); !model.empty()) {
        response.model = model;
      }
      response.latency_ms = watch.ElapsedMs();
      response.http_status = result->status;
      return response;
    }

    http.idle_timeout_ms = config_.timeout_ms;
    http.total_timeout_ms = 0;  // a long answer may stream for longer than the idle limit
    http.headers.emplace_back("Accept", "text/event-stream");
    SseParser parser;
    StreamAssembler assembler;
    std::optional<std::string> stream_error;
    auto result = http_->Send(http, [&](std::string_view chunk) {
      parser.Feed(chunk, [&](const SseEvent& event) {
        if (stream_error) return;
        stream_error = assembler.OnData(event.data, *on_delta, response);
      });
      return !stream_error.has_value();
    });
    // A stream that broke off after it began carries what it was billed for.
    auto broke_off = [&](CallError error) {
      error.usage = assembler.BilledSoFar(response);
      return std::unexpected(std::move(error));
    };
    if (stream_error)
      return broke_off(internal::MalformedResponse(config_, *stream_error, secrets_));
    if (!result) return broke_off(internal::TransportError(config_, result.error(), secrets_));
    if (result->status / 100 != 2) {
      return std::unexpected(internal::HttpError(config_, http, *result, secrets_));
    }
    if (!assembler.complete()) {
      return broke_off(
          internal::MalformedResponse(config_, "stream ended before [DONE] (truncated)", secrets_));
    }
    response.latency_ms = watch.ElapsedMs();
    response.http_status = result->status;
    return response;
  }

  const ProviderConfig config_;
  HttpClient* const http_;
  const std::string api_key_;
  std::vector<std::string> secrets_;
};

}  // namespace

std::unique_ptr<Provider> MakeOpenAiProvider(const ProviderConfig& config, HttpClient* http) {
  return std::make_unique<OpenAiProvider>(config, http);
}

std::unique_ptr<Provider> MakeProvider(const ProviderConfig& config, HttpClient* http) {
  if (config.kind == ProviderKind::kAnthropic) return MakeAnthropicProvider(config, http);
  return MakeOpenAiProvider(config, http);
}

}  // namespace factory::llm
