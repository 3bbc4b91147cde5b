#include "orchestrator/pause_mirror.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>

namespace factory {

Result<std::unique_ptr<PauseMirror>> PauseMirror::Start(ledger::BudgetGuard& budget,
                                                        AgentRegistry& agents, int64_t poll_ms) {
  std::unique_ptr<PauseMirror> mirror(new PauseMirror(budget, agents, poll_ms));
  FACTORY_RETURN_IF_ERROR(mirror->Sync());
  mirror->thread_ = std::thread([raw = mirror.get()] { raw->Loop(); });
  return mirror;
}

PauseMirror::~PauseMirror() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<std::vector<AgentPause>> PauseMirror::Sync() {
  FACTORY_ASSIGN_OR_RETURN(std::vector<AgentPause> pauses, budget_.Pauses());
  const AgentPause* all = nullptr;
  std::map<std::string, const AgentPause*> by_agent;
  for (const auto& pause : pauses) {
    if (pause.agent == ledger::kAllAgents) all = &pause;
    by_agent[pause.agent] = &pause;
  }
  std::lock_guard lock(mu_);
  for (const AgentSpec* agent : agents_.agents()) {
    const AgentPause* pause = all;
    if (auto it = by_agent.find(agent->name); it != by_agent.end()) pause = it->second;
    if (pause != nullptr) {
      if (paused_.insert(agent->name).second) {
        (void)agents_.Pause(agent->name, pause->reason);
        spdlog::info("agent {} paused: {}", agent->name, pause->reason);
      }
    } else if (paused_.erase(agent->name) > 0) {
      (void)agents_.Resume(agent->name);
      spdlog::info("agent {} resumed", agent->name);
    }
  }
  return pauses;
}

void PauseMirror::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(poll_ms_), [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (auto synced = Sync(); !synced) {
      spdlog::warn("cannot read budget pauses: {}", synced.error().ToString());
    }
    lock.lock();
  }
}

}  // namespace factory
