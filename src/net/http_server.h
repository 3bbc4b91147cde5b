#pragma once
// A lean HTTP/1.1 server for latency-sensitive loopback services (the gateway): a pool of
// workers serving requests with blocking socket calls, requests parsed by Boost.Beast's parser from
// plain recv() calls, and every whole answer (status line, headers, body) written with ONE sendmsg,
// with no poll before it. Per keep-alive request that is one recv and one send.
//
// Why not cpp-httplib: per request it does recv, getpeername, getsockname, then poll+poll+send
// for the headers and again for the body (two loopback deliveries, two client wake-ups): a large
// part of the gateway's added latency.
//
// Model: one epoll set holds the listening socket and every connection that is waiting for
// request bytes (fresh, idle keep-alive, or part of a head received). `threads` workers wait in
// epoll_wait on it; a connection with bytes to read wakes exactly one worker (EPOLLONESHOT),
// which serves it with blocking recv/send until it has nothing more to read, then hands it back
// to the set. So an idle connection costs a descriptor, not a thread: any number of silent or
// idle keep-alive connections cannot keep requests from being served, and the per-request fast
// path is still one recv and one send (plus re-arming the connection in the set).
// Deadlines: a connection must send its whole request head within `header_timeout_ms` of being
// accepted (or, for a keep-alive connection, of the first byte of its next request); an idle
// keep-alive connection is closed after `idle_timeout_ms`. A body arriving in parts is read by
// the worker, with `read_timeout_ms` between parts.
// Requests on a connection are served in order (pipelined bytes wait in the buffer). Supported:
// keep-alive, `Connection: close`, HTTP/1.0, chunked request bodies, `Expect: 100-continue`,
// chunked (streamed) answers. Not supported: TLS, upgrades, trailers.

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
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

class AsyncStream;

// How a handler answers: either Send() once, or StartStream(), WriteChunk()*, EndStream(), or
// (servers that support it) Detach() to hand the stream to other threads and return.
// The server adds Content-Length / Transfer-Encoding and, when the connection will close,
// `Connection: close`; the handler's headers must not contain those three.
// Every method returns false when the client is gone (or stopped reading for the write
// timeout); the connection is then closed after the handler returns, and further writes are
// no-ops returning false. Used by one thread: the one the handler runs on.
class Responder {
 public:
  Responder() = default;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  virtual ~Responder() = default;

  // The whole answer in one write. REQUIRES: nothing was sent yet.
  virtual bool Send(int status, const HeaderFields& headers, std::string_view body) = 0;
  // Sends status line and headers at once; the body follows as chunks (HTTP/1.0 clients: a
  // body delimited by closing the connection). REQUIRES: nothing was sent yet.
  virtual bool StartStream(int status, const HeaderFields& headers) = 0;
  // One chunk, one write; an empty `data` sends nothing. REQUIRES: StartStream() was called.
  virtual bool WriteChunk(std::string_view data) = 0;
  // The terminating chunk. A stream not ended when the handler returns is cut: the connection
  // closes, so the client sees an incomplete answer rather than a complete-looking one.
  virtual bool EndStream() = 0;
  // Sends the head of a streamed answer and returns the stream, which other threads feed
  // without blocking after the handler returned (no thread is held while it is open); the
  // connection stays open until the stream ends or the client goes. nullptr when the server
  // cannot do that (HttpServer) or the client is gone. REQUIRES: nothing was sent yet.
  virtual std::shared_ptr<AsyncStream> Detach(int /*status*/, const HeaderFields& /*headers*/) {
    return nullptr;
  }

  // Whether any byte of the answer was sent (or attempted).
  virtual bool started() const = 0;
};

// A streamed answer detached from its handler (Responder::Detach). Thread-safe.
class AsyncStream {
 public:
  virtual ~AsyncStream() = default;
  // Queues `data` as one chunk and returns at once; false when the stream is closed. A client
  // that lets more than the server's stream buffer limit pile up is cut off (the stream closes).
  virtual bool Write(std::string data) = 0;
  // Sends what is queued, then the terminating chunk, then closes the connection. Idempotent.
  virtual void End() = 0;
  // Whether the stream closed (ended, the client went away, or the server stopped).
  virtual bool closed() const = 0;
  // `callback` runs once, on a server thread, when the stream closes for any reason (at once
  // when it already has). It must not block.
  virtual void OnClose(std::function<void()> callback) = 0;
};

