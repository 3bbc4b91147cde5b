#include "net/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>

#include "net/internal/socket_io.h"

namespace factory::net {
namespace {

namespace http = boost::beast::http;
using boost::beast::string_view;

constexpr size_t kReadChunk = 16 * 1024;
constexpr uint32_t kMaxHeaderBytes = 64 * 1024;

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct Url {
  std::string host;         // without brackets
  std::string port = "80";  // digits
  std::string authority;    // Host header value
  std::string target;       // path and query
};

Result<Url> ParseUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || Lower(url.substr(0, kScheme.size())) != kScheme) {
    return InvalidArgument("not an http:// URL: " + std::string(url));
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view target =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (const size_t hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    return InvalidArgument("bad host in URL (credentials in the URL are not supported): " +
                           std::string(url));
  }
  Url parsed;
  parsed.authority = std::string(authority);
  std::string_view port;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return InvalidArgument("bad host in URL: " + std::string(url));
    parsed.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return InvalidArgument("bad host in URL: " + std::string(url));
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (parsed.host.empty()) return InvalidArgument("bad host in URL: " + std::string(url));
  if (!port.empty()) {
    int number = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (ec != std::errc() || end != port.data() + port.size() || number < 1 || number > 65535) {
      return InvalidArgument("bad port in URL: " + std::string(url));
    }
    parsed.port = std::to_string(number);
  }
  if (target.empty()) {
    parsed.target = "/";
  } else if (target.front() == '?') {
    parsed.target = "/" + std::string(target);
  } else {
    parsed.target = std::string(target);
  }
  return parsed;
}

bool HasLineBreak(std::string_view text) {
  return text.find_first_of("\r\n") != std::string_view::npos;
}

// The response parser: Beast's HTTP/1.1 state machine; the body (chunked encoding removed)
// goes to `deliver` as it is parsed.
class ResponseParser : public http::basic_parser<false> {
 public:
  ResponseParser(ClientResponse* response, const ClientBodySink* sink)
      : response_(response), sink_(sink) {
    header_limit(kMaxHeaderBytes);
    // Streamed answers may be long; the caller's timeouts bound them. (Not boost::none: Beast
    // 1.74 compares the length with the optional limit, and anything is greater than none.)
    body_limit(std::numeric_limits<std::uint64_t>::max());
    eager(true);
  }

  bool aborted() const { return aborted_; }

 private:
  void on_request_impl(http::verb, string_view, string_view, int,
                       boost::beast::error_code&) override {}
  void on_response_impl(int code, string_view, int, boost::beast::error_code&) override {
    response_->status = code;
    response_->headers.clear();
  }
  void on_field_impl(http::field, string_view name, string_view value,
                     boost::beast::error_code&) override {
    response_->headers[Lower(std::string_view(name.data(), name.size()))] =
        std::string(value.data(), value.size());
  }
  void on_header_impl(boost::beast::error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const&,
                         boost::beast::error_code&) override {}
  size_t on_body_impl(string_view body, boost::beast::error_code& ec) override {
    Deliver(body, ec);
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, string_view, boost::beast::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, string_view body,
                            boost::beast::error_code& ec) override {
    Deliver(body, ec);
    return body.size();
  }
  void on_finish_impl(boost::beast::error_code&) override {}

  void Deliver(string_view piece, boost::beast::error_code& ec) {
    const bool streamed = sink_ != nullptr && *sink_ && response_->status / 100 == 2;
    if (!streamed) {
      response_->body.append(piece.data(), piece.size());
      return;
    }
    if (!(*sink_)(std::string_view(piece.data(), piece.size()))) {
      aborted_ = true;
      ec = boost::asio::error::operation_aborted;
    }
  }

  ClientResponse* response_;
  const ClientBodySink* sink_;
  bool aborted_ = false;
};

enum class Failure { kNone, kStale, kTimeout, kIdle, kUnavailable, kAborted };

}  // namespace

struct PlainHttpClient::Connection {
  int fd = -1;
  int64_t receive_timeout_ms = -1;  // what SO_RCVTIMEO holds; 0 = none, -1 = never set
  bool reused = false;
  std::string pending;  // bytes read past the previous answer (should stay empty)

  ~Connection() {
    if (fd >= 0) ::close(fd);
  }

  // Sets SO_RCVTIMEO only when the current value would wait past `wait_ms` or is far shorter
  // than needed (an early wake-up costs a loop, not correctness), so a warm connection
  // usually needs no setsockopt at all.
  void EnsureReceiveTimeout(int64_t wait_ms) {
    const bool too_long =
        receive_timeout_ms < 0 ||
        (wait_ms > 0 && (receive_timeout_ms == 0 || receive_timeout_ms > wait_ms));
    const bool too_short =
        receive_timeout_ms > 0 && (wait_ms == 0 || receive_timeout_ms < wait_ms * 9 / 10);
    if (!too_long && !too_short) return;
    internal::SetSocketTimeout(fd, SO_RCVTIMEO, wait_ms);
    receive_timeout_ms = wait_ms;
  }
};

std::string ClientResponse::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

