#include "net/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <limits>
#include <system_error>

#include "core/subprocess.h"
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
// epoll tags of the two descriptors that are not connections (connection ids start at 2).
constexpr uint64_t kListenTag = 0;
constexpr uint64_t kWakeTag = 1;
// Connections one worker accepts before re-arming the listening socket.
constexpr int kAcceptBatch = 64;
// Descriptors the server asks room for (idle connections are cheap, but each is one).
constexpr int kDescriptorsWanted = 16 * 1024;

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

// Whether the unparsed bytes hold a whole request head (up to its blank line).
bool HeadComplete(const ReadBuffer& buffer) {
  const std::string_view unparsed(buffer.bytes.data() + buffer.begin, buffer.end - buffer.begin);
  return unparsed.find("\r\n\r\n") != std::string_view::npos ||
         unparsed.find("\n\n") != std::string_view::npos;
}

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

void SocketResponder::AppendHead(std::string& out, int status, const HeaderFields& headers,
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

bool SocketResponder::Write(iovec* parts, int count) {
  if (broken_) return false;
  if (!internal::SendAll(fd_, parts, static_cast<size_t>(count))) {
    broken_ = true;  // the client is gone, or stopped reading for the write timeout
    return false;
  }
  return true;
}

bool SocketResponder::Send(int status, const HeaderFields& headers, std::string_view body) {
  if (state_ != State::kNone)
    throw std::logic_error("SocketResponder::Send after an answer started");
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

bool SocketResponder::StartStream(int status, const HeaderFields& headers) {
  if (state_ != State::kNone) {
    throw std::logic_error("SocketResponder::StartStream after an answer started");
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

bool SocketResponder::WriteChunk(std::string_view data) {
  if (state_ != State::kStreaming) {
    throw std::logic_error("SocketResponder::WriteChunk outside a stream");
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

bool SocketResponder::EndStream() {
  if (state_ != State::kStreaming)
    throw std::logic_error("SocketResponder::EndStream outside a stream");
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
      options_.write_timeout_ms <= 0 || options_.header_timeout_ms <= 0) {
    return InvalidArgument("http server timeouts must be > 0 ms");
  }
  // Idle connections cost descriptors: make room for many (the soft limit is often 1024).
  ReserveDescriptors(kDescriptorsWanted);
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
    const int fd =
        ::socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
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

  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return Unavailable("http server on " + address + ": epoll/eventfd: " + ErrnoText(errno));
  }
  // The listening socket wakes one worker at a time (it accepts what is pending, then re-arms
  // it); the wake-up descriptor stays readable once written, so every worker sees it.
  epoll_event listen_event{.events = EPOLLIN | EPOLLONESHOT, .data = {.u64 = kListenTag}};
  epoll_event wake_event{.events = EPOLLIN, .data = {.u64 = kWakeTag}};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &listen_event) != 0 ||
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake_event) != 0) {
    return Unavailable("http server on " + address + ": epoll_ctl: " + ErrnoText(errno));
  }

  const size_t threads = static_cast<size_t>(options_.threads);
  workers_.reserve(threads);
  for (size_t index = 0; index < threads; ++index) {
    workers_.emplace_back([this] { Work(); });
  }
  reaper_ = std::thread([this] { Reap(); });
  return Ok();
}

void HttpServer::Stop() {
  std::lock_guard stop_lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(conns_mu_);
    stopping_.store(true);
    // New connections are refused from now on.
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
    // Parked connections close at once; busy ones finish their request (answered with
    // `Connection: close`), and their worker closes them.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->second.busy) {
        ++it;
        continue;
      }
      CloseLocked(it->first, it->second);
      it = connections_.erase(it);
    }
  }
  reaper_cv_.notify_all();
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    if (::write(wake_fd_, &one, sizeof(one)) < 0) {
      spdlog::error("http server: waking the workers: {}", ErrnoText(errno));
    }
  }
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  if (reaper_.joinable()) reaper_.join();
  {
    std::lock_guard lock(conns_mu_);
    for (auto& [id, connection] : connections_) CloseLocked(id, connection);
    connections_.clear();
  }
  for (int* fd : {&listen_fd_, &epoll_fd_, &wake_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void HttpServer::CloseLocked(uint64_t, Connection& connection) {
  if (connection.fd < 0) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, connection.fd, nullptr);
  ::close(connection.fd);
  connection.fd = -1;
}

void HttpServer::Work() {
  while (!stopping_.load()) {
    epoll_event event{};
    const int ready = ::epoll_wait(epoll_fd_, &event, 1, -1);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("http server: epoll_wait on port {} failed: {}", port_, ErrnoText(errno));
      return;
    }
    if (ready <= 0 || stopping_.load()) continue;
    if (event.data.u64 == kWakeTag) continue;
    if (event.data.u64 == kListenTag) {
      AcceptAll();
      continue;
    }
    Taken taken;
    if (Take(event.data.u64, taken)) Serve(taken);
  }
}

