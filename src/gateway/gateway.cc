#include "gateway/gateway.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "gateway/internal/estimate.h"
#include "gateway/internal/key_cache.h"
#include "gateway/internal/metering.h"
#include "gateway/internal/wire.h"
#include "llm/http_client.h"
#include "llm/redact.h"
#include "llm/router.h"
#include "llm/sse.h"
#include "net/beast_server.h"
#include "net/http_server.h"

namespace factory::gateway {
namespace {

using internal::ClientError;
using internal::Protocol;
using nlohmann::json;

struct Endpoint {
  Protocol protocol;
  llm::ProviderKind kind;  // deployments that speak this format
  const char* upstream_path;
  bool embeddings = false;
};

constexpr Endpoint kChatCompletions{Protocol::kOpenAi, llm::ProviderKind::kOpenAi,
                                    "/chat/completions"};
constexpr Endpoint kEmbeddings{Protocol::kOpenAi, llm::ProviderKind::kOpenAi, "/embeddings", true};
constexpr Endpoint kMessages{Protocol::kAnthropic, llm::ProviderKind::kAnthropic, "/v1/messages"};

void Respond(net::Responder& res, Protocol protocol, const ClientError& error) {
  net::HeaderFields headers = {{"Content-Type", "application/json"}};
  if (error.retry_after_s >= 0) {
    headers.emplace_back("Retry-After", std::to_string(error.retry_after_s));
  }
  res.Send(error.status, headers, internal::ErrorBody(protocol, error));
}

// An integer field when present and integral; nullopt otherwise.
std::optional<int64_t> IntField(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// Caps a max-tokens field at the model's limit, as the router does for the built-in agent.
void CapField(json& body, const char* key, int64_t limit) {
  auto value = IntField(body, key);
  if (value && limit > 0 && *value > limit) body[key] = limit;
}

// Whatever a streamed answer tells the ledger, gathered event by event, and what is passed on.
class StreamScan {
 public:
  StreamScan(Protocol protocol, bool client_wants_usage)
      : protocol_(protocol), client_wants_usage_(client_wants_usage) {}

  // Appends to `out` what the client gets for this event. Returns an error message when the
  // upstream reported an error inside the stream.
  std::optional<std::string> OnEvent(const llm::SseEvent& event, std::string& out) {
    meter_.CountEvent();
    return protocol_ == Protocol::kOpenAi ? OnOpenAi(event, out) : OnAnthropic(event, out);
  }
  bool complete() const { return done_; }
  const llm::Usage& usage() const { return usage_; }

  // What a stream that broke off (the client left, an error event, a truncation) is billed
  // for (see llm::StreamMeter; an input not reported yet is the router's prompt estimate).
  llm::Usage BilledSoFar() const { return meter_.BilledSoFar(usage_); }

 private:
  std::optional<std::string> OnOpenAi(const llm::SseEvent& event, std::string& out) {
    if (event.data == "[DONE]") {
      done_ = true;
      internal::AppendSseEvent(out, event);
      return std::nullopt;
    }
    // Only the chunks that can hold usage or an error are parsed; text deltas go straight on.
    const bool may_have_usage = event.data.find("\"prompt_tokens\"") != std::string::npos;
    const bool may_be_error = event.data.find("\"error\"") != std::string::npos;
    if (may_have_usage || may_be_error) {
      json chunk = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
      if (chunk.is_object()) {
        if (auto error = chunk.find("error"); error != chunk.end() && !error->is_null()) {
          return error->is_object() && error->contains("message") && (*error)["message"].is_string()
                     ? (*error)["message"].get<std::string>()
                     : error->dump();
        }
        if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
          usage_ = internal::OpenAiUsage(*usage);
          saw_usage_ = true;
          auto choices = chunk.find("choices");
          const bool usage_only =
              choices == chunk.end() || (choices->is_array() && choices->empty());
          if (usage_only && !client_wants_usage_) return std::nullopt;  // asked for by us only
        }
      }
    }
    // Not the opening role chunk ("content":"") nor the closing one ("delta":{}).
    if (event.data.find("\"delta\"") != std::string::npos &&
        event.data.find("\"delta\":{}") == std::string::npos &&
        event.data.find("\"content\":\"\"") == std::string::npos) {
      meter_.CountContent();
    }
    internal::AppendSseEvent(out, event);
    return std::nullopt;
  }

  std::optional<std::string> OnAnthropic(const llm::SseEvent& event, std::string& out) {
    if (event.event == "error") {
      json body = json::parse(event.data, nullptr, false);
      if (body.is_object() && body.contains("error") && body["error"].is_object() &&
          body["error"].contains("message") && body["error"]["message"].is_string()) {
        return body["error"]["message"].get<std::string>();
      }
      return "error event in stream: " + event.data.substr(0, 200);
    }
    if (event.event == "message_start" || event.event == "message_delta") {
      json body = json::parse(event.data, nullptr, false);
      const json* usage = nullptr;
      if (body.is_object() && event.event == "message_start" && body.contains("message") &&
          body["message"].is_object() && body["message"].contains("usage")) {
        usage = &body["message"]["usage"];
      } else if (body.is_object() && body.contains("usage")) {
        usage = &body["usage"];
      }
      if (usage != nullptr && usage->is_object()) {
        // message_delta carries cumulative counts, sometimes only the output ones.
        const llm::Usage seen = internal::AnthropicUsage(*usage);
        usage_.input_tokens = std::max(usage_.input_tokens, seen.input_tokens);
        usage_.cached_read_tokens = std::max(usage_.cached_read_tokens, seen.cached_read_tokens);
        usage_.cache_write_tokens = std::max(usage_.cache_write_tokens, seen.cache_write_tokens);
        usage_.output_tokens = std::max(usage_.output_tokens, seen.output_tokens);
      }
    } else if (event.event == "message_stop") {
      done_ = true;
    } else if (event.event == "content_block_delta") {
      meter_.CountContent();
    }
    internal::AppendSseEvent(out, event);
    return std::nullopt;
  }

  const Protocol protocol_;
  const bool client_wants_usage_;
  llm::Usage usage_;
  bool saw_usage_ = false;
  bool done_ = false;
  llm::StreamMeter meter_;  // content: events carrying generated text or tool input
};

class GatewayImpl final : public Gateway {
 public:
  GatewayImpl(Store& store, GatewayOptions options)
      : options_(std::move(options)),
        clock_(options_.clock != nullptr ? *options_.clock : SystemClock()),
        store_(store),
        guard_(store, options_.budgets, &clock_),
        writer_(store),
        admission_(store, guard_, writer_, clock_, options_.cache_ttl_ms),
        keys_(store, clock_, options_.cache_ttl_ms) {}

