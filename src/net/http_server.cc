#include "net/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <limits>
#include <system_error>

#include "net/internal/request_parser.h"
#include "net/internal/socket_io.h"

namespace factory::net {
namespace {

namespace http = boost::beast::http;

constexpr size_t kReadSize = 64 * 1024;
// After an error answer the rest of the request is read and dropped for this long (at most),
// so closing with unread bytes does not reset the connection before the client read the answer.
constexpr int kLingerMs = 500;
constexpr size_t kLingerMaxBytes = 16 * 1024 * 1024;

std::string ErrnoText(int error) { return std::system_category().message(error); }

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

// A connection's read buffer: bytes [begin, end) are received but not yet parsed.
struct ReadBuffer {
  std::vector<char> bytes = std::vector<char>(kReadSize);
  size_t begin = 0;
  size_t end = 0;

  bool empty() const { return begin == end; }
  // Room for at least kReadSize / 2 more bytes at the end.
  void MakeRoom() {
    if (begin == end) {
      begin = end = 0;
    } else if (begin > 0) {
      std::memmove(bytes.data(), bytes.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    if (bytes.size() - end < kReadSize / 2) bytes.resize(bytes.size() * 2);
  }
};

// Reads and drops what the client still sends, for a short while, then returns.
void Linger(int fd, ReadBuffer& buffer) {
  ::shutdown(fd, SHUT_WR);
  internal::SetSocketTimeout(fd, SO_RCVTIMEO, kLingerMs);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kLingerMs);
  size_t dropped = 0;
  while (dropped < kLingerMaxBytes && std::chrono::steady_clock::now() < deadline) {
    const ssize_t got = ::recv(fd, buffer.bytes.data(), buffer.bytes.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;
    dropped += static_cast<size_t>(got);
  }
}

}  // namespace

const std::string* Headers::Find(std::string_view name) const {
  for (const auto& [field, value] : fields_) {
    if (boost::beast::iequals(field, {name.data(), name.size()})) return &value;
  }
  return nullptr;
}

std::string Headers::Get(std::string_view name) const {
  const std::string* value = Find(name);
  return value != nullptr ? *value : std::string();
}

// ---------------------------------------------------------------------------------------------
// Responder

void Responder::AppendHead(std::string& out, int status, const HeaderFields& headers,
                           bool chunked) {
  if (stopping_.load(std::memory_order_relaxed)) keep_alive_ = false;
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
  if (!keep_alive_) {
    out += "Connection: close\r\n";
  } else if (request_.version == 10) {
    out += "Connection: keep-alive\r\n";
  }
}

bool Responder::Write(iovec* parts, int count) {
  if (broken_) return false;
  if (!internal::SendAll(fd_, parts, static_cast<size_t>(count))) {
    broken_ = true;  // the client is gone, or stopped reading for the write timeout
    return false;
  }
  return true;
}

bool Responder::Send(int status, const HeaderFields& headers, std::string_view body) {
  if (state_ != State::kNone) throw std::logic_error("Responder::Send after an answer started");
  state_ = State::kSent;
  // 1xx and 204 answers have no body and no Content-Length (RFC 9110, 8.6).
  const bool bodiless = status < 200 || status == 204;
  std::string head;
  head.reserve(256);
  AppendHead(head, status, headers, /*chunked=*/false);
  if (!bodiless) {
    head += "Content-Length: ";
    head += std::to_string(body.size());
    head += "\r\n";
  }
  head += "\r\n";
  const bool with_body = !bodiless && !body.empty() && request_.method != "HEAD";
  iovec parts[2] = {{head.data(), head.size()},
                    {const_cast<char*>(body.data()), with_body ? body.size() : 0}};
  return Write(parts, with_body ? 2 : 1);
}

bool Responder::StartStream(int status, const HeaderFields& headers) {
  if (state_ != State::kNone) {
    throw std::logic_error("Responder::StartStream after an answer started");
  }
  state_ = State::kStreaming;
  // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
  const bool chunked = request_.version >= 11;
  if (!chunked) keep_alive_ = false;
  std::string head;
  head.reserve(256);
  AppendHead(head, status, headers, chunked);
  head += "\r\n";
  iovec parts[1] = {{head.data(), head.size()}};
  return Write(parts, 1);
}

bool Responder::WriteChunk(std::string_view data) {
  if (state_ != State::kStreaming) {
    throw std::logic_error("Responder::WriteChunk outside a stream");
  }
  if (broken_) return false;
  if (data.empty()) return true;  // an empty chunk would end the stream
  if (request_.version < 11) {
    iovec parts[1] = {{const_cast<char*>(data.data()), data.size()}};
    return Write(parts, 1);
  }
  char size_line[24];
  auto [end, ec] = std::to_chars(size_line, size_line + 16, data.size(), 16);
  *end++ = '\r';
  *end++ = '\n';
  static char kCrlf[] = "\r\n";
  iovec parts[3] = {{size_line, static_cast<size_t>(end - size_line)},
                    {const_cast<char*>(data.data()), data.size()},
                    {kCrlf, 2}};
  return Write(parts, 3);
}

bool Responder::EndStream() {
  if (state_ != State::kStreaming) throw std::logic_error("Responder::EndStream outside a stream");
  state_ = State::kEnded;
  if (request_.version < 11) return !broken_;  // the close ends it
  static char kLastChunk[] = "0\r\n\r\n";
  iovec parts[1] = {{kLastChunk, 5}};
  return Write(parts, 1);
}

// ---------------------------------------------------------------------------------------------
// HttpServer

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Route(std::string method, std::string path, Handler handler) {
  routes_.push_back({std::move(method), std::move(path), std::move(handler)});
}

Status HttpServer::Start() {
  if (options_.threads < 1) {
    return InvalidArgument("http server threads must be >= 1, not " +
                           std::to_string(options_.threads));
  }
  if (options_.port < 0 || options_.port > 65535) {
    return InvalidArgument("port must be 0..65535, not " + std::to_string(options_.port));
  }
  if (options_.idle_timeout_ms <= 0 || options_.read_timeout_ms <= 0 ||
      options_.write_timeout_ms <= 0) {
    return InvalidArgument("http server timeouts must be > 0 ms");
  }
  const std::string address = options_.host + ":" + std::to_string(options_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(options_.port);
  if (int rc = ::getaddrinfo(options_.host.empty() ? nullptr : options_.host.c_str(),
                             port_text.c_str(), &hints, &found);
      rc != 0) {
    return Unavailable("cannot listen on " + address + ": " + ::gai_strerror(rc));
  }
  std::string failure = "no address";
  for (addrinfo* candidate = found; candidate != nullptr; candidate = candidate->ai_next) {
    const int fd = ::socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC,
                            candidate->ai_protocol);
    if (fd < 0) {
      failure = "socket: " + ErrnoText(errno);
      continue;
    }
    // Restarting on the port of a server that just stopped works (TIME_WAIT); a port another
    // socket listens on still fails to bind.
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, candidate->ai_addr, candidate->ai_addrlen) != 0) {
      failure = "bind: " + ErrnoText(errno);
      ::close(fd);
      continue;
    }
    if (::listen(fd, SOMAXCONN) != 0) {
      failure = "listen: " + ErrnoText(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
    break;
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) return Unavailable("cannot listen on " + address + ": " + failure);

  sockaddr_storage bound{};
  socklen_t bound_size = sizeof(bound);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_size);
  port_ = bound.ss_family == AF_INET6
              ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
              : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);

