#include "gateway/internal/key_cache.h"

#include "gateway/keys.h"

namespace factory::gateway::internal {
namespace {

// Unknown keys are cached too (a client retrying a wrong key does not reach the store each
// time); the map is cleared when it grows past this, so nobody can fill memory with them.
constexpr size_t kMaxEntries = 100'000;

}  // namespace

KeyCache::KeyCache(Store& store, const Clock& clock, int64_t ttl_ms)
    : store_(store), clock_(clock), ttl_ms_(ttl_ms) {}

Result<VirtualKey> KeyCache::Lookup(std::string_view presented) {
  if (presented.empty()) return PermissionDenied("no API key given");
  const std::string hash = HashKey(presented);
  const int64_t now = clock_.NowMillis();
  std::optional<VirtualKey> key;
  bool cached = false;
  {
    std::lock_guard lock(mu_);
    auto it = by_hash_.find(hash);
    if (it != by_hash_.end() && now - it->second.fetched_ms < ttl_ms_) {
      key = it->second.key;
      cached = true;
    }
  }
  if (!cached) {
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(key, txn.FindVirtualKeyByHash(hash));
      return Ok();
    }));
    std::lock_guard lock(mu_);
    if (by_hash_.size() >= kMaxEntries) by_hash_.clear();
    by_hash_[hash] = Entry{key, now};
  }
  if (!key) return PermissionDenied("invalid API key (not a key issued by `factory keys create`)");
  if (key->revoked_ms != 0) {
    return PermissionDenied("API key " + key->prefix + "... was revoked");
  }
  return *key;
}

}  // namespace factory::gateway::internal
