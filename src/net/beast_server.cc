#include "net/beast_server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/subprocess.h"

namespace factory::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr int kDescriptorsWanted = 16 * 1024;
// After a refusal the rest of the request is read and dropped for this long (at most), so that
// closing with unread bytes does not reset the connection before the client read the answer.
constexpr int kLingerMs = 500;
constexpr size_t kLingerMaxBytes = 16 * 1024 * 1024;
// How long Stop() waits for connections to close after the handlers finished.
constexpr auto kStopGrace = std::chrono::seconds(5);

std::string_view ReasonPhrase(int status) {
  const http::status known = http::int_to_status(static_cast<unsigned>(status));
  if (known == http::status::unknown) return "Unknown";
  const auto reason = http::obsolete_reason(known);
  return {reason.data(), reason.size()};
}

void DefaultErrorAnswer(int status, std::string_view message, const Request&,
                        Responder& responder) {
  std::string body(message);
  body += '\n';
  responder.Send(status, {{"Content-Type", "text/plain; charset=utf-8"}}, body);
}

void AppendHead(std::string& out, int status, const HeaderFields& headers, bool chunked,
                bool keep_alive, int version) {
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += ReasonPhrase(status);
  out += "\r\n";
  for (const auto& [name, value] : headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (chunked) out += "Transfer-Encoding: chunked\r\n";
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version == 10) {
    out += "Connection: keep-alive\r\n";
  }
}

std::string Chunk(std::string_view data, bool chunked) {
  if (!chunked) return std::string(data);
  std::string out;
  out.reserve(data.size() + 24);
  char size_line[20];
  auto [end, ec] = std::to_chars(size_line, size_line + sizeof(size_line), data.size(), 16);
  out.append(size_line, end);
  out += "\r\n";
  out += data;
  out += "\r\n";
  return out;
}

Request ToRequest(http::request<http::string_body>&& message) {
  Request request;
  request.method = std::string(message.method_string());
  const std::string_view target(message.target().data(), message.target().size());
  const size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  request.version = static_cast<int>(message.version());
  HeaderFields fields;
  for (const auto& field : message) {
    fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  request.headers = Headers(std::move(fields));
  request.body = std::move(message.body());
  return request;
}

// What the server needs of a connection, whatever its stream type.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Writes `bytes` and waits until they are sent; false when the connection failed.
  // REQUIRES: called from a worker thread, never an io thread.
  virtual bool WriteBlocking(std::string bytes) = 0;
  // Turns the connection into a detached stream (its head is already sent).
  virtual std::shared_ptr<AsyncStream> MakeStream(bool chunked) = 0;
  // The handler returned: read the next request when `keep_open`, else close (unless detached).
  virtual void AfterHandler(bool keep_open) = 0;
  // The server stops: close when idle, end a stream, let a busy handler finish.
  virtual void Shutdown() = 0;
  // Closes the connection now, whatever it is doing.
  virtual void ForceClose() = 0;
};

}  // namespace

class BeastServer::Impl : public std::enable_shared_from_this<BeastServer::Impl> {
 public:
  explicit Impl(BeastServerOptions options)
      : options(std::move(options)),
        ioc(std::max(1, this->options.io_threads)),
        acceptor(asio::make_strand(ioc)) {}

  struct RouteEntry {
    std::string method;
    std::string path;
    Handler handler;
  };
  struct PrefixEntry {
    std::string prefix;
    Handler handler;
  };

  const BeastServerOptions options;
  std::vector<RouteEntry> routes;     // immutable after Start()
  std::vector<PrefixEntry> prefixes;  // immutable after Start()
  asio::io_context ioc;
  tcp::acceptor acceptor;
  std::unique_ptr<ssl::context> tls;  // set at Start() when TLS is configured
  std::unique_ptr<asio::thread_pool> workers;
  std::vector<std::thread> io_threads;
  // Keeps the io threads running while a handler holds a connection with no operation pending
  // on it (its writes are still to come); released at the end of Stop().
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
  std::atomic<bool> stopping{false};
  std::atomic<size_t> streams{0};
  int port = 0;

  std::mutex stop_mu;    // held for the whole of Stop()
  bool stopped = false;  // guarded by stop_mu

  mutable std::mutex sessions_mu;
  std::condition_variable sessions_cv;  // with sessions_mu: a session went away
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions;  // guarded

