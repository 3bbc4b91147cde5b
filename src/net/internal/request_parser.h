#pragma once
// The parse step of HttpServer: request bytes in, a Request or a refusal out. Kept apart from
// the connection loop so the fuzzer (fuzz/http_request.cc) drives exactly the parser
// configuration and the refusal rules the server uses. The split costs the server one function
// call per received buffer, nothing more: the same Boost.Beast parser does the work.

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <string>
#include <string_view>

#include "net/http_server.h"

namespace factory::net::internal {

// Why a request is refused before it reaches a handler: 400 malformed, 413 body too large,
// 431 header too large; status 0 = not refused.
struct Refusal {
  int status = 0;
  std::string message;
};

// One request's parser. Not thread-safe; one per request (a keep-alive connection makes a new
// one for each request).
class RequestParser {
 public:
  // header_limit: request line + header fields, bytes; body_limit: body bytes (de-chunked).
  RequestParser(size_t header_limit, size_t body_limit);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses what it can of `bytes` and returns how many it consumed; the rest (the next part of
  // a line, or the next pipelined request once done()) must be fed again with more bytes.
  // On a malformed or oversized request `refusal` is set and the parser must not be fed again.
  size_t Put(std::string_view bytes, Refusal& refusal);

  bool done() const { return parser_.is_done(); }
  bool header_done() const { return parser_.is_header_done(); }
  bool got_some() const { return parser_.got_some(); }
  bool keep_alive() const { return parser_.keep_alive(); }
  // An HTTP/1.1 request whose head asks for `Expect: 100-continue`. REQUIRES: header_done().
  bool ExpectsContinue() const;

  // What was parsed so far, body left out: for a refused request the error handler's view (for
  // a body too large the head is complete, for malformed input it may be empty).
  Request Head() const;
  // The whole request, body moved out. REQUIRES: done(); called once.
  Request Take();

 private:
  boost::beast::http::request_parser<boost::beast::http::string_body> parser_;
};

}  // namespace factory::net::internal
