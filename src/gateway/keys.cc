#include "gateway/keys.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "core/redact.h"
#include "core/sha256.h"
#include "core/ulid.h"

namespace factory::gateway {
namespace {

constexpr size_t kKeyRandomBytes = 32;
constexpr size_t kShownPrefixChars = 10;  // "fk-" and 7 characters: recognisable, not guessable

bool ValidAgentName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string HashKey(std::string_view key) { return Sha256Hex(key); }

Result<IssuedKey> IssueKey(Store& store, std::string_view agent, const KeyScope& scope,
                           const Clock* clock) {
  if (!ValidAgentName(agent)) {
    return InvalidArgument("agent name '" + std::string(agent) +
                           "' must be 1-128 letters, digits, '.', '_' or '-'");
  }
  const Clock& time = clock != nullptr ? *clock : SystemClock();
  std::optional<std::string> secret = RandomBase64Url(kKeyRandomBytes);
  if (!secret) return Internal("no randomness for a virtual key (RAND_bytes failed)");
  IssuedKey issued;
  issued.key = std::string(kKeyPrefix) + *secret;
  // One generator for the process's real clock keeps ids increasing within a millisecond.
  static UlidGenerator system_ids(SystemClock());
  std::optional<UlidGenerator> own_ids;
  if (clock != nullptr) own_ids.emplace(*clock);
  issued.record = VirtualKey{.id = own_ids ? own_ids->Next() : system_ids.Next(),
                             .agent = std::string(agent),
                             .key_hash = HashKey(issued.key),
                             .prefix = issued.key.substr(0, kShownPrefixChars),
                             .label = scope.label,
                             .run_id = scope.run_id,
                             .task_id = scope.task_id,
                             .attempt_id = scope.attempt_id,
                             .created_ms = time.NowMillis()};
  FACTORY_RETURN_IF_ERROR(
      store.Write([&](StoreTxn& txn) { return txn.InsertVirtualKey(issued.record); }));
  // Whoever holds the key may print it (a cli agent given it in its environment): this process
  // never stores or logs it. Another process sees only its hash and prefix.
  ProcessRedactor().Add("VIRTUAL_KEY", issued.key);
  return issued;
}

Result<std::vector<VirtualKey>> ListKeys(Store& store) {
  std::vector<VirtualKey> keys;
  FACTORY_RETURN_IF_ERROR(store.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(keys, txn.ListVirtualKeys());
    return Ok();
  }));
  return keys;
}

Status RevokeKey(Store& store, std::string_view id, const Clock* clock) {
  const Clock& time = clock != nullptr ? *clock : SystemClock();
  bool revoked = false;
  FACTORY_RETURN_IF_ERROR(store.Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(revoked, txn.RevokeVirtualKey(id, time.NowMillis()));
    return Ok();
  }));
  if (!revoked) return FailedPrecondition("virtual key " + std::string(id) + " is already revoked");
  return Ok();
}

std::string KeysJson(const std::vector<VirtualKey>& keys) {
  nlohmann::json out = nlohmann::json::array();
  for (const VirtualKey& key : keys) {
    out.push_back(
        {{"id", key.id},
         {"agent", key.agent},
         {"prefix", key.prefix},
         {"label", key.label},
         {"run_id", key.run_id},
         {"task_id", key.task_id},
         {"attempt_id", key.attempt_id},
         {"created_ms", key.created_ms},
         {"created_at", FormatTimestamp(key.created_ms)},
         {"revoked", key.revoked_ms != 0},
         {"revoked_ms", key.revoked_ms},
         {"revoked_at", key.revoked_ms != 0 ? nlohmann::json(FormatTimestamp(key.revoked_ms))
                                            : nlohmann::json(nullptr)}});
  }
  return out.dump();
}

}  // namespace factory::gateway