  void Register(const std::shared_ptr<SessionBase>& session) {
    std::lock_guard lock(sessions_mu);
    sessions.emplace(session.get(), session);
  }
  void Forget(SessionBase* session) {
    std::lock_guard lock(sessions_mu);
    if (sessions.erase(session) > 0) sessions_cv.notify_all();
  }

  void Accept();
  void Dispatch(const Request& request, Responder& responder);
  void RespondError(int status, std::string_view message, const Request& request,
                    Responder& responder);
};

namespace {

using Impl = BeastServer::Impl;

class SessionResponder final : public Responder {
 public:
  SessionResponder(SessionBase& session, const Request& request, bool keep_alive,
                   const std::atomic<bool>& stopping)
      : session_(session), request_(request), keep_alive_(keep_alive), stopping_(stopping) {}

  bool Send(int status, const HeaderFields& headers, std::string_view body) override {
    if (state_ != State::kNone) throw std::logic_error("Responder::Send after an answer started");
    state_ = State::kSent;
    if (stopping_.load()) keep_alive_ = false;
    const bool bodiless = status < 200 || status == 204;
    std::string out;
    out.reserve(256 + body.size());
    AppendHead(out, status, headers, false, keep_alive_, request_.version);
    if (!bodiless) {
      out += "Content-Length: ";
      out += std::to_string(body.size());
      out += "\r\n";
    }
    out += "\r\n";
    if (!bodiless && request_.method != "HEAD") out += body;
    return Write(std::move(out));
  }

  bool StartStream(int status, const HeaderFields& headers) override {
    if (state_ != State::kNone) throw std::logic_error("Responder::StartStream after an answer");
    state_ = State::kStreaming;
    chunked_ = request_.version >= 11;
    if (!chunked_ || stopping_.load()) keep_alive_ = false;
    std::string out;
    AppendHead(out, status, headers, chunked_, keep_alive_, request_.version);
    out += "\r\n";
    return Write(std::move(out));
  }

  bool WriteChunk(std::string_view data) override {
    if (state_ != State::kStreaming)
      throw std::logic_error("Responder::WriteChunk outside a stream");
    if (broken_) return false;
    if (data.empty()) return true;
    return Write(Chunk(data, chunked_));
  }

  bool EndStream() override {
    if (state_ != State::kStreaming)
      throw std::logic_error("Responder::EndStream outside a stream");
    state_ = State::kEnded;
    if (!chunked_) return !broken_;
    return Write("0\r\n\r\n");
  }

  std::shared_ptr<AsyncStream> Detach(int status, const HeaderFields& headers) override {
    if (state_ != State::kNone) throw std::logic_error("Responder::Detach after an answer");
    state_ = State::kDetached;
    keep_alive_ = false;
    const bool chunked = request_.version >= 11;
    std::string out;
    AppendHead(out, status, headers, chunked, false, request_.version);
    out += "\r\n";
    if (!Write(std::move(out))) return nullptr;
    return session_.MakeStream(chunked);
  }

  bool started() const override { return state_ != State::kNone; }

  // Whether the connection may serve another request.
  bool keep_open() const {
    return keep_alive_ && !broken_ && (state_ == State::kSent || state_ == State::kEnded);
  }
  bool detached() const { return state_ == State::kDetached && !broken_; }
  void set_keep_alive(bool keep_alive) { keep_alive_ = keep_alive; }

 private:
  enum class State { kNone, kSent, kStreaming, kEnded, kDetached };

  bool Write(std::string bytes) {
    if (broken_) return false;
    if (!session_.WriteBlocking(std::move(bytes))) broken_ = true;
    return !broken_;
  }

  SessionBase& session_;
  const Request& request_;
  bool keep_alive_;
  const std::atomic<bool>& stopping_;
  State state_ = State::kNone;
  bool chunked_ = true;
  bool broken_ = false;
};

template <class Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <class... Args>
  explicit Session(std::shared_ptr<Impl> server, Args&&... args)
      : server_(std::move(server)),
        stream_(std::forward<Args>(args)...),
        // Bounds what is buffered unparsed (a chunk-size line that never ends): the request
        // head has its own limit below this, a body goes straight into the request.
        buffer_(std::max<size_t>(2 * server_->options.header_limit, 128 * 1024)) {}
  ~Session() override { server_->Forget(this); }

