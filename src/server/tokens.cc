#include "server/tokens.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/sha256.h"
#include "core/ulid.h"

namespace factory::server {
namespace {

constexpr size_t kTokenRandomBytes = 32;
constexpr size_t kShownPrefixChars = 10;  // "fa-" and 7 characters: recognisable, not guessable

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

nlohmann::json TimeOrNull(int64_t ms) {
  return ms != 0 ? nlohmann::json(FormatTimestamp(ms)) : nlohmann::json(nullptr);
}

}  // namespace

Result<Scope> ParseScope(std::string_view text) {
  if (text == "read") return Scope::kRead;
  if (text == "operator") return Scope::kOperator;
  if (text == "admin") return Scope::kAdmin;
  return InvalidArgument("scope '" + std::string(text) + "' must be read, operator or admin");
}

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kRead:
      return "read";
    case Scope::kOperator:
      return "operator";
    case Scope::kAdmin:
      return "admin";
  }
  return "read";
}

Result<int64_t> ParseLifetime(std::string_view text) {
  auto bad = [&] {
    return InvalidArgument("expires '" + std::string(text) +
                           "' must be a number and a unit s, m, h or d (e.g. 30d)");
  };
  if (text.size() < 2) return bad();
  int64_t count = 0;
  const char* end = text.data() + text.size() - 1;
  auto [ptr, ec] = std::from_chars(text.data(), end, count);
  if (ec != std::errc() || ptr != end || count <= 0 || count > 100'000) return bad();
  switch (text.back()) {
    case 's':
      return count * 1000;
    case 'm':
      return count * 60 * 1000;
    case 'h':
      return count * 3600 * 1000;
    case 'd':
      return count * 86400 * 1000;
    default:
      return bad();
  }
}

Result<IssuedToken> IssueToken(Store& store, std::string_view name, Scope scope,
                               int64_t lifetime_ms, const Clock* clock) {
  if (!ValidName(name)) {
    return InvalidArgument("name '" + std::string(name) +
                           "' must be 1-64 letters, digits, '.', '_' or '-'");
  }
  if (lifetime_ms < 0) return InvalidArgument("expires must be in the future");
  const Clock& time = clock != nullptr ? *clock : SystemClock();
  std::optional<std::string> secret = RandomBase64Url(kTokenRandomBytes);
  if (!secret) return Internal("no randomness for an API token (RAND_bytes failed)");
  IssuedToken issued;
  issued.token = std::string(kTokenPrefix) + *secret;
  UlidGenerator ids(time);
  const int64_t now = time.NowMillis();
  issued.record = ApiToken{.id = ids.Next(),
                           .name = std::string(name),
                           .scope = std::string(ScopeName(scope)),
                           .token_hash = Sha256Hex(issued.token),
                           .prefix = issued.token.substr(0, kShownPrefixChars),
                           .created_ms = now,
                           .expires_ms = lifetime_ms > 0 ? now + lifetime_ms : 0};
  auto written = store.Write([&](StoreTxn& txn) { return txn.InsertApiToken(issued.record); });
  if (!written) {
    if (written.error().code == ErrorCode::kAlreadyExists) {
      return AlreadyExists("name '" + std::string(name) + "' is taken by another token");
    }
    return std::unexpected(written.error());
  }
  return issued;
}

Result<std::vector<ApiToken>> ListTokens(Store& store) {
  std::vector<ApiToken> tokens;
  FACTORY_RETURN_IF_ERROR(store.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(tokens, txn.ListApiTokens());
    return Ok();
  }));
  return tokens;
}

Status RevokeToken(Store& store, std::string_view id_or_name, const Clock* clock) {
  const Clock& time = clock != nullptr ? *clock : SystemClock();
  bool revoked = false;
  FACTORY_RETURN_IF_ERROR(store.Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(revoked, txn.RevokeApiToken(id_or_name, time.NowMillis()));
    return Ok();
  }));
  if (!revoked) {
    return FailedPrecondition("API token " + std::string(id_or_name) + " is already revoked");
  }
  return Ok();
}

Result<ApiToken> CheckToken(StoreTxn& txn, std::string_view token, int64_t now_ms) {
  FACTORY_ASSIGN_OR_RETURN(auto found, txn.FindApiTokenByHash(Sha256Hex(token)));
  if (!found) return NotFound("unknown API token");
  if (found->revoked_ms != 0) return PermissionDenied("the API token was revoked");
  if (found->expires_ms != 0 && found->expires_ms <= now_ms) {
    return PermissionDenied("the API token expired");
  }
  return *found;
}

std::string_view TokenState(const ApiToken& token, int64_t now_ms) {
  if (token.revoked_ms != 0) return "revoked";
  if (token.expires_ms != 0 && token.expires_ms <= now_ms) return "expired";
  return "active";
}

std::string TokensJson(const std::vector<ApiToken>& tokens, int64_t now_ms) {
  nlohmann::json out = nlohmann::json::array();
  for (const ApiToken& token : tokens) {
    out.push_back({{"id", token.id},
                   {"name", token.name},
                   {"scope", token.scope},
                   {"prefix", token.prefix},
                   {"created_at", FormatTimestamp(token.created_ms)},
                   {"expires_at", TimeOrNull(token.expires_ms)},
                   {"revoked_at", TimeOrNull(token.revoked_ms)},
                   {"state", TokenState(token, now_ms)}});
  }
  return out.dump();
}

}  // namespace factory::server
