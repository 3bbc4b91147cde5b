// Anthropic Messages API.
// Wire format: POST {base_url}/v1/messages, headers x-api-key and anthropic-version, body
//   {"model", "max_tokens", "system"?, "messages": [{"role": "user"|"assistant", "content": text
//    or blocks: text / tool_use {id, name, input} / tool_result {tool_use_id, content}}],
//    "tools": [{"name", "description", "input_schema"}], "temperature"?, "top_p"?,
//    "stop_sequences"?, "tool_choice"?, "stream"?}
// answered by {"content": [blocks], "stop_reason", "model", "usage": {"input_tokens",
// "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}} or, streaming, by
// SSE events message_start, content_block_start, content_block_delta (text_delta,
// input_json_delta), content_block_stop, message_delta (stop_reason, usage), message_stop, ping,
// error.

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

constexpr const char* kAnthropicVersion = "2023-06-01";
constexpr int kDefaultMaxTokens = 4096;

std::string NeutralStopReason(const std::string& reason) {
  if (reason == "end_turn" || reason == "stop_sequence") return "stop";
  if (reason == "tool_use") return "tool_calls";
  if (reason == "max_tokens") return "length";
  if (reason == "refusal") return "content_filter";
  return reason;
}

CallResult<json> BuildBody(const ChatRequest& request, bool stream) {
  json body;
  body["model"] = request.model;
  body["max_tokens"] = request.max_tokens.value_or(kDefaultMaxTokens);
  std::string system;
  json messages = json::array();
  for (const Message& message : request.messages) {
    switch (message.role) {
      case Role::kSystem:
        if (!system.empty()) system += "\n\n";
        system += message.content;
        break;
      case Role::kUser:
        messages.push_back({{"role", "user"}, {"content", message.content}});
        break;
      case Role::kAssistant: {
        json blocks = json::array();
        if (!message.content.empty()) {
          blocks.push_back({{"type", "text"}, {"text", message.content}});
        }
        for (const ToolCall& call : message.tool_calls) {
          auto input = internal::ParseObjectOrEmpty(call.arguments_json);
          if (!input) {
            return MakeCallError(ErrorCode::kInvalidArgument,
                                 "tool call '" + call.id + "': arguments are not a JSON object");
          }
          blocks.push_back(
              {{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", *input}});
        }
        if (blocks.empty()) blocks.push_back({{"type", "text"}, {"text", ""}});
        messages.push_back({{"role", "assistant"}, {"content", std::move(blocks)}});
        break;
      }
      case Role::kTool: {
        json block = {{"type", "tool_result"},
                      {"tool_use_id", message.tool_call_id},
                      {"content", message.content}};
        // Results of one turn's tool calls travel together in one user message.
        if (!messages.empty() && messages.back()["role"] == "user" &&
            messages.back()["content"].is_array() && !messages.back()["content"].empty() &&
            messages.back()["content"].back().value("type", "") == "tool_result") {
          messages.back()["content"].push_back(std::move(block));
        } else {
          messages.push_back({{"role", "user"}, {"content", json::array({std::move(block)})}});
        }
        break;
      }
    }
  }
  if (!system.empty()) {
    if (request.cache_prompt) {
      body["system"] = json::array(
          {{{"type", "text"}, {"text", system}, {"cache_control", {{"type", "ephemeral"}}}}});
    } else {
      body["system"] = system;
    }
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
      json entry = {{"name", tool.name}, {"input_schema", *schema}};
      if (!tool.description.empty()) entry["description"] = tool.description;
      tools.push_back(std::move(entry));
    }
    if (request.cache_prompt) tools.back()["cache_control"] = {{"type", "ephemeral"}};
    body["tools"] = std::move(tools);
  }
  if (request.temperature) body["temperature"] = *request.temperature;
  if (request.top_p) body["top_p"] = *request.top_p;
  if (!request.stop.empty()) body["stop_sequences"] = request.stop;
  if (!request.tool_choice.empty()) {
    const std::string& choice = request.tool_choice;
    if (choice == "none") {
      body["tool_choice"] = {{"type", "none"}};
    } else if (choice == "auto") {
      body["tool_choice"] = {{"type", "auto"}};
    } else if (choice == "required") {
      body["tool_choice"] = {{"type", "any"}};
    } else {
      body["tool_choice"] = {{"type", "tool"}, {"name", choice}};
    }
  }
  if (stream) body["stream"] = true;
  return body;
}

// Updates usage from an Anthropic usage object; fields absent from `usage` keep their value
// (message_delta repeats only some of them). Raw values are kept apart and combined by Finish.
struct RawUsage {
  int64_t input = 0;
  int64_t output = 0;
  int64_t cache_read = 0;
  int64_t cache_write = 0;

  void Update(const json& usage) {
    if (!usage.is_object()) return;
    auto take = [&](const char* key, int64_t& out) {
      if (auto it = usage.find(key); it != usage.end() && it->is_number()) out = it->get<int64_t>();
    };
    take("input_tokens", input);
    take("output_tokens", output);
    take("cache_read_input_tokens", cache_read);
    take("cache_creation_input_tokens", cache_write);
  }
  Usage ToUsage() const {
    return Usage{input + cache_read + cache_write, output, cache_read, cache_write};
  }
};

class StreamAssembler {
 public:
  std::optional<CallError> OnEvent(const SseEvent& event, const StreamCallback& on_delta,
                                   ChatResponse& response) {
    auto data = internal::ParseJson(event.data);
    if (!data || !data->is_object()) {
      return CallError{ErrorCode::kUnavailable, 200, -1,
                       "malformed stream event: " + event.data.substr(0, 200)};
    }
    meter_.CountEvent();
    std::string type = StringOrEmpty(*data, "type");
    if (type.empty()) type = event.event;
    if (type == "message_start") {
      const json& message = (*data)["message"];
      if (std::string model = StringOrEmpty(message, "model"); !model.empty()) {
        response.model = model;
      }
      if (message.is_object() && message.contains("usage")) usage_.Update(message["usage"]);
    } else if (type == "content_block_start") {
      const int block = static_cast<int>(IntOr0(*data, "index"));
      const json& content = (*data)["content_block"];
      if (StringOrEmpty(content, "type") == "tool_use") {
        const int tool_index = static_cast<int>(response.tool_calls.size());
        tool_of_block_[block] = tool_index;
        ToolCall call;
        call.id = StringOrEmpty(content, "id");
        call.name = StringOrEmpty(content, "name");
        response.tool_calls.push_back(call);
        initial_input_[tool_index] = content.contains("input") && content["input"].is_object()
                                         ? content["input"].dump()
                                         : "{}";
        StreamDelta out;
        out.kind = StreamDelta::Kind::kToolCall;
        out.tool_index = tool_index;
        out.tool_call_id = call.id;
        out.tool_name = call.name;
        if (on_delta) on_delta(out);
      } else if (std::string text = StringOrEmpty(content, "text"); !text.empty()) {
        response.text += text;
        if (on_delta) on_delta(StreamDelta{StreamDelta::Kind::kText, text, 0, "", "", ""});
      }
    } else if (type == "content_block_delta") {
      meter_.CountContent();
      const int block = static_cast<int>(IntOr0(*data, "index"));
      const json& delta = (*data)["delta"];
      const std::string delta_type = StringOrEmpty(delta, "type");
      if (delta_type == "text_delta") {
        std::string text = StringOrEmpty(delta, "text");
        response.text += text;
        if (on_delta && !text.empty()) {
          on_delta(StreamDelta{StreamDelta::Kind::kText, text, 0, "", "", ""});
        }
      } else if (delta_type == "input_json_delta") {
        auto it = tool_of_block_.find(block);
        if (it == tool_of_block_.end()) {
          return CallError{ErrorCode::kUnavailable, 200, -1,
                           "input_json_delta for block " + std::to_string(block) +
                               " which is not a tool_use block"};
        }
        std::string fragment = StringOrEmpty(delta, "partial_json");
        response.tool_calls[it->second].arguments_json += fragment;
        StreamDelta out;
        out.kind = StreamDelta::Kind::kToolCall;
        out.tool_index = it->second;
        out.arguments_fragment = fragment;
        if (on_delta) on_delta(out);
      }
      // thinking_delta, signature_delta, citations: not surfaced.
    } else if (type == "message_delta") {
      if (auto delta = data->find("delta"); delta != data->end()) {
        if (std::string reason = StringOrEmpty(*delta, "stop_reason"); !reason.empty()) {
          response.finish_reason = NeutralStopReason(reason);
        }
      }
      if (data->contains("usage")) usage_.Update((*data)["usage"]);
    } else if (type == "message_stop") {
      done_ = true;
    } else if (type == "error") {
      const json& error = (*data)["error"];
      const std::string error_type = StringOrEmpty(error, "type");
      const ErrorCode code = error_type == "invalid_request_error" ? ErrorCode::kInvalidArgument
                                                                   : ErrorCode::kUnavailable;
      return CallError{
          code, 200, -1,
          "error event in stream: " + error_type + ": " + StringOrEmpty(error, "message")};
    }
    // ping and content_block_stop need nothing.
    return std::nullopt;
  }

  void Finish(ChatResponse& response) {
    for (auto& [tool_index, input] : initial_input_) {
      if (response.tool_calls[tool_index].arguments_json.empty()) {
        response.tool_calls[tool_index].arguments_json = input;
      }
    }
    response.usage = usage_.ToUsage();
  }

  bool done() const { return done_; }

  // What a stream that broke off is billed for (see StreamMeter; the input is reported in
  // message_start).
  Usage BilledSoFar() const { return meter_.BilledSoFar(usage_.ToUsage()); }

 private:
  std::map<int, int> tool_of_block_;          // content block index -> tool call index
  std::map<int, std::string> initial_input_;  // tool index -> input given at block start
  RawUsage usage_;
  bool done_ = false;
  StreamMeter meter_;  // content: content_block_delta events
};

class AnthropicProvider final : public Provider {
 public:
  AnthropicProvider(const ProviderConfig& config, HttpClient* http)
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

  CallResult<EmbeddingResponse> Embed(const EmbeddingRequest&) override {
    return MakeCallError(ErrorCode::kFailedPrecondition,
                         config_.name + ": the Anthropic API serves no embeddings");
  }

  CallResult<std::vector<std::string>> ListModels() override {
    if (!Usable()) return std::unexpected(internal::NotConfigured(config_));
    HttpRequest http = MakeRequest("GET", "/v1/models", "");
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
    http.headers.emplace_back("anthropic-version", kAnthropicVersion);
    if (!api_key_.empty()) http.headers.emplace_back("x-api-key", api_key_);
    http.body = std::move(body);
    http.connect_timeout_ms = config_.connect_timeout_ms;
    http.total_timeout_ms = config_.timeout_ms;
    return http;
  }

  CallResult<ChatResponse> DoChat(const ChatRequest& request, const StreamCallback* on_delta) {
    if (!Usable()) return std::unexpected(internal::NotConfigured(config_));
    const bool stream = on_delta != nullptr;
    auto body = BuildBody(request, stream);
    if (!body) return std::unexpected(body.error());
    HttpRequest http = MakeRequest("POST", "/v1/messages", body->dump());
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
      if (!parsed || !parsed->is_object() || !parsed->contains("content") ||
          !(*parsed)["content"].is_array()) {
        return std::unexpected(internal::MalformedResponse(
            config_, "body is not a Messages answer: " + result->body.substr(0, 200), secrets_));
      }
      for (const json& block : (*parsed)["content"]) {
        const std::string type = StringOrEmpty(block, "type");
        if (type == "text") {
          response.text += StringOrEmpty(block, "text");
        } else if (type == "tool_use") {
          ToolCall call;
          call.id = StringOrEmpty(block, "id");
          call.name = StringOrEmpty(block, "name");
          call.arguments_json = block.contains("input") ? block["input"].dump() : "{}";
          response.tool_calls.push_back(std::move(call));
        }
      }
      response.finish_reason = NeutralStopReason(StringOrEmpty(*parsed, "stop_reason"));
      RawUsage usage;
      usage.Update(parsed->value("usage", json::object()));
      response.usage = usage.ToUsage();
      if (std::string model = StringOrEmpty(*parsed, "model"); !model.empty()) {
        response.model = model;
      }
      response.latency_ms = watch.ElapsedMs();
      response.http_status = result->status;
      return response;
    }

    http.idle_timeout_ms = config_.timeout_ms;
    http.total_timeout_ms = 0;
    http.headers.emplace_back("Accept", "text/event-stream");
    SseParser parser;
    StreamAssembler assembler;
    std::optional<CallError> stream_error;
    auto result = http_->Send(http, [&](std::string_view chunk) {
      parser.Feed(chunk, [&](const SseEvent& event) {
        if (stream_error) return;
        stream_error = assembler.OnEvent(event, *on_delta, response);
      });
      return !stream_error.has_value();
    });
    // A stream that broke off after it began carries what it was billed for.
    auto broke_off = [&](CallError error) {
      error.usage = assembler.BilledSoFar();
      return std::unexpected(std::move(error));
    };
    if (stream_error) {
      CallError error = *stream_error;
      if (error.code == ErrorCode::kUnavailable) {
        return broke_off(internal::MalformedResponse(config_, error.message, secrets_));
      }
      error.message = internal::MalformedResponse(config_, error.message, secrets_).message;
      return broke_off(std::move(error));
    }
    if (!result) return broke_off(internal::TransportError(config_, result.error(), secrets_));
    if (result->status / 100 != 2) {
      return std::unexpected(internal::HttpError(config_, http, *result, secrets_));
    }
    if (!assembler.done()) {
      return broke_off(internal::MalformedResponse(
          config_, "stream ended before message_stop (truncated)", secrets_));
    }
    assembler.Finish(response);
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

std::unique_ptr<Provider> MakeAnthropicProvider(const ProviderConfig& config, HttpClient* http) {
  return std::make_unique<AnthropicProvider>(config, http);
}

}  // namespace factory::llm
