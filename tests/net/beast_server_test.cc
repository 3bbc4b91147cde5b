// net::BeastServer over loopback. The first part mirrors net::HttpServer's test (the same
// behaviours through the same Handler/Responder): keep-alive, pipelining, chunked and
// 100-continue request bodies, the limits and malformed input answered through the error handler,
// streamed answers, clients that go away, and Stop() with requests in flight or idle connections.
// Clients are cpp-httplib and raw sockets where the test needs to see (or control) the bytes. Then
// what only this server does: prefix routes, detached streams (no thread held), TLS.

#include "net/beast_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace factory::net {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// A one-shot gate a handler waits on until the test opens it.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // False when not opened within the bound (a broken test must not hang).
  bool Wait() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct RawResponse {
  int status = 0;
  std::string head;  // status line and header fields, lower-cased
  std::string body;  // de-chunked
};

// A TCP client on a raw socket: the test decides every byte sent and sees every byte received.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{.tv_sec = 10, .tv_usec = 0};  // a broken test fails instead of hanging
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~RawClient() { Close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  bool Send(std::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  // Everything received up to and including `marker`; what follows stays for the next read.
  // nullopt when the connection ends (or 10 s pass) first.
  std::optional<std::string> ReadUntil(std::string_view marker) {
    size_t found;
    while ((found = pending_.find(marker)) == std::string::npos) {
      if (!Fill()) return std::nullopt;
    }
    std::string out = pending_.substr(0, found + marker.size());
    pending_.erase(0, found + marker.size());
    return out;
  }

  std::optional<std::string> ReadBytes(size_t count) {
    while (pending_.size() < count) {
      if (!Fill()) return std::nullopt;
    }
    std::string out = pending_.substr(0, count);
    pending_.erase(0, count);
    return out;
  }

  // One whole answer (Content-Length or chunked body).
  std::optional<RawResponse> ReadResponse() {
    auto head = ReadUntil("\r\n\r\n");
    if (!head || head->size() < 12) return std::nullopt;
    RawResponse response;
    response.head = Lower(*head);
    response.status = std::stoi(head->substr(9, 3));
    if (response.head.find("transfer-encoding: chunked") != std::string::npos) {
      for (;;) {
        auto size_line = ReadUntil("\r\n");
        if (!size_line) return std::nullopt;
        const size_t size = std::stoul(*size_line, nullptr, 16);
        auto data = ReadBytes(size + 2);
        if (!data) return std::nullopt;
        if (size == 0) break;
        response.body += data->substr(0, size);
      }
      return response;
    }
    const size_t length_at = response.head.find("content-length: ");
    if (length_at == std::string::npos) return response;
    const size_t length = std::stoul(response.head.substr(length_at + 16));
    auto body = ReadBytes(length);
    if (!body) return std::nullopt;
    response.body = *body;
    return response;
  }

  // True when the server closed the connection (nothing more arrives, no timeout).
  bool SeesEnd() {
    if (!pending_.empty()) return false;
    char byte;
    const ssize_t got = ::recv(fd_, &byte, 1, 0);
    return got == 0 || (got < 0 && errno == ECONNRESET);
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool Fill() {
    char chunk[16384];
    const ssize_t got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got <= 0) return false;
    pending_.append(chunk, static_cast<size_t>(got));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

std::string Get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n";
}
std::string Post(const std::string& path, const std::string& body,
                 const std::string& extra_headers = "") {
  return "POST " + path +
         " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra_headers + "\r\n" + body;
}

// An error handler in a JSON shape, as the gateway's, recording what it was given.
struct ErrorLog {
  std::mutex mu;
  std::vector<std::pair<int, std::string>> seen;  // status, path of the (partial) request
};

class BeastServerTest : public ::testing::Test {
 protected:
  BeastServerOptions Options() {
    BeastServerOptions options;
    options.worker_threads = 8;
    options.on_error = [log = errors_](int status, std::string_view message, const Request& request,
                                       Responder& responder) {
      {
        std::lock_guard lock(log->mu);
        log->seen.emplace_back(status, request.path);
      }
      responder.Send(status, {{"Content-Type", "application/json"}},
                     R"({"error":{"status":)" + std::to_string(status) + R"(,"message":")" +
                         std::string(message) + R"("}})");
    };
    return options;
  }

  // Routes: GET /hello, POST /echo (the body back, with the method and query), GET /throw.
  void StartServer(BeastServerOptions options) {
    server_ = std::make_unique<BeastServer>(std::move(options));
    server_->Route("GET", "/hello", [](const Request& request, Responder& responder) {
      responder.Send(200, {{"Content-Type", "text/plain"}}, "hello " + request.query);
    });
    server_->Route("POST", "/echo", [](const Request& request, Responder& responder) {
      responder.Send(200,
                     {{"Content-Type", "application/octet-stream"},
                      {"X-Seen-Type", request.headers.Get("content-TYPE")}},
                     request.body);
    });
    server_->Route("GET", "/throw",
                   [](const Request&, Responder&) { throw std::runtime_error("handler failure"); });
    server_->Route("GET", "/silent", [](const Request&, Responder&) {});
    for (auto& [method, path, handler] : extra_routes_) server_->Route(method, path, handler);
    auto started = server_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
  }
  void StartServer() { StartServer(Options()); }

  int port() const { return server_->port(); }

  std::shared_ptr<ErrorLog> errors_ = std::make_shared<ErrorLog>();
  std::vector<std::tuple<std::string, std::string, Handler>> extra_routes_;
  std::unique_ptr<BeastServer> server_;
};