  // Starts serving. REQUIRES: registered with the server; called once.
  void Run() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->Lowest().expires_after(std::chrono::milliseconds(self->options().header_timeout_ms));
        self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) return self->Close();
          self->ReadHead(/*first=*/true);
        });
      } else {
        self->ReadHead(/*first=*/true);
      }
    });
  }

  bool WriteBlocking(std::string bytes) override {
    std::promise<bool> done;
    std::future<bool> result = done.get_future();
    asio::post(stream_.get_executor(), [this, &bytes, &done] {
      if (closed_) {
        done.set_value(false);
        return;
      }
      Lowest().expires_after(std::chrono::milliseconds(options().write_timeout_ms));
      asio::async_write(stream_, asio::buffer(bytes),
                        [&done](beast::error_code ec, size_t) { done.set_value(!ec); });
    });
    return result.get();
  }

  std::shared_ptr<AsyncStream> MakeStream(bool chunked) override;

  void AfterHandler(bool keep_open) override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), keep_open] {
      if (self->detached_) return self->WatchForClose();
      if (keep_open && !self->server_->stopping.load()) return self->ReadHead(/*first=*/false);
      self->Close();
    });
  }

  void Shutdown() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->state_ == State::kIdle) self->Close();
      if (self->detached_) self->EndStream();
      // Busy: the handler finishes, AfterHandler sees `stopping` and closes.
    });
  }

  void ForceClose() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->Close(); });
  }

  // --- the detached stream's side (any thread)
  // Queues the chunk; one flush is posted for however many chunks pile up meanwhile, and it
  // sends them with one gathered write (many subscribers x many events stay cheap).
  bool StreamWrite(std::string data) {
    if (closed_.load()) return false;
    std::string chunk = Chunk(data, chunked_);
    const size_t queued = queued_bytes_.fetch_add(chunk.size()) + chunk.size();
    if (queued > options().stream_buffer_limit) {
      asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->Close(); });
      return false;
    }
    bool post = false;
    {
      std::lock_guard lock(pending_mu_);
      pending_.push_back(std::move(chunk));
      post = !flush_posted_;
      flush_posted_ = true;
    }
    if (post) {
      asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
        if (!self->writing_) self->WriteNext();
      });
    }
    return true;
  }
  void StreamEnd() {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->EndStream(); });
  }
  bool closed() const { return closed_.load(); }
  void OnClose(std::function<void()> callback) {
    {
      std::lock_guard lock(callbacks_mu_);
      if (!closed_.load()) {
        on_close_.push_back(std::move(callback));
        return;
      }
    }
    callback();
  }

 private:
  enum class State { kIdle, kBusy, kDone };

  const BeastServerOptions& options() const { return server_->options; }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void ReadHead(bool first) {
    if (server_->stopping.load()) return Close();
    state_ = State::kIdle;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(options().header_limit));
    parser_->body_limit(static_cast<uint64_t>(options().body_limit));
    Lowest().expires_after(
        std::chrono::milliseconds(first ? options().header_timeout_ms : options().idle_timeout_ms));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHead(ec); });
  }

  void OnHead(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    state_ = State::kBusy;
    const auto& head = parser_->get();
    const auto expect = head[http::field::expect];
    if (head.version() >= 11 && beast::iequals(expect, "100-continue") && !parser_->is_done()) {
      continue_ = "HTTP/1.1 100 Continue\r\n\r\n";
      Lowest().expires_after(std::chrono::milliseconds(options().write_timeout_ms));
      asio::async_write(stream_, asio::buffer(continue_),
                        [self = this->shared_from_this()](beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) return Dispatch();
    Lowest().expires_after(std::chrono::milliseconds(options().read_timeout_ms));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->OnReadError(ec);
                       self->Dispatch();
                     });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return Refuse(413, "request body too large");
    }
    if (ec == http::error::header_limit) return Refuse(431, "request header fields too large");
    const bool closing = ec == http::error::end_of_stream || ec == beast::error::timeout ||
                         ec == asio::error::operation_aborted || ec == asio::error::eof ||
                         ec == asio::error::connection_reset || ec == ssl::error::stream_truncated;
    if (closing || !parser_->got_some()) return Close();
    Refuse(400, "malformed request: " + ec.message());
  }

  void Dispatch() {
    if (server_->stopping.load()) return Close();
    state_ = State::kBusy;
    const bool keep_alive = parser_->keep_alive();
    auto request = std::make_shared<Request>(ToRequest(parser_->release()));
    parser_.reset();
    asio::post(*server_->workers, [self = this->shared_from_this(), request, keep_alive] {
      SessionResponder responder(*self, *request, keep_alive, self->server_->stopping);
      self->server_->Dispatch(*request, responder);
      self->AfterHandler(responder.keep_open());
    });
  }

  // Answers through the error handler on a worker, then drops what the client still sends.
  void Refuse(int status, std::string message) {
    state_ = State::kBusy;
    auto request = std::make_shared<Request>();
    // What was parsed: for a body too large the request line at least, for malformed input
    // possibly nothing.
    if (parser_ && parser_->got_some()) {
      http::request<http::string_body> head = parser_->release();
      head.body().clear();
      *request = ToRequest(std::move(head));
    }
    parser_.reset();
    asio::post(*server_->workers, [self = this->shared_from_this(), request, status,
                                   message = std::move(message)] {
      SessionResponder responder(*self, *request, /*keep_alive=*/false, self->server_->stopping);
      self->server_->RespondError(status, message, *request, responder);
      asio::post(self->stream_.get_executor(), [self] { self->Linger(); });
    });
  }

  void Linger() {
    if (closed_) return;
    state_ = State::kDone;
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    linger_deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(kLingerMs);
    DrainSome();
  }
  void DrainSome() {
    if (closed_) return;
    if (lingered_ > kLingerMaxBytes || std::chrono::steady_clock::now() >= linger_deadline_) {
      return Close();
    }
    Lowest().expires_at(linger_deadline_);
    Lowest().async_read_some(asio::buffer(scratch_),
                             [self = this->shared_from_this()](beast::error_code ec, size_t got) {
                               if (ec) return self->Close();
                               self->lingered_ += got;
                               self->DrainSome();
                             });
  }

  // A detached stream's connection: the client sends nothing more; a read completing means it
  // went away (or broke the protocol), either way the stream is over.
  void WatchForClose() {
    if (closed_) return;
    Lowest().expires_never();
    stream_.async_read_some(asio::buffer(scratch_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->WatchForClose();
                            });
  }

  // On the strand: sends everything pending in one gathered write, then looks again.
  void WriteNext() {
    if (closed_) return;
    inflight_.clear();
    {
      std::lock_guard lock(pending_mu_);
      inflight_.swap(pending_);
      flush_posted_ = false;
    }
    if (inflight_.empty()) {
      writing_ = false;
      if (ending_) Close();
      return;
    }
    writing_ = true;
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(inflight_.size());
    size_t total = 0;
    for (const std::string& chunk : inflight_) {
      buffers.emplace_back(chunk.data(), chunk.size());
      total += chunk.size();
    }
    Lowest().expires_after(std::chrono::milliseconds(options().write_timeout_ms));
    asio::async_write(stream_, buffers,
                      [self = this->shared_from_this(), total](beast::error_code ec, size_t) {
                        // Closed meanwhile (the client went, Stop): nothing more to send.
                        if (ec || self->closed_) return self->Close();
                        self->queued_bytes_.fetch_sub(total);
                        self->WriteNext();
                      });
  }
  void EndStream() {
    if (closed_ || ending_) return;
    ending_ = true;
    if (chunked_) {
      std::lock_guard lock(pending_mu_);
      pending_.push_back("0\r\n\r\n");
    }
    if (!writing_) WriteNext();
  }

  void Close() {
    if (closed_.exchange(true)) return;
    state_ = State::kDone;
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().close();
    // inflight_ stays: a write in flight may still refer to it; the session frees it.
    if (detached_) server_->streams.fetch_sub(1);
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(callbacks_mu_);
      callbacks.swap(on_close_);
    }
    for (auto& callback : callbacks) callback();
    server_->Forget(this);
  }

  // Declared first: destroyed last, so the io_context outlives the stream.
  std::shared_ptr<Impl> server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string continue_;
  std::array<char, 4096> scratch_{};
  size_t lingered_ = 0;
  std::chrono::steady_clock::time_point linger_deadline_;
  // On the strand:
  State state_ = State::kIdle;
  std::vector<std::string> inflight_;  // the chunks of the write in flight
  bool writing_ = false;
  bool ending_ = false;
  // Set by MakeStream (a worker) before AfterHandler is posted; read on the strand after.
  std::atomic<bool> detached_{false};
  bool chunked_ = true;
  std::atomic<size_t> queued_bytes_{0};
  std::mutex pending_mu_;
  std::vector<std::string> pending_;  // guarded by pending_mu_: chunks not yet sent
  bool flush_posted_ = false;         // guarded by pending_mu_: a WriteNext is on its way
  std::atomic<bool> closed_{false};
  std::mutex callbacks_mu_;
  std::vector<std::function<void()>> on_close_;  // guarded by callbacks_mu_
};

