// net::PlainHttpClient against real servers: cpp-httplib for well-behaved HTTP, and a raw
// socket server for the answers a well-behaved server never gives (cut short, interim 100,
// close-delimited, a keep-alive connection closed under the client).
#include "net/http_client.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace factory::net {
namespace {

using ::testing::HasSubstr;

// A cpp-httplib server on a free loopback port, serving until destroyed.
class LocalServer {
 public:
  LocalServer() {
    server_.set_keep_alive_max_count(1000);
    server_.set_tcp_nodelay(true);
  }
  ~LocalServer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  httplib::Server& server() { return server_; }
  void Start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

// Accepts connections on a free loopback port and hands each to `serve` on its own thread.
class RawServer {
 public:
  explicit RawServer(std::function<void(int fd)> serve) : serve_(std::move(serve)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        ++accepted_;
        std::lock_guard lock(mu_);
        handlers_.emplace_back([this, fd] {
          serve_(fd);
          ::close(fd);
        });
      }
    });
  }
  ~RawServer() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    std::lock_guard lock(mu_);
    for (auto& handler : handlers_) handler.join();
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int accepted() const { return accepted_; }

  // Reads one request's header block (and a body of `body_bytes`); "" when the peer closed.
  static std::string ReadRequest(int fd, size_t body_bytes = 0) {
    std::string data;
    char buffer[4096];
    while (data.find("\r\n\r\n") == std::string::npos ||
           data.size() < data.find("\r\n\r\n") + 4 + body_bytes) {
      const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
      if (got <= 0) return "";
      data.append(buffer, static_cast<size_t>(got));
    }
    return data;
  }
  static void Write(int fd, const std::string& text) {
    (void)::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  }

 private:
  std::function<void(int)> serve_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> handlers_;
};

ClientRequest Post(const std::string& url, std::string body) {
  ClientRequest request;
  request.url = url;
  request.body = std::move(body);
  request.headers = {{"Content-Type", "application/json"}};
  request.total_timeout_ms = 10'000;
  return request;
}

TEST(PlainHttpClientTest, PostsAndReusesTheConnection) {
  LocalServer local;
  std::mutex mu;
  std::set<int> client_ports;
  std::string seen_type;
  local.server().Post("/echo", [&](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard lock(mu);
      client_ports.insert(req.remote_port);
      seen_type = req.get_header_value("Content-Type");
    }
    res.set_header("X-Answer", "Forty-Two");
    res.set_content("echo:" + req.body, "text/plain");
  });
  local.Start();

  PlainHttpClient client;
  for (int index = 0; index < 5; ++index) {
    auto response = client.Send(Post(local.Url("/echo"), "n" + std::to_string(index)));
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "echo:n" + std::to_string(index));
    EXPECT_EQ(response->headers["x-answer"], "Forty-Two");  // names lower-cased
  }
  EXPECT_EQ(seen_type, "application/json");
  EXPECT_EQ(client_ports.size(), 1u) << "five calls in a row should share one connection";
}

TEST(PlainHttpClientTest, LargeBodiesBothWays) {
  LocalServer local;
  local.server().Post("/big", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(std::string(req.body.rbegin(), req.body.rend()), "text/plain");
  });
  local.Start();
  std::string body(3 * 1024 * 1024, 'x');
  for (size_t index = 0; index < body.size(); index += 7) body[index] = 'a' + index % 26;
  PlainHttpClient client;
  auto response = client.Send(Post(local.Url("/big"), body));
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->body, std::string(body.rbegin(), body.rend()));
}

TEST(PlainHttpClientTest, StreamsA2xxBodyPieceByPieceAsItArrives) {
  LocalServer local;
  std::promise<void> first_piece_seen;
  auto seen = first_piece_seen.get_future().share();
  local.server().Post("/stream", [seen](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/event-stream",
                                     [seen, step = 0](size_t, httplib::DataSink& sink) mutable {
                                       if (step == 0) {
                                         sink.write("data: one\n\n", 11);
                                       } else if (step == 1) {
                                         // Only once the client has the first piece.
                                         seen.wait();
                                         sink.write("data: two\n\n", 11);
                                       } else {
                                         sink.done();
                                       }
                                       ++step;
                                       return true;
                                     });
  });
  local.Start();

  PlainHttpClient client;
  std::string streamed;
  bool signalled = false;
  auto response = client.Send(Post(local.Url("/stream"), "{}"), [&](std::string_view piece) {
    streamed.append(piece);
    if (!signalled && streamed.find("one") != std::string::npos) {
      signalled = true;
      first_piece_seen.set_value();
    }
    return true;
  });
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(streamed, "data: one\n\ndata: two\n\n");  // chunked framing removed
  EXPECT_TRUE(response->body.empty());
}

TEST(PlainHttpClientTest, ErrorBodiesAreCollectedEvenWithASink) {
  LocalServer local;
  local.server().Post("/limited", [](const httplib::Request&, httplib::Response& res) {
    res.status = 429;
    res.set_header("Retry-After", "3");
    res.set_content(R"({"error":"slow down"})", "application/json");
  });
  local.Start();
  PlainHttpClient client;
  int pieces = 0;
  auto response = client.Send(Post(local.Url("/limited"), "{}"), [&](std::string_view) {
    ++pieces;
    return true;
  });
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 429);
  EXPECT_EQ(response->headers["retry-after"], "3");
  EXPECT_EQ(response->body, R"({"error":"slow down"})");
  EXPECT_EQ(pieces, 0);
}

