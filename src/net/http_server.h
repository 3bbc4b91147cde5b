#pragma once
// A lean blocking HTTP/1.1 server for latency-sensitive loopback services (the gateway):
// thread-per-connection, requests parsed by Boost.Beast's parser from plain recv() calls, and
// every whole answer (status line, headers, body) written with ONE sendmsg, with no poll before
// it. Per keep-alive request that is one recv and one send.
//
// Why not cpp-httplib: per request it does recv, getpeername, getsockname, then poll+poll+send
// for the headers and again for the body (two loopback deliveries, two client wake-ups): a large
// part of the gateway's added latency (issue 4, section 9).
//
// Model: `threads` workers each block in accept() on the shared listening socket and serve one
// connection at a time until it closes; connections beyond that wait in the listen backlog.
// So that idle keep-alive connections cannot hold every worker (new connections would wait
// for an idle timeout), the worker that takes the last free place closes the keep-alive
// connection that has been idle the longest, if any: that worker goes back to accept(). (A
// client that reuses it at that moment sees it closed, as with any idle timeout; HTTP clients
// retry a request that got no answer on a reused connection.)
// Requests on a connection are served in order (pipelined bytes wait in the buffer). Supported:
// keep-alive, `Connection: close`, HTTP/1.0, chunked request bodies, `Expect: 100-continue`,
// chunked (streamed) answers. Not supported: TLS, upgrades, trailers.

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/result.h"

namespace factory::net {

// A list of header fields as sent or received, in order.
using HeaderFields = std::vector<std::pair<std::string, std::string>>;

// The header fields of a request; names are looked up without regard to case.
class Headers {
 public:
  Headers() = default;
  explicit Headers(HeaderFields fields) : fields_(std::move(fields)) {}

  // The value of the first field named `name`, or nullptr.
  const std::string* Find(std::string_view name) const;
  bool Has(std::string_view name) const { return Find(name) != nullptr; }
  // The value of the first field named `name`; "" when there is none.
  std::string Get(std::string_view name) const;
  const HeaderFields& fields() const { return fields_; }

 private:
  HeaderFields fields_;
};

struct Request {
  std::string method;  // as sent, e.g. "POST"
  std::string path;    // the target up to '?', not percent-decoded
  std::string query;   // the target after '?' (without it); "" when there is none
  int version = 11;    // 10 for HTTP/1.0, 11 for HTTP/1.1
  Headers headers;
  std::string body;  // chunked bodies are already de-chunked
};

// How a handler answers: either Send() once, or StartStream(), WriteChunk()*, EndStream().
// The server adds Content-Length / Transfer-Encoding and, when the connection will close,
// `Connection: close`; the handler's headers must not contain those three.
// Every method returns false when the client is gone (or stopped reading for the write
// timeout); the connection is then closed after the handler returns, and further writes are
// no-ops returning false. Used by one thread: the one the handler runs on.
class Responder {
 public:
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // The whole answer in one write. REQUIRES: nothing was sent yet.
  bool Send(int status, const HeaderFields& headers, std::string_view body);
  // Sends status line and headers at once; the body follows as chunks (HTTP/1.0 clients: a
  // body delimited by closing the connection). REQUIRES: nothing was sent yet.
  bool StartStream(int status, const HeaderFields& headers);
  // One chunk, one write; an empty `data` sends nothing. REQUIRES: StartStream() was called.
  bool WriteChunk(std::string_view data);
  // The terminating chunk. A stream not ended when the handler returns is cut: the connection
  // closes, so the client sees an incomplete answer rather than a complete-looking one.
  bool EndStream();

  // Whether any byte of the answer was sent (or attempted).
  bool started() const { return state_ != State::kNone; }

 private:
  friend class HttpServer;
  enum class State { kNone, kSent, kStreaming, kEnded };

  Responder(int fd, const Request& request, bool keep_alive, const std::atomic<bool>& stopping)
      : fd_(fd), request_(request), keep_alive_(keep_alive), stopping_(stopping) {}
  // Appends the status line and the headers every answer gets.
  void AppendHead(std::string& out, int status, const HeaderFields& headers, bool chunked);
  // Writes every byte of `parts` (one sendmsg unless the socket buffer is full).
  bool Write(iovec* parts, int count);

