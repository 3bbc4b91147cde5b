#include "llm/fake_provider.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace factory::llm::fake {
namespace {

using nlohmann::json;

std::string LowerCase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Splits text into pieces of up to `size` bytes, so streams carry several deltas.
std::vector<std::string> Pieces(const std::string& text, size_t size) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < text.size(); pos += size) out.push_back(text.substr(pos, size));
  return out;
}

std::string FinishReason(const FakeReply& reply) {
  if (!reply.finish_reason.empty()) return reply.finish_reason;
  return reply.tool_calls.empty() ? "stop" : "tool_calls";
}

std::string AnthropicStopReason(const FakeReply& reply) {
  const std::string neutral = FinishReason(reply);
  if (neutral == "stop") return "end_turn";
  if (neutral == "tool_calls") return "tool_use";
  if (neutral == "length") return "max_tokens";
  return neutral;
}

json OpenAiUsage(const Usage& usage) {
  return {{"prompt_tokens", usage.input_tokens},
          {"completion_tokens", usage.output_tokens},
          {"total_tokens", usage.input_tokens + usage.output_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_read_tokens}}}};
}

json AnthropicUsage(const Usage& usage) {
  return {{"input_tokens", std::max<int64_t>(0, usage.input_tokens - usage.cached_read_tokens -
                                                    usage.cache_write_tokens)},
          {"output_tokens", usage.output_tokens},
          {"cache_read_input_tokens", usage.cached_read_tokens},
          {"cache_creation_input_tokens", usage.cache_write_tokens}};
}

json ToolInput(const ToolCall& call) {
  json input = json::parse(call.arguments_json, nullptr, false);
  return input.is_object() ? input : json::object();
}

struct SseEventOut {
  std::string name;  // "" = no event: line
  std::string data;
};

std::string Serialize(const SseEventOut& event) {
  std::string out;
  if (!event.name.empty()) out += "event: " + event.name + "\n";
  out += "data: " + event.data + "\n\n";
  return out;
}