PlainHttpClient::PlainHttpClient() = default;
PlainHttpClient::~PlainHttpClient() = default;

std::unique_ptr<PlainHttpClient::Connection> PlainHttpClient::TakeIdle(const std::string& origin) {
  std::lock_guard lock(mu_);
  auto it = idle_.find(origin);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  std::unique_ptr<Connection> connection = std::move(it->second.back());
  it->second.pop_back();
  connection->reused = true;
  return connection;
}

void PlainHttpClient::GiveBack(const std::string& origin, std::unique_ptr<Connection> connection) {
  std::lock_guard lock(mu_);
  auto& list = idle_[origin];
  if (list.size() < kMaxIdlePerOrigin) list.push_back(std::move(connection));
}

namespace {

// Opens a blocking TCP connection within `timeout_ms` (0 = the system's own limit).
Result<int> Connect(const Url& url, int64_t timeout_ms, const std::string& what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int resolved = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &found);
  if (resolved != 0) {
    return Unavailable(what + ": cannot resolve host " + url.host + ": " +
                       ::gai_strerror(resolved));
  }
  const int64_t deadline = timeout_ms > 0 ? SteadyNowMs() + timeout_ms : 0;
  std::string last_error = "no address";
  bool timed_out = false;
  int fd = -1;
  for (addrinfo* address = found; address != nullptr && fd < 0; address = address->ai_next) {
    const int candidate =
        ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                 address->ai_protocol);
    if (candidate < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int rc = ::connect(candidate, address->ai_addr, address->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd waiting{candidate, POLLOUT, 0};
      const int64_t wait = deadline == 0 ? -1 : std::max<int64_t>(0, deadline - SteadyNowMs());
      rc = ::poll(&waiting, 1, static_cast<int>(wait));
      if (rc == 0) {
        timed_out = true;
        last_error = "connect timed out";
        ::close(candidate);
        break;
      }
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(candidate, SOL_SOCKET, SO_ERROR, &error, &length);
      rc = error == 0 ? 0 : -1;
      errno = error;
    }
    if (rc != 0) {
      last_error = std::strerror(errno);
      ::close(candidate);
      continue;
    }
    fd = candidate;
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    if (timed_out) {
      return DeadlineExceeded("timeout: " + what + ": connecting took longer than " +
                              std::to_string(timeout_ms) + " ms");
    }
    return Unavailable(what + ": cannot connect: " + last_error);
  }
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  return fd;
}

// Writes all of head + body with one sendmsg when the kernel takes it (it does for anything
// that fits the socket buffer).
bool SendRequest(int fd, const std::string& head, const std::string& body) {
  iovec parts[2] = {{const_cast<char*>(head.data()), head.size()},
                    {const_cast<char*>(body.data()), body.size()}};
  return internal::SendAll(fd, parts, 2);
}

}  // namespace

