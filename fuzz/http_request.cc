// The gateway's HTTP/1.1 request parser (net/internal/request_parser.h, the parse step of
// HttpServer::Serve) with the server's default limits. The bytes are fed as a connection
// delivers them: in pieces (the first byte chooses their sizes), each Put() given what the
// previous ones left, then pipelined requests one after another, as the server does.

#include <string>

#include "fuzz_util.h"
#include "net/http_server.h"
#include "net/internal/request_parser.h"

namespace {

constexpr size_t kHeaderLimit = 64 * 1024;  // HttpServerOptions' defaults
constexpr size_t kBodyLimit = 32 * 1024 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  namespace internal = factory::net::internal;
  std::string_view input = factory::fuzz::AsText(data, size);
  const uint8_t seed = factory::fuzz::TakeByte(input);
  const size_t piece = seed == 0 ? input.size() + 1 : seed;

  std::string buffer;  // received, not yet parsed
  size_t received = 0;
  for (int requests = 0; requests < 8; ++requests) {
    internal::RequestParser parser(kHeaderLimit, kBodyLimit);
    internal::Refusal refusal;
    for (;;) {
      if (!buffer.empty()) {
        const size_t used = parser.Put(buffer, refusal);
        Require(used <= buffer.size(), "the parser uses at most what it was given");
        buffer.erase(0, used);
        if (refusal.status != 0 || parser.done()) break;
        if (parser.header_done()) (void)parser.ExpectsContinue();
      }
      if (received == input.size()) break;  // the client stops sending
      const size_t more = std::min(piece, input.size() - received);
      buffer.append(input.substr(received, more));
      received += more;
    }
    if (refusal.status != 0) {
      Require(refusal.status == 400 || refusal.status == 413 || refusal.status == 431,
              "a refusal is 400, 413 or 431");
      const factory::net::Request partial = parser.Head();
      (void)partial.headers.Get("Content-Type");
      return 0;
    }
    if (!parser.done()) return 0;
    const factory::net::Request request = parser.Take();
    Require(request.body.size() <= kBodyLimit, "the body is within its limit");
    Require(request.path.find('?') == std::string::npos, "the path stops at '?'");
    (void)request.headers.Get("authorization");
    if (!parser.keep_alive()) return 0;
  }
  return 0;
}