TEST_F(BeastServerTest, PortZeroReportsTheBoundPortAndServesOnIt) {
  StartServer();
  ASSERT_GT(port(), 0);
  httplib::Client client("127.0.0.1", port());
  auto response = client.Get("/hello?name=x");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello name=x");
  EXPECT_EQ(response->get_header_value("Content-Type"), "text/plain");
}

TEST_F(BeastServerTest, BindingATakenPortFailsNamingTheAddress) {
  StartServer();
  BeastServerOptions options = Options();
  options.port = port();
  BeastServer second(options);
  auto started = second.Start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(started.error().message, HasSubstr("127.0.0.1:" + std::to_string(port())));
  EXPECT_THAT(started.error().message, HasSubstr("in use"));
}

TEST_F(BeastServerTest, SeveralRequestsOnOneKeepAliveConnection) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.connected());
  for (int round = 0; round < 3; ++round) {
    const std::string body = "round " + std::to_string(round);
    ASSERT_TRUE(client.Send(Post("/echo", body, "Content-Type: text/x-round\r\n")));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response) << "round " << round;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, body);
    EXPECT_THAT(response->head, HasSubstr("x-seen-type: text/x-round\r\n"));
    EXPECT_THAT(response->head, Not(HasSubstr("connection: close")));
  }
  // And with a real client library, one connection for all of them.
  httplib::Client library_client("127.0.0.1", port());
  library_client.set_keep_alive(true);
  for (int round = 0; round < 3; ++round) {
    auto response = library_client.Post("/echo", std::string(2000, 'a' + round), "text/plain");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, std::string(2000, 'a' + round));
  }
}

TEST_F(BeastServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.Send(Post("/echo", "first") + Get("/hello?2") + Post("/echo", "third")));
  auto first = client.ReadResponse();
  auto second = client.ReadResponse();
  auto third = client.ReadResponse();
  ASSERT_TRUE(first && second && third);
  EXPECT_EQ(first->body, "first");
  EXPECT_EQ(second->body, "hello 2");
  EXPECT_EQ(third->body, "third");
}

TEST_F(BeastServerTest, ChunkedRequestBodyIsReassembled) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(
      client.Send("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n"));
  ASSERT_TRUE(client.Send("7\r\n, world\r\n0\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello, world");
}

TEST_F(BeastServerTest, ExpectContinueGetsA100BeforeTheBodyIsSent) {
  StartServer();
  RawClient client(port());
  const std::string body(5000, 'x');
  ASSERT_TRUE(
      client.Send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n"
                  "Expect: 100-continue\r\n\r\n"));
  auto interim = client.ReadUntil("\r\n\r\n");
  ASSERT_TRUE(interim);
  EXPECT_EQ(*interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(client.Send(body));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, body);
}

