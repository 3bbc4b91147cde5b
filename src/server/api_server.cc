#include "server/api_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "ledger/ledger.h"
#include "net/beast_server.h"
#include "server/tokens.h"
#include "stats/stats.h"

namespace factory::server {
namespace {

using Json = nlohmann::ordered_json;
using SteadyClock = std::chrono::steady_clock;

// A request field that is missing or of the wrong type: answered 400 naming the field.
struct BadField {
  std::string field;
  std::string message;
};

std::string PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t index = 0; index < text.size(); ++index) {
    const char c = text[index];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && index + 2 < text.size()) {
      int value = 0;
      auto [ptr, ec] = std::from_chars(text.data() + index + 1, text.data() + index + 3, value, 16);
      if (ec == std::errc() && ptr == text.data() + index + 3) {
        out += static_cast<char>(value);
        index += 2;
      } else {
        out += c;
      }
    } else {
      out += c;
    }
  }
  return out;
}

std::map<std::string, std::string> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1));
    if (!key.empty()) out.emplace(std::move(key), std::move(value));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    parts.emplace_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

Json StoredJson(std::string_view text) {
  Json parsed = Json::parse(text, nullptr, false);
  if (parsed.is_discarded()) return Json(std::string(text));
  return parsed;
}

Json TimeJson(int64_t ms) { return ms != 0 ? Json(FormatTimestamp(ms)) : Json(nullptr); }

Json TaskJson(const Task& task) {
  return Json{{"id", task.id},
              {"run", task.run_id},
              {"state", TaskStateName(task.state)},
              {"title", task.title},
              {"spec", task.spec},
              {"priority", task.priority},
              {"depends_on", task.depends_on},
              {"attempts", task.attempts},
              {"max_attempts", task.max_attempts},
              {"idempotency_key", task.idempotency_key ? Json(*task.idempotency_key) : Json()},
              {"command", task.command},
              {"type", task.type},
              {"agent", task.agent},
              {"result", task.result_json.empty() ? Json() : StoredJson(task.result_json)},
              {"created_at", TimeJson(task.created_ms)},
              {"updated_at", TimeJson(task.updated_ms)}};
}

Json AttemptJson(const Attempt& attempt) {
  return Json{{"id", attempt.id},
              {"number", attempt.number},
              {"owner", attempt.owner},
              {"status", AttemptStatusName(attempt.status)},
              {"started_at", TimeJson(attempt.started_ms)},
              {"finished_at", TimeJson(attempt.finished_ms)},
              {"exit_code", attempt.exit_code ? Json(*attempt.exit_code) : Json()},
              {"error", attempt.error},
              {"details", StoredJson(attempt.details_json)}};
}

Json EventJson(const Event& event) {
  return Json{{"seq", event.seq},
              {"id", event.id},
              {"ts", TimeJson(event.ts_ms)},
              {"run", event.run_id},
              {"task", event.task_id},
              {"kind", event.kind},
              {"actor", event.actor},
              {"payload", StoredJson(event.payload_json)}};
}

Json RunJson(const service::RunInfo& info, bool with_tasks) {
  const RunSummary& summary = info.summary;
  Json out{{"id", info.run.id},
           {"title", info.run.title},
           {"state", info.run.state},
           {"executing", info.executing},
           {"created_at", TimeJson(info.run.created_ms)},
           {"updated_at", TimeJson(info.run.updated_ms)},
           {"summary",
            {{"total", summary.total},
             {"done", summary.done},
             {"failed", summary.failed},
             {"blocked", summary.blocked},
             {"cancelled", summary.cancelled},
             {"unfinished", summary.unfinished},
             {"attempts", summary.attempts},
             {"cost_usd", summary.cost_usd},
             {"integration_branch", summary.integration_branch},
             {"base_branch", summary.base_branch}}}};
  if (with_tasks) {
    Json tasks = Json::array();
    for (const RunTaskView& task : info.tasks) {
      tasks.push_back({{"task_id", task.task_id},
                       {"key", task.key},
                       {"title", task.title},
                       {"state", task.state},
                       {"agent", task.agent},
                       {"attempts", task.attempts},
                       {"max_attempts", task.max_attempts},
                       {"depends_on", task.depends_on},
                       {"merge_commit", task.merge_commit},
                       {"last_error", task.last_error},
                       {"cost_usd", task.cost_usd}});
    }
    out["tasks"] = std::move(tasks);
  }
  return out;
}

std::string PromLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PromNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return fmt::format("{}", value);
}

// Requests and latency by route, for /metrics. Thread-safe.
class HttpMetrics {
 public:
  static constexpr double kBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,   0.25,   0.5,   1,    2.5,   10};

  void Record(const std::string& route, const std::string& method, int status, double seconds) {
    std::lock_guard lock(mu_);
    ++requests_[{route, method, status}];
    Histogram& histogram = latency_[route];
    if (histogram.counts.empty()) histogram.counts.assign(std::size(kBuckets), 0);
    for (size_t index = 0; index < std::size(kBuckets); ++index) {
      if (seconds <= kBuckets[index]) ++histogram.counts[index];
    }
    ++histogram.count;
    histogram.sum += seconds;
  }

  void Write(std::string& out) const {
    std::lock_guard lock(mu_);
    out +=
        "# HELP factory_http_requests_total HTTP requests answered, by route, method and "
        "status.\n# TYPE factory_http_requests_total counter\n";
    for (const auto& [key, count] : requests_) {
      const auto& [route, method, status] = key;
      out += fmt::format(
          "factory_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}\n",
          PromLabel(route), PromLabel(method), status, count);
    }
    out +=
        "# HELP factory_http_request_duration_seconds Time from a complete request to its "
        "answer, by route.\n# TYPE factory_http_request_duration_seconds histogram\n";
    for (const auto& [route, histogram] : latency_) {
      for (size_t index = 0; index < std::size(kBuckets); ++index) {
        out += fmt::format(
            "factory_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
            PromLabel(route), PromNumber(kBuckets[index]), histogram.counts[index]);
      }
      out += fmt::format(
          "factory_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n",
          PromLabel(route), histogram.count);
      out += fmt::format("factory_http_request_duration_seconds_sum{{route=\"{}\"}} {}\n",
                         PromLabel(route), PromNumber(histogram.sum));
      out += fmt::format("factory_http_request_duration_seconds_count{{route=\"{}\"}} {}\n",
                         PromLabel(route), histogram.count);
    }
  }

 private:
  struct Histogram {
    std::vector<int64_t> counts;
    int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, int64_t> requests_;  // guarded by mu_
  std::map<std::string, Histogram> latency_;                               // guarded by mu_
};

