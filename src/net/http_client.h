#pragma once
// A plain-HTTP/1.1 client over pooled keep-alive connections, for upstreams without TLS (local
// model servers, the gateway's fakes and benchmarks). It exists because libcurl's easy
// interface spends system calls we cannot turn off on every transfer (a liveness poll of the
// reused connection and polls of its wake-up pipe): here a request is one writev() of headers
// and body and its answer is read with blocking recv() calls, so a call on a warm connection
// costs two system calls. Responses are parsed by Boost.Beast's HTTP parser.
//
// Thread-safe: any number of threads may call Send() at once; each call takes a connection
// from the pool (or opens one) and gives it back when the answer was read whole and the server
// keeps the connection open.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace factory::net {

struct ClientRequest {
  std::string method = "POST";
  std::string url;  // http://host[:port]/path[?query]; host may be a name or [v6 literal]
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int64_t connect_timeout_ms = 10'000;
  int64_t total_timeout_ms = 60'000;  // whole exchange; 0 = none
  int64_t idle_timeout_ms = 0;        // longest wait for the next byte; 0 = none
};

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; last value wins
  std::string body;  // the whole body, except 2xx bodies handed to a sink (see Send)

  // The header's value, or "" when absent. `name` must be lower case.
  std::string Header(const std::string& name) const;
};

// Receives a piece of a 2xx body as it arrives (chunked encoding already removed). Return false
// to abort: Send then fails with kAborted and the connection is closed.
using ClientBodySink = std::function<bool(std::string_view piece)>;

class PlainHttpClient {
 public:
  PlainHttpClient();
  ~PlainHttpClient();
  PlainHttpClient(const PlainHttpClient&) = delete;
  PlainHttpClient& operator=(const PlainHttpClient&) = delete;

  // Performs the request; any HTTP status is a success at this level. With a sink, 2xx bodies
  // go to it piece by piece instead of into ClientResponse::body.
  // Errors: kInvalidArgument (not an http:// URL, a header with CR/LF), kDeadlineExceeded (a
  // timeout), kUnavailable (name resolution, connection refused or reset, a malformed answer,
  // an answer cut short), kAborted (the sink returned false). Messages name the method and URL,
  // never header values.
  Result<ClientResponse> Send(const ClientRequest& request, const ClientBodySink& sink = {});

  // Idle connections kept per host:port.
  static constexpr size_t kMaxIdlePerOrigin = 64;

 private:
  struct Connection;
  std::unique_ptr<Connection> TakeIdle(const std::string& origin);
  void GiveBack(const std::string& origin, std::unique_ptr<Connection> connection);

  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;  // guarded by mu_
};

}  // namespace factory::net