std::vector<SseEventOut> OpenAiStream(const FakeReply& reply, const std::string& model,
                                      bool include_usage) {
  std::vector<SseEventOut> events;
  auto chunk = [&](json delta, json finish) {
    json body = {
        {"id", "chatcmpl-fake"},
        {"object", "chat.completion.chunk"},
        {"created", 1700000000},
        {"model", model},
        {"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
    events.push_back({"", body.dump()});
  };
  chunk({{"role", "assistant"}, {"content", ""}}, nullptr);
  for (const std::string& piece : Pieces(reply.text, 4)) chunk({{"content", piece}}, nullptr);
  for (size_t i = 0; i < reply.tool_calls.size(); ++i) {
    const ToolCall& call = reply.tool_calls[i];
    chunk({{"tool_calls", json::array({{{"index", i},
                                        {"id", call.id},
                                        {"type", "function"},
                                        {"function", {{"name", call.name}, {"arguments", ""}}}}})}},
          nullptr);
    for (const std::string& piece : Pieces(call.arguments_json, 5)) {
      chunk({{"tool_calls", json::array({{{"index", i}, {"function", {{"arguments", piece}}}}})}},
            nullptr);
    }
  }
  chunk(json::object(), FinishReason(reply));
  if (include_usage) {
    json body = {{"id", "chatcmpl-fake"},
                 {"object", "chat.completion.chunk"},
                 {"model", model},
                 {"choices", json::array()},
                 {"usage", OpenAiUsage(reply.usage)}};
    events.push_back({"", body.dump()});
  }
  events.push_back({"", "[DONE]"});
  return events;
}

std::vector<SseEventOut> AnthropicStream(const FakeReply& reply, const std::string& model) {
  std::vector<SseEventOut> events;
  auto add = [&](const std::string& type, json body) {
    body["type"] = type;
    events.push_back({type, body.dump()});
  };
  json start_usage = AnthropicUsage(reply.usage);
  start_usage["output_tokens"] = 1;
  add("message_start", {{"message",
                         {{"id", "msg_fake"},
                          {"type", "message"},
                          {"role", "assistant"},
                          {"model", model},
                          {"content", json::array()},
                          {"stop_reason", nullptr},
                          {"usage", start_usage}}}});
  int block = 0;
  if (!reply.text.empty()) {
    add("content_block_start",
        {{"index", block}, {"content_block", {{"type", "text"}, {"text", ""}}}});
    add("ping", json::object());
    for (const std::string& piece : Pieces(reply.text, 4)) {
      add("content_block_delta",
          {{"index", block}, {"delta", {{"type", "text_delta"}, {"text", piece}}}});
    }
    add("content_block_stop", {{"index", block}});
    ++block;
  }
  for (const ToolCall& call : reply.tool_calls) {
    add("content_block_start", {{"index", block},
                                {"content_block",
                                 {{"type", "tool_use"},
                                  {"id", call.id},
                                  {"name", call.name},
                                  {"input", json::object()}}}});
    for (const std::string& piece : Pieces(ToolInput(call).dump(), 5)) {
      add("content_block_delta",
          {{"index", block}, {"delta", {{"type", "input_json_delta"}, {"partial_json", piece}}}});
    }
    add("content_block_stop", {{"index", block}});
    ++block;
  }
  add("message_delta",
      {{"delta", {{"stop_reason", AnthropicStopReason(reply)}, {"stop_sequence", nullptr}}},
       {"usage", {{"output_tokens", reply.usage.output_tokens}}}});
  add("message_stop", json::object());
  return events;
}

}  // namespace

FakeReply FakeReply::Text(std::string text, Usage usage) {
  FakeReply reply;
  reply.text = std::move(text);
  reply.usage = usage;
  return reply;
}

FakeReply FakeReply::Tools(std::vector<ToolCall> calls, Usage usage, std::string text) {
  FakeReply reply;
  reply.tool_calls = std::move(calls);
  reply.usage = usage;
  reply.text = std::move(text);
  return reply;
}

FakeReply FakeReply::Error(int status, std::string message) {
  FakeReply reply;
  reply.status = status;
  reply.error_message = std::move(message);
  return reply;
}

FakeReply FakeReply::RateLimited(int retry_after_s, std::string message) {
  FakeReply reply = Error(429, std::move(message));
  if (retry_after_s >= 0) reply.headers["Retry-After"] = std::to_string(retry_after_s);
  return reply;
}

FakeReply FakeReply::Malformed(std::string body) {
  FakeReply reply;
  reply.raw_body = std::move(body);
  return reply;
}

FakeReply FakeReply::Embeddings(std::vector<std::vector<float>> vectors, Usage usage) {
  FakeReply reply;
  reply.embeddings = std::move(vectors);
  reply.usage = usage;
  return reply;
}

std::string RecordedRequest::Header(const std::string& name) const {
  const std::string wanted = LowerCase(name);
  for (const auto& [key, value] : headers) {
    if (LowerCase(key) == wanted) return value;
  }
  return "";
}

json RecordedRequest::Json() const {
  json value = json::parse(body, nullptr, false);
  return value.is_discarded() ? json() : value;
}

FakeProviderServer::FakeProviderServer() : server_(std::make_unique<httplib::Server>()) {
  server_->set_keep_alive_timeout(1);
  server_->set_tcp_nodelay(true);

  auto record = [](const httplib::Request& req) {
    RecordedRequest out;
    out.method = req.method;
    out.path = req.path;
    for (const auto& [key, value] : req.headers) out.headers.emplace(key, value);
    out.body = req.body;
    out.remote_port = req.remote_port;
    return out;
  };

  // Shared front half: record, pick the reply, wait, answer failures. Returns nullopt when the
  // response is complete.
  auto begin = [this, record](const httplib::Request& req, httplib::Response& res,
                              bool anthropic) -> std::optional<FakeReply> {
    RecordedRequest recorded = record(req);
    const std::string credential =
        anthropic ? recorded.Header("x-api-key") : recorded.Header("Authorization");
    FakeReply reply = Next(std::move(recorded));
    if (reply.delay_ms > 0 && !SleepInterruptible(reply.delay_ms)) {
      res.status = 503;
      return std::nullopt;
    }
    for (const auto& [name, value] : reply.headers) res.set_header(name, value);
    res.status = reply.status;
    if (reply.raw_body) {
      res.set_content(*reply.raw_body, "application/json");
      return std::nullopt;
    }
    if (reply.status != 200) {
      std::string message = reply.error_message;
      if (reply.echo_credentials) message += " (you sent: " + credential + ")";
      json body =
          anthropic ? json{{"type", "error"},
                           {"error",
                            {{"type", reply.status == 429 ? "rate_limit_error" : "api_error"},
                             {"message", message}}}}
                    : json{{"error",
                            {{"message", message},
                             {"type", reply.status == 429 ? "rate_limit_exceeded" : "server_error"},
                             {"code", nullptr}}}};
      res.set_content(body.dump(), "application/json");
      return std::nullopt;
    }
    return reply;
  };

  auto stream_events = [this](httplib::Response& res, std::vector<SseEventOut> events,
                              const FakeReply& reply) {
    if (reply.truncate_after_events >= 0 &&
        static_cast<size_t>(reply.truncate_after_events) < events.size()) {
      events.resize(static_cast<size_t>(reply.truncate_after_events));
    }
    const int event_delay = reply.event_delay_ms;
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, events = std::move(events), event_delay](size_t, httplib::DataSink& sink) {
          for (const SseEventOut& event : events) {
            if (event_delay > 0 && !SleepInterruptible(event_delay)) return false;
            const std::string text = Serialize(event);
            if (!sink.write(text.data(), text.size())) return false;
          }
          sink.done();
          return true;
        });
  };

  server_->Post("/v1/chat/completions", [=](const httplib::Request& req, httplib::Response& res) {
    auto reply = begin(req, res, /*anthropic=*/false);
    if (!reply) return;
    json request = json::parse(req.body, nullptr, false);
    const std::string model = !reply->model.empty()
                                  ? reply->model
                                  : (request.is_object() ? request.value("model", "fake") : "fake");
    if (request.is_object() && request.value("stream", false)) {
      const bool include_usage = request.contains("stream_options") &&
                                 request["stream_options"].value("include_usage", false);
      stream_events(res, OpenAiStream(*reply, model, include_usage), *reply);
      return;
    }
    json message = {
        {"role", "assistant"},
        {"content",
         reply->text.empty() && !reply->tool_calls.empty() ? json(nullptr) : json(reply->text)}};
    if (!reply->tool_calls.empty()) {
      json calls = json::array();
      for (const ToolCall& call : reply->tool_calls) {
        calls.push_back({{"id", call.id},
                         {"type", "function"},
                         {"function", {{"name", call.name}, {"arguments", call.arguments_json}}}});
      }
      message["tool_calls"] = calls;
    }
    json body = {
        {"id", "chatcmpl-fake"},
        {"object", "chat.completion"},
        {"created", 1700000000},
        {"model", model},
        {"choices",
         json::array(
             {{{"index", 0}, {"message", message}, {"finish_reason", FinishReason(*reply)}}})},
        {"usage", OpenAiUsage(reply->usage)}};
    res.set_content(body.dump(), "application/json");
  });

  server_->Post("/v1/messages", [=](const httplib::Request& req, httplib::Response& res) {
    auto reply = begin(req, res, /*anthropic=*/true);
    if (!reply) return;
    json request = json::parse(req.body, nullptr, false);
    const std::string model = !reply->model.empty()
                                  ? reply->model
                                  : (request.is_object() ? request.value("model", "fake") : "fake");
    if (request.is_object() && request.value("stream", false)) {
      stream_events(res, AnthropicStream(*reply, model), *reply);
      return;
    }
    json content = json::array();
    if (!reply->text.empty()) content.push_back({{"type", "text"}, {"text", reply->text}});
    for (const ToolCall& call : reply->tool_calls) {
      content.push_back(
          {{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", ToolInput(call)}});
    }
    json body = {{"id", "msg_fake"},         {"type", "message"},
                 {"role", "assistant"},      {"model", model},
                 {"content", content},       {"stop_reason", AnthropicStopReason(*reply)},
                 {"stop_sequence", nullptr}, {"usage", AnthropicUsage(reply->usage)}};
    res.set_content(body.dump(), "application/json");
  });

  server_->Post("/v1/embeddings", [=](const httplib::Request& req, httplib::Response& res) {
    auto reply = begin(req, res, /*anthropic=*/false);
    if (!reply) return;
    json request = json::parse(req.body, nullptr, false);
    size_t inputs = 1;
    if (request.is_object() && request.contains("input") && request["input"].is_array()) {
      inputs = request["input"].size();
    }
    json data = json::array();
    for (size_t i = 0; i < inputs; ++i) {
      std::vector<float> vector = i < reply->embeddings.size()
                                      ? reply->embeddings[i]
                                      : std::vector<float>{static_cast<float>(i), 0.5f, -0.5f, 1};
      data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", vector}});
    }
    json body = {{"object", "list"},
                 {"data", data},
                 {"model", request.is_object() ? request.value("model", "fake") : "fake"},
                 {"usage",
                  {{"prompt_tokens", reply->usage.input_tokens},
                   {"total_tokens", reply->usage.input_tokens}}}};
    res.set_content(body.dump(), "application/json");
  });

  server_->Get("/v1/models", [this, record](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard lock(mu_);
      requests_.push_back(record(req));
    }
    json body = {{"object", "list"},
                 {"data", json::array({{{"id", "fake-model"}, {"object", "model"}}})}};
    res.set_content(body.dump(), "application/json");
  });

  port_ = server_->bind_to_any_port("127.0.0.1");
  // The socket listens from here on; connections queue until the thread accepts them.
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs; wait for it so that destroying a
  // just-created server cannot hang.
  for (int i = 0; i < 2'000 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

FakeProviderServer::~FakeProviderServer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FakeProviderServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}
std::string FakeProviderServer::openai_base_url() const { return base_url() + "/v1"; }
std::string FakeProviderServer::anthropic_base_url() const { return base_url(); }

void FakeProviderServer::Enqueue(FakeReply reply) {
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(reply));
}

void FakeProviderServer::SetDefault(FakeReply reply) {
  std::lock_guard lock(mu_);
  default_ = std::move(reply);
}

size_t FakeProviderServer::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

std::vector<RecordedRequest> FakeProviderServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t FakeProviderServer::request_count() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

FakeReply FakeProviderServer::Next(RecordedRequest request) {
  std::lock_guard lock(mu_);
  requests_.push_back(std::move(request));
  if (responder_) {
    if (std::optional<FakeReply> chosen = responder_(requests_.back())) return std::move(*chosen);
  }
  if (!queue_.empty()) {
    FakeReply reply = std::move(queue_.front());
    queue_.pop_front();
    return reply;
  }
  if (default_) return *default_;
  return FakeReply::Error(500, "no scripted reply");
}

void FakeProviderServer::SetResponder(Responder responder) {
  std::lock_guard lock(mu_);
  responder_ = std::move(responder);
}

bool FakeProviderServer::SleepInterruptible(int ms) {
  std::unique_lock lock(mu_);
  return !stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

}  // namespace factory::llm::fake