TEST(PlainHttpClientTest, ASinkThatSaysStopAbortsAndTheNextCallStillWorks) {
  LocalServer local;
  local.server().Post("/stream", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/plain", [](size_t offset, httplib::DataSink& sink) {
      if (offset > 100'000) {
        sink.done();
        return true;
      }
      sink.write(std::string(1000, 'z').data(), 1000);
      return true;
    });
  });
  local.server().Post("/plain", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("fine", "text/plain");
  });
  local.Start();
  PlainHttpClient client;
  auto aborted =
      client.Send(Post(local.Url("/stream"), "{}"), [](std::string_view) { return false; });
  ASSERT_FALSE(aborted);
  EXPECT_EQ(aborted.error().code, ErrorCode::kAborted);
  auto next = client.Send(Post(local.Url("/plain"), "{}"));
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_EQ(next->body, "fine");
}

TEST(PlainHttpClientTest, TotalTimeout) {
  LocalServer local;
  local.server().Post("/slow", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    res.set_content("late", "text/plain");
  });
  local.Start();
  PlainHttpClient client;
  ClientRequest request = Post(local.Url("/slow"), "{}");
  request.total_timeout_ms = 200;
  auto response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_THAT(response.error().message, HasSubstr("timeout: POST " + request.url));
}

TEST(PlainHttpClientTest, IdleTimeoutOnAStalledStream) {
  std::promise<void> release;
  auto released = release.get_future().share();
  RawServer raw([released](int fd) {
    if (RawServer::ReadRequest(fd, 2).empty()) return;
    RawServer::Write(fd,
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nfirst\r\n");
    released.wait();  // then nothing more until the test ends
  });
  PlainHttpClient client;
  ClientRequest request = Post(raw.Url("/v1/stream"), "{}");
  request.total_timeout_ms = 0;
  request.idle_timeout_ms = 300;
  std::string streamed;
  auto response = client.Send(request, [&](std::string_view piece) {
    streamed.append(piece);
    return true;
  });
  release.set_value();
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_THAT(response.error().message, HasSubstr("nothing for 300 ms"));
  EXPECT_EQ(streamed, "first");
}

TEST(PlainHttpClientTest, AnAnswerCutShortIsUnavailable) {
  RawServer raw([](int fd) {
    if (RawServer::ReadRequest(fd, 2).empty()) return;
    RawServer::Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
  });
  PlainHttpClient client;
  auto response = client.Send(Post(raw.Url("/x"), "{}"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(response.error().message, HasSubstr("cut short"));
}

TEST(PlainHttpClientTest, MalformedAnswerIsUnavailable) {
  RawServer raw([](int fd) {
    if (RawServer::ReadRequest(fd, 2).empty()) return;
    RawServer::Write(fd, "SPDY/9 whatever\r\n\r\n");
  });
  PlainHttpClient client;
  auto response = client.Send(Post(raw.Url("/x"), "{}"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(response.error().message, HasSubstr("malformed HTTP answer"));
}

TEST(PlainHttpClientTest, InterimAnswersAreSkippedAndCloseDelimitedBodiesRead) {
  RawServer raw([](int fd) {
    if (RawServer::ReadRequest(fd, 2).empty()) return;
    RawServer::Write(fd, "HTTP/1.1 100 Continue\r\n\r\n");
    RawServer::Write(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
  });
  PlainHttpClient client;
  auto response = client.Send(Post(raw.Url("/x"), "{}"));
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "until the end");
}

TEST(PlainHttpClientTest, AKeptConnectionTheServerClosedIsReplacedOnce) {
  // Each connection answers exactly one request, keep-alive promised, then is closed by the
  // server: the second call finds its pooled connection dead and must go again on a new one.
  RawServer raw([](int fd) {
    if (RawServer::ReadRequest(fd, 2).empty()) return;
    RawServer::Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  });
  PlainHttpClient client;
  auto first = client.Send(Post(raw.Url("/x"), "{}"));
  ASSERT_TRUE(first) << first.error().message;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server has closed it
  auto second = client.Send(Post(raw.Url("/x"), "{}"));
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->body, "ok");
  EXPECT_EQ(raw.accepted(), 2);
}

TEST(PlainHttpClientTest, BadInputAndUnreachableServers) {
  PlainHttpClient client;
  auto not_http = client.Send(Post("https://example.invalid/v1", "{}"));
  ASSERT_FALSE(not_http);
  EXPECT_EQ(not_http.error().code, ErrorCode::kInvalidArgument);
  auto bad_port = client.Send(Post("http://127.0.0.1:99999/v1", "{}"));
  ASSERT_FALSE(bad_port);
  EXPECT_EQ(bad_port.error().code, ErrorCode::kInvalidArgument);

  ClientRequest injected = Post("http://127.0.0.1:9/v1", "{}");
  injected.headers.emplace_back("Authorization", "Bearer sk-secret\r\nX-Evil: 1");
  auto refused_header = client.Send(injected);
  ASSERT_FALSE(refused_header);
  EXPECT_EQ(refused_header.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(refused_header.error().message, ::testing::Not(HasSubstr("sk-secret")));

  // A port nothing listens on: bound, read back, closed.
  int port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
    ::close(fd);
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/chat";
  auto refused = client.Send(Post(url, "{}"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(refused.error().message, HasSubstr("POST " + url));
}

}  // namespace
}  // namespace factory::net