  const int fd_;
  const Request& request_;
  bool keep_alive_;
  const std::atomic<bool>& stopping_;
  State state_ = State::kNone;
  bool broken_ = false;  // a write failed; the connection closes
};

// Serves one request. May block (a streamed answer holds its connection's thread). An exception
// escaping it is logged and answered with a 500 from the ErrorHandler (when nothing was sent
// yet); the connection is then closed.
using Handler = std::function<void(const Request&, Responder&)>;

// Answers a request the server refuses itself: 400 malformed, 404 no such path, 405 method not
// allowed, 413 body too large, 431 header too large, 500 a handler threw or sent nothing.
// `request` holds what was parsed (for 400 it may be empty; for 413 the head is complete).
// `message` says what was wrong, in English. Must call responder.Send().
using ErrorHandler =
    std::function<void(int status, std::string_view message, const Request&, Responder&)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";        // a numeric address or a name getaddrinfo() resolves
  int port = 0;                          // 0: any free port (see HttpServer::port())
  int threads = 64;                      // connections served at once
  size_t header_limit = 64 * 1024;       // request line + header fields, bytes (431 above)
  size_t body_limit = 32 * 1024 * 1024;  // request body, bytes (413 above)
  int idle_timeout_ms = 5 * 60 * 1000;   // a keep-alive connection waiting for its next request
  int read_timeout_ms = 30 * 1000;       // a request arriving in parts, between two parts
  int write_timeout_ms = 60 * 1000;      // a client that stops reading an answer
  ErrorHandler on_error;                 // default: a text/plain body with the message
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  // Stops (see Stop()).
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves `method` `path` (exact match of the path, query ignored) with `handler`.
  // REQUIRES: before Start().
  void Route(std::string method, std::string path, Handler handler);

  // Binds, listens and starts the worker threads. Errors: Unavailable naming the address when
  // it cannot be resolved, bound (in use) or listened on; InvalidArgument for bad options.
  // REQUIRES: called once.
  Status Start();
  // The bound port (the chosen one when options.port was 0); 0 before Start().
  int port() const { return port_; }

  // Stops accepting, closes idle keep-alive connections at once, lets requests in flight finish
  // (their answer is sent with `Connection: close`, then the connection closes) and joins the
  // threads. Idempotent: a second caller returns once the first has stopped the server. Safe
  // from any thread but a handler's (that would wait for itself).
  void Stop();

 private:
  struct RouteEntry {
    std::string method;
    std::string path;
    Handler handler;
  };
  // The connection a worker serves, as Stop() sees it.
  struct Slot {
    int fd = -1;
    bool idle = false;        // waiting for the first byte of a request: Stop() may close it
    bool kept_alive = false;  // idle after an answer (not a fresh connection): may be reclaimed
    bool closing = false;     // shut down to free its worker; it must not serve another request
    std::chrono::steady_clock::time_point idle_since;
  };

  void Work(size_t slot);
  void Serve(size_t slot, int fd);
  // Sets the slot's state; false when the server is stopping or the connection was shut down
  // to free its worker (the connection should close).
  bool SetSlot(size_t slot, int fd, bool idle, bool kept_alive = false);
  // Shuts down the keep-alive connection idle the longest, so its worker is free again; when
  // there is none, the next connection to become idle is closed instead (reclaim_pending_).
  void CloseLongestIdle();
  // The same under slots_mu_; returns the slot closed (nullptr: none). REQUIRES: slots_mu_.
  // `self`, when chosen, is only marked closing: its own worker closes it.
  Slot* CloseLongestIdleLocked(const Slot* self);
  void Dispatch(const Request& request, Responder& responder);
  void RespondError(int status, std::string_view message, const Request& request,
                    Responder& responder);

  const HttpServerOptions options_;
  std::vector<RouteEntry> routes_;  // immutable after Start()
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<std::thread> workers_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> free_workers_{0};  // workers not serving a connection (in accept())
  std::mutex stop_mu_;    // held for the whole of Stop(), so a second caller waits for the first
  bool stopped_ = false;  // guarded by stop_mu_
  std::mutex slots_mu_;
  std::vector<Slot> slots_;  // guarded by slots_mu_; one per worker
  // guarded by slots_mu_: the last free worker found no idle connection to close
  bool reclaim_pending_ = false;
};

}  // namespace factory::net