TEST_F(BeastServerTest, OversizedBodyIs413FromTheErrorHandlerAndCloses) {
  BeastServerOptions options = Options();
  options.body_limit = 1000;
  StartServer(options);
  RawClient client(port());
  ASSERT_TRUE(client.Send(Post("/echo", std::string(1001, 'x'))));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(response->body, R"({"error":{"status":413,"message":"request body too large"}})");
  EXPECT_THAT(response->head, HasSubstr("connection: close"));
  EXPECT_TRUE(client.SeesEnd());
  {
    std::lock_guard lock(errors_->mu);
    ASSERT_EQ(errors_->seen.size(), 1u);
    EXPECT_EQ(errors_->seen[0].second, "/echo");  // the head was parsed: the handler can use it
  }

  // At the limit it is served; a chunked body over it is refused too.
  RawClient at_limit(port());
  ASSERT_TRUE(at_limit.Send(Post("/echo", std::string(1000, 'y'))));
  auto served = at_limit.ReadResponse();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200);
  RawClient chunked(port());
  ASSERT_TRUE(chunked.Send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
                           std::string("3e9\r\n") + std::string(1001, 'z') + "\r\n0\r\n\r\n"));
  auto refused = chunked.ReadResponse();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 413);
}

// Header fields beyond header_limit: 431 Request Header Fields Too Large.
TEST_F(BeastServerTest, HeadersTooLargeAre431FromTheErrorHandler) {
  BeastServerOptions options = Options();
  options.header_limit = 2048;
  StartServer(options);
  RawClient client(port());
  ASSERT_TRUE(client.Send(Get("/hello", "X-Big: " + std::string(4096, 'b') + "\r\n")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
  EXPECT_THAT(response->body, HasSubstr("request header fields too large"));
  EXPECT_TRUE(client.SeesEnd());
}

TEST_F(BeastServerTest, MalformedRequestLineIs400AndCloses) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.Send("GET /hello HTTP/9\r\nHost: x\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_THAT(response->body, HasSubstr("malformed request"));
  EXPECT_TRUE(client.SeesEnd());

  RawClient garbage(port());
  ASSERT_TRUE(garbage.Send("\x01\x02 nonsense\r\n\r\n"));
  auto refused = garbage.ReadResponse();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);

  // A chunk size line that never ends is not buffered forever.
  RawClient endless(port());
  ASSERT_TRUE(
      endless.Send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;" +
                   std::string(256 * 1024, 'x')));
  auto cut = endless.ReadResponse();
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->status, 400);
}

TEST_F(BeastServerTest, UnknownPathIs404AndWrongMethodIs405ThroughTheErrorHandler) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.Send(Get("/nowhere")));
  auto missing = client.ReadResponse();
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("no such path: GET /nowhere"));
  ASSERT_TRUE(client.Send(Post("/hello", "{}")));  // the connection stays usable
  auto wrong_method = client.ReadResponse();
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  std::lock_guard lock(errors_->mu);
  ASSERT_EQ(errors_->seen.size(), 2u);
  EXPECT_EQ(errors_->seen[0], std::make_pair(404, std::string("/nowhere")));
  EXPECT_EQ(errors_->seen[1], std::make_pair(405, std::string("/hello")));
}

TEST_F(BeastServerTest, ConnectionCloseAndHttp10CloseAfterTheAnswer) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.Send(Get("/hello?a", "Connection: close\r\n") + Get("/hello?b")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, "hello a");
  EXPECT_THAT(response->head, HasSubstr("connection: close"));
  EXPECT_TRUE(client.SeesEnd());  // the pipelined second request was not served

  RawClient old(port());
  ASSERT_TRUE(old.Send("GET /hello?c HTTP/1.0\r\n\r\n"));
  auto old_response = old.ReadResponse();
  ASSERT_TRUE(old_response);
  EXPECT_EQ(old_response->body, "hello c");
  EXPECT_TRUE(old.SeesEnd());

  RawClient old_keep_alive(port());
  ASSERT_TRUE(old_keep_alive.Send("GET /hello?d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto kept = old_keep_alive.ReadResponse();
  ASSERT_TRUE(kept);
  EXPECT_THAT(kept->head, HasSubstr("connection: keep-alive"));
  ASSERT_TRUE(old_keep_alive.Send("GET /hello?e HTTP/1.0\r\n\r\n"));
  auto second = old_keep_alive.ReadResponse();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body, "hello e");
}