template <class Stream>
class DetachedStream final : public AsyncStream {
 public:
  explicit DetachedStream(std::shared_ptr<Session<Stream>> session)
      : session_(std::move(session)) {}
  bool Write(std::string data) override {
    if (data.empty()) return !session_->closed();
    return session_->StreamWrite(std::move(data));
  }
  void End() override { session_->StreamEnd(); }
  bool closed() const override { return session_->closed(); }
  void OnClose(std::function<void()> callback) override { session_->OnClose(std::move(callback)); }

 private:
  std::shared_ptr<Session<Stream>> session_;
};

template <class Stream>
std::shared_ptr<AsyncStream> Session<Stream>::MakeStream(bool chunked) {
  chunked_ = chunked;
  detached_ = true;
  server_->streams.fetch_add(1);
  return std::make_shared<DetachedStream<Stream>>(this->shared_from_this());
}

using PlainSession = Session<beast::tcp_stream>;
using TlsSession = Session<beast::ssl_stream<beast::tcp_stream>>;

}  // namespace

void BeastServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc), [self = shared_from_this()](beast::error_code ec,
                                                                            tcp::socket socket) {
    if (self->stopping.load() || !self->acceptor.is_open()) return;
    if (ec) {
      spdlog::warn("http server: accept on port {} failed: {}", self->port, ec.message());
    } else {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::shared_ptr<SessionBase> base;
      if (self->tls) {
        auto session = std::make_shared<TlsSession>(self, std::move(socket), *self->tls);
        self->Register(session);
        session->Run();
      } else {
        auto session = std::make_shared<PlainSession>(self, std::move(socket));
        self->Register(session);
        session->Run();
      }
    }
    self->Accept();
  });
}

