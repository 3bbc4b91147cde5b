#include "store/open_store.h"

#include <algorithm>
#include <cctype>

namespace factory {
namespace {

constexpr std::string_view kSchemeSeparator = "://";

// "scheme" of "scheme://rest" when the text starts with a URL scheme (RFC 3986: a letter, then
// letters, digits, '+', '-', '.'); "" for a plain path.
std::string_view SchemeOf(std::string_view url) {
  const size_t separator = url.find(kSchemeSeparator);
  if (separator == std::string_view::npos || separator == 0) return {};
  const std::string_view scheme = url.substr(0, separator);
  if (!std::isalpha(static_cast<unsigned char>(scheme.front()))) return {};
  const bool valid = std::all_of(scheme.begin(), scheme.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
  return valid ? scheme : std::string_view{};
}

std::string Lower(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

}  // namespace

std::string MaskStoreUrl(std::string_view url) {
  const std::string_view scheme = SchemeOf(url);
  if (scheme.empty()) return std::string(url);
  const size_t authority_start = scheme.size() + kSchemeSeparator.size();
  const size_t authority_end = url.find_first_of("/?#", authority_start);
  const std::string_view authority = url.substr(
      authority_start, authority_end == std::string_view::npos ? std::string_view::npos
                                                               : authority_end - authority_start);
  // The user-info ends at the last '@' of the authority (a password may itself contain '@').
  const size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  const size_t colon = authority.substr(0, at).find(':');
  if (colon == std::string_view::npos) return std::string(url);
  std::string masked(url.substr(0, authority_start + colon + 1));
  masked += "***";
  masked += url.substr(authority_start + at);
  return masked;
}

Result<StoreLocation> ParseStoreUrl(std::string_view url) {
  if (url.empty()) return InvalidArgument("store URL must not be empty");
  StoreLocation location;
  location.url = MaskStoreUrl(url);
  const std::string scheme = Lower(SchemeOf(url));
  if (scheme.empty()) {
    location.backend = StoreBackend::kSqlite;
    location.path = std::string(url);
    return location;
  }
  const std::string_view rest = url.substr(scheme.size() + kSchemeSeparator.size());
  if (scheme == "sqlite") {
    // sqlite:///abs/path: an empty authority, then the absolute path.
    if (rest.empty() || rest.front() != '/' || rest == "/") {
      return InvalidArgument("store URL '" + location.url +
                             "': a sqlite URL needs an absolute path (sqlite:///abs/path/"
                             "factory.db); for a relative path pass the path itself");
    }
    if (rest.find_first_of("?#") != std::string_view::npos) {
      return InvalidArgument("store URL '" + location.url +
                             "': a sqlite URL takes no query or fragment");
    }
    location.backend = StoreBackend::kSqlite;
    location.path = std::string(rest);
    return location;
  }
  if (scheme == "postgresql" || scheme == "postgres") {
    location.backend = StoreBackend::kPostgres;
    return location;
  }
  return InvalidArgument("store URL '" + location.url + "': unknown scheme '" + scheme +
                         "://' (expected a file path, sqlite:///abs/path or postgresql://...)");
}

Result<std::unique_ptr<Store>> OpenStore(std::string_view url, const StoreOpenOptions& options) {
  FACTORY_ASSIGN_OR_RETURN(StoreLocation location, ParseStoreUrl(url));
  switch (location.backend) {
    case StoreBackend::kSqlite: {
      SqliteOptions sqlite;
      sqlite.path = location.path;
      sqlite.synchronous = options.synchronous;
      sqlite.busy_timeout_ms = options.busy_timeout_ms;
      sqlite.reader_connections = options.reader_connections;
      sqlite.create_if_missing = options.create_if_missing;
      return OpenSqliteStore(sqlite);
    }
    case StoreBackend::kPostgres:
      return FailedPrecondition("store URL '" + location.url +
                                "': PostgreSQL support is not built yet");
  }
  return InvalidArgument("store URL '" + location.url + "': unknown backend");
}

}  // namespace factory
