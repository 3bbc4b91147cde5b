#pragma once
// Virtual-key lookups for every request, from memory: a key's record is fetched from the store
// on first use and trusted for `ttl_ms` (so a revocation takes effect within that time, in
// this process and in a gateway started elsewhere). Internal to gateway/. Thread-safe.

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/clock.h"
#include "core/result.h"
#include "store/model.h"
#include "store/store.h"

namespace factory::gateway::internal {

class KeyCache {
 public:
  // REQUIRES: store and clock outlive the cache.
  KeyCache(Store& store, const Clock& clock, int64_t ttl_ms);

  // The active key `presented` is, or PermissionDenied (unknown or revoked; the message never
  // repeats the key). Store failures are returned as they are.
  Result<VirtualKey> Lookup(std::string_view presented);

 private:
  struct Entry {
    std::optional<VirtualKey> key;  // nullopt: no such key
    int64_t fetched_ms = 0;
  };

  Store& store_;
  const Clock& clock_;
  const int64_t ttl_ms_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> by_hash_;  // guarded by mu_
};

}  // namespace factory::gateway::internal