void BeastServer::Impl::RespondError(int status, std::string_view message, const Request& request,
                                     Responder& responder) {
  try {
    if (options.on_error) {
      options.on_error(status, message, request, responder);
    } else {
      DefaultErrorAnswer(status, message, request, responder);
    }
  } catch (const std::exception& error) {
    spdlog::error("http server: the error handler threw: {}", error.what());
  } catch (...) {
    spdlog::error("http server: the error handler threw");
  }
  if (!responder.started()) DefaultErrorAnswer(status, message, request, responder);
}

void BeastServer::Impl::Dispatch(const Request& request, Responder& responder) {
  auto& answer = static_cast<SessionResponder&>(responder);
  const Handler* handler = nullptr;
  bool path_known = false;
  for (const RouteEntry& entry : routes) {
    if (entry.path != request.path) continue;
    path_known = true;
    if (entry.method == request.method) {
      handler = &entry.handler;
      break;
    }
  }
  if (handler == nullptr && !path_known) {
    size_t best = 0;
    for (const PrefixEntry& entry : prefixes) {
      if (request.path.starts_with(entry.prefix) && entry.prefix.size() >= best) {
        best = entry.prefix.size();
        handler = &entry.handler;
      }
    }
  }
  if (handler == nullptr) {
    RespondError(path_known ? 405 : 404,
                 path_known ? "method " + request.method + " not allowed on " + request.path
                            : "no such path: " + request.method + " " + request.path,
                 request, responder);
    return;
  }
  std::string failure;
  try {
    (*handler)(request, responder);
  } catch (const std::exception& error) {
    failure = error.what();
  } catch (...) {
    failure = "an exception that is not a std::exception";
  }
  if (!failure.empty()) {
    spdlog::error("http server: the handler of {} {} threw: {}", request.method, request.path,
                  failure);
    answer.set_keep_alive(false);
    if (!responder.started()) RespondError(500, "internal server error", request, responder);
    return;
  }
  if (!responder.started()) {
    spdlog::error("http server: the handler of {} {} sent no answer", request.method, request.path);
    answer.set_keep_alive(false);
    RespondError(500, "internal server error: no answer", request, responder);
  }
}