  ~GatewayImpl() override {
    Stop();
    (void)writer_.Flush();
  }

  Status InitRouter(llm::ModelsConfig models) {
    for (const llm::ProviderConfig& provider : models.providers) {
      if (provider.api_key_env.empty()) continue;
      const char* value = std::getenv(provider.api_key_env.c_str());
      if (value == nullptr || *value == '\0') continue;
      upstream_keys_[provider.name] = value;
      secrets_.push_back(value);
    }
    FACTORY_ASSIGN_OR_RETURN(router_,
                             llm::Router::Create(std::move(models), llm::RouterOptions{
                                                                        .clock = &clock_,
                                                                        .observer = &writer_,
                                                                        .admission = &admission_,
                                                                    }));
    return Ok();
  }

  Status Init(llm::ModelsConfig models) {
    FACTORY_RETURN_IF_ERROR(InitRouter(std::move(models)));
    net::HttpServerOptions server_options;
    server_options.host = options_.host;
    server_options.port = options_.port;
    server_options.threads = options_.threads;
    server_options.header_timeout_ms = options_.header_timeout_ms;
    server_options.body_limit = options_.max_body_bytes;
    server_options.on_error = [](int status, std::string_view message, const net::Request& req,
                                 net::Responder& res) {
      const Protocol protocol = ProtocolOf(req);
      std::string text(message);
      if (status == 404 || status == 405) {
        text = "no such endpoint: " + req.method + " " + req.path +
               " (the gateway serves POST /v1/chat/completions, POST /v1/embeddings, "
               "GET /v1/models and POST /v1/messages)";
      } else if (status == 500) {
        text = "internal gateway error";
      }
      Respond(res, protocol, internal::BadRequest(protocol, status, text));
    };
    server_ = std::make_unique<net::HttpServer>(std::move(server_options));
    AddRoutes(*server_);
    return Ok();
  }

