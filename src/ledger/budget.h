#pragma once
// Hard budgets. Before each provider attempt the router asks the BudgetGuard to reserve the
// attempt's worst-case cost; the guard admits it only when, for every applicable scope,
//   spend in scope (settled actual cost + unsettled reservations) + worst case <= limit,
// and it checks and inserts the reservation inside one store write transaction (serialised
// across threads and processes), so concurrent calls can never together pass a limit. After the
// attempt the reservation is settled with the actual cost.
//
// Scopes: per call (the worst case alone), per task (USD, and tokens as recorded in the ledger),
// per run, per agent per UTC day, and global per UTC day.
// A refusal (always kResourceExhausted) refuses that call only, naming the cap, the spend, the
// worst case and the limit; the task cap's message contains "budget_exceeded" (the caller ends
// the attempt). A refusal pauses nobody: a worst case that does not fit says nothing about
// what was spent.
// Pauses come from settled spend: when an agent's settled spend of the day reaches its daily
// cap it is paused (agent_pauses row + `agent.paused` event); when the settled spend of the day
// reaches the global cap every agent is (the pause of agent "*"). A paused agent's
// reservations are refused until `Resume` (factory agents resume NAME).
// Settlement has no ceiling (the provider billed what it billed): an actual cost above the
// reservation is an overrun, returned by SettleUsd and recorded as a `budget.overrun` event
// (payload: agent, run_id, task_id, reserved_usd, actual_usd, overrun_usd); the router also
// puts it on its CallRecord, which the ledger keeps as the call's overrun_usd column (summed
// by `factory costs`). Spend above a cap keeps refusing that scope's calls
// until its spend is back under the cap (a new day for the daily caps).
// Velocity: when an agent's settled spend over the last `velocity_window_ms` exceeds
// `velocity_factor` x its trailing rate (the settled spend of the `velocity_baseline_ms`
// before that window, scaled to the window's length), the agent is paused with an event saying
// why. The check needs a baseline: the trailing rate, or `velocity_min_baseline_usd` when
// that is larger; with both zero an agent with no history is never velocity-paused.
// Spend is dated by its reservation's time. Velocity is checked after every settlement (the
// actual cost, not the worst case, is what counts as spend) and is a pause, not a refusal:
// the call that crossed the line has already happened. The check reads an in-memory window per
// agent, seeded from the store the first time this process reserves for the agent and fed by
// this process's settlements (another process's later spend is not seen).
// Caveat: in an agent's first hour the trailing window holds only part of an hour of history
// yet is divided by a full hour, so a ramping-up agent can look fast; a non-zero
// `velocity_min_baseline_usd` (e.g. $0.10 per 10 minutes) avoids such false pauses.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "events/event_log.h"
#include "llm/call_record.h"
#include "store/store.h"

namespace factory::ledger {

namespace internal {
class VelocityMeter;
}

// Limits one level of configuration sets (an agent's `budget:` or the project's section).
// Unset (nullopt) means "no limit at this level".
struct BudgetLimits {
  std::optional<double> per_call_usd;
  std::optional<double> per_task_usd;
  std::optional<int64_t> per_task_tokens;  // input + output tokens of the task's ledgered calls
  std::optional<double> per_run_usd;
  std::optional<double> per_agent_daily_usd;
};

// The whole envelope: project-wide defaults, per-agent overrides (a field set for the agent
// wins over the project's), the global daily cap and the velocity detector.
struct BudgetEnvelope {
  BudgetLimits project;
  std::map<std::string, BudgetLimits, std::less<>> agents;
  std::optional<double> global_daily_usd;

  bool velocity_enabled = true;
  double velocity_factor = 3.0;
  int64_t velocity_window_ms = 10 * 60 * 1000;
  int64_t velocity_baseline_ms = 60 * 60 * 1000;
  double velocity_min_baseline_usd = 0;  // per window; 0 = only a non-zero trailing rate counts

  // The limits that apply to `agent`: its overrides over the project's.
  BudgetLimits For(std::string_view agent) const;
};

// The agent key of the global pause.
inline constexpr char kAllAgents[] = "*";

class BudgetGuard final : public llm::CallAdmission {
 public:
  // REQUIRES: store and clock outlive the guard. clock null = SystemClock(). The guard records
  // `budget.overrun`, `agent.paused` and `agent.resumed` in the store's event log.
  BudgetGuard(Store& store, BudgetEnvelope envelope, const Clock* clock = nullptr);
  ~BudgetGuard() override;

  // CallAdmission. Refusals are kResourceExhausted (see the file comment); store failures are
  // returned as they are (the call is not sent).
  Result<int64_t> Reserve(const llm::CallContext& context, const llm::Deployment& deployment,
                          double worst_case_usd) override;
  // Records the actual cost, then pauses when settled spend reached a daily cap and runs the
  // velocity check for the reservation's agent. Errors are logged (the interface has no way to
  // report them).
  void Settle(int64_t reservation_id, double actual_usd) override;

  // The same checks without a Deployment (the gateway and tests).
  Result<int64_t> ReserveUsd(const llm::CallContext& context, double worst_case_usd);
  // Returns the overrun: how much the actual cost passed the reservation (0 when it did not).
  Result<double> SettleUsd(int64_t reservation_id, double actual_usd);

  // True when `agent` or every agent is paused.
  Result<bool> IsPaused(std::string_view agent);
  Result<std::vector<AgentPause>> Pauses();
  // Lifts the pause of `agent` (kAllAgents lifts the global one) and records `agent.resumed`.
  // NotFound when it was not paused.
  Status Resume(std::string_view agent, std::string_view by = "cli");
  // Pauses `agent` (kAllAgents: every agent) and records `agent.paused` with the reason.
  Status Pause(std::string_view agent, std::string_view reason, std::string_view by);

  const BudgetEnvelope& envelope() const { return envelope_; }

  // For spend settled outside this guard's reservations (the gateway's calls admitted in
  // memory, written by its ledger writer): counts `usd`, dated `at_ms`, in `agent`'s velocity
  // window and runs the velocity check. Cheap unless it pauses.
  Status RecordSettled(const std::string& agent, int64_t at_ms, double usd,
                       const llm::CallContext& context);
  // Records a `budget.overrun` event (and a warning) when `actual_usd` > `reserved_usd`:
  // a call's worst case was an underestimate. SettleUsd does it for its reservations.
  Status RecordOverrun(const llm::CallContext& context, double reserved_usd, double actual_usd);
  // Loads `agent`'s recent settled spend into the velocity window when this process has not
  // yet (one store read per agent and process). Reserve does it; a caller admitting calls
  // without Reserve calls it before the agent's first settlement.
  Status SeedVelocity(const std::string& agent);

  // The velocity check on its own: pauses `agent` (with an `agent.paused` event) when its
  // recent settled spend is too fast.
  Status CheckVelocity(const std::string& agent, const llm::CallContext& context);

 private:
  struct Decision;
  Status RecordPaused(const AgentPause& pause, const llm::CallContext& context);
  // The pause due once `reservation` is settled: of its agent (or of everyone) when the
  // settled spend of its day reached the agent's (the global) daily cap and there is none yet.
  Result<std::optional<AgentPause>> PauseIfCapReached(StoreTxn& txn,
                                                      const ReservationRow& reservation);

  Store& store_;
  const BudgetEnvelope envelope_;
  const Clock& clock_;
  events::EventLog events_;
  std::unique_ptr<internal::VelocityMeter> velocity_;
  std::mutex velocity_mu_;
  std::map<std::string, int64_t, std::less<>> velocity_paused_ms_;  // guarded by velocity_mu_
};

}  // namespace factory::ledger
