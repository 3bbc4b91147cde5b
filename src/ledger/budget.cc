#include "ledger/budget.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "ledger/internal/day.h"

namespace factory::ledger {

namespace {

template <typename T>
std::optional<T> Pick(const std::optional<T>& agent, const std::optional<T>& project) {
  return agent ? agent : project;
}

std::string Usd(double value) { return fmt::format("${:.6f}", value); }

}  // namespace

BudgetLimits BudgetEnvelope::For(std::string_view agent) const {
  auto it = agents.find(agent);
  if (it == agents.end()) return project;
  const BudgetLimits& own = it->second;
  return BudgetLimits{
      .per_call_usd = Pick(own.per_call_usd, project.per_call_usd),
      .per_task_usd = Pick(own.per_task_usd, project.per_task_usd),
      .per_task_tokens = Pick(own.per_task_tokens, project.per_task_tokens),
      .per_run_usd = Pick(own.per_run_usd, project.per_run_usd),
      .per_agent_daily_usd = Pick(own.per_agent_daily_usd, project.per_agent_daily_usd),
  };
}

// What one Reserve transaction decided. Reset at the top of the transaction, which may run
// more than once.
struct BudgetGuard::Decision {
  std::string refusal;              // "" = admitted
  std::optional<AgentPause> pause;  // newly written in the transaction
};

BudgetGuard::BudgetGuard(Store& store, Queue& queue, BudgetEnvelope envelope, const Clock* clock)
    : store_(store),
      queue_(queue),
      envelope_(std::move(envelope)),
      clock_(clock != nullptr ? *clock : SystemClock()) {}

Result<int64_t> BudgetGuard::Reserve(const llm::CallContext& context,
                                     const llm::Deployment& deployment, double worst_case_usd) {
  auto reserved = ReserveUsd(context, worst_case_usd);
  if (!reserved && deployment.model != nullptr && deployment.provider != nullptr) {
    return std::unexpected(reserved.error().Wrap("call to " + deployment.key()));
  }
  return reserved;
}

Result<int64_t> BudgetGuard::ReserveUsd(const llm::CallContext& context, double worst_case_usd) {
  if (!std::isfinite(worst_case_usd) || worst_case_usd < 0) {
    return InvalidArgument(
        fmt::format("worst-case cost {} is not a non-negative number", worst_case_usd));
  }
  const BudgetLimits limits = envelope_.For(context.agent);
  if (limits.per_call_usd && worst_case_usd > *limits.per_call_usd) {
    return ResourceExhausted(
        fmt::format("budget: per-call limit: worst case {} exceeds the limit {}",
                    Usd(worst_case_usd), Usd(*limits.per_call_usd)));
  }
  const int64_t now = clock_.NowMillis();
  const std::string day = internal::UtcDay(now);
  Decision decision;
  int64_t reservation_id = 0;

  Status status = store_.Write([&](StoreTxn& txn) -> Status {
    decision = Decision{};
    reservation_id = 0;
    FACTORY_ASSIGN_OR_RETURN(auto pauses, txn.ListAgentPauses());
    for (const auto& pause : pauses) {
      if (pause.agent == kAllAgents || (!context.agent.empty() && pause.agent == context.agent)) {
        decision.refusal =
            fmt::format("budget: {} paused since {} ({}); `factory agents resume {}` lifts it",
                        pause.agent == kAllAgents ? std::string("every agent is")
                                                  : "agent " + pause.agent + " is",
                        FormatTimestamp(pause.since_ms), pause.reason, pause.agent);
        return Ok();
      }
    }
    // Refuses when `spent + worst_case` would pass `limit`.
    auto over = [&](const SpendQuery& query, double limit, const std::string& scope,
                    std::string_view tag) -> Result<bool> {
      FACTORY_ASSIGN_OR_RETURN(double spent, txn.SumSpend(query));
      if (spent + worst_case_usd <= limit) return false;
      decision.refusal =
          fmt::format("budget: {}{} cap reached: spent {} + worst case {} > limit {}", tag, scope,
                      Usd(spent), Usd(worst_case_usd), Usd(limit));
      return true;
    };
    if (!context.task_id.empty()) {
      if (limits.per_task_tokens) {
        FACTORY_ASSIGN_OR_RETURN(auto calls,
                                 txn.ListModelCalls(ModelCallQuery{.task_id = context.task_id}));
        int64_t tokens = 0;
        for (const auto& call : calls) tokens += call.input_tokens + call.output_tokens;
        if (tokens >= *limits.per_task_tokens) {
          decision.refusal =
              fmt::format("budget_exceeded: task {} token cap reached: used {} tokens, limit {}",
                          context.task_id, tokens, *limits.per_task_tokens);
          return Ok();
        }
      }
      if (limits.per_task_usd) {
        FACTORY_ASSIGN_OR_RETURN(bool refused,
                                 over(SpendQuery{.task_id = context.task_id}, *limits.per_task_usd,
                                      "task " + context.task_id, "budget_exceeded: "));
        if (refused) return Ok();
      }
    }
    if (!context.run_id.empty() && limits.per_run_usd) {
      FACTORY_ASSIGN_OR_RETURN(bool refused,
                               over(SpendQuery{.run_id = context.run_id}, *limits.per_run_usd,
                                    "run " + context.run_id, ""));
      if (refused) return Ok();
    }
    if (!context.agent.empty() && limits.per_agent_daily_usd) {
      FACTORY_ASSIGN_OR_RETURN(
          bool refused,
          over(SpendQuery{.agent = context.agent, .day = day}, *limits.per_agent_daily_usd,
               "agent " + context.agent + " daily (" + day + ")", ""));
      if (refused) {
        decision.pause = AgentPause{
            .agent = context.agent, .reason = decision.refusal, .since_ms = now, .by = "budget"};
        return txn.SetAgentPause(*decision.pause);
      }
    }
    if (envelope_.global_daily_usd) {
      FACTORY_ASSIGN_OR_RETURN(bool refused,
                               over(SpendQuery{.day = day}, *envelope_.global_daily_usd,
                                    "global daily (" + day + ")", ""));
      if (refused) {
        decision.pause = AgentPause{
            .agent = kAllAgents, .reason = decision.refusal, .since_ms = now, .by = "budget"};
        return txn.SetAgentPause(*decision.pause);
      }
    }
    FACTORY_ASSIGN_OR_RETURN(reservation_id,
                             txn.InsertReservation(ReservationRow{.ts_ms = now,
                                                                  .run_id = context.run_id,
                                                                  .task_id = context.task_id,
                                                                  .agent = context.agent,
                                                                  .day = day,
                                                                  .amount_usd = worst_case_usd}));
    return Ok();
  });
  if (!status) return std::unexpected(status.error());
  if (decision.pause) {
    if (auto recorded = RecordPaused(*decision.pause, context); !recorded) {
      spdlog::error("budget: recording the pause of {}: {}", decision.pause->agent,
                    recorded.error().ToString());
    }
  }
  if (!decision.refusal.empty()) return ResourceExhausted(decision.refusal);
  return reservation_id;
}

void BudgetGuard::Settle(int64_t reservation_id, double actual_usd) {
  try {
    if (auto status = SettleUsd(reservation_id, actual_usd); !status) {
      spdlog::error("budget: settling reservation {}: {}", reservation_id,
                    status.error().ToString());
    }
  } catch (const std::exception& e) {
    spdlog::error("budget: settling reservation {}: {}", reservation_id, e.what());
  }
}

Status BudgetGuard::SettleUsd(int64_t reservation_id, double actual_usd) {
  if (!std::isfinite(actual_usd) || actual_usd < 0) {
    return InvalidArgument(fmt::format("actual cost {} is not a non-negative number", actual_usd));
  }
  ReservationRow reservation;
  FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(auto row, txn.GetReservation(reservation_id));
    if (!row) return NotFound("budget reservation " + std::to_string(reservation_id));
    reservation = *row;
    return txn.SettleReservation(reservation_id, actual_usd);
  }));
  if (!envelope_.velocity_enabled || reservation.agent.empty()) return Ok();
  return CheckVelocity(reservation.agent, llm::CallContext{.run_id = reservation.run_id,
                                                           .task_id = reservation.task_id,
                                                           .agent = reservation.agent});
}