  // Serves the /v1 routes on `server` (another module's listener) instead of a server of its own.
  // REQUIRES: server is not started yet and is stopped before this gateway is destroyed.
  Status InitMounted(llm::ModelsConfig models, net::BeastServer& server) {
    FACTORY_RETURN_IF_ERROR(InitRouter(std::move(models)));
    AddRoutes(server);
    mounted_ = true;
    return Ok();
  }

  template <class Server>
  void AddRoutes(Server& server) {
    server.Route("POST", "/v1/chat/completions",
                 [this](const net::Request& req, net::Responder& res) {
                   HandleCall(kChatCompletions, req, res);
                 });
    server.Route("POST", "/v1/embeddings", [this](const net::Request& req, net::Responder& res) {
      HandleCall(kEmbeddings, req, res);
    });
    server.Route("POST", "/v1/messages", [this](const net::Request& req, net::Responder& res) {
      HandleCall(kMessages, req, res);
    });
    server.Route("GET", "/v1/models",
                 [this](const net::Request& req, net::Responder& res) { HandleModels(req, res); });
  }

  Status Bind() {
    FACTORY_RETURN_IF_ERROR(server_->Start());
    port_ = server_->port();
    return Ok();
  }

  int port() const override { return port_; }
  std::string base_url() const override {
    return "http://" + options_.host + ":" + std::to_string(port_);
  }

  void Wait() override {
    std::unique_lock lock(stop_mu_);
    stop_cv_.wait(lock, [&] { return stopped_; });
  }

  void Stop() override {
    // Lets calls in flight finish. HttpServer::Stop is idempotent and a second caller (the
    // destructor after a signal watcher's Stop) waits inside it for the first, so the server is
    // stopped before the members its handlers use are destroyed.
    if (server_) server_->Stop();
    {
      std::lock_guard lock(stop_mu_);
      stopped_ = true;
    }
    stop_cv_.notify_all();
  }

  Status Flush() override { return writer_.Flush(); }

 private:
  static Protocol ProtocolOf(const net::Request& req) {
    return req.path == "/v1/messages" || req.headers.Has("anthropic-version") ? Protocol::kAnthropic
                                                                              : Protocol::kOpenAi;
  }

  // The key's record, or an error already written to `res`.
  std::optional<VirtualKey> Authenticate(Protocol protocol, const net::Request& req,
                                         net::Responder& res) {
    std::string presented;
    if (const std::string* authorization = req.headers.Find("Authorization")) {
      const std::string& value = *authorization;
      constexpr std::string_view kBearer = "Bearer ";
      if (value.size() <= kBearer.size() || value.compare(0, kBearer.size(), kBearer) != 0) {
        Respond(res, protocol,
                internal::Unauthenticated(protocol, "Authorization header is not 'Bearer KEY'"));
        return std::nullopt;
      }
      presented = value.substr(kBearer.size());
    } else if (const std::string* api_key = req.headers.Find("x-api-key")) {
      presented = *api_key;
    } else {
      Respond(res, protocol,
              internal::Unauthenticated(protocol,
                                        "missing API key: send a virtual key from `factory keys "
                                        "create` as 'Authorization: Bearer KEY' or 'x-api-key'"));
      return std::nullopt;
    }
    auto key = keys_.Lookup(presented);
    if (!key) {
      if (key.error().code == ErrorCode::kPermissionDenied) {
        Respond(res, protocol, internal::Unauthenticated(protocol, key.error().message));
      } else {
        spdlog::error("gateway: key lookup failed: {}", key.error().ToString());
        Respond(res, protocol, internal::BadRequest(protocol, 503, "key lookup failed; try again"));
      }
      return std::nullopt;
    }
    return *key;
  }

