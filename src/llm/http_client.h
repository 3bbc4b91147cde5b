#pragma once
// A small HTTP client for model calls: connection reuse, connect / total / idle timeouts,
// streamed response bodies (for SSE) and captured response headers (Retry-After). https://
// goes through libcurl (TLS); plain http:// (local model servers) through net::PlainHttpClient,
// which spends fewer system calls per call.
// Thread-safe: any number of threads may call Send() concurrently; each call borrows an easy
// handle from a pool, and a handle keeps its connections alive between calls.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "net/http_client.h"

namespace factory::llm {

// The request, answer and body-handler types are net's (src/net/http_client.h), so a plain-http
// call goes to net::PlainHttpClient without a copy. Over libcurl (https), the idle timeout is
// checked about once a second, so its effective limit is rounded up to the next second.
using HttpRequest = net::ClientRequest;
using HttpResponse = net::ClientResponse;
// Receives a piece of a 2xx response body as it arrives. Return false to abort the transfer
// (Send then fails with kAborted).
using BodyChunkHandler = net::ClientBodySink;

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs the request. Any HTTP status is a success at this level (the caller maps statuses).
  // When `on_chunk` is given and the status is 2xx, the body is handed to it piece by piece
  // instead of being collected in HttpResponse::body; non-2xx bodies are always collected.
  // Errors: kDeadlineExceeded (a timeout), kUnavailable (connection refused/reset, DNS, TLS,
  // a transfer cut short), kAborted (on_chunk returned false), kInvalidArgument (a bad URL).
  // Error messages name the URL but never header values.
  Result<HttpResponse> Send(const HttpRequest& request, const BodyChunkHandler& on_chunk = {});

  // A process-wide shared client (one connection pool for every provider).
  static HttpClient& Shared();

 private:
  static bool IsPlainHttp(const std::string& url);
  void* Acquire();
  void Release(void* handle);

  std::unique_ptr<net::PlainHttpClient> plain_;

  std::mutex mu_;
  std::vector<void*> idle_handles_;  // guarded by mu_; CURL* handles ready for reuse
};

// Parses a Retry-After header value: delta-seconds (possibly fractional) or an HTTP-date,
// relative to now_ms. Returns -1 when absent or unparseable, otherwise milliseconds >= 0.
int64_t ParseRetryAfterMs(const std::string& value, int64_t now_ms);

}  // namespace factory::llm