Status BudgetGuard::CheckVelocity(const std::string& agent, const llm::CallContext& context) {
  const int64_t now = clock_.NowMillis();
  const int64_t window = envelope_.velocity_window_ms;
  const int64_t baseline_span = envelope_.velocity_baseline_ms;
  if (window <= 0 || baseline_span <= 0) return Ok();
  std::optional<AgentPause> pause;
  FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
    pause.reset();
    FACTORY_ASSIGN_OR_RETURN(auto pauses, txn.ListAgentPauses());
    for (const auto& existing : pauses) {
      if (existing.agent == agent) return Ok();  // already paused: no second event
    }
    FACTORY_ASSIGN_OR_RETURN(
        double recent,
        txn.SumSpend(SpendQuery{.agent = agent, .since_ms = now - window, .settled_only = true}));
    FACTORY_ASSIGN_OR_RETURN(double before,
                             txn.SumSpend(SpendQuery{.agent = agent,
                                                     .since_ms = now - window - baseline_span,
                                                     .until_ms = now - window,
                                                     .settled_only = true}));
    const double trailing =
        before * static_cast<double>(window) / static_cast<double>(baseline_span);
    const double baseline = std::max(trailing, envelope_.velocity_min_baseline_usd);
    if (baseline <= 0 || recent <= envelope_.velocity_factor * baseline) return Ok();
    pause = AgentPause{
        .agent = agent,
        .reason = fmt::format(
            "velocity: spent {} in the last {} min, more than {:g}x its trailing rate of {} per "
            "{} min (from {} over the {} min before){}",
            Usd(recent), window / 60'000, envelope_.velocity_factor, Usd(trailing), window / 60'000,
            Usd(before), baseline_span / 60'000,
            trailing < baseline ? " (configured minimum baseline " + Usd(baseline) + ")" : ""),
        .since_ms = now,
        .by = "velocity"};
    return txn.SetAgentPause(*pause);
  }));
  if (pause) return RecordPaused(*pause, context);
  return Ok();
}