  void HandleModels(const net::Request& req, net::Responder& res) {
    const Protocol protocol = ProtocolOf(req);
    if (!Authenticate(protocol, req, res)) return;
    const llm::ModelsConfig& config = router_->config();
    json data = json::array();
    auto add = [&](const std::string& id, const std::string& owner) {
      if (protocol == Protocol::kAnthropic) {
        data.push_back({{"type", "model"},
                        {"id", id},
                        {"display_name", id},
                        {"created_at", "1970-01-01T00:00:00Z"}});
      } else {
        data.push_back({{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", owner}});
      }
    };
    for (const llm::AliasConfig& alias : config.aliases) {
      if (router_->Resolve({alias.name})) add(alias.name, "factory");
    }
    for (const llm::ModelSpec& model : config.models) {
      if (router_->Resolve({model.name})) add(model.name, model.provider);
    }
    json body;
    if (protocol == Protocol::kAnthropic) {
      body = {{"data", data},
              {"has_more", false},
              {"first_id", data.empty() ? json(nullptr) : data.front()["id"]},
              {"last_id", data.empty() ? json(nullptr) : data.back()["id"]}};
    } else {
      body = {{"object", "list"}, {"data", data}};
    }
    res.Send(200, {{"Content-Type", "application/json"}}, body.dump());
  }

  llm::HttpRequest UpstreamRequest(const Endpoint& endpoint, const llm::Deployment& deployment,
                                   const net::Request& req, std::string body, bool stream) {
    const llm::ProviderConfig& provider = *deployment.provider;
    llm::HttpRequest http;
    http.url = provider.base_url + endpoint.upstream_path;
    http.body = std::move(body);
    http.connect_timeout_ms = provider.connect_timeout_ms;
    http.total_timeout_ms = provider.timeout_ms;
    http.headers.emplace_back("Content-Type", "application/json");
    auto key = upstream_keys_.find(provider.name);
    if (endpoint.protocol == Protocol::kAnthropic) {
      if (key != upstream_keys_.end()) http.headers.emplace_back("x-api-key", key->second);
      const std::string version = req.headers.Get("anthropic-version");
      http.headers.emplace_back("anthropic-version", version.empty() ? "2023-06-01" : version);
      if (const std::string* beta = req.headers.Find("anthropic-beta")) {
        http.headers.emplace_back("anthropic-beta", *beta);
      }
    } else if (key != upstream_keys_.end()) {
      http.headers.emplace_back("Authorization", "Bearer " + key->second);
    }
    if (stream) {
      http.headers.emplace_back("Accept", "text/event-stream");
      http.idle_timeout_ms = provider.timeout_ms;
      http.total_timeout_ms = 0;  // a long answer may stream for longer than the idle limit
    }
    return http;
  }

  llm::CallError TransportError(const Error& error) const {
    llm::CallError out;
    out.code = error.code == ErrorCode::kDeadlineExceeded ? ErrorCode::kDeadlineExceeded
                                                          : ErrorCode::kUnavailable;
    out.message = llm::Redact(error.message, secrets_);
    return out;
  }

  void HandleCall(const Endpoint& endpoint, const net::Request& req, net::Responder& res) {
    const Protocol protocol = endpoint.protocol;
    auto key = Authenticate(protocol, req, res);
    if (!key) return;

    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object()) {
      Respond(res, protocol,
              internal::BadRequest(protocol, 400, "the request body is not a JSON object"));
      return;
    }
    auto model_field = body.find("model");
    if (model_field == body.end() || !model_field->is_string() ||
        model_field->get<std::string>().empty()) {
      Respond(res, protocol,
              internal::BadRequest(protocol, 400, "missing required field 'model' (a string)"));
      return;
    }
    const std::string model = model_field->get<std::string>();
    if (endpoint.embeddings) {
      auto input = body.find("input");
      if (input == body.end() || !(input->is_string() || input->is_array())) {
        Respond(res, protocol,
                internal::BadRequest(protocol, 400,
                                     "missing required field 'input' (a string or an array)"));
        return;
      }
    } else {
      auto messages = body.find("messages");
      if (messages == body.end() || !messages->is_array()) {
        Respond(
            res, protocol,
            internal::BadRequest(protocol, 400, "missing required field 'messages' (an array)"));
        return;
      }
      if (protocol == Protocol::kAnthropic && !IntField(body, "max_tokens")) {
        Respond(res, protocol,
                internal::BadRequest(protocol, 400,
                                     "missing required field 'max_tokens' (an integer)"));
        return;
      }
    }
    bool stream = false;
    if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
      if (!it->is_boolean() || endpoint.embeddings) {
        Respond(res, protocol,
                internal::BadRequest(protocol, 400, "field 'stream' must be a boolean"));
        return;
      }
      stream = it->get<bool>();
    }

    auto resolved = router_->Resolve({model});
    if (!resolved) {
      const bool unknown = resolved.error().code == ErrorCode::kNotFound;
      Respond(res, protocol,
              internal::BadRequest(protocol, unknown ? 404 : 503,
                                   unknown ? "the model '" + model +
                                                 "' does not exist (not an alias or a model of "
                                                 "models.yaml)"
                                           : resolved.error().message));
      return;
    }
    std::vector<llm::Deployment> deployments;
    for (llm::Deployment& deployment : *resolved) {
      if (deployment.provider->kind == endpoint.kind) deployments.push_back(std::move(deployment));
    }
    if (deployments.empty()) {
      Respond(res, protocol,
              internal::BadRequest(
                  protocol, 400,
                  "the model '" + model + "' has no deployment on a provider speaking " +
                      (protocol == Protocol::kOpenAi ? "the OpenAI format; use POST /v1/messages"
                                                     : "the Anthropic format; use POST "
                                                       "/v1/chat/completions")));
      return;
    }

    llm::CallContext context{.run_id = key->run_id,
                             .task_id = key->task_id,
                             .attempt_id = key->attempt_id,
                             .agent = key->agent,
                             .purpose = "gateway"};
    // The worst case counts every answer asked for (`n`, `best_of`), images at a fixed charge
    // and the tools' schemas (see internal/estimate.h).
    const internal::CallEstimate estimate = internal::EstimateCall(body, req.body.size());
    const int64_t estimated_tokens = estimate.input_tokens;
    std::optional<int64_t> requested_output;
    if (!endpoint.embeddings) {
      requested_output = IntField(body, "max_tokens");
      if (!requested_output) requested_output = IntField(body, "max_completion_tokens");
    }
    const bool embeddings = endpoint.embeddings;
    auto worst_case = [estimate, requested_output, embeddings](const llm::ModelSpec& spec) {
      llm::ModelSpec priced = spec;  // no cache discount in the worst case
      priced.input_per_mtok = std::max(spec.input_per_mtok, spec.cache_write_per_mtok);
      llm::Usage input;
      input.input_tokens = estimate.input_tokens;
      double cost = llm::CostUsd(priced, input);
      if (!embeddings) {
        llm::Usage output;  // one answer's
        output.output_tokens = requested_output && *requested_output >= 0
                                   ? std::min(*requested_output, spec.max_output_tokens)
                                   : spec.max_output_tokens;
        cost += static_cast<double>(estimate.choices) * llm::CostUsd(priced, output);
      }
      return cost;
    };

    if (stream) {
      Stream(endpoint, req, res, std::move(body), std::move(deployments), context, estimated_tokens,
             worst_case);
      return;
    }

    std::string answer;
    int answer_status = 0;
    auto attempt = [&](const llm::Deployment& deployment) -> llm::CallResult<llm::ForwardResponse> {
      body["model"] = deployment.model->model_id;
      CapField(body, "max_tokens", deployment.model->max_output_tokens);
      CapField(body, "max_completion_tokens", deployment.model->max_output_tokens);
      llm::HttpRequest http = UpstreamRequest(endpoint, deployment, req, body.dump(), false);
      auto sent = http_.Send(http);
      if (!sent) return std::unexpected(TransportError(sent.error()));
      if (sent->status / 100 != 2) {
        return std::unexpected(internal::ClassifyUpstream(
            sent->status, sent->Header("retry-after"), sent->body, secrets_, clock_.NowMillis()));
      }
      json parsed = json::parse(sent->body, nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_object()) {
        return llm::MakeCallError(ErrorCode::kUnavailable,
                                  "upstream " + deployment.key() + " answered with no JSON object");
      }
      llm::ForwardResponse response;
      const json& usage = parsed.contains("usage") ? parsed["usage"] : json();
      response.usage = protocol == Protocol::kOpenAi ? internal::OpenAiUsage(usage)
                                                     : internal::AnthropicUsage(usage);
      response.http_status = sent->status;
      answer = std::move(sent->body);
      answer_status = sent->status;
      return response;
    };
    auto result = router_->Forward(
        deployments, embeddings ? "embed" : "chat", estimated_tokens, worst_case, context,
        [] { return true; }, attempt);
    if (!result) {
      Respond(res, protocol, internal::FromCallError(protocol, result.error()));
      return;
    }
    res.Send(answer_status, {{"Content-Type", "application/json"}}, answer);
  }

  // Runs the routed call on this (the connection's) thread and writes each upstream event to
  // the client as it arrives. The answer is committed (200, chunked) with the first bytes for
  // the client; until then a failed attempt may fall back to the next deployment and a failed
  // call gets an ordinary error answer. After that a failure ends the stream with an error event.
  // A client that goes away (a failed write) stops the upstream read.
  void Stream(const Endpoint& endpoint, const net::Request& req, net::Responder& res, json body,
              std::vector<llm::Deployment> deployments, llm::CallContext context,
              int64_t estimated_tokens, std::function<double(const llm::ModelSpec&)> worst_case) {
    const Protocol protocol = endpoint.protocol;
    bool client_wants_usage = false;
    if (protocol == Protocol::kOpenAi) {
      auto options = body.find("stream_options");
      if (options != body.end() && options->is_object()) {
        client_wants_usage = options->value("include_usage", false);
      } else {
        body["stream_options"] = json::object();
      }
      body["stream_options"]["include_usage"] = true;
    }
    bool committed = false;    // something went to the client: no fallback now
    bool client_gone = false;  // a write to the client failed
    auto pass_on = [&](std::string_view bytes) {
      if (!committed) {
        committed = true;
        if (!res.StartStream(
                200, {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}})) {
          client_gone = true;
          return;
        }
      }
      if (!res.WriteChunk(bytes)) client_gone = true;
    };
    auto attempt = [&](const llm::Deployment& deployment) -> llm::CallResult<llm::ForwardResponse> {
      body["model"] = deployment.model->model_id;
      CapField(body, "max_tokens", deployment.model->max_output_tokens);
      CapField(body, "max_completion_tokens", deployment.model->max_output_tokens);
      llm::HttpRequest http = UpstreamRequest(endpoint, deployment, req, body.dump(), true);
      llm::SseParser parser;
      StreamScan scan(protocol, client_wants_usage);
      std::optional<std::string> stream_error;
      std::string out;
      auto sent = http_.Send(http, [&](std::string_view chunk) {
        out.clear();
        parser.Feed(chunk, [&](const llm::SseEvent& event) {
          if (!stream_error) stream_error = scan.OnEvent(event, out);
        });
        if (!out.empty()) pass_on(out);
        return !client_gone && !stream_error;
      });
      // A stream that broke off after it began is billed for what it had used (see
      // StreamScan::BilledSoFar); the ledger and the budget get that, not zero.
      auto broke_off = [&](llm::CallError error) {
        error.usage = scan.BilledSoFar();
        if (error.usage != scan.usage()) error.message += " (usage estimated from the stream)";
        return std::unexpected(std::move(error));
      };
      if (stream_error) {
        return broke_off({ErrorCode::kUnavailable, 0, -1,
                          llm::Redact("upstream " + deployment.key() +
                                          " reported an error in its stream: " + *stream_error,
                                      secrets_)});
      }
      if (client_gone)
        return broke_off({ErrorCode::kAborted, 0, -1, "the client closed the stream"});
      if (!sent) return broke_off(TransportError(sent.error()));
      if (sent->status / 100 != 2) {
        return std::unexpected(internal::ClassifyUpstream(
            sent->status, sent->Header("retry-after"), sent->body, secrets_, clock_.NowMillis()));
      }
      if (!scan.complete()) {
        return broke_off({ErrorCode::kUnavailable, 0, -1,
                          "upstream " + deployment.key() +
                              " ended its stream before the end marker (truncated)"});
      }
      return llm::ForwardResponse{.usage = scan.usage(), .http_status = sent->status};
    };
    auto result = router_->Forward(
        deployments, "chat_stream", estimated_tokens, worst_case, context,
        [&committed] { return !committed; }, attempt);
    if (!result && !committed) {
      Respond(res, protocol, internal::FromCallError(protocol, result.error()));
      return;
    }
    if (client_gone) return;      // the connection closes; nothing more to say
    if (!committed) pass_on({});  // an empty stream: only the head
    if (!result) {
      // The client already has a 200 and part of the answer: end with an error event.
      const ClientError error = internal::FromCallError(protocol, result.error());
      llm::SseEvent event;
      if (protocol == Protocol::kAnthropic) event.event = "error";
      event.data = internal::ErrorBody(protocol, error);
      std::string tail;
      internal::AppendSseEvent(tail, event);
      pass_on(tail);
    }
    res.EndStream();
  }