TEST_F(BeastServerTest, StreamedChunkReachesTheClientBeforeTheHandlerFinishes) {
  auto release = std::make_shared<Gate>();
  auto finished = std::make_shared<std::atomic<bool>>(false);
  extra_routes_.emplace_back("GET", "/stream",
                             [release, finished](const Request&, Responder& responder) {
                               responder.StartStream(200, {{"Content-Type", "text/event-stream"}});
                               responder.WriteChunk("data: one\n\n");
                               release->Wait();
                               responder.WriteChunk("data: two\n\n");
                               responder.EndStream();
                               *finished = true;
                             });
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.Send(Get("/stream")));
  auto head = client.ReadUntil("\r\n\r\n");
  ASSERT_TRUE(head);
  EXPECT_THAT(Lower(*head), HasSubstr("transfer-encoding: chunked"));
  EXPECT_THAT(Lower(*head), HasSubstr("content-type: text/event-stream"));
  auto first = client.ReadUntil("data: one\n\n\r\n");
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, "b\r\ndata: one\n\n\r\n");
  EXPECT_FALSE(*finished);  // the handler is still waiting for the gate
  release->Open();
  auto rest = client.ReadUntil("0\r\n\r\n");
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, "b\r\ndata: two\n\n\r\n0\r\n\r\n");
  // The connection is still usable after a stream.
  ASSERT_TRUE(client.Send(Get("/hello?after")));
  auto after = client.ReadResponse();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "hello after");
}