// The Responder of HttpServer: blocking writes on the connection's socket.
class SocketResponder final : public Responder {
 public:
  bool Send(int status, const HeaderFields& headers, std::string_view body) override;
  bool StartStream(int status, const HeaderFields& headers) override;
  bool WriteChunk(std::string_view data) override;
  bool EndStream() override;
  bool started() const override { return state_ != State::kNone; }

 private:
  friend class HttpServer;
  enum class State { kNone, kSent, kStreaming, kEnded };

  SocketResponder(int fd, const Request& request, bool keep_alive,
                  const std::atomic<bool>& stopping)
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
  int threads = 64;                      // requests served at once
  size_t header_limit = 64 * 1024;       // request line + header fields, bytes (431 above)
  size_t body_limit = 32 * 1024 * 1024;  // request body, bytes (413 above)
  // A new connection's whole request head, from accept; a keep-alive connection's next head,
  // from its first byte. Passed: the connection is closed.
  int header_timeout_ms = 10 * 1000;
  int idle_timeout_ms = 5 * 60 * 1000;  // a keep-alive connection waiting for its next request
  int read_timeout_ms = 30 * 1000;      // a request body arriving in parts, between two parts
  int write_timeout_ms = 60 * 1000;     // a client that stops reading an answer
  ErrorHandler on_error;                // default: a text/plain body with the message
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
  using TimePoint = std::chrono::steady_clock::time_point;
  // A connection the server holds. Parked (in the epoll set, no worker) or busy (a worker
  // serves it; only that worker touches its socket).
  struct Connection {
    int fd = -1;
    bool busy = false;
    bool kept_alive = false;  // answered a request already
    std::string pending;      // received bytes of a request head not complete yet
    TimePoint head_deadline;  // set while a head is expected to be under way
    bool head_started = false;
    TimePoint idle_deadline;  // parked with nothing received: closed after this
  };
  // What a worker needs of a connection it took.
  struct Taken {
    uint64_t id = 0;
    int fd = -1;
    bool kept_alive = false;
    std::string pending;
    bool head_started = false;
    TimePoint head_deadline;
  };

  void Work();
  void AcceptAll();
  // Marks a parked connection busy and returns it; false when it is gone (closed by the reaper
  // or Stop()).
  bool Take(uint64_t id, Taken& taken);
  // Hands a connection back to the epoll set, to be woken when bytes arrive; closes it instead
  // when the server is stopping.
  void Park(Taken& taken);
  // Forgets and closes a busy connection.
  void Drop(const Taken& taken);
  void Serve(Taken& taken);
  // Closes parked connections past their deadline, until Stop().
  void Reap();
  // REQUIRES: conns_mu_. Removes a connection from the set and closes it.
  void CloseLocked(uint64_t id, Connection& connection);
  void Dispatch(const Request& request, SocketResponder& responder);
  void RespondError(int status, std::string_view message, const Request& request,
                    Responder& responder);

  const HttpServerOptions options_;
  std::vector<RouteEntry> routes_;  // immutable after Start()
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd made readable by Stop(): every worker wakes and exits
  int port_ = 0;
  std::vector<std::thread> workers_;
  std::thread reaper_;
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;    // held for the whole of Stop(), so a second caller waits for the first
  bool stopped_ = false;  // guarded by stop_mu_
  std::mutex conns_mu_;
  std::condition_variable reaper_cv_;                     // with conns_mu_: Stop() wakes it
  std::unordered_map<uint64_t, Connection> connections_;  // guarded by conns_mu_
  uint64_t next_id_ = 2;  // guarded by conns_mu_; 0 and 1 tag the listening socket and wake_fd_
};

}  // namespace factory::net
