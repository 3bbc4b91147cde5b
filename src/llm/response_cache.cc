#include "llm/response_cache.h"

#include <nlohmann/json.hpp>

#include "core/sha256.h"

namespace factory::llm {
namespace {

class MemoryResponseCache final : public ResponseCache {
 public:
  explicit MemoryResponseCache(size_t max_entries) : max_entries_(max_entries) {}

  std::optional<ChatResponse> Get(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
    return it->second->second;
  }

  void Put(const std::string& key, const ChatResponse& response) override {
    if (max_entries_ == 0) return;
    std::lock_guard lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      it->second->second = response;
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    lru_.emplace_front(key, response);
    index_[key] = lru_.begin();
    while (lru_.size() > max_entries_) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }

 private:
  using Entry = std::pair<std::string, ChatResponse>;
  const size_t max_entries_;
  std::mutex mu_;
  std::list<Entry> lru_;                                               // guarded by mu_
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<ResponseCache> MakeMemoryResponseCache(size_t max_entries) {
  return std::make_unique<MemoryResponseCache>(max_entries);
}

bool IsCacheable(const ChatRequest& request) {
  return request.temperature.has_value() && *request.temperature == 0.0;
}

std::string CacheKey(const ChatRequest& request, const std::vector<std::string>& targets) {
  using nlohmann::json;
  json canonical;
  canonical["v"] = 1;
  canonical["targets"] = targets;
  json messages = json::array();
  for (const Message& message : request.messages) {
    json calls = json::array();
    for (const ToolCall& call : message.tool_calls) {
      calls.push_back({call.id, call.name, call.arguments_json});
    }
    messages.push_back(
        {std::string(RoleName(message.role)), message.content, calls, message.tool_call_id});
  }
  canonical["messages"] = std::move(messages);
  json tools = json::array();
  for (const ToolSpec& tool : request.tools) {
    tools.push_back({tool.name, tool.description, tool.parameters_json_schema});
  }
  canonical["tools"] = std::move(tools);
  canonical["temperature"] = request.temperature ? json(*request.temperature) : json(nullptr);
  canonical["max_tokens"] = request.max_tokens ? json(*request.max_tokens) : json(nullptr);
  canonical["top_p"] = request.top_p ? json(*request.top_p) : json(nullptr);
  canonical["stop"] = request.stop;
  canonical["tool_choice"] = request.tool_choice;
  // cache_prompt changes the price, not the answer: deliberately not part of the key.
  // nlohmann::json objects are std::maps: keys come out sorted, so dump() is canonical.
  return Sha256Hex(canonical.dump());
}

}  // namespace factory::llm
