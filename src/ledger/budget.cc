#include "ledger/budget.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "ledger/internal/day.h"
#include "ledger/internal/velocity.h"

namespace factory::ledger {

namespace {

template <typename T>
std::optional<T> Pick(const std::optional<T>& agent, const std::optional<T>& project) {
  return agent ? agent : project;
}

std::string Usd(double value) { return fmt::format("${:.6f}", value); }

// Slices the store's history is read in when a velocity window is seeded: spend is dated to
// the start of its slice, so the seed is as fine as span / kSeedSlices.
constexpr int64_t kSeedSlices = 70;
// Buckets per velocity window in memory.
constexpr int64_t kBucketsPerWindow = 600;
// After a velocity pause was found or written for an agent, the store is not asked again for
// this long (the admission's pause lookup refuses the agent's calls meanwhile).
constexpr int64_t kVelocityPauseRecheckMs = 1'000;

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
  std::string refusal;  // "" = admitted
};

BudgetGuard::BudgetGuard(Store& store, BudgetEnvelope envelope, const Clock* clock)
    : store_(store),
      envelope_(std::move(envelope)),
      clock_(clock != nullptr ? *clock : SystemClock()),
      events_(store, events::EventLogOptions{.clock = &clock_, .actor = "budget"}),
      velocity_(std::make_unique<internal::VelocityMeter>(
          envelope_.velocity_window_ms + envelope_.velocity_baseline_ms,
          std::max<int64_t>(1, envelope_.velocity_window_ms / kBucketsPerWindow))) {}

BudgetGuard::~BudgetGuard() = default;

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
  if (!context.agent.empty()) {
    FACTORY_RETURN_IF_ERROR(SeedVelocity(context.agent));
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
          fmt::format("budget: {}{} cap: spent {} + worst case {} > limit {}; the call is refused",
                      tag, scope, Usd(spent), Usd(worst_case_usd), Usd(limit));
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
      if (refused) return Ok();
    }
    if (envelope_.global_daily_usd) {
      FACTORY_ASSIGN_OR_RETURN(bool refused,
                               over(SpendQuery{.day = day}, *envelope_.global_daily_usd,
                                    "global daily (" + day + ")", ""));
      if (refused) return Ok();
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

Result<double> BudgetGuard::SettleUsd(int64_t reservation_id, double actual_usd) {
  if (!std::isfinite(actual_usd) || actual_usd < 0) {
    return InvalidArgument(fmt::format("actual cost {} is not a non-negative number", actual_usd));
  }
  ReservationRow reservation;
  std::optional<AgentPause> pause;
  // One transaction: the settlement and the pause it may cause.
  FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
    pause.reset();
    FACTORY_ASSIGN_OR_RETURN(auto row, txn.GetReservation(reservation_id));
    if (!row) return NotFound("budget reservation " + std::to_string(reservation_id));
    reservation = *row;
    FACTORY_RETURN_IF_ERROR(txn.SettleReservation(reservation_id, actual_usd));
    FACTORY_ASSIGN_OR_RETURN(pause, PauseIfCapReached(txn, reservation));
    if (pause) return txn.SetAgentPause(*pause);
    return Ok();
  }));
  const llm::CallContext context{
      .run_id = reservation.run_id, .task_id = reservation.task_id, .agent = reservation.agent};
  const double overrun = std::max(0.0, actual_usd - reservation.amount_usd);
  if (overrun > 0) {
    FACTORY_RETURN_IF_ERROR(RecordOverrun(context, reservation.amount_usd, actual_usd));
  }
  if (pause) {
    FACTORY_RETURN_IF_ERROR(RecordPaused(*pause, context));
  }
  if (!reservation.agent.empty() && envelope_.velocity_enabled) {
    velocity_->Add(reservation.agent, reservation.ts_ms, actual_usd);
    FACTORY_RETURN_IF_ERROR(CheckVelocity(reservation.agent, context));
  }
  return overrun;
}

Result<std::optional<AgentPause>> BudgetGuard::PauseIfCapReached(
    StoreTxn& txn, const ReservationRow& reservation) {
  const BudgetLimits limits = envelope_.For(reservation.agent);
  const bool agent_cap = limits.per_agent_daily_usd && !reservation.agent.empty();
  if (!agent_cap && !envelope_.global_daily_usd) return std::nullopt;
  const int64_t now = clock_.NowMillis();
  FACTORY_ASSIGN_OR_RETURN(auto pauses, txn.ListAgentPauses());
  auto paused = [&](std::string_view agent) {
    return std::any_of(pauses.begin(), pauses.end(),
                       [&](const AgentPause& existing) { return existing.agent == agent; });
  };
  if (paused(kAllAgents)) return std::nullopt;
  if (envelope_.global_daily_usd) {
    FACTORY_ASSIGN_OR_RETURN(
        double spent, txn.SumSpend(SpendQuery{.day = reservation.day, .settled_only = true}));
    if (spent >= *envelope_.global_daily_usd) {
      return AgentPause{
          .agent = kAllAgents,
          .reason = fmt::format("budget: global daily ({}) cap reached: settled "
                                "spend {} >= limit {}",
                                reservation.day, Usd(spent), Usd(*envelope_.global_daily_usd)),
          .since_ms = now,
          .by = "budget"};
    }
  }
  if (agent_cap && !paused(reservation.agent)) {
    FACTORY_ASSIGN_OR_RETURN(double spent, txn.SumSpend(SpendQuery{.agent = reservation.agent,
                                                                   .day = reservation.day,
                                                                   .settled_only = true}));
    if (spent >= *limits.per_agent_daily_usd) {
      return AgentPause{.agent = reservation.agent,
                        .reason = fmt::format("budget: agent {} daily ({}) cap reached: settled "
                                              "spend {} >= limit {}",
                                              reservation.agent, reservation.day, Usd(spent),
                                              Usd(*limits.per_agent_daily_usd)),
                        .since_ms = now,
                        .by = "budget"};
    }
  }
  return std::nullopt;
}

