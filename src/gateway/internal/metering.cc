#include "gateway/internal/metering.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "ledger/ledger.h"

namespace factory::gateway::internal {
namespace {

// How long the writer collects rows before committing them: a row reaches the store at most
// this much (plus one commit) after its call ended.
constexpr std::chrono::milliseconds kGroupCommitWindow{5};

// "YYYY-MM-DD" (UTC): the day key of daily budgets, as ledger::BudgetGuard writes it.
std::string UtcDay(int64_t millis) {
  using namespace std::chrono;
  const year_month_day ymd(floor<days>(sys_time<milliseconds>(milliseconds(millis))));
  return fmt::format("{:04d}-{:02d}-{:02d}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
}

}  // namespace

LedgerWriter::LedgerWriter(Store& store) : store_(store), thread_([this] { Loop(); }) {}

LedgerWriter::~LedgerWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

void LedgerWriter::OnCall(const llm::CallRecord& record) {
  ModelCallRow row = ledger::ToModelCallRow(record);
  bool was_idle = false;
  {
    std::lock_guard lock(mu_);
    was_idle = calls_.empty() && spend_.empty();
    calls_.push_back(std::move(row));
    ++queued_;
  }
  // The writer is woken by the first row of a batch only; it then waits out the group-commit
  // window by itself (one wake-up per batch, not per call).
  if (was_idle) work_cv_.notify_one();
}

void LedgerWriter::AddSpend(ReservationRow row) {
  bool was_idle = false;
  {
    std::lock_guard lock(mu_);
    was_idle = calls_.empty() && spend_.empty();
    spend_.push_back(std::move(row));
    ++queued_;
  }
  if (was_idle) work_cv_.notify_one();
}

Status LedgerWriter::Flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = queued_;
  ++flush_waiters_;
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return written_ >= target; });
  --flush_waiters_;
  if (last_error_) {
    Error error = std::move(*last_error_);
    last_error_.reset();
    return std::unexpected(std::move(error));
  }
  return Ok();
}

void LedgerWriter::Loop() {
  std::vector<ModelCallRow> calls;
  std::vector<ReservationRow> spend;
  while (true) {
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !calls_.empty() || !spend_.empty(); });
      if (calls_.empty() && spend_.empty()) return;  // stopping, nothing left
      // Group commit: let the calls finishing meanwhile join this transaction, unless someone
      // waits for the rows.
      work_cv_.wait_for(lock, kGroupCommitWindow, [&] { return stopping_ || flush_waiters_ > 0; });
      calls.swap(calls_);
      spend.swap(spend_);
    }
    // One transaction for the whole batch: the commit is the expensive part, not the rows.
    Status status = store_.Write([&](StoreTxn& txn) -> Status {
      for (const ModelCallRow& row : calls) {
        FACTORY_RETURN_IF_ERROR(txn.InsertModelCall(row));
      }
      for (const ReservationRow& row : spend) {
        FACTORY_RETURN_IF_ERROR(txn.InsertReservation(row));
      }
      return Ok();
    });
    if (!status) {
      spdlog::error("gateway: dropping {} ledger row(s) and {} spend row(s): {}", calls.size(),
                    spend.size(), status.error().ToString());
    }
    {
      std::lock_guard lock(mu_);
      written_ += calls.size() + spend.size();
      if (!status) last_error_ = status.error();
    }
    done_cv_.notify_all();
    calls.clear();
    spend.clear();
  }
}

GatewayAdmission::GatewayAdmission(Store& store, ledger::BudgetGuard& guard, LedgerWriter& writer,
                                   const Clock& clock, int64_t pause_ttl_ms)
    : store_(store), guard_(guard), writer_(writer), clock_(clock), pause_ttl_ms_(pause_ttl_ms) {}

bool GatewayAdmission::StoreEnforced(const llm::CallContext& context) const {
  const ledger::BudgetEnvelope& envelope = guard_.envelope();
  const ledger::BudgetLimits limits = envelope.For(context.agent);
  if (envelope.global_daily_usd) return true;
  if (limits.per_agent_daily_usd && !context.agent.empty()) return true;
  if (limits.per_run_usd && !context.run_id.empty()) return true;
  if ((limits.per_task_usd || limits.per_task_tokens) && !context.task_id.empty()) return true;
  return false;
}

