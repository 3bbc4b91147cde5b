#pragma once
// Mirrors the budget pauses recorded in the store (an agent's daily cap, the global cap "*",
// velocity; written by this or any other process) into an agent registry, so a paused agent
// takes no new task until `factory agents resume NAME` lifts the pause. A thread re-reads them
// every poll_ms while the mirror lives; Sync() does it at once.
//
// Thread-safety: Sync may be called from any thread.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agents/registry.h"
#include "core/result.h"
#include "ledger/budget.h"

namespace factory {

class PauseMirror {
 public:
  // Starts the polling thread after a first Sync (whose error is returned: nothing started).
  // REQUIRES: budget and agents outlive the mirror.
  static Result<std::unique_ptr<PauseMirror>> Start(ledger::BudgetGuard& budget,
                                                    AgentRegistry& agents, int64_t poll_ms);
  ~PauseMirror();  // stops and joins the thread
  PauseMirror(const PauseMirror&) = delete;
  PauseMirror& operator=(const PauseMirror&) = delete;

  // Re-reads the pauses into the registry now; returns the pauses in force. Only the pauses
  // this mirror applied are lifted when they end (a pause set on the registry by someone else
  // stays).
  Result<std::vector<AgentPause>> Sync();

 private:
  PauseMirror(ledger::BudgetGuard& budget, AgentRegistry& agents, int64_t poll_ms)
      : budget_(budget), agents_(agents), poll_ms_(poll_ms) {}
  void Loop();

  ledger::BudgetGuard& budget_;
  AgentRegistry& agents_;
  const int64_t poll_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;         // guarded by mu_
  std::set<std::string> paused_;  // guarded by mu_: agents this mirror paused
  std::thread thread_;            // last: stopped first
};

}  // namespace factory
