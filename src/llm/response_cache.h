#pragma once
// Exact-match cache of deterministic (temperature 0) chat answers. The key is a hash of the
// canonical request (messages, tools, temperature, max_tokens) and of the routing targets, so the
// same question to a different alias is a different entry. A hit is returned with cost 0 and
// flagged cache_hit.

#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "llm/types.h"

namespace factory::llm {

// Implementations must be thread-safe. A persistent one (in the store) can replace the in-memory
// one later.
class ResponseCache {
 public:
  virtual ~ResponseCache() = default;
  virtual std::optional<ChatResponse> Get(const std::string& key) = 0;
  virtual void Put(const std::string& key, const ChatResponse& response) = 0;
};

// An LRU cache holding at most `max_entries` answers in memory.
std::unique_ptr<ResponseCache> MakeMemoryResponseCache(size_t max_entries);

// True when the request is deterministic enough to cache: temperature explicitly 0.
bool IsCacheable(const ChatRequest& request);

// SHA-256 (hex) of the canonical JSON of the request (model field excluded: the router sets it)
// and the targets.
std::string CacheKey(const ChatRequest& request, const std::vector<std::string>& targets);

}  // namespace factory::llm