Result<std::string> GatewayAdmission::PauseReason(const std::string& agent) {
  std::lock_guard lock(mu_);
  const int64_t now = clock_.NowMillis();
  if (pauses_loaded_ms_ < 0 || now - pauses_loaded_ms_ >= pause_ttl_ms_) {
    std::vector<AgentPause> pauses;
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(pauses, txn.ListAgentPauses());
      return Ok();
    }));
    pauses_ = std::move(pauses);
    pauses_loaded_ms_ = now;
  }
  for (const AgentPause& pause : pauses_) {
    if (pause.agent == ledger::kAllAgents || (!agent.empty() && pause.agent == agent)) {
      return fmt::format("budget: {} paused since {} ({}); `factory agents resume {}` lifts it",
                         pause.agent == ledger::kAllAgents ? std::string("every agent is")
                                                           : "agent " + pause.agent + " is",
                         FormatTimestamp(pause.since_ms), pause.reason, pause.agent);
    }
  }
  return std::string();
}

Result<int64_t> GatewayAdmission::Reserve(const llm::CallContext& context,
                                          const llm::Deployment& deployment,
                                          double worst_case_usd) {
  if (StoreEnforced(context)) return guard_.Reserve(context, deployment, worst_case_usd);
  if (!std::isfinite(worst_case_usd) || worst_case_usd < 0) {
    return InvalidArgument(
        fmt::format("worst-case cost {} is not a non-negative number", worst_case_usd));
  }
  const ledger::BudgetLimits limits = guard_.envelope().For(context.agent);
  if (limits.per_call_usd && worst_case_usd > *limits.per_call_usd) {
    return ResourceExhausted(
        fmt::format("budget: per-call limit: worst case ${:.6f} exceeds the limit ${:.6f} (call "
                    "to {})",
                    worst_case_usd, *limits.per_call_usd, deployment.key()));
  }
  FACTORY_ASSIGN_OR_RETURN(std::string paused, PauseReason(context.agent));
  if (!paused.empty()) return ResourceExhausted(paused);
  FACTORY_RETURN_IF_ERROR(guard_.SeedVelocity(context.agent));
  const int64_t now = clock_.NowMillis();
  std::lock_guard lock(mu_);
  const int64_t id = --next_memory_id_;
  in_memory_.emplace(id, ReservationRow{.ts_ms = now,
                                        .run_id = context.run_id,
                                        .task_id = context.task_id,
                                        .agent = context.agent,
                                        .day = UtcDay(now),
                                        .amount_usd = worst_case_usd});
  return id;
}

void GatewayAdmission::Settle(int64_t reservation_id, double actual_usd) {
  if (reservation_id > 0) {
    guard_.Settle(reservation_id, actual_usd);
    return;
  }
  ReservationRow row;
  {
    std::lock_guard lock(mu_);
    auto it = in_memory_.find(reservation_id);
    if (it == in_memory_.end()) return;
    row = std::move(it->second);
    in_memory_.erase(it);
  }
  if (!std::isfinite(actual_usd) || actual_usd <= 0) return;  // nothing spent: nothing to add
  row.settled = true;
  row.actual_usd = actual_usd;
  if (actual_usd > row.amount_usd) {
    const llm::CallContext context{
        .run_id = row.run_id, .task_id = row.task_id, .agent = row.agent};
    if (auto recorded = guard_.RecordOverrun(context, row.amount_usd, actual_usd); !recorded) {
      spdlog::error("gateway: recording an overrun of {}: {}", row.agent,
                    recorded.error().ToString());
    }
  }
  const std::string agent = row.agent;
  const int64_t at_ms = row.ts_ms;
  const llm::CallContext context{.run_id = row.run_id, .task_id = row.task_id, .agent = agent};
  writer_.AddSpend(std::move(row));
  // Every call's spend is checked at once, in memory; a pause it writes reaches this
  // admission's pause cache within pause_ttl_ms.
  if (auto checked = guard_.RecordSettled(agent, at_ms, actual_usd, context); !checked) {
    spdlog::error("gateway: velocity check of {}: {}", agent, checked.error().ToString());
  }
}

}  // namespace factory::gateway::internal
