// The gateway under hostile clients: connections that connect and send nothing (or half a
// request head) must neither hold the workers real calls need nor stay open forever.

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "core/subprocess.h"
#include "gateway/gateway_fixture.h"

namespace factory::gateway {
namespace {

using llm::fake::FakeReply;
using ::testing::HasSubstr;

// A client socket connected to the gateway that the test controls byte by byte.
class Silent {
 public:
  explicit Silent(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{.tv_sec = 20, .tv_usec = 0};  // a broken test fails instead of hanging
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~Silent() { ::close(fd_); }
  Silent(const Silent&) = delete;
  Silent& operator=(const Silent&) = delete;

  bool connected() const { return connected_; }
  bool Send(std::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // True when the server closed the connection without answering; false when bytes came or
  // 20 s passed.
  bool ClosedByServer() {
    char byte;
    const ssize_t got = ::recv(fd_, &byte, 1, 0);
    return got == 0 || (got < 0 && errno == ECONNRESET);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class GatewayStallTest : public testing::GatewayFixture {
 protected:
  void StartWith(int threads, int header_timeout_ms) {
    GatewayOptions options;
    options.cache_ttl_ms = 0;
    options.threads = threads;
    options.header_timeout_ms = header_timeout_ms;
    auto gateway = Gateway::Start(Models(), *store_, std::move(options));
    ASSERT_TRUE(gateway) << gateway.error().ToString();
    gateway_ = std::move(*gateway);
  }
};

TEST_F(GatewayStallTest, SilentConnectionsBeyondTheThreadCountDoNotBlockARealCall) {
  ReserveDescriptors(4096);
  StartWith(/*threads=*/64, /*header_timeout_ms=*/10 * 60 * 1000);  // no rescue by timeout
  std::vector<std::unique_ptr<Silent>> silent;
  for (int index = 0; index < 200; ++index) {
    silent.push_back(std::make_unique<Silent>(gateway_->port()));
    ASSERT_TRUE(silent.back()->connected()) << index;
  }
  // Some send half a request head and stop there (slowloris).
  for (int index = 0; index < 100; index += 2) {
    ASSERT_TRUE(silent[index]->Send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"));
  }
  fake_.Enqueue(FakeReply::Text("still served", {.input_tokens = 5, .output_tokens = 2}));
  const llm::HttpResponse response = Post("/v1/chat/completions", Chat("cloud/fast"), key_);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_THAT(response.body, HasSubstr("still served"));
}

TEST_F(GatewayStallTest, AConnectionThatSendsNoRequestHeadIsClosedAfterTheHeaderTimeout) {
  StartWith(/*threads=*/4, /*header_timeout_ms=*/200);
  Silent nothing(gateway_->port());
  Silent half(gateway_->port());
  ASSERT_TRUE(nothing.connected());
  ASSERT_TRUE(half.connected());
  ASSERT_TRUE(half.Send("POST /v1/chat/completions HTTP/1.1\r\n"));
  EXPECT_TRUE(nothing.ClosedByServer());
  EXPECT_TRUE(half.ClosedByServer());
  // The gateway still serves.
  fake_.Enqueue(FakeReply::Text("fine", {.input_tokens = 5, .output_tokens = 2}));
  EXPECT_EQ(Post("/v1/chat/completions", Chat("cloud/fast"), key_).status, 200);
}

TEST(GatewayStallCliTest, TheGatewayCommandHasAHeaderTimeoutFlag) {
  SubprocessOptions options;
  options.argv = {FACTORY_BINARY, "gateway", "--help"};
  options.tail_bytes = 64 * 1024;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_THAT(result->stdout_tail, HasSubstr("--header-timeout-ms"));
}

}  // namespace
}  // namespace factory::gateway
