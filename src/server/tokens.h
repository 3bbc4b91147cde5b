#pragma once
// API tokens of `factory serve`: `factory tokens create --name N --scope read|operator|admin`.
// A token is "fa-" + 43 base64url characters (256 random bits), shown once; the store keeps only
// its SHA-256 (nobody guesses a 256-bit token, so a slow password hash would protect nothing).
// Scopes nest: `read` may GET, `operator` may also act (start, cancel, resume, merge, retry,
// pause), `admin` may also manage tokens and configuration.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "store/model.h"
#include "store/store.h"

namespace factory::server {

inline constexpr std::string_view kTokenPrefix = "fa-";

enum class Scope { kRead = 0, kOperator = 1, kAdmin = 2 };

// "read" | "operator" | "admin"; InvalidArgument naming `scope` otherwise.
Result<Scope> ParseScope(std::string_view text);
std::string_view ScopeName(Scope scope);
// Whether a token of scope `have` may do what needs `need`.
inline bool ScopeAllows(Scope have, Scope need) {
  return static_cast<int>(have) >= static_cast<int>(need);
}

// "30d", "12h", "90m", "45s" -> milliseconds. InvalidArgument naming `expires` otherwise.
Result<int64_t> ParseLifetime(std::string_view text);

struct IssuedToken {
  std::string token;  // the secret; never stored, never logged
  ApiToken record;
};

// Creates a token. name: 1-64 letters, digits, '.', '_', '-' (InvalidArgument naming `name`);
// AlreadyExists when the name is taken. lifetime_ms 0: never expires. clock null: SystemClock().
Result<IssuedToken> IssueToken(Store& store, std::string_view name, Scope scope,
                               int64_t lifetime_ms = 0, const Clock* clock = nullptr);
Result<std::vector<ApiToken>> ListTokens(Store& store);
// Revokes by id or name. NotFound for an unknown one, FailedPrecondition when already revoked.
Status RevokeToken(Store& store, std::string_view id_or_name, const Clock* clock = nullptr);

// The active token `token` stands for: NotFound when no token has its hash,
// PermissionDenied ("revoked" / "expired") when it is not active at now_ms.
Result<ApiToken> CheckToken(StoreTxn& txn, std::string_view token, int64_t now_ms);

// `tokens list --json`: [{"id","name","scope","prefix","created_at","expires_at"|null,
// "state": "active"|"expired"|"revoked", "revoked_at"|null}] (never the hash).
std::string TokensJson(const std::vector<ApiToken>& tokens, int64_t now_ms);
// "active" | "expired" | "revoked".
std::string_view TokenState(const ApiToken& token, int64_t now_ms);

}  // namespace factory::server