  const GatewayOptions options_;
  const Clock& clock_;
  Store& store_;
  ledger::BudgetGuard guard_;
  internal::LedgerWriter writer_;
  internal::GatewayAdmission admission_;
  internal::KeyCache keys_;
  llm::HttpClient http_;
  std::map<std::string, std::string> upstream_keys_;  // provider name -> key; immutable
  std::vector<std::string> secrets_;                  // the upstream keys, for Redact()
  std::unique_ptr<llm::Router> router_;
  std::unique_ptr<net::HttpServer> server_;  // null when mounted on another listener
  bool mounted_ = false;
  int port_ = 0;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;  // guarded by stop_mu_
};

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::Start(llm::ModelsConfig models, Store& store,
                                                GatewayOptions options) {
  if (options.threads < 1 || options.threads > 4096) {
    return InvalidArgument("gateway threads must be 1..4096, not " +
                           std::to_string(options.threads));
  }
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgument("port must be 0..65535, not " + std::to_string(options.port));
  }
  if (options.cache_ttl_ms < 0) return InvalidArgument("cache_ttl_ms must be >= 0");
  if (options.header_timeout_ms < 1) return InvalidArgument("header_timeout_ms must be >= 1");
  auto gateway = std::make_unique<GatewayImpl>(store, std::move(options));
  FACTORY_RETURN_IF_ERROR(gateway->Init(std::move(models)));
  FACTORY_RETURN_IF_ERROR(gateway->Bind());
  return std::unique_ptr<Gateway>(std::move(gateway));
}

Result<std::unique_ptr<Gateway>> Gateway::Mount(llm::ModelsConfig models, Store& store,
                                                net::BeastServer& server, GatewayOptions options) {
  if (options.cache_ttl_ms < 0) return InvalidArgument("cache_ttl_ms must be >= 0");
  auto gateway = std::make_unique<GatewayImpl>(store, std::move(options));
  FACTORY_RETURN_IF_ERROR(gateway->InitMounted(std::move(models), server));
  return std::unique_ptr<Gateway>(std::move(gateway));
}

}  // namespace factory::gateway
