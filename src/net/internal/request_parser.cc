#include "net/internal/request_parser.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <cstdint>
#include <limits>
#include <utility>

namespace factory::net::internal {
namespace {

namespace http = boost::beast::http;

template <typename View>
std::string ToString(const View& view) {
  return std::string(view.data(), view.size());
}

}  // namespace

RequestParser::RequestParser(size_t header_limit, size_t body_limit) {
  parser_.header_limit(static_cast<std::uint32_t>(
      std::min<size_t>(header_limit, std::numeric_limits<std::uint32_t>::max())));
  parser_.body_limit(body_limit);
  parser_.eager(true);
}

size_t RequestParser::Put(std::string_view bytes, Refusal& refusal) {
  boost::beast::error_code ec;
  const size_t used = parser_.put(boost::asio::const_buffer(bytes.data(), bytes.size()), ec);
  if (ec && ec != http::error::need_more) {
    refusal.status = ec == http::error::body_limit     ? 413
                     : ec == http::error::header_limit ? 431
                                                       : 400;
    refusal.message = refusal.status == 413   ? "request body too large"
                      : refusal.status == 431 ? "request header fields too large"
                                              : "malformed request: " + ec.message();
  }
  return used;
}

bool RequestParser::ExpectsContinue() const {
  if (parser_.get().version() < 11) return false;
  return boost::beast::iequals(parser_.get()[http::field::expect], "100-continue");
}

Request RequestParser::Head() const {
  Request request;
  const auto& message = parser_.get();
  request.method = ToString(message.method_string());
  const std::string_view target(message.target().data(), message.target().size());
  const size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  request.version = static_cast<int>(message.version());
  HeaderFields fields;
  fields.reserve(16);
  for (const auto& field : message) {
    fields.emplace_back(ToString(field.name_string()), ToString(field.value()));
  }
  request.headers = Headers(std::move(fields));
  return request;
}

Request RequestParser::Take() {
  Request request = Head();
  request.body = std::move(parser_.get().body());
  return request;
}

}  // namespace factory::net::internal
