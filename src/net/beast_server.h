#pragma once
// An event-driven HTTP/1.1 server on Boost.Asio and Boost.Beast, for `factory serve`: hundreds
// of Server-Sent-Events subscribers and idle keep-alive connections cost a socket and a few
// buffers each, never a thread.
//
// Model: `io_threads` threads run one io_context. Reading a request, writing an answer and
// feeding a detached stream (Responder::Detach) are asynchronous operations on them. A complete
// request is handed to a pool of `worker_threads` threads that run the (blocking) handlers with
// the same Handler/Responder shape as net::HttpServer, so the gateway's handlers mount
// unchanged; a handler's writes wait on its worker thread, not on an io thread. A long answer
// that must not hold a worker (SSE) is detached: the handler sends the head, returns, and other
// threads Write() to the stream, which the io threads send as the socket takes it.
// Deadlines: a new connection must send its whole request head within `header_timeout_ms`; a
// keep-alive connection its next one within `idle_timeout_ms`; a body may pause
// `read_timeout_ms`; a client that stops reading an answer is dropped after `write_timeout_ms`.
// Refusals (answered through `on_error`, then the connection closes): 400 malformed, 404 no
// route, 405 the path exists with other methods, 413 body larger than `body_limit` (a
// Content-Length above it is refused before the body is read), 431 head too large.
// Optional TLS (a PEM certificate chain and key) on the same listener.

#include <cstddef>
#include <memory>
#include <string>

#include "core/result.h"
#include "net/http_server.h"

namespace factory::net {

struct BeastServerOptions {
  std::string host = "127.0.0.1";  // a numeric address or a name the resolver knows
  int port = 0;                    // 0: any free port (see BeastServer::port())
  int io_threads = 1;
  int worker_threads = 16;  // blocking handlers running at once
  size_t header_limit = 64 * 1024;
  size_t body_limit = 32 * 1024 * 1024;
  int header_timeout_ms = 10 * 1000;
  int idle_timeout_ms = 5 * 60 * 1000;
  int read_timeout_ms = 30 * 1000;
  int write_timeout_ms = 60 * 1000;
  // A detached stream's unsent bytes above this: the client is too slow, the stream closes.
  size_t stream_buffer_limit = 8 * 1024 * 1024;
  // Both set: TLS. PEM files, read at Start().
  std::string tls_cert_file;
  std::string tls_key_file;
  ErrorHandler on_error;  // default: a text/plain body with the message
};

// Thread-safe after Start() (Route before it).
class BeastServer {
 public:
  explicit BeastServer(BeastServerOptions options);
  // Stops (see Stop()).
  ~BeastServer();
  BeastServer(const BeastServer&) = delete;
  BeastServer& operator=(const BeastServer&) = delete;

  // Serves `method` `path` (exact path, query ignored). REQUIRES: before Start().
  void Route(std::string method, std::string path, Handler handler);
  // Serves every method on every path starting with `prefix` that no exact route serves; the
  // handler answers 404/405 itself. The longest matching prefix wins. REQUIRES: before Start().
  void RoutePrefix(std::string prefix, Handler handler);

  // Binds, listens and starts the threads. Unavailable naming the address when it cannot be
  // resolved or bound; InvalidArgument for bad options or unreadable TLS files.
  // REQUIRES: called once.
  Status Start();
  int port() const;

  // Connections open now, and detached streams open now (for metrics).
  size_t open_connections() const;
  size_t open_streams() const;

  // Stops accepting, closes idle connections, ends detached streams (terminating chunk), lets
  // handlers in flight finish (their answer carries `Connection: close`), then joins every
  // thread. Idempotent; safe from any thread but a handler's.
  void Stop();

  class Impl;  // defined in the .cc; public only so its connection types can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace factory::net