BeastServer::BeastServer(BeastServerOptions options)
    : impl_(std::make_shared<Impl>(std::move(options))) {}

BeastServer::~BeastServer() { Stop(); }

void BeastServer::Route(std::string method, std::string path, Handler handler) {
  impl_->routes.push_back({std::move(method), std::move(path), std::move(handler)});
}

void BeastServer::RoutePrefix(std::string prefix, Handler handler) {
  impl_->prefixes.push_back({std::move(prefix), std::move(handler)});
}

int BeastServer::port() const { return impl_->port; }

size_t BeastServer::open_connections() const {
  std::lock_guard lock(impl_->sessions_mu);
  return impl_->sessions.size();
}

size_t BeastServer::open_streams() const { return impl_->streams.load(); }

Status BeastServer::Start() {
  const BeastServerOptions& options = impl_->options;
  if (options.worker_threads < 1 || options.io_threads < 1) {
    return InvalidArgument("http server threads must be >= 1");
  }
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgument("port must be 0..65535, not " + std::to_string(options.port));
  }
  if (options.idle_timeout_ms <= 0 || options.read_timeout_ms <= 0 ||
      options.write_timeout_ms <= 0 || options.header_timeout_ms <= 0) {
    return InvalidArgument("http server timeouts must be > 0 ms");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgument("TLS needs both a certificate file and a key file");
  }
  if (!options.tls_cert_file.empty()) {
    auto tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    beast::error_code ec;
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                     ec);
    tls->use_certificate_chain_file(options.tls_cert_file, ec);
    if (ec) {
      return InvalidArgument("tls certificate " + options.tls_cert_file + ": " + ec.message());
    }
    tls->use_private_key_file(options.tls_key_file, ssl::context::pem, ec);
    if (ec) return InvalidArgument("tls key " + options.tls_key_file + ": " + ec.message());
    impl_->tls = std::move(tls);
  }
  ReserveDescriptors(kDescriptorsWanted);
  const std::string address = options.host + ":" + std::to_string(options.port);
  beast::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return Unavailable("cannot listen on " + address + ": " +
                       (ec ? ec.message() : std::string("no address")));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor& acceptor = impl_->acceptor;
  if (acceptor.open(endpoint.protocol(), ec); !ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (acceptor.bind(endpoint, ec); !ec)
      acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) return Unavailable("cannot listen on " + address + ": " + ec.message());
  impl_->port = acceptor.local_endpoint().port();
  impl_->workers = std::make_unique<asio::thread_pool>(options.worker_threads);
  impl_->keep_running.emplace(impl_->ioc.get_executor());
  impl_->Accept();
  for (int index = 0; index < options.io_threads; ++index) {
    impl_->io_threads.emplace_back([impl = impl_.get()] { impl->ioc.run(); });
  }
  return Ok();
}

void BeastServer::Stop() {
  Impl& impl = *impl_;
  std::lock_guard stop_lock(impl.stop_mu);
  if (impl.stopped) return;
  impl.stopped = true;
  impl.stopping.store(true);
  if (impl.io_threads.empty()) return;  // never started
  asio::post(impl.acceptor.get_executor(), [&impl] {
    beast::error_code ignored;
    impl.acceptor.close(ignored);
  });
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    std::lock_guard lock(impl.sessions_mu);
    for (auto& [key, weak] : impl.sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (auto& session : live) session->Shutdown();
  live.clear();
  // Handlers in flight finish; their connections then close.
  impl.workers->join();
  {
    std::unique_lock lock(impl.sessions_mu);
    impl.sessions_cv.wait_for(lock, kStopGrace, [&impl] { return impl.sessions.empty(); });
  }
  // What is left (a client that does not read its answer) is cut; with every socket closed the
  // io threads run out of work and return, and no handler is left holding a session.
  {
    std::lock_guard lock(impl.sessions_mu);
    for (auto& [key, weak] : impl.sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (auto& session : live) session->ForceClose();
  live.clear();
  impl.keep_running.reset();
  for (std::thread& thread : impl.io_threads) thread.join();
  impl.io_threads.clear();
  // A handler may keep what keeps a session (a detached stream held for later writes), and a
  // session keeps the server's state: with nothing running any more, dropping the handlers
  // breaks that cycle.
  impl.routes.clear();
  impl.prefixes.clear();
}

}  // namespace factory::net