void HttpServer::AcceptAll() {
  // A bounded batch, so that one worker does not accept forever under a flood while the
  // connections it took wait for it.
  for (int accepted = 0; accepted < kAcceptBatch && !stopping_.load(); ++accepted) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (error == EAGAIN || error == EWOULDBLOCK) break;
      if (error == EINTR || error == ECONNABORTED || error == EPROTO) continue;
      // Out of descriptors or memory: wait a little instead of spinning.
      spdlog::warn("http server: accept on port {} failed: {}", port_, ErrnoText(error));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      break;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    internal::SetSocketTimeout(fd, SO_SNDTIMEO, options_.write_timeout_ms);
    internal::SetSocketTimeout(fd, SO_RCVTIMEO, options_.read_timeout_ms);
    std::lock_guard lock(conns_mu_);
    if (stopping_.load()) {
      ::close(fd);
      break;
    }
    const uint64_t id = next_id_++;
    Connection& connection = connections_[id];
    connection.fd = fd;
    connection.head_started = true;  // a new connection owes its head from now on
    connection.head_deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.header_timeout_ms);
    epoll_event event{.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data = {.u64 = id}};
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      spdlog::warn("http server: epoll_ctl add: {}", ErrnoText(errno));
      ::close(fd);
      connections_.erase(id);
    }
  }
  epoll_event rearm{.events = EPOLLIN | EPOLLONESHOT, .data = {.u64 = kListenTag}};
  if (!stopping_.load()) ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &rearm);
}

bool HttpServer::Take(uint64_t id, Taken& taken) {
  std::lock_guard lock(conns_mu_);
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.busy || it->second.fd < 0) return false;
  Connection& connection = it->second;
  connection.busy = true;
  taken.id = id;
  taken.fd = connection.fd;
  taken.kept_alive = connection.kept_alive;
  taken.pending = std::move(connection.pending);
  connection.pending.clear();
  taken.head_started = connection.head_started;
  taken.head_deadline = connection.head_deadline;
  return true;
}

void HttpServer::Park(Taken& taken) {
  std::lock_guard lock(conns_mu_);
  auto it = connections_.find(taken.id);
  if (it == connections_.end()) {
    ::close(taken.fd);
    return;
  }
  Connection& connection = it->second;
  if (stopping_.load()) {
    CloseLocked(it->first, connection);
    connections_.erase(it);
    return;
  }
  connection.busy = false;
  connection.kept_alive = taken.kept_alive;
  connection.pending = std::move(taken.pending);
  connection.head_started = taken.head_started;
  connection.head_deadline = taken.head_deadline;
  connection.idle_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.idle_timeout_ms);
  // Re-armed under the lock: the reaper cannot close the descriptor (and accept() reuse its
  // number) between the bookkeeping and this call.
  epoll_event event{.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data = {.u64 = taken.id}};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connection.fd, &event) != 0) {
    spdlog::warn("http server: epoll_ctl mod: {}", ErrnoText(errno));
    CloseLocked(it->first, connection);
    connections_.erase(it);
  }
}

void HttpServer::Drop(const Taken& taken) {
  std::lock_guard lock(conns_mu_);
  auto it = connections_.find(taken.id);
  if (it == connections_.end()) {
    ::close(taken.fd);
    return;
  }
  CloseLocked(it->first, it->second);
  connections_.erase(it);
}

