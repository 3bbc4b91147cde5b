#pragma once
// `factory serve`'s HTTP side: the JSON API under /api (described by GET /api/openapi.json),
// Server-Sent Events of the event log, /metrics, /healthz, /readyz, and the gateway's /v1
// routes, all on one event-driven listener (net/beast_server.h).
//
// Auth: every /api route but the OpenAPI document needs `Authorization: Bearer <token>`
// (server/tokens.h): `read` for GETs, `operator` for actions, `admin` for tokens. Errors are
// JSON: {"error": {"code", "message", "field"?}} with 400/401/403/404/405/409/413/429/5xx.
// A token making more than `rate_limit_per_minute` requests is answered 429 with Retry-After.
// Each request writes one JSON access-log line (method, route, status, duration_ms, token
// name; never a token or a body) to `access_log`.

#include <cstddef>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "core/result.h"
#include "events/event_log.h"
#include "service/service.h"
#include "store/store.h"

namespace factory::net {
class BeastServer;
}

namespace factory::server {

struct ApiServerOptions {
  std::string host = "127.0.0.1";
  int port = 8700;            // 0: any free port
  std::string tls_cert_file;  // both set: HTTPS
  std::string tls_key_file;
  // Listening on a non-loopback address without TLS is refused unless this is set.
  bool insecure_http = false;
  // "": no CORS headers at all; otherwise the one origin allowed (Access-Control-Allow-Origin).
  std::string cors_origin;
  int rate_limit_per_minute = 6000;  // per token; 0: no limit
  size_t body_limit = 8 * 1024 * 1024;
  int worker_threads = 16;
  // Where the access log goes (one JSON object per line); null: nowhere. Must outlive the server.
  std::ostream* access_log = nullptr;
};

class ApiServer {
 public:
  // Builds the routes; the caller may mount more (the gateway) on listener() before Start().
  // REQUIRES: store, service and events outlive the server.
  static Result<std::unique_ptr<ApiServer>> Create(Store& store, service::Service& service,
                                                   events::EventLog& events,
                                                   ApiServerOptions options);
  virtual ~ApiServer() = default;

  virtual net::BeastServer& listener() = 0;
  // Binds and serves. Unavailable when the address cannot be bound; InvalidArgument for a
  // non-loopback address without TLS or insecure_http, or unreadable TLS files.
  virtual Status Start() = 0;
  virtual int port() const = 0;
  // Stops accepting, ends the event streams, lets requests in flight finish. Idempotent.
  virtual void Stop() = 0;
};

// Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost).
bool IsLoopbackHost(const std::string& host);

}  // namespace factory::server