Status BudgetGuard::SeedVelocity(const std::string& agent) {
  if (!envelope_.velocity_enabled || agent.empty() || velocity_->Seeded(agent)) return Ok();
  const int64_t span = envelope_.velocity_window_ms + envelope_.velocity_baseline_ms;
  if (envelope_.velocity_window_ms <= 0 || envelope_.velocity_baseline_ms <= 0) return Ok();
  const int64_t now = clock_.NowMillis();
  const int64_t slice = std::max<int64_t>(1, span / kSeedSlices);
  std::map<int64_t, double> history;
  FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
    history.clear();
    for (int64_t since = now - span; since <= now; since += slice) {
      FACTORY_ASSIGN_OR_RETURN(
          double spent,
          txn.SumSpend(SpendQuery{
              .agent = agent, .since_ms = since, .until_ms = since + slice, .settled_only = true}));
      if (spent > 0) history[since] = spent;
    }
    return Ok();
  }));
  velocity_->Seed(agent, history);
  return Ok();
}

Status BudgetGuard::RecordSettled(const std::string& agent, int64_t at_ms, double usd,
                                  const llm::CallContext& context) {
  if (!envelope_.velocity_enabled || agent.empty()) return Ok();
  FACTORY_RETURN_IF_ERROR(SeedVelocity(agent));
  velocity_->Add(agent, at_ms, usd);
  return CheckVelocity(agent, context);
}

Status BudgetGuard::CheckVelocity(const std::string& agent, const llm::CallContext& context) {
  if (!envelope_.velocity_enabled) return Ok();
  const int64_t now = clock_.NowMillis();
  const int64_t window = envelope_.velocity_window_ms;
  const int64_t baseline_span = envelope_.velocity_baseline_ms;
  if (window <= 0 || baseline_span <= 0) return Ok();
  const double recent = velocity_->Sum(agent, now - window, now + 1);
  const double before = velocity_->Sum(agent, now - window - baseline_span, now - window);
  const double trailing = before * static_cast<double>(window) / static_cast<double>(baseline_span);
  const double baseline = std::max(trailing, envelope_.velocity_min_baseline_usd);
  if (baseline <= 0 || recent <= envelope_.velocity_factor * baseline) return Ok();
  {
    std::lock_guard lock(velocity_mu_);
    auto it = velocity_paused_ms_.find(agent);
    if (it != velocity_paused_ms_.end() && now - it->second < kVelocityPauseRecheckMs) {
      return Ok();  // paused a moment ago: no store round trip per call meanwhile
    }
    velocity_paused_ms_[agent] = now;
  }
  std::optional<AgentPause> pause;
  FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
    pause.reset();
    FACTORY_ASSIGN_OR_RETURN(auto pauses, txn.ListAgentPauses());
    for (const auto& existing : pauses) {
      if (existing.agent == agent) return Ok();  // already paused: no second event
    }
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

Status BudgetGuard::RecordOverrun(const llm::CallContext& context, double reserved_usd,
                                  double actual_usd) {
  const double overrun = actual_usd - reserved_usd;
  if (!(overrun > 0)) return Ok();
  spdlog::warn(
      "budget: a call of agent '{}' (run '{}', task '{}') cost {}, {} above its reservation of {}",
      context.agent, context.run_id, context.task_id, Usd(actual_usd), Usd(overrun),
      Usd(reserved_usd));
  nlohmann::json payload = {{"agent", context.agent},     {"run_id", context.run_id},
                            {"task_id", context.task_id}, {"reserved_usd", reserved_usd},
                            {"actual_usd", actual_usd},   {"overrun_usd", overrun}};
  FACTORY_RETURN_IF_ERROR(events_.Append({.kind = events::EventKind::kBudgetOverrun,
                                          .run_id = context.run_id,
                                          .task_id = context.task_id,
                                          .payload_json = payload.dump()}));
  return Ok();
}

Status BudgetGuard::RecordPaused(const AgentPause& pause, const llm::CallContext& context) {
  nlohmann::json payload = {{"agent", pause.agent},
                            {"reason", pause.reason},
                            {"by", pause.by},
                            {"since_ms", pause.since_ms}};
  FACTORY_RETURN_IF_ERROR(events_.Append({.kind = events::EventKind::kAgentPaused,
                                          .run_id = context.run_id,
                                          .task_id = context.task_id,
                                          .payload_json = payload.dump()}));
  return Ok();
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
  FACTORY_RETURN_IF_ERROR(events_.Append({.kind = events::EventKind::kAgentResumed,
                                          .actor = std::string(by),
                                          .payload_json = payload.dump()}));
  return Ok();
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