TEST_F(BeastServerTest, WriteChunkReturnsFalseOnceTheClientClosed) {
  auto client_closed = std::make_shared<Gate>();
  auto outcome = std::make_shared<std::promise<bool>>();
  extra_routes_.emplace_back("GET", "/stream",
                             [client_closed, outcome](const Request&, Responder& responder) {
                               responder.StartStream(200, {{"Content-Type", "text/event-stream"}});
                               client_closed->Wait();
                               const std::string chunk(16 * 1024, 'c');
                               // The first writes may still land in socket buffers; the reset makes
                               // a later one fail.
                               bool written = true;
                               for (int attempt = 0; attempt < 2000 && written; ++attempt) {
                                 written = responder.WriteChunk(chunk);
                                 if (written)
                                   std::this_thread::sleep_for(std::chrono::milliseconds(1));
                               }
                               outcome->set_value(written);
                               EXPECT_FALSE(responder.WriteChunk("more"));  // stays false
                             });
  StartServer();
  auto result = outcome->get_future();
  {
    RawClient client(port());
    ASSERT_TRUE(client.Send(Get("/stream")));
    ASSERT_TRUE(client.ReadUntil("\r\n\r\n"));
  }
  client_closed->Open();
  ASSERT_EQ(result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_FALSE(result.get());
}

TEST_F(BeastServerTest, ThrowingHandlerGets500FromTheErrorHandlerAndCloses) {
  StartServer();
  RawClient client(port());
  ASSERT_TRUE(client.Send(Get("/throw")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 500);
  EXPECT_THAT(response->body, HasSubstr("internal server error"));
  EXPECT_THAT(response->head, HasSubstr("connection: close"));
  EXPECT_TRUE(client.SeesEnd());

  RawClient silent(port());  // a handler that answers nothing is a 500 too
  ASSERT_TRUE(silent.Send(Get("/silent")));
  auto nothing = silent.ReadResponse();
  ASSERT_TRUE(nothing);
  EXPECT_EQ(nothing->status, 500);
  std::lock_guard lock(errors_->mu);
  ASSERT_EQ(errors_->seen.size(), 2u);
  EXPECT_EQ(errors_->seen[0], std::make_pair(500, std::string("/throw")));
}

// True once connecting to the port is refused: Stop() has shut the listening socket.
bool WaitUntilRefused(int port) {
  for (int attempt = 0; attempt < 2000; ++attempt) {
    RawClient probe(port);
    if (!probe.connected()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST_F(BeastServerTest, StopLetsARequestInFlightFinishThenReturns) {
  auto entered = std::make_shared<Gate>();
  auto release = std::make_shared<Gate>();
  extra_routes_.emplace_back("POST", "/slow",
                             [entered, release](const Request& request, Responder& responder) {
                               entered->Open();
                               release->Wait();
                               responder.Send(200, {}, "finished " + request.body);
                             });
  StartServer();
  RawClient idle(port());  // an idle keep-alive connection next to the busy one
  ASSERT_TRUE(idle.Send(Get("/hello")));
  ASSERT_TRUE(idle.ReadResponse());
  RawClient client(port());
  ASSERT_TRUE(client.Send(Post("/slow", "work")));
  ASSERT_TRUE(entered->Wait());
  std::atomic<bool> stop_returned = false;
  std::thread stopper([&] {
    server_->Stop();
    stop_returned = true;
  });
  ASSERT_TRUE(WaitUntilRefused(port()));
  EXPECT_TRUE(idle.SeesEnd());  // closed at once, while the slow request still runs
  EXPECT_FALSE(stop_returned);  // waits for the request in flight
  release->Open();
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "finished work");
  EXPECT_THAT(response->head, HasSubstr("connection: close"));
  EXPECT_TRUE(client.SeesEnd());
  stopper.join();
  EXPECT_TRUE(stop_returned);
  server_->Stop();  // idempotent
}

TEST_F(BeastServerTest, StopClosesIdleKeepAliveConnectionsPromptly) {
  BeastServerOptions options = Options();
  options.idle_timeout_ms = 10 * 60 * 1000;  // Stop must not wait for this
  StartServer(options);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int index = 0; index < 4; ++index) {
    clients.push_back(std::make_unique<RawClient>(port()));
    ASSERT_TRUE(clients.back()->Send(Get("/hello")));
    ASSERT_TRUE(clients.back()->ReadResponse());
  }
  clients.push_back(std::make_unique<RawClient>(port()));  // connected, nothing sent yet
  auto stopped = std::async(std::launch::async, [&] { server_->Stop(); });
  // Generous: "promptly" means not after the 10-minute idle timeout.
  ASSERT_EQ(stopped.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  for (auto& client : clients) EXPECT_TRUE(client->SeesEnd());
}

TEST_F(BeastServerTest, StopFromAnotherThreadBeforeAnyConnection) {
  StartServer();
  std::thread([&] { server_->Stop(); }).join();
  EXPECT_FALSE(RawClient(port()).connected());
}

TEST_F(BeastServerTest, IdleKeepAliveConnectionsDoNotHoldTheWorkers) {
  BeastServerOptions options = Options();
  options.worker_threads = 2;
  options.idle_timeout_ms = 10 * 60 * 1000;  // if idle connections held workers: this long
  StartServer(options);
  RawClient first(port());
  ASSERT_TRUE(first.Send(Get("/hello?a")));
  ASSERT_TRUE(first.ReadResponse());
  RawClient second(port());
  ASSERT_TRUE(second.Send(Get("/hello?b")));
  ASSERT_TRUE(second.ReadResponse());
  RawClient third(port());
  ASSERT_TRUE(third.Send(Get("/hello?c")));
  auto served = third.ReadResponse();  // 10 s at most, far below the idle timeout
  ASSERT_TRUE(served);
  EXPECT_EQ(served->body, "hello c");
  // The idle ones were not sacrificed for it: both still serve requests.
  ASSERT_TRUE(first.Send(Get("/hello?d")));
  auto again = first.ReadResponse();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "hello d");
  ASSERT_TRUE(second.Send(Get("/hello?e")));
  again = second.ReadResponse();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "hello e");
}

TEST_F(BeastServerTest, SilentConnectionsDoNotHoldTheWorkers) {
  BeastServerOptions options = Options();
  options.worker_threads = 2;
  StartServer(options);
  std::vector<std::unique_ptr<RawClient>> silent;
  for (int index = 0; index < 8; ++index) {
    silent.push_back(std::make_unique<RawClient>(port()));
    ASSERT_TRUE(silent.back()->connected());
  }
  RawClient partial(port());  // part of a head, then nothing
  ASSERT_TRUE(partial.Send("GET /hello?x HTTP/1.1\r\nHost: x\r\n"));
  RawClient real(port());
  ASSERT_TRUE(real.Send(Get("/hello?real")));
  auto served = real.ReadResponse();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->body, "hello real");
  // The partial head, completed later, is served too.
  ASSERT_TRUE(partial.Send("\r\n"));
  served = partial.ReadResponse();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->body, "hello x");
}