Result<ClientResponse> PlainHttpClient::Send(const ClientRequest& request,
                                             const ClientBodySink& sink) {
  const std::string what = request.method + " " + request.url;
  FACTORY_ASSIGN_OR_RETURN(Url url, ParseUrl(request.url));
  if (request.method.empty() || HasLineBreak(request.method) ||
      request.method.find(' ') != std::string::npos) {
    return InvalidArgument("bad HTTP method: " + request.method);
  }

  std::string head;
  head.reserve(512);
  head.append(request.method).append(" ").append(url.target).append(" HTTP/1.1\r\nHost: ");
  head.append(url.authority).append("\r\n");
  bool has_length = false;
  for (const auto& [name, value] : request.headers) {
    if (name.empty() || HasLineBreak(name) || HasLineBreak(value) ||
        name.find(':') != std::string::npos) {
      return InvalidArgument(what + ": header '" + (HasLineBreak(name) ? "?" : name) +
                             "' has a bad name or a line break in its value");
    }
    if (boost::beast::iequals(name, "content-length")) has_length = true;
    head.append(name).append(": ").append(value).append("\r\n");
  }
  if (!has_length && (request.method != "GET" || !request.body.empty())) {
    head.append("Content-Length: ").append(std::to_string(request.body.size())).append("\r\n");
  }
  head.append("\r\n");

  const int64_t start = SteadyNowMs();
  const int64_t deadline = request.total_timeout_ms > 0 ? start + request.total_timeout_ms : 0;
  const std::string origin = url.host + ":" + url.port;

  // One try on a pooled connection; when the server had closed it in the meantime (nothing
  // of an answer arrived), one more on a fresh connection.
  for (int round = 0; round < 2; ++round) {
    std::unique_ptr<Connection> connection = round == 0 ? TakeIdle(origin) : nullptr;
    if (connection == nullptr) {
      int64_t connect_ms = request.connect_timeout_ms;
      if (deadline != 0) {
        const int64_t left = deadline - SteadyNowMs();
        if (left <= 0) return DeadlineExceeded("timeout: " + what);
        connect_ms = connect_ms > 0 ? std::min(connect_ms, left) : left;
      }
      FACTORY_ASSIGN_OR_RETURN(int fd, Connect(url, connect_ms, what));
      connection = std::make_unique<Connection>();
      connection->fd = fd;
      // Writes are bounded too: a server that stops reading cannot hold a thread forever.
      const int64_t send_limit = request.total_timeout_ms > 0  ? request.total_timeout_ms
                                 : request.idle_timeout_ms > 0 ? request.idle_timeout_ms
                                                               : 0;
      if (send_limit > 0) internal::SetSocketTimeout(fd, SO_SNDTIMEO, send_limit);
    }

    ClientResponse response;
    std::optional<ResponseParser> parser;
    parser.emplace(&response, &sink);
    if (request.method == "HEAD") parser->skip(true);

    Failure failure = Failure::kNone;
    std::string failure_detail;
    bool got_bytes = false;
    if (!SendRequest(connection->fd, head, request.body)) {
      const int error = errno;
      if (connection->reused && (error == EPIPE || error == ECONNRESET)) {
        failure = Failure::kStale;
      } else if (error == EAGAIN || error == EWOULDBLOCK) {
        failure = Failure::kTimeout;
      } else {
        failure = Failure::kUnavailable;
        failure_detail = std::string("send failed: ") + std::strerror(error);
      }
    }

    std::string& buffer = connection->pending;
    size_t used = 0;  // bytes of `buffer` already consumed by the parser
    int64_t last_byte_ms = SteadyNowMs();
    while (failure == Failure::kNone) {
      // Parse what is buffered.
      while (used < buffer.size() && !parser->is_done()) {
        boost::beast::error_code ec;
        const size_t consumed =
            parser->put(boost::asio::buffer(buffer.data() + used, buffer.size() - used), ec);
        used += consumed;
        if (ec == http::error::need_more) break;
        if (ec) {
          if (parser->aborted()) {
            failure = Failure::kAborted;
          } else {
            failure = Failure::kUnavailable;
            failure_detail = "malformed HTTP answer: " + ec.message();
          }
          break;
        }
        if (consumed == 0) break;
      }
      if (failure != Failure::kNone) break;
      if (parser->is_done()) {
        // A 1xx interim answer (100 Continue, 103 Early Hints): the real one follows.
        if (response.status / 100 == 1 && response.status != 101) {
          response = ClientResponse();
          parser.emplace(&response, &sink);
          if (request.method == "HEAD") parser->skip(true);
          continue;
        }
        break;
      }
      if (used > 0) {
        buffer.erase(0, used);
        used = 0;
      }

      // Read more: wait no longer than the total deadline or the idle limit allows.
      int64_t wait = 0;
      const int64_t now = SteadyNowMs();
      if (deadline != 0) {
        if (now >= deadline) {
          failure = Failure::kTimeout;
          break;
        }
        wait = deadline - now;
      }
      if (request.idle_timeout_ms > 0) {
        const int64_t idle_left = last_byte_ms + request.idle_timeout_ms - now;
        if (idle_left <= 0) {
          failure = Failure::kIdle;
          break;
        }
        wait = wait == 0 ? idle_left : std::min(wait, idle_left);
      }
      connection->EnsureReceiveTimeout(wait);
      const size_t old_size = buffer.size();
      buffer.resize(old_size + kReadChunk);
      const ssize_t got = ::recv(connection->fd, buffer.data() + old_size, kReadChunk, 0);
      buffer.resize(old_size + static_cast<size_t>(std::max<ssize_t>(got, 0)));
      if (got > 0) {
        got_bytes = true;
        last_byte_ms = SteadyNowMs();
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // limits re-checked
      if (got == 0) {
        // The server closed: the end of a close-delimited body, or an answer cut short.
        boost::beast::error_code ec;
        if (parser->got_some()) parser->put_eof(ec);
        if (parser->is_done() && !ec) break;
        if (!got_bytes && connection->reused) {
          failure = Failure::kStale;
        } else {
          failure = Failure::kUnavailable;
          failure_detail = got_bytes ? "the answer was cut short"
                                     : "the server closed the "
                                       "connection without an answer";
        }
        break;
      }
      const int error = errno;
      if (!got_bytes && connection->reused && error == ECONNRESET) {
        failure = Failure::kStale;
      } else {
        failure = Failure::kUnavailable;
        failure_detail = std::string("receive failed: ") + std::strerror(error);
      }
    }

    switch (failure) {
      case Failure::kNone:
        if (used > 0) buffer.erase(0, used);
        if (parser->keep_alive() && buffer.empty()) {
          connection->reused = false;
          GiveBack(origin, std::move(connection));
        }
        return response;
      case Failure::kStale:
        continue;  // the connection is dropped with this round
      case Failure::kTimeout:
        return DeadlineExceeded("timeout: " + what + ": no complete answer within " +
                                std::to_string(request.total_timeout_ms) + " ms");
      case Failure::kIdle:
        return DeadlineExceeded("timeout: " + what + ": nothing for " +
                                std::to_string(request.idle_timeout_ms) + " ms");
      case Failure::kAborted:
        return Aborted(what + ": aborted by the body handler");
      case Failure::kUnavailable:
        return Unavailable(what + ": " + failure_detail);
    }
  }
  return Unavailable(what + ": the server closed the connection without an answer");
}

}  // namespace factory::net
