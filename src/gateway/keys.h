#pragma once
// Virtual keys of `factory gateway`: one per agent (or per attempt of a task), issued by
// `factory keys create --agent NAME` or by the orchestrator for a cli agent. A key is a random
// token ("fk-" + 43 base64url characters = 256 bits), shown once when issued; the store keeps
// only its SHA-256 (a fast hash is enough: nobody can guess a 256-bit token, so there is
// nothing for a slow password hash to protect).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "store/model.h"
#include "store/store.h"

namespace factory::gateway {

inline constexpr std::string_view kKeyPrefix = "fk-";

// Optional scope of a key: its calls are ledgered (and budgeted) under this run, task and
// attempt. All "" for a plain per-agent key.
struct KeyScope {
  std::string label;
  std::string run_id;
  std::string task_id;
  std::string attempt_id;
};

struct IssuedKey {
  std::string key;    // the secret; never stored, never logged
  VirtualKey record;  // what the store holds
};

// The lower-case hex SHA-256 of a key: what the store holds and lookups match.
std::string HashKey(std::string_view key);

// Creates a key for `agent` (non-empty; letters, digits, '.', '_', '-' only: InvalidArgument
// otherwise). clock null = SystemClock(). The key is added to ProcessRedactor() (core/redact.h)
// under the name VIRTUAL_KEY.
Result<IssuedKey> IssueKey(Store& store, std::string_view agent, const KeyScope& scope = {},
                           const Clock* clock = nullptr);
// Every key, revoked ones included, oldest first.
Result<std::vector<VirtualKey>> ListKeys(Store& store);
// Revokes the key with this id. NotFound for an unknown id, FailedPrecondition when it was
// already revoked.
Status RevokeKey(Store& store, std::string_view id, const Clock* clock = nullptr);

// `factory keys list --json`: [{"id", "agent", "prefix", "label", "run_id", "task_id",
// "attempt_id", "created_ms", "created_at", "revoked": bool, "revoked_ms", "revoked_at"|null}]
// (no hash: it is nobody's business outside the store).
std::string KeysJson(const std::vector<VirtualKey>& keys);

}  // namespace factory::gateway