// A token bucket per token name: `per_minute` requests a minute, bursts up to a tenth of that
// (at least 10). Thread-safe.
class RateLimiter {
 public:
  explicit RateLimiter(int per_minute) : per_minute_(per_minute) {}

  // 0 when the request may go ahead; otherwise the seconds after which one may.
  int Take(const std::string& key) {
    if (per_minute_ <= 0) return 0;
    const double capacity = std::max(10.0, per_minute_ / 10.0);
    const double per_second = per_minute_ / 60.0;
    const auto now = SteadyClock::now();
    std::lock_guard lock(mu_);
    auto [it, inserted] = buckets_.try_emplace(key, Bucket{capacity, now});
    Bucket& bucket = it->second;
    if (!inserted) {
      const double elapsed = std::chrono::duration<double>(now - bucket.last).count();
      bucket.tokens = std::min(capacity, bucket.tokens + elapsed * per_second);
      bucket.last = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return std::max(1, static_cast<int>(std::ceil((1 - bucket.tokens) / per_second)));
  }

 private:
  struct Bucket {
    double tokens;
    SteadyClock::time_point last;
  };
  const int per_minute_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
};

struct Call {
  const net::Request& request;
  net::Responder& responder;
  std::map<std::string, std::string> params;
  std::map<std::string, std::string> query;
  std::string token_name;
  int status = 0;
  // Filled by Body() on first use.
  std::optional<Json> body;
};

struct RouteSpec {
  std::string method;
  std::string pattern;         // "/api/runs/{id}/cancel"
  std::optional<Scope> scope;  // nullopt: no token needed
  std::string summary;
  std::vector<std::string> query_params;
  int success_status = 200;
  std::function<void(Call&)> handler;
  std::vector<std::string> segments;  // the pattern split at '/'
};

class ApiServerImpl final : public ApiServer {
 public:
  ApiServerImpl(Store& store, service::Service& service, events::EventLog& events,
                ApiServerOptions options)
      : store_(store),
        service_(service),
        events_(events),
        options_(std::move(options)),
        limiter_(options_.rate_limit_per_minute) {
    net::BeastServerOptions server_options;
    server_options.host = options_.host;
    server_options.port = options_.port;
    server_options.worker_threads = options_.worker_threads;
    server_options.body_limit = options_.body_limit;
    server_options.tls_cert_file = options_.tls_cert_file;
    server_options.tls_key_file = options_.tls_key_file;
    server_options.on_error = [this](int status, std::string_view message,
                                     const net::Request& request, net::Responder& responder) {
      const auto started = SteadyClock::now();
      Call call{request, responder, {}, {}, "", 0, std::nullopt};
      static constexpr std::pair<int, const char*> kCodes[] = {
          {400, "invalid_argument"},  {404, "not_found"},        {405, "method_not_allowed"},
          {413, "payload_too_large"}, {431, "header_too_large"}, {500, "internal"}};
      std::string code = "error";
      for (const auto& [known, name] : kCodes) {
        if (known == status) code = name;
      }
      Fail(call, status, code, std::string(message));
      Finish(call, request.path.starts_with("/v1/") ? "/v1/*" : "(unmatched)", started);
    };
    listener_ = std::make_unique<net::BeastServer>(std::move(server_options));
    AddRoutes();
    for (RouteSpec& route : routes_) route.segments = SplitPath(route.pattern);
    listener_->RoutePrefix("/api/", [this](const net::Request& request, net::Responder& responder) {
      Serve(request, responder);
    });
    for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
      listener_->RoutePrefix(path, [this](const net::Request& request, net::Responder& responder) {
        Serve(request, responder);
      });
    }
  }

  ~ApiServerImpl() override { Stop(); }

  net::BeastServer& listener() override { return *listener_; }

  Status Start() override {
    if (!IsLoopbackHost(options_.host) && options_.tls_cert_file.empty() &&
        !options_.insecure_http) {
      return InvalidArgument("listen: " + options_.host +
                             " is not a loopback address: give --tls-cert and --tls-key, or "
                             "--insecure-http to serve plain HTTP on it anyway");
    }
    return listener_->Start();
  }

  int port() const override { return listener_->port(); }

  void Stop() override {
    listener_->Stop();
    std::map<uint64_t, std::unique_ptr<events::Subscription>> left;
    {
      std::lock_guard lock(subs_mu_);
      left.swap(subs_);
    }
    left.clear();
  }

 private:
  // --- dispatch