TEST_F(BeastServerTest, AConnectionThatSendsNoHeadIsClosedAfterTheHeaderTimeout) {
  BeastServerOptions options = Options();
  options.header_timeout_ms = 200;
  options.idle_timeout_ms = 10 * 60 * 1000;
  StartServer(options);
  RawClient silent(port());
  RawClient slow(port());
  ASSERT_TRUE(slow.Send("GET /hello HTTP/1.1\r\n"));  // never finishes its head
  EXPECT_TRUE(silent.SeesEnd());                      // RawClient gives up after 10 s
  EXPECT_TRUE(slow.SeesEnd());
  // An idle keep-alive connection is under the idle timeout, not the header timeout.
  RawClient kept(port());
  ASSERT_TRUE(kept.Send(Get("/hello?k")));
  ASSERT_TRUE(kept.ReadResponse());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  ASSERT_TRUE(kept.Send(Get("/hello?l")));
  auto served = kept.ReadResponse();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->body, "hello l");
}

// Many clients at several worker counts: every request gets its own answer.
class BeastServerWorkersTest : public BeastServerTest, public ::testing::WithParamInterface<int> {};

TEST_P(BeastServerWorkersTest, ConcurrentClientsAllGetTheirOwnAnswers) {
  BeastServerOptions options = Options();
  options.worker_threads = GetParam();
  StartServer(options);
  constexpr int kClients = 8;
  constexpr int kRequests = 20;
  std::atomic<int> correct = 0;
  std::vector<std::thread> clients;
  for (int client_idx = 0; client_idx < kClients; ++client_idx) {
    clients.emplace_back([&, client_idx] {
      for (int request_idx = 0; request_idx < kRequests; ++request_idx) {
        // One connection per request, so clients beyond the worker count take turns.
        httplib::Client client("127.0.0.1", port());
        const std::string body = std::to_string(client_idx) + "/" + std::to_string(request_idx);
        auto response = client.Post("/echo", body, "text/plain");
        if (response && response->status == 200 && response->body == body) ++correct;
      }
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(correct, kClients * kRequests);
}

INSTANTIATE_TEST_SUITE_P(Workers, BeastServerWorkersTest, ::testing::Values(1, 2, 8));

// --- what only BeastServer does

TEST_F(BeastServerTest, PrefixRoutesServeWhatNoExactRouteServesLongestPrefixFirst) {
  server_ = std::make_unique<BeastServer>(Options());
  server_->Route("GET", "/api/exact",
                 [](const Request&, Responder& responder) { responder.Send(200, {}, "exact"); });
  server_->RoutePrefix("/api/", [](const Request& request, Responder& responder) {
    responder.Send(200, {}, "api " + request.method + " " + request.path);
  });
  server_->RoutePrefix("/api/runs/", [](const Request& request, Responder& responder) {
    responder.Send(200, {}, "runs " + request.path);
  });
  ASSERT_TRUE(server_->Start());
  httplib::Client client("127.0.0.1", port());
  EXPECT_EQ(client.Get("/api/exact")->body, "exact");
  EXPECT_EQ(client.Delete("/api/tasks/1")->body, "api DELETE /api/tasks/1");
  EXPECT_EQ(client.Get("/api/runs/r1")->body, "runs /api/runs/r1");
  EXPECT_EQ(client.Get("/elsewhere")->status, 404);
  // An exact path with another method is 405, not handed to a prefix route.
  EXPECT_EQ(client.Post("/api/exact", "", "text/plain")->status, 405);
}

TEST_F(BeastServerTest, DetachedStreamIsFedFromAnotherThreadAfterTheHandlerReturned) {
  auto streams = std::make_shared<std::vector<std::shared_ptr<AsyncStream>>>();
  auto mu = std::make_shared<std::mutex>();
  auto handler_returned = std::make_shared<Gate>();
  BeastServerOptions options = Options();
  options.worker_threads = 1;  // a held worker would keep /hello from being served
  server_ = std::make_unique<BeastServer>(options);
  server_->Route("GET", "/events", [=](const Request&, Responder& responder) {
    auto stream = responder.Detach(200, {{"Content-Type", "text/event-stream"}});
    ASSERT_NE(stream, nullptr);
    std::lock_guard lock(*mu);
    streams->push_back(stream);
    handler_returned->Open();
  });
  server_->Route("GET", "/hello",
                 [](const Request&, Responder& responder) { responder.Send(200, {}, "hello"); });
  ASSERT_TRUE(server_->Start());
  RawClient subscriber(port());
  ASSERT_TRUE(subscriber.Send(Get("/events")));
  auto head = subscriber.ReadUntil("\r\n\r\n");
  ASSERT_TRUE(head);
  EXPECT_THAT(Lower(*head), HasSubstr("transfer-encoding: chunked"));
  ASSERT_TRUE(handler_returned->Wait());
  // The only worker is free again.
  httplib::Client other("127.0.0.1", port());
  EXPECT_EQ(other.Get("/hello")->body, "hello");
  EXPECT_EQ(server_->open_streams(), 1u);
  std::shared_ptr<AsyncStream> stream;
  {
    std::lock_guard lock(*mu);
    stream = streams->front();
  }
  EXPECT_TRUE(stream->Write("data: one\n\n"));
  EXPECT_TRUE(stream->Write("data: two\n\n"));
  auto first = subscriber.ReadUntil("one\n\n\r\n");
  ASSERT_TRUE(first);
  auto second = subscriber.ReadUntil("two\n\n\r\n");
  ASSERT_TRUE(second);
  // The client goes away: the stream learns it and says so.
  auto closed = std::make_shared<Gate>();
  stream->OnClose([closed] { closed->Open(); });
  subscriber.Close();
  ASSERT_TRUE(closed->Wait());
  EXPECT_TRUE(stream->closed());
  EXPECT_FALSE(stream->Write("data: late\n\n"));
  EXPECT_EQ(server_->open_streams(), 0u);
}

TEST_F(BeastServerTest, StopEndsDetachedStreamsWithTheTerminatingChunk) {
  auto holder = std::make_shared<std::shared_ptr<AsyncStream>>();
  auto detached = std::make_shared<Gate>();
  server_ = std::make_unique<BeastServer>(Options());
  server_->Route("GET", "/events", [=](const Request&, Responder& responder) {
    *holder = responder.Detach(200, {{"Content-Type", "text/event-stream"}});
    detached->Open();
  });
  ASSERT_TRUE(server_->Start());
  RawClient subscriber(port());
  ASSERT_TRUE(subscriber.Send(Get("/events")));
  ASSERT_TRUE(detached->Wait());
  ASSERT_TRUE((*holder)->Write("data: x\n\n"));
  auto stopped = std::async(std::launch::async, [&] { server_->Stop(); });
  auto response = subscriber.ReadResponse();  // complete: ends with the last chunk
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, "data: x\n\n");
  EXPECT_TRUE(subscriber.SeesEnd());
  ASSERT_EQ(stopped.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE((*holder)->closed());
}

TEST_F(BeastServerTest, ManyDetachedStreamsHoldNoWorker) {
  auto streams = std::make_shared<std::vector<std::shared_ptr<AsyncStream>>>();
  auto mu = std::make_shared<std::mutex>();
  auto cv = std::make_shared<std::condition_variable>();
  BeastServerOptions options = Options();
  options.worker_threads = 2;
  server_ = std::make_unique<BeastServer>(options);
  server_->Route("GET", "/events", [=](const Request&, Responder& responder) {
    auto stream = responder.Detach(200, {{"Content-Type", "text/event-stream"}});
    std::lock_guard lock(*mu);
    streams->push_back(stream);
    cv->notify_all();
  });
  ASSERT_TRUE(server_->Start());
  constexpr int kSubscribers = 200;
  std::vector<std::unique_ptr<RawClient>> subscribers;
  for (int index = 0; index < kSubscribers; ++index) {
    subscribers.push_back(std::make_unique<RawClient>(port()));
    ASSERT_TRUE(subscribers.back()->Send(Get("/events")));
    ASSERT_TRUE(subscribers.back()->ReadUntil("\r\n\r\n"));
  }
  {
    // The head reaches a client before its handler stored the stream: wait for the last one.
    std::unique_lock lock(*mu);
    cv->wait_for(lock, std::chrono::seconds(20), [&] { return streams->size() >= kSubscribers; });
    ASSERT_EQ(streams->size(), static_cast<size_t>(kSubscribers));
    for (auto& stream : *streams) EXPECT_TRUE(stream->Write("data: all\n\n"));
  }
  for (auto& subscriber : subscribers) EXPECT_TRUE(subscriber->ReadUntil("data: all\n\n"));
}

}  // namespace
}  // namespace factory::net
