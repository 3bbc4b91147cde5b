#pragma once
// The gateway's hot path to the store, kept off the request's critical path where the
// guarantees allow it. Internal to gateway/.
//
//  - LedgerWriter: the CallObserver. Ledger rows (and the settled spend of calls admitted in
//    memory, see below) are queued and written by one background thread, every batch in one
//    transaction (group commit: the writer wakes on a batch's first row and commits what
//    arrived within 5 ms). A row reaches the store a few milliseconds after its call ended;
//    Flush() waits for everything queued so far.
//  - GatewayAdmission: the CallAdmission. A call whose agent has a store-enforced limit (per
//    task, run, agent-day, or the global day) goes through ledger::BudgetGuard exactly like the
//    built-in agent's calls: the reservation is checked and inserted in one serialised store
//    transaction, so no limit can be overshot, across threads and processes. A call with no
//    such limit has nothing to overshoot: it is admitted in memory (the per-call cap checked,
//    the agent's pause looked up in a cache refreshed every `pause_ttl_ms`), and its actual
//    cost is written as a settled reservation by the LedgerWriter, so the agent's and the
//    day's spend (other processes' caps, `factory costs`) include it, and is counted at once
//    in the BudgetGuard's in-memory velocity window (checked on every call).

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "ledger/budget.h"
#include "llm/call_record.h"
#include "store/model.h"
#include "store/store.h"

namespace factory::gateway::internal {

class LedgerWriter final : public llm::CallObserver {
 public:
  // REQUIRES: store outlives the writer.
  explicit LedgerWriter(Store& store);
  ~LedgerWriter() override;  // writes what is queued, then stops
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  void OnCall(const llm::CallRecord& record) override;
  // Queues a settled reservation row (the spend of a call admitted in memory).
  void AddSpend(ReservationRow row);
  // Blocks until everything queued before the call is in the store. Returns the error of the
  // last failed batch since the previous Flush (its rows are dropped and logged), else Ok.
  Status Flush();

 private:
  void Loop();

  Store& store_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::vector<ModelCallRow> calls_;    // guarded by mu_
  std::vector<ReservationRow> spend_;  // guarded by mu_
  uint64_t queued_ = 0;                // guarded by mu_; items ever queued
  uint64_t written_ = 0;               // guarded by mu_; items ever handled (written/dropped)
  bool stopping_ = false;              // guarded by mu_
  int flush_waiters_ = 0;              // guarded by mu_; Flush() calls waiting
  std::optional<Error> last_error_;    // guarded by mu_
  std::thread thread_;
};

class GatewayAdmission final : public llm::CallAdmission {
 public:
  // REQUIRES: everything outlives the admission.
  GatewayAdmission(Store& store, ledger::BudgetGuard& guard, LedgerWriter& writer,
                   const Clock& clock, int64_t pause_ttl_ms);

  Result<int64_t> Reserve(const llm::CallContext& context, const llm::Deployment& deployment,
                          double worst_case_usd) override;
  void Settle(int64_t reservation_id, double actual_usd) override;

  // True when calls for this context go through the BudgetGuard's store transaction.
  bool StoreEnforced(const llm::CallContext& context) const;

 private:
  // The pause that applies to `agent` ("" = none), from a cache at most pause_ttl_ms old.
  Result<std::string> PauseReason(const std::string& agent);

  Store& store_;
  ledger::BudgetGuard& guard_;
  LedgerWriter& writer_;
  const Clock& clock_;
  const int64_t pause_ttl_ms_;

  std::mutex mu_;
  int64_t next_memory_id_ = 0;                             // guarded by mu_; ids are < 0
  std::unordered_map<int64_t, ReservationRow> in_memory_;  // guarded by mu_
  int64_t pauses_loaded_ms_ = -1;                          // guarded by mu_
  std::vector<AgentPause> pauses_;                         // guarded by mu_
};

}  // namespace factory::gateway::internal