  void Serve(const net::Request& request, net::Responder& responder) {
    const auto started = SteadyClock::now();
    Call call{request, responder, {}, ParseQuery(request.query), "", 0, std::nullopt};
    const std::vector<std::string> parts = SplitPath(request.path);
    const RouteSpec* route = nullptr;
    std::vector<std::string> allowed;
    for (const RouteSpec& spec : routes_) {
      std::map<std::string, std::string> params;
      if (!Matches(spec, parts, params)) continue;
      if (spec.method == request.method) {
        route = &spec;
        call.params = std::move(params);
        break;
      }
      allowed.push_back(spec.method);
    }
    if (route == nullptr) {
      if (request.method == "OPTIONS" && !options_.cors_origin.empty() && !allowed.empty()) {
        Preflight(call, allowed);
        return Finish(call, request.path, started);
      }
      if (allowed.empty()) {
        Fail(call, 404, "not_found", "no such route: " + request.method + " " + request.path);
      } else {
        std::string allow;
        for (const auto& method : allowed) allow += (allow.empty() ? "" : ", ") + method;
        Fail(call, 405, "method_not_allowed",
             "method " + request.method + " not allowed on " + request.path +
                 " (allowed: " + allow + ")",
             "", {{"Allow", allow}});
      }
      return Finish(call, "(unmatched)", started);
    }
    if (route->scope && !Authorize(call, *route->scope))
      return Finish(call, route->pattern, started);
    try {
      route->handler(call);
    } catch (const BadField& bad) {
      if (!responder.started()) Fail(call, 400, "invalid_argument", bad.message, bad.field);
    } catch (const std::exception& error) {
      spdlog::error("api: {} {} failed: {}", request.method, request.path, error.what());
      if (!responder.started()) Fail(call, 500, "internal", "internal server error");
    }
    Finish(call, route->pattern, started);
  }

  static bool Matches(const RouteSpec& spec, const std::vector<std::string>& parts,
                      std::map<std::string, std::string>& params) {
    if (spec.segments.size() != parts.size()) return false;
    for (size_t index = 0; index < parts.size(); ++index) {
      const std::string& segment = spec.segments[index];
      if (segment.size() > 2 && segment.front() == '{' && segment.back() == '}') {
        if (parts[index].empty()) return false;
        params[segment.substr(1, segment.size() - 2)] = PercentDecode(parts[index]);
      } else if (segment != parts[index]) {
        return false;
      }
    }
    return true;
  }