void HttpServer::Reap() {
  const int shortest = std::min(options_.header_timeout_ms, options_.idle_timeout_ms);
  const auto period = std::chrono::milliseconds(std::clamp(shortest / 10, 5, 1000));
  std::unique_lock lock(conns_mu_);
  while (!stopping_.load()) {
    reaper_cv_.wait_for(lock, period, [&] { return stopping_.load(); });
    if (stopping_.load()) return;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = connections_.begin(); it != connections_.end();) {
      const Connection& connection = it->second;
      const bool expired =
          !connection.busy && (connection.head_started ? connection.head_deadline <= now
                                                       : connection.idle_deadline <= now);
      if (!expired) {
        ++it;
        continue;
      }
      CloseLocked(it->first, it->second);
      it = connections_.erase(it);
    }
  }
}

void HttpServer::Serve(Taken& taken) {
  const int fd = taken.fd;
  thread_local ReadBuffer buffer;
  buffer.begin = buffer.end = 0;
  if (!taken.pending.empty()) {
    if (buffer.bytes.size() < taken.pending.size() + kReadSize) {
      buffer.bytes.resize(taken.pending.size() + kReadSize);
    }
    std::memcpy(buffer.bytes.data(), taken.pending.data(), taken.pending.size());
    buffer.end = taken.pending.size();
    taken.pending.clear();
  }

  bool open = true;
  while (open) {
    internal::RequestParser parser(options_.header_limit, options_.body_limit);
    bool sent_continue = false;
    internal::Refusal refusal;

    // Read until a whole request is parsed. The parser takes the head only once all of it is
    // here (it would consume the request line alone, and that state cannot be parked): until
    // then the bytes wait in the buffer, and go with the connection when it is parked.
    bool parser_fed = false;
    for (;;) {
      if (!buffer.empty() && !taken.head_started) {
        taken.head_started = true;
        taken.head_deadline = std::chrono::steady_clock::now() +
                              std::chrono::milliseconds(options_.header_timeout_ms);
      }
      const bool feed = !buffer.empty() && (parser_fed || HeadComplete(buffer) ||
                                            buffer.end - buffer.begin > options_.header_limit);
      if (feed) {
        parser_fed = true;
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
      const bool head_done = parser.header_done();
      if (!head_done && taken.head_started &&
          std::chrono::steady_clock::now() >= taken.head_deadline) {
        open = false;  // too slow to send its head: the worker is not held any longer
        break;
      }
      // Before the head is complete, only what is already there is read: a connection with
      // nothing more to say goes back to the epoll set rather than holding this worker.
      const bool may_park = !head_done && !parser_fed;
      buffer.MakeRoom();
      ssize_t got;
      do {
        got = ::recv(fd, buffer.bytes.data() + buffer.end, buffer.bytes.size() - buffer.end,
                     may_park ? MSG_DONTWAIT : 0);
      } while (got < 0 && errno == EINTR);
      if (got < 0 && may_park && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // The parser has seen none of this head: the unparsed bytes are all of it.
        taken.pending.assign(buffer.bytes.data() + buffer.begin, buffer.end - buffer.begin);
        Park(taken);
        return;
      }
      if (got <= 0) {  // closed by the client, reset, or the read timeout within a body
        open = false;
        break;
      }
      buffer.end += static_cast<size_t>(got);
    }
    if (!open) break;

    if (refusal.status != 0) {
      const Request partial = parser.Head();
      SocketResponder responder(fd, partial, /*keep_alive=*/false, stopping_);
      RespondError(refusal.status, refusal.message, partial, responder);
      if (!responder.broken_) Linger(fd, buffer);
      break;
    }

    const bool keep_alive = parser.keep_alive();
    Request request = parser.Take();
    SocketResponder responder(fd, request, keep_alive, stopping_);
    Dispatch(request, responder);
    taken.kept_alive = true;
    taken.head_started = false;
    open = responder.keep_alive_ && !responder.broken_ &&
           responder.state_ != SocketResponder::State::kStreaming && !stopping_.load();
  }
  Drop(taken);
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

void HttpServer::Dispatch(const Request& request, SocketResponder& responder) {
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