Status BudgetGuard::RecordPaused(const AgentPause& pause, const llm::CallContext& context) {
  nlohmann::json payload = {{"agent", pause.agent},
                            {"reason", pause.reason},
                            {"by", pause.by},
                            {"since_ms", pause.since_ms}};
  return queue_.RecordEvent(context.run_id, context.task_id, "agent.paused", "budget",
                            payload.dump());
}

Result<bool> BudgetGuard::IsPaused(std::string_view agent) {
  FACTORY_ASSIGN_OR_RETURN(auto pauses, Pauses());
  for (const auto& pause : pauses) {
    if (pause.agent == kAllAgents || pause.agent == agent) return true;
  }
  return false;
}

Result<std::vector<AgentPause>> BudgetGuard::Pauses() {
  std::vector<AgentPause> pauses;
  FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(pauses, txn.ListAgentPauses());
    return Ok();
  }));
  return pauses;
}

Status BudgetGuard::Resume(std::string_view agent, std::string_view by) {
  bool cleared = false;
  FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(cleared, txn.ClearAgentPause(agent));
    return Ok();
  }));
  if (!cleared) return NotFound("agent " + std::string(agent) + " is not paused");
  nlohmann::json payload = {{"agent", agent}, {"by", by}};
  return queue_.RecordEvent("", "", "agent.resumed", std::string(by), payload.dump());
}

Status BudgetGuard::Pause(std::string_view agent, std::string_view reason, std::string_view by) {
  if (agent.empty()) return InvalidArgument("agent name is empty");
  AgentPause pause{.agent = std::string(agent),
                   .reason = std::string(reason),
                   .since_ms = clock_.NowMillis(),
                   .by = std::string(by)};
  FACTORY_RETURN_IF_ERROR(
      store_.Write([&](StoreTxn& txn) -> Status { return txn.SetAgentPause(pause); }));
  return RecordPaused(pause, {});
}

}  // namespace factory::ledger