  const size_t threads = static_cast<size_t>(options_.threads);
  slots_.assign(threads, Slot{});
  free_workers_.store(options_.threads);
  workers_.reserve(threads);
  for (size_t slot = 0; slot < threads; ++slot) {
    workers_.emplace_back([this, slot] { Work(slot); });
  }
  return Ok();
}

void HttpServer::Stop() {
  std::lock_guard stop_lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  // Wakes every accept() (it fails with EINVAL from now on).
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  {
    std::lock_guard lock(slots_mu_);
    for (const Slot& slot : slots_) {
      if (slot.fd >= 0 && slot.idle) ::shutdown(slot.fd, SHUT_RDWR);  // its recv() returns 0
    }
  }
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

bool HttpServer::SetSlot(size_t slot, int fd, bool idle, bool kept_alive) {
  std::lock_guard lock(slots_mu_);
  Slot& entry = slots_[slot];
  if (fd >= 0 && (stopping_.load() || (entry.fd == fd && entry.closing))) return false;
  if (entry.fd != fd) entry.closing = false;
  entry.fd = fd;
  entry.idle = idle;
  entry.kept_alive = idle && kept_alive;
  if (idle) entry.idle_since = std::chrono::steady_clock::now();
  if (fd < 0) reclaim_pending_ = false;  // this worker goes back to accept()
  if (entry.kept_alive && reclaim_pending_) {
    // The last free worker found no idle connection when it took its own; this is the first
    // one since. Still nobody in accept(): free a worker now.
    reclaim_pending_ = false;
    if (free_workers_.load() == 0) return CloseLongestIdleLocked(&entry) != &entry;
  }
  return true;
}

void HttpServer::CloseLongestIdle() {
  std::lock_guard lock(slots_mu_);
  if (CloseLongestIdleLocked(nullptr) == nullptr) reclaim_pending_ = true;
}

HttpServer::Slot* HttpServer::CloseLongestIdleLocked(const Slot* self) {
  Slot* oldest = nullptr;
  for (Slot& entry : slots_) {
    if (entry.fd < 0 || !entry.kept_alive || entry.closing) continue;
    if (oldest == nullptr || entry.idle_since < oldest->idle_since) oldest = &entry;
  }
  if (oldest == nullptr) return nullptr;
  oldest->closing = true;
  // Another worker's connection: shut down, its recv() returns 0. `self`'s: the caller closes.
  if (oldest != self) ::shutdown(oldest->fd, SHUT_RDWR);
  return oldest;
}

void HttpServer::Work(size_t slot) {
  while (!stopping_.load()) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (stopping_.load()) break;
      if (error == EINTR || error == ECONNABORTED || error == EPROTO) continue;
      // Out of descriptors or memory: wait a little instead of spinning.
      spdlog::warn("http server: accept on port {} failed: {}", port_, ErrnoText(error));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (free_workers_.fetch_sub(1) == 1) CloseLongestIdle();  // this was the last free one
    Serve(slot, fd);
    free_workers_.fetch_add(1);
  }
}

void HttpServer::Serve(size_t slot, int fd) {
  // Registered as idle before anything else, so a Stop() from now on closes it.
  if (!SetSlot(slot, fd, /*idle=*/true)) {
    ::close(fd);
    return;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  internal::SetSocketTimeout(fd, SO_SNDTIMEO, options_.write_timeout_ms);
  internal::SetSocketTimeout(fd, SO_RCVTIMEO, options_.idle_timeout_ms);
  int receive_timeout_ms = options_.idle_timeout_ms;
  auto use_receive_timeout = [&](int timeout_ms) {
    if (receive_timeout_ms == timeout_ms) return;
    internal::SetSocketTimeout(fd, SO_RCVTIMEO, timeout_ms);
    receive_timeout_ms = timeout_ms;
  };

  ReadBuffer buffer;
  bool open = true;
  uint64_t served = 0;  // requests answered on this connection
  while (open) {
    internal::RequestParser parser(options_.header_limit, options_.body_limit);
    bool sent_continue = false;
    internal::Refusal refusal;

    // Read until a whole request is parsed.
    for (;;) {
      if (!buffer.empty()) {
        buffer.begin += parser.Put(
            std::string_view(buffer.bytes.data() + buffer.begin, buffer.end - buffer.begin),
            refusal);
        if (refusal.status != 0) break;
        if (parser.done()) break;
        if (parser.header_done() && !sent_continue && parser.ExpectsContinue()) {
          static char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
          iovec part{kContinue, sizeof(kContinue) - 1};
          if (!internal::SendAll(fd, &part, 1)) {
            open = false;
            break;
          }
          sent_continue = true;
        }
      }
      if (buffer.end - buffer.begin > options_.header_limit + kReadSize) {
        // The parser consumes header and body as they come; only an endless line (a chunk
        // size line, say) leaves this much unparsed.
        refusal = {400, "malformed request: a line without end"};
        break;
      }
      const bool waiting_for_request = buffer.empty() && !parser.got_some();
      if (waiting_for_request) {
        use_receive_timeout(options_.idle_timeout_ms);
        if (!SetSlot(slot, fd, /*idle=*/true, /*kept_alive=*/served > 0)) {
          open = false;
          break;
        }
      } else {
        use_receive_timeout(options_.read_timeout_ms);
      }
      buffer.MakeRoom();
      ssize_t got;
      do {
        got = ::recv(fd, buffer.bytes.data() + buffer.end, buffer.bytes.size() - buffer.end, 0);
      } while (got < 0 && errno == EINTR);
      if (got <= 0) {  // closed by the client, reset, idle or read timeout, or Stop()
        open = false;
        break;
      }
      buffer.end += static_cast<size_t>(got);
      if (waiting_for_request && !SetSlot(slot, fd, /*idle=*/false)) {
        open = false;  // Stop() raced with the first bytes; the socket is shut down already
        break;
      }
    }
    if (!open) break;

    if (refusal.status != 0) {
      const Request partial = parser.Head();
      Responder responder(fd, partial, /*keep_alive=*/false, stopping_);
      RespondError(refusal.status, refusal.message, partial, responder);
      if (!responder.broken_) Linger(fd, buffer);
      break;
    }

    Request request = parser.Take();
    Responder responder(fd, request, parser.keep_alive(), stopping_);
    Dispatch(request, responder);
    ++served;
    open = responder.keep_alive_ && !responder.broken_ &&
           responder.state_ != Responder::State::kStreaming && !stopping_.load();
  }
  SetSlot(slot, -1, false);
  ::close(fd);
}

void HttpServer::RespondError(int status, std::string_view message, const Request& request,
                              Responder& responder) {
  try {
    if (options_.on_error) {
      options_.on_error(status, message, request, responder);
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

void HttpServer::Dispatch(const Request& request, Responder& responder) {
  const RouteEntry* route = nullptr;
  bool path_known = false;
  for (const RouteEntry& entry : routes_) {
    if (entry.path != request.path) continue;
    path_known = true;
    if (entry.method == request.method) {
      route = &entry;
      break;
    }
  }
  if (route == nullptr) {
    RespondError(path_known ? 405 : 404,
                 path_known ? "method " + request.method + " not allowed on " + request.path
                            : "no such path: " + request.method + " " + request.path,
                 request, responder);
    return;
  }
  std::string failure;
  try {
    route->handler(request, responder);
  } catch (const std::exception& error) {
    failure = error.what();
  } catch (...) {
    failure = "an exception that is not a std::exception";
  }
  if (!failure.empty()) {
    spdlog::error("http server: the handler of {} {} threw: {}", request.method, request.path,
                  failure);
    responder.keep_alive_ = false;
    if (!responder.started()) RespondError(500, "internal server error", request, responder);
    return;
  }
  if (!responder.started()) {
    spdlog::error("http server: the handler of {} {} sent no answer", request.method, request.path);
    responder.keep_alive_ = false;
    RespondError(500, "internal server error: no answer", request, responder);
  }
}

}  // namespace factory::net