  bool Authorize(Call& call, Scope need) {
    const std::string header = call.request.headers.Get("authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (header.size() <= kBearer.size() ||
        !std::equal(kBearer.begin(), kBearer.end(), header.begin(),
                    [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
      Fail(call, 401, "unauthenticated", "an API token is needed: Authorization: Bearer <token>",
           "", {{"WWW-Authenticate", "Bearer"}});
      return false;
    }
    const std::string token = header.substr(kBearer.size());
    Result<ApiToken> found = NotFound("");
    auto read = store_.Read([&](StoreTxn& txn) -> Status {
      found = CheckToken(txn, token, SystemClock().NowMillis());
      return Ok();
    });
    if (!read) {
      Fail(call, 503, "unavailable", "cannot check the token: " + read.error().message);
      return false;
    }
    if (!found) {
      Fail(call, 401, "unauthenticated",
           found.error().code == ErrorCode::kNotFound ? "unknown API token" : found.error().message,
           "", {{"WWW-Authenticate", "Bearer error=\"invalid_token\""}});
      return false;
    }
    call.token_name = found->name;
    auto scope = ParseScope(found->scope);
    if (!scope || !ScopeAllows(*scope, need)) {
      Fail(call, 403, "permission_denied",
           "token '" + found->name + "' has scope " + found->scope + "; this route needs " +
               std::string(ScopeName(need)));
      return false;
    }
    if (const int wait = limiter_.Take(found->name); wait > 0) {
      Fail(call, 429, "rate_limited",
           "token '" + found->name + "' made more than " +
               std::to_string(options_.rate_limit_per_minute) + " requests a minute",
           "", {{"Retry-After", std::to_string(wait)}});
      return false;
    }
    return true;
  }

  void Preflight(Call& call, const std::vector<std::string>& allowed) {
    std::string methods;
    for (const auto& method : allowed) methods += (methods.empty() ? "" : ", ") + method;
    call.status = 204;
    call.responder.Send(204,
                        {{"Access-Control-Allow-Origin", options_.cors_origin},
                         {"Access-Control-Allow-Methods", methods},
                         {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                         {"Vary", "Origin"}},
                        "");
  }

  void Finish(Call& call, const std::string& route, SteadyClock::time_point started) {
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
    metrics_.Record(route, call.request.method, call.status, seconds);
    if (options_.access_log == nullptr) return;
    Json line{{"ts", FormatTimestamp(SystemClock().NowMillis())},
              {"method", call.request.method},
              {"route", route},
              {"status", call.status},
              {"duration_ms", std::round(seconds * 1e6) / 1e3},
              {"token", call.token_name.empty() ? Json() : Json(call.token_name)}};
    const std::string text = line.dump() + "\n";
    std::lock_guard lock(log_mu_);
    *options_.access_log << text << std::flush;
  }

  net::HeaderFields BaseHeaders(std::string_view content_type) const {
    net::HeaderFields headers = {{"Content-Type", std::string(content_type)}};
    if (!options_.cors_origin.empty()) {
      headers.emplace_back("Access-Control-Allow-Origin", options_.cors_origin);
      headers.emplace_back("Vary", "Origin");
    }
    return headers;
  }

  void Reply(Call& call, int status, const Json& body) {
    call.status = status;
    call.responder.Send(status, BaseHeaders("application/json"),
                        body.dump(-1, ' ', false, Json::error_handler_t::replace));
  }

  void Fail(Call& call, int status, const std::string& code, const std::string& message,
            const std::string& field = "", net::HeaderFields extra = {}) {
    Json error{{"code", code}, {"message", message}};
    if (!field.empty()) error["field"] = field;
    call.status = status;
    net::HeaderFields headers = BaseHeaders("application/json");
    for (auto& header : extra) headers.push_back(std::move(header));
    call.responder.Send(
        status, headers,
        Json{{"error", error}}.dump(-1, ' ', false, Json::error_handler_t::replace));
  }

  void FailWith(Call& call, const Error& error) {
    const int status = service::HttpStatusFor(error.code);
    Fail(call, status, std::string(ErrorCodeName(error.code)), error.message,
         service::ErrorField(error));
  }

  // --- request parsing

  const Json& Body(Call& call) {
    if (!call.body) {
      if (call.request.body.empty()) throw BadField{"body", "a JSON object body is needed"};
      Json parsed = Json::parse(call.request.body, nullptr, false);
      if (parsed.is_discarded() || !parsed.is_object()) {
        throw BadField{"body", "the body must be a JSON object"};
      }
      call.body = std::move(parsed);
    }
    return *call.body;
  }

  static std::optional<std::string> OptString(const Json& body, const std::string& field) {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) throw BadField{field, field + " must be a string"};
    return it->get<std::string>();
  }

  static std::optional<int64_t> OptInt(const Json& body, const std::string& field) {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer()) throw BadField{field, field + " must be an integer"};
    return it->get<int64_t>();
  }

  static int IntQuery(const Call& call, const std::string& name, int fallback, int low, int high) {
    auto it = call.query.find(name);
    if (it == call.query.end() || it->second.empty()) return fallback;
    int value = 0;
    auto [ptr, ec] =
        std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
    if (ec != std::errc() || ptr != it->second.data() + it->second.size() || value < low ||
        value > high) {
      throw BadField{name, name + " must be an integer in " + std::to_string(low) + ".." +
                               std::to_string(high)};
    }
    return value;
  }

  static std::string Query(const Call& call, const std::string& name) {
    auto it = call.query.find(name);
    return it == call.query.end() ? std::string() : it->second;
  }

  // --- routes

  void AddRoute(std::string method, std::string pattern, std::optional<Scope> scope,
                std::string summary, std::function<void(Call&)> handler, int success = 200,
                std::vector<std::string> query_params = {}) {
    routes_.push_back(RouteSpec{std::move(method),
                                std::move(pattern),
                                scope,
                                std::move(summary),
                                std::move(query_params),
                                success,
                                std::move(handler),
                                {}});
  }

  void AddRoutes() {
    const auto kRead = Scope::kRead;
    const auto kOperator = Scope::kOperator;
    const auto kAdmin = Scope::kAdmin;
    AddRoute("GET", "/healthz", std::nullopt, "Liveness: the process serves requests",
             [this](Call& call) {
               Reply(call, 200, Json{{"status", "ok"}});
             });
    AddRoute("GET", "/readyz", std::nullopt, "Readiness: the database answers",
             [this](Call& call) { Ready(call); });
    AddRoute("GET", "/metrics", std::nullopt, "Prometheus metrics (text format)",
             [this](Call& call) { Metrics(call); });
    AddRoute("GET", "/api/openapi.json", std::nullopt, "This document",
             [this](Call& call) { Reply(call, 200, OpenApi()); });

    AddRoute("GET", "/api/runs", kRead, "List runs, newest first",
             [this](Call& call) { ListRuns(call); }, 200, {"limit", "cursor"});
    AddRoute(
        "POST", "/api/runs", kOperator,
        "Start a run: {\"run_id\"?, \"feature\": markdown} or {\"run_id\"?, \"backlog\": "
        "{\"tasks\": [...]}}",
        [this](Call& call) { StartRun(call); }, 202);
    AddRoute("GET", "/api/runs/{id}", kRead, "A run with its tasks",
             [this](Call& call) { GetRun(call); });
    AddRoute("POST", "/api/runs/{id}/cancel", kOperator, "Cancel a run",
             [this](Call& call) { RunAction(call, "cancel"); });
    AddRoute(
        "POST", "/api/runs/{id}/resume", kOperator, "Resume a stopped or interrupted run",
        [this](Call& call) { RunAction(call, "resume"); }, 202);
    AddRoute("POST", "/api/runs/{id}/merge", kOperator,
             "Merge a run's integration branch into the base branch",
             [this](Call& call) { RunAction(call, "merge"); });

    AddRoute("GET", "/api/tasks", kRead, "List tasks, oldest first",
             [this](Call& call) { ListTasks(call); }, 200, {"run", "state", "limit", "cursor"});
    AddRoute(
        "POST", "/api/tasks", kOperator,
        "Add a task (201; 200 with the existing task when idempotency_key matched)",
        [this](Call& call) { AddTask(call); }, 201);
    AddRoute("GET", "/api/tasks/{id}", kRead, "A task with its attempts and events",
             [this](Call& call) { GetTask(call); });
    AddRoute("POST", "/api/tasks/{id}/cancel", kOperator, "Cancel a task",
             [this](Call& call) { TaskAction(call, "cancel"); });
    AddRoute("POST", "/api/tasks/{id}/retry", kOperator, "Retry a failed or blocked task",
             [this](Call& call) { TaskAction(call, "retry"); });

    AddRoute("GET", "/api/agents", kRead, "The agents, their slots and pauses",
             [this](Call& call) { ListAgents(call); });
    AddRoute("POST", "/api/agents/{name}/pause", kOperator, "Pause an agent",
             [this](Call& call) { AgentAction(call, true); });
    AddRoute("POST", "/api/agents/{name}/resume", kOperator, "Resume a paused agent",
             [this](Call& call) { AgentAction(call, false); });

    AddRoute("GET", "/api/costs", kRead, "Model-call costs grouped by agent, model, day or run",
             [this](Call& call) { Costs(call); }, 200, {"by", "since"});
    AddRoute("GET", "/api/stats", kRead, "Run statistics", [this](Call& call) { Stats(call); }, 200,
             {"run"});
    AddRoute("GET", "/api/events", kRead,
             "The event log as Server-Sent Events (id: = seq; Last-Event-ID resumes)",
             [this](Call& call) { Events(call); }, 200, {"run", "task", "kind", "after"});

    AddRoute("GET", "/api/tokens", kAdmin, "List API tokens (never the token)",
             [this](Call& call) { ListApiTokens(call); });
    AddRoute(
        "POST", "/api/tokens", kAdmin,
        "Create an API token: {\"name\", \"scope\", \"expires\"?}; the token is in the "
        "answer only",
        [this](Call& call) { CreateApiToken(call); }, 201);
    AddRoute("POST", "/api/tokens/{name}/revoke", kAdmin, "Revoke an API token",
             [this](Call& call) { RevokeApiToken(call); });
  }

  void Ready(Call& call) {
    auto read = store_.Read([](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(int64_t seq, txn.LastEventSeq());
      (void)seq;
      return Ok();
    });
    if (!read) return Fail(call, 503, "unavailable", "database: " + read.error().message);
    Reply(call, 200, Json{{"status", "ready"}});
  }

  Json OpenApi() const {
    Json paths = Json::object();
    for (const RouteSpec& route : routes_) {
      Json parameters = Json::array();
      for (const std::string& segment : route.segments) {
        if (segment.size() > 2 && segment.front() == '{') {
          parameters.push_back({{"name", segment.substr(1, segment.size() - 2)},
                                {"in", "path"},
                                {"required", true},
                                {"schema", {{"type", "string"}}}});
        }
      }
      for (const std::string& name : route.query_params) {
        parameters.push_back({{"name", name},
                              {"in", "query"},
                              {"required", false},
                              {"schema", {{"type", "string"}}}});
      }
      Json responses = Json::object();
      const bool sse = route.pattern == "/api/events";
      const std::string type = route.pattern == "/metrics" ? "text/plain"
                               : sse                       ? "text/event-stream"
                                                           : "application/json";
      responses[std::to_string(route.success_status)] = {
          {"description", "success"},
          {"content",
           {{type, {{"schema", {{"type", sse || type == "text/plain" ? "string" : "object"}}}}}}}};
      const Json error_ref = {
          {"description", "error"},
          {"content",
           {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
      if (route.method == "POST") responses["400"] = error_ref;
      if (route.scope) {
        responses["401"] = error_ref;
        responses["403"] = error_ref;
        responses["429"] = error_ref;
      }
      if (route.pattern.find('{') != std::string::npos) responses["404"] = error_ref;
      Json operation{{"operationId", OperationId(route)},
                     {"summary", route.summary},
                     {"parameters", parameters},
                     {"responses", responses}};
      if (route.method == "POST") {
        operation["requestBody"] = {
            {"required", route.pattern == "/api/runs" || route.pattern == "/api/tasks" ||
                             route.pattern == "/api/tokens"},
            {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
      }
      operation["security"] =
          route.scope
              ? Json::array({{{"bearer", Json::array({std::string(ScopeName(*route.scope))})}}})
              : Json::array();
      std::string method = route.method;
      std::transform(method.begin(), method.end(), method.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      paths[route.pattern][method] = std::move(operation);
    }
    return Json{{"openapi", "3.1.0"},
                {"info", {{"title", "Agent Factory API"}, {"version", "1"}}},
                {"paths", paths},
                {"components",
                 {{"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}},
                  {"schemas",
                   {{"Error",
                     {{"type", "object"},
                      {"required", {"error"}},
                      {"properties",
                       {{"error",
                         {{"type", "object"},
                          {"required", {"code", "message"}},
                          {"properties",
                           {{"code", {{"type", "string"}}},
                            {"message", {{"type", "string"}}},
                            {"field", {{"type", "string"}}}}}}}}}}}}}}}};
  }

  static std::string OperationId(const RouteSpec& route) {
    std::string id = route.method == "GET" ? "get" : "post";
    for (const std::string& segment : route.segments) {
      if (segment == "api" || segment.empty()) continue;
      std::string part =
          segment.front() == '{' ? "By" + segment.substr(1, segment.size() - 2) : segment;
      for (char& c : part) {
        if (c == '.' || c == '-') c = '_';
      }
      part[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(part[0])));
      id += part;
    }
    return id;
  }

  void Metrics(Call& call) {
    std::string out;
    auto counts = [&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto by_state, txn.CountTasksByState(""));
      out += "# HELP factory_tasks Tasks by state.\n# TYPE factory_tasks gauge\n";
      for (const auto& [state, count] : by_state) {
        out += fmt::format("factory_tasks{{state=\"{}\"}} {}\n", TaskStateName(state), count);
      }
      FACTORY_ASSIGN_OR_RETURN(auto runs, txn.ListRuns(100000));
      std::map<std::string, int64_t> runs_by_state;
      for (const Run& run : runs) ++runs_by_state[run.state];
      out += "# HELP factory_runs Runs by state.\n# TYPE factory_runs gauge\n";
      for (const auto& [state, count] : runs_by_state) {
        out += fmt::format("factory_runs{{state=\"{}\"}} {}\n", PromLabel(state), count);
      }
      TaskQuery oldest_ready;
      oldest_ready.state = TaskState::kReady;
      oldest_ready.limit = 1;
      FACTORY_ASSIGN_OR_RETURN(auto ready, txn.ListTasks(oldest_ready));
      const double lag =
          ready.empty()
              ? 0.0
              : std::max<int64_t>(0, SystemClock().NowMillis() - ready[0].updated_ms) / 1000.0;
      out +=
          "# HELP factory_queue_lag_seconds How long the oldest ready task has waited for a "
          "claim.\n# TYPE factory_queue_lag_seconds gauge\n";
      out += "factory_queue_lag_seconds " + PromNumber(lag) + "\n";
      return Ok();
    };
    if (auto read = store_.Read(counts); !read) {
      return Fail(call, 503, "unavailable", "database: " + read.error().message);
    }
    // factory_model_{calls,tokens,cost_usd}_by_{agent,model}_total: one family per grouping,
    // since one family must not mix label sets.
    for (const char* group : {"agent", "model"}) {
      auto costs = service_.Costs({.by = group, .since = ""});
      if (!costs) continue;
      const std::string calls = fmt::format("factory_model_calls_by_{}_total", group);
      const std::string tokens = fmt::format("factory_model_tokens_by_{}_total", group);
      const std::string cost = fmt::format("factory_model_cost_usd_by_{}_total", group);
      out += fmt::format("# HELP {0} Model calls by {1}.\n# TYPE {0} counter\n", calls, group);
      for (const auto& row : costs->report.rows) {
        out += fmt::format("{}{{{}=\"{}\"}} {}\n", calls, group, PromLabel(row.key), row.calls);
      }
      out += fmt::format("# HELP {0} Model tokens by {1} and direction.\n# TYPE {0} counter\n",
                         tokens, group);
      for (const auto& row : costs->report.rows) {
        out += fmt::format("{}{{{}=\"{}\",direction=\"input\"}} {}\n", tokens, group,
                           PromLabel(row.key), row.input_tokens);
        out += fmt::format("{}{{{}=\"{}\",direction=\"output\"}} {}\n", tokens, group,
                           PromLabel(row.key), row.output_tokens);
      }
      out += fmt::format("# HELP {0} Model cost in US dollars by {1}.\n# TYPE {0} counter\n", cost,
                         group);
      for (const auto& row : costs->report.rows) {
        out += fmt::format("{}{{{}=\"{}\"}} {}\n", cost, group, PromLabel(row.key),
                           PromNumber(row.cost_usd));
      }
    }
    out +=
        "# HELP factory_sse_subscribers Open event streams (GET /api/events).\n# TYPE "
        "factory_sse_subscribers gauge\n";
    {
      std::lock_guard lock(subs_mu_);
      out += "factory_sse_subscribers " + std::to_string(subs_.size()) + "\n";
    }
    out +=
        "# HELP factory_http_open_connections Connections open now.\n# TYPE "
        "factory_http_open_connections gauge\n";
    out += "factory_http_open_connections " + std::to_string(listener_->open_connections()) + "\n";
    metrics_.Write(out);
    call.status = 200;
    call.responder.Send(200, {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}}, out);
  }

  // --- runs

  void ListRuns(Call& call) {
    service::ListRunsRequest request;
    request.limit = IntQuery(call, "limit", 100, 1, 1000);
    request.cursor = Query(call, "cursor");
    auto page = service_.ListRuns(request);
    if (!page) return FailWith(call, page.error());
    Json items = Json::array();
    for (const auto& run : page->runs) items.push_back(RunJson(run, false));
    Reply(call, 200,
          Json{{"items", items},
               {"next_cursor", page->next_cursor.empty() ? Json() : Json(page->next_cursor)}});
  }

  void StartRun(Call& call) {
    const Json& body = Body(call);
    service::StartRunRequest request;
    request.run_id = OptString(body, "run_id");
    const auto feature = OptString(body, "feature");
    auto backlog = body.find("backlog");
    const bool has_backlog = backlog != body.end() && !backlog->is_null();
    if (feature.has_value() == has_backlog) {
      throw BadField{"feature",
                     "give exactly one of feature (markdown) and backlog ({\"tasks\": [...]})"};
    }
    if (feature) {
      if (feature->empty()) throw BadField{"feature", "feature must not be empty"};
      request.feature_text = *feature;
    } else {
      if (!backlog->is_object() || !backlog->contains("tasks") || !(*backlog)["tasks"].is_array()) {
        throw BadField{"backlog", "backlog must be an object with a tasks array"};
      }
      request.backlog_text = backlog->dump();
      request.backlog_format = "json";
    }
    if (auto title = OptString(body, "title")) request.title = *title;
    auto started = service_.StartRun(request);
    if (!started) return FailWith(call, started.error());
    Reply(call, 202, Json{{"run", RunJson(started->run, false)}, {"warnings", started->warnings}});
  }

  void GetRun(Call& call) {
    auto run = service_.GetRun(call.params["id"]);
    if (!run) return FailWith(call, run.error());
    Reply(call, 200, RunJson(*run, true));
  }

  void RunAction(Call& call, std::string_view action) {
    const std::string& id = call.params["id"];
    if (action == "cancel") {
      auto run = service_.CancelRun(id);
      if (!run) return FailWith(call, run.error());
      return Reply(call, 200, RunJson(*run, false));
    }
    if (action == "resume") {
      auto resumed = service_.ResumeRun(id);
      if (!resumed) return FailWith(call, resumed.error());
      return Reply(call, 202, RunJson(resumed->run, false));
    }
    service::MergeRunRequest request;
    request.run_id = id;
    request.user = "api:" + call.token_name;
    if (!call.request.body.empty()) {
      const Json& body = Body(call);
      if (auto it = body.find("force"); it != body.end()) {
        if (!it->is_boolean()) throw BadField{"force", "force must be true or false"};
        request.force = it->get<bool>();
      }
      if (auto reason = OptString(body, "reason")) request.reason = *reason;
    }
    auto merged = service_.MergeRun(request);
    if (!merged) return FailWith(call, merged.error());
    Reply(call, 200, Json{{"run", id}, {"merged", true}});
  }

  // --- tasks

  void ListTasks(Call& call) {
    service::ListTasksRequest request;
    request.run = Query(call, "run");
    request.state = Query(call, "state");
    request.limit = IntQuery(call, "limit", 100, 1, 1000);
    request.cursor = Query(call, "cursor");
    auto page = service_.ListTasks(request);
    if (!page) return FailWith(call, page.error());
    Json items = Json::array();
    for (const Task& task : page->tasks) items.push_back(TaskJson(task));
    Reply(call, 200,
          Json{{"items", items},
               {"next_cursor", page->next_cursor.empty() ? Json() : Json(page->next_cursor)}});
  }

  void AddTask(Call& call) {
    const Json& body = Body(call);
    service::AddTaskRequest request;
    auto title = OptString(body, "title");
    if (!title) throw BadField{"title", "title is required"};
    request.title = *title;
    if (auto spec = OptString(body, "spec")) request.spec = *spec;
    request.command = OptString(body, "command");
    if (auto it = body.find("depends_on"); it != body.end() && !it->is_null()) {
      if (!it->is_array()) throw BadField{"depends_on", "depends_on must be an array of task ids"};
      for (const auto& id : *it) {
        if (!id.is_string())
          throw BadField{"depends_on", "depends_on must be an array of task ids"};
        request.depends_on.push_back(id.get<std::string>());
      }
    }
    if (auto priority = OptInt(body, "priority")) {
      if (*priority < -1'000'000 || *priority > 1'000'000) {
        throw BadField{"priority", "priority must be in -1000000..1000000"};
      }
      request.priority = static_cast<int>(*priority);
    }
    request.idempotency_key = OptString(body, "idempotency_key");
    if (auto run = OptString(body, "run")) request.run = *run;
    if (auto max_attempts = OptInt(body, "max_attempts")) {
      if (*max_attempts < 1 || *max_attempts > 1000) {
        throw BadField{"max_attempts", "max_attempts must be in 1..1000"};
      }
      request.max_attempts = static_cast<int>(*max_attempts);
    }
    for (const auto& [key, value] : body.items()) {
      static const char* kKnown[] = {"title",    "spec", "command",      "depends_on",
                                     "priority", "run",  "max_attempts", "idempotency_key"};
      if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
        throw BadField{key, "unknown field " + key};
      }
    }
    auto added = service_.AddTask(request);
    if (!added) return FailWith(call, added.error());
    Reply(call, added->created ? 201 : 200, TaskJson(added->task));
  }

  void GetTask(Call& call) {
    auto details = service_.GetTask(call.params["id"]);
    if (!details) return FailWith(call, details.error());
    Json out = TaskJson(details->task);
    Json attempts = Json::array();
    for (const Attempt& attempt : details->attempts) attempts.push_back(AttemptJson(attempt));
    Json events = Json::array();
    for (const Event& event : details->events) events.push_back(EventJson(event));
    out["attempt_list"] = std::move(attempts);
    out["events"] = std::move(events);
    Reply(call, 200, out);
  }

  void TaskAction(Call& call, std::string_view action) {
    const std::string& id = call.params["id"];
    Result<Task> task = action == "cancel" ? [&] {
      std::string reason = "cancelled through the API by " + call.token_name;
      if (!call.request.body.empty()) {
        if (auto given = OptString(Body(call), "reason")) reason = *given;
      }
      return service_.CancelTask(id, reason);
    }()
                                           : service_.RetryTask(id);
    if (!task) return FailWith(call, task.error());
    Reply(call, 200, TaskJson(*task));
  }

  // --- agents, costs, stats

  void ListAgents(Call& call) {
    auto agents = service_.ListAgents();
    if (!agents) return FailWith(call, agents.error());
    Json items = Json::array();
    for (const auto& agent : *agents) {
      items.push_back({{"name", agent.name},
                       {"role", agent.role},
                       {"runner", agent.runner},
                       {"capabilities", agent.capabilities},
                       {"concurrency", agent.concurrency},
                       {"in_use", agent.in_use},
                       {"paused", agent.paused},
                       {"pause_reason", agent.pause_reason},
                       {"paused_by", agent.paused_by}});
    }
    Reply(call, 200, Json{{"items", items}});
  }

  void AgentAction(Call& call, bool pause) {
    const std::string& name = call.params["name"];
    Status status = Ok();
    if (pause) {
      std::string reason = "paused through the API by " + call.token_name;
      if (!call.request.body.empty()) {
        if (auto given = OptString(Body(call), "reason")) reason = *given;
      }
      status = service_.PauseAgent(name, reason);
    } else {
      status = service_.ResumeAgent(name);
    }
    if (!status) return FailWith(call, status.error());
    Reply(call, 200, Json{{"agent", name}, {"paused", pause}});
  }

  void Costs(Call& call) {
    service::CostsRequest request;
    if (auto by = Query(call, "by"); !by.empty()) request.by = by;
    request.since = Query(call, "since");
    auto costs = service_.Costs(request);
    if (!costs) return FailWith(call, costs.error());
    Reply(call, 200,
          Json::parse(ledger::CostReportJson(costs->report, costs->group, costs->since_ms)));
  }

  void Stats(Call& call) {
    auto report = service_.Stats({.run = Query(call, "run")});
    if (!report) return FailWith(call, report.error());
    Reply(call, 200, Json::parse(stats::StatsReportJson(*report)));
  }

  // --- events

  void Events(Call& call) {
    int64_t after = -1;
    std::string resume = call.request.headers.Get("last-event-id");
    std::string field = "Last-Event-ID";
    if (resume.empty()) {
      resume = Query(call, "after");
      field = "after";
    }
    if (!resume.empty()) {
      auto [ptr, ec] = std::from_chars(resume.data(), resume.data() + resume.size(), after);
      if (ec != std::errc() || ptr != resume.data() + resume.size() || after < 0) {
        throw BadField{field, field + " must be an event sequence number"};
      }
    }
    events::EventFilter filter;
    filter.run_id = Query(call, "run");
    filter.task_id = Query(call, "task");
    if (std::string kinds = Query(call, "kind"); !kinds.empty()) {
      std::string_view rest = kinds;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        const std::string_view name = rest.substr(0, comma);
        auto kind = events::ParseEventKind(name);
        if (!kind) throw BadField{"kind", "unknown event kind " + std::string(name)};
        filter.kinds.push_back(*kind);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
    if (after < 0) {
      auto read = store_.Read([&](StoreTxn& txn) -> Status {
        FACTORY_ASSIGN_OR_RETURN(after, txn.LastEventSeq());
        return Ok();
      });
      if (!read) return Fail(call, 503, "unavailable", "database: " + read.error().message);
    }
    net::HeaderFields headers = BaseHeaders("text/event-stream");
    headers.emplace_back("Cache-Control", "no-store");
    std::shared_ptr<net::AsyncStream> stream = call.responder.Detach(200, headers);
    call.status = 200;
    if (!stream) return;
    stream->Write(": events after " + std::to_string(after) + "\n\n");
    auto subscription = events_.Subscribe(after, filter, [stream](const Event& event) {
      std::string frame =
          "id: " + std::to_string(event.seq) + "\nevent: " + event.kind +
          "\ndata: " + EventJson(event).dump(-1, ' ', false, Json::error_handler_t::replace) +
          "\n\n";
      stream->Write(std::move(frame));
    });
    uint64_t id = 0;
    {
      std::lock_guard lock(subs_mu_);
      id = ++next_sub_;
      subs_.emplace(id, std::move(subscription));
    }
    stream->OnClose([this, id] {
      std::unique_ptr<events::Subscription> ended;
      {
        std::lock_guard lock(subs_mu_);
        auto it = subs_.find(id);
        if (it == subs_.end()) return;
        ended = std::move(it->second);
        subs_.erase(it);
      }
      ended->Cancel();
    });
  }

  // --- tokens

  void ListApiTokens(Call& call) {
    auto tokens = server::ListTokens(store_);
    if (!tokens) return FailWith(call, tokens.error());
    Reply(call, 200, Json{{"items", Json::parse(TokensJson(*tokens, SystemClock().NowMillis()))}});
  }

  void CreateApiToken(Call& call) {
    const Json& body = Body(call);
    auto name = OptString(body, "name");
    if (!name) throw BadField{"name", "name is required"};
    auto scope_text = OptString(body, "scope");
    if (!scope_text) throw BadField{"scope", "scope is required (read, operator or admin)"};
    auto scope = ParseScope(*scope_text);
    if (!scope) throw BadField{"scope", scope.error().message};
    int64_t lifetime = 0;
    if (auto expires = OptString(body, "expires")) {
      auto parsed = ParseLifetime(*expires);
      if (!parsed) throw BadField{"expires", parsed.error().message};
      lifetime = *parsed;
    }
    auto issued = IssueToken(store_, *name, *scope, lifetime);
    if (!issued) {
      if (issued.error().code == ErrorCode::kInvalidArgument) {
        throw BadField{"name", issued.error().message};
      }
      return FailWith(call, issued.error());
    }
    Reply(call, 201,
          Json{{"id", issued->record.id},
               {"name", issued->record.name},
               {"scope", issued->record.scope},
               {"prefix", issued->record.prefix},
               {"expires_at", TimeJson(issued->record.expires_ms)},
               {"token", issued->token}});
  }

  void RevokeApiToken(Call& call) {
    if (auto status = RevokeToken(store_, call.params["name"]); !status) {
      return FailWith(call, status.error());
    }
    Reply(call, 200, Json{{"name", call.params["name"]}, {"revoked", true}});
  }

  Store& store_;
  service::Service& service_;
  events::EventLog& events_;
  const ApiServerOptions options_;
  RateLimiter limiter_;
  HttpMetrics metrics_;
  std::vector<RouteSpec> routes_;  // immutable after construction
  std::unique_ptr<net::BeastServer> listener_;
  std::mutex log_mu_;  // one access-log line at a time
  mutable std::mutex subs_mu_;
  std::map<uint64_t, std::unique_ptr<events::Subscription>> subs_;  // guarded by subs_mu_
  uint64_t next_sub_ = 0;                                           // guarded by subs_mu_
};

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

Result<std::unique_ptr<ApiServer>> ApiServer::Create(Store& store, service::Service& service,
                                                     events::EventLog& events,
                                                     ApiServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgument("listen: port must be 0..65535, not " + std::to_string(options.port));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgument("tls-cert: TLS needs both --tls-cert and --tls-key");
  }
  return std::unique_ptr<ApiServer>(
      std::make_unique<ApiServerImpl>(store, service, events, std::move(options)));
}

}  // namespace factory::server
