#include "ledger/ledger.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "ledger/internal/day.h"

namespace factory::ledger {

std::string_view CostGroupName(CostGroup group) {
  switch (group) {
    case CostGroup::kAgent:
      return "agent";
    case CostGroup::kModel:
      return "model";
    case CostGroup::kDay:
      return "day";
    case CostGroup::kRun:
      return "run";
  }
  return "agent";
}

Result<CostGroup> ParseCostGroup(std::string_view name) {
  for (CostGroup group : {CostGroup::kAgent, CostGroup::kModel, CostGroup::kDay, CostGroup::kRun}) {
    if (CostGroupName(group) == name) return group;
  }
  return InvalidArgument("unknown cost grouping '" + std::string(name) +
                         "' (expected agent, model, day or run)");
}

namespace {

// Parses exactly `digits` decimal digits at text[pos]; -1 when they are not there.
int Digits(std::string_view text, size_t pos, size_t digits) {
  if (pos + digits > text.size()) return -1;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + digits, value);
  if (ec != std::errc() || end != text.data() + pos + digits) return -1;
  return value;
}

std::optional<int64_t> ParseUtc(std::string_view text) {
  using namespace std::chrono;
  if (text.size() < 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  const int y = Digits(text, 0, 4), m = Digits(text, 5, 2), d = Digits(text, 8, 2);
  if (y < 0 || m < 0 || d < 0) return std::nullopt;
  const year_month_day ymd{year(y), month(static_cast<unsigned>(m)), day(static_cast<unsigned>(d))};
  if (!ymd.ok()) return std::nullopt;
  int64_t ms = duration_cast<milliseconds>(sys_days(ymd).time_since_epoch()).count();
  if (text.size() == 10) return ms;
  // "THH:MM:SS[.mmm]Z"
  if (text.size() < 20 || (text[10] != 'T' && text[10] != ' ') || text[13] != ':' ||
      text[16] != ':' || text.back() != 'Z') {
    return std::nullopt;
  }
  const int hh = Digits(text, 11, 2), mm = Digits(text, 14, 2), ss = Digits(text, 17, 2);
  if (hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60) return std::nullopt;
  int frac = 0;
  if (text.size() == 24 && text[19] == '.') {
    frac = Digits(text, 20, 3);
    if (frac < 0) return std::nullopt;
  } else if (text.size() != 20) {
    return std::nullopt;
  }
  return ms + ((hh * 60 + mm) * 60 + ss) * 1000LL + frac;
}

}  // namespace

Result<int64_t> ParseSince(std::string_view text, int64_t now_ms) {
  if (auto absolute = ParseUtc(text)) return *absolute;
  if (text.size() >= 2) {
    int64_t amount = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, amount);
    const char unit = text.back();
    if (ec == std::errc() && end == text.data() + text.size() - 1 && amount >= 0 &&
        amount < 100'000'000) {
      switch (unit) {
        case 'm':
          return now_ms - amount * 60'000;
        case 'h':
          return now_ms - amount * 3'600'000;
        case 'd':
          return now_ms - amount * 86'400'000;
        default:
          break;
      }
    }
  }
  return InvalidArgument("--since '" + std::string(text) +
                         "': expected a UTC date or time (2026-11-21, 2026-11-21T10:00:00Z) or "
                         "a span back from now (90m, 24h, 7d)");
}

std::string CostReportJson(const CostReport& report, CostGroup group, int64_t since_ms) {
  auto row_json = [](const CostRow& row) {
    return nlohmann::json{{"key", row.key},
                          {"calls", row.calls},
                          {"failed_calls", row.failed_calls},
                          {"input_tokens", row.input_tokens},
                          {"output_tokens", row.output_tokens},
                          {"cached_tokens", row.cached_tokens},
                          {"cost_usd", row.cost_usd},
                          {"overrun_usd", row.overrun_usd}};
  };
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : report.rows) rows.push_back(row_json(row));
  return nlohmann::json{{"by", CostGroupName(group)},
                        {"since_ms", since_ms},
                        {"rows", std::move(rows)},
                        {"total", row_json(report.total)}}
      .dump();
}

ModelCallRow ToModelCallRow(const llm::CallRecord& record) {
  ModelCallRow row;
  row.ts_ms = record.started_at_ms;
  row.run_id = record.context.run_id;
  row.task_id = record.context.task_id;
  row.attempt_id = record.context.attempt_id;
  row.agent = record.context.agent;
  row.provider = record.provider;
  row.model = record.model;
  row.alias = record.alias;
  row.input_tokens = record.usage.input_tokens;
  row.output_tokens = record.usage.output_tokens;
  row.cached_tokens = record.usage.cached_read_tokens;
  row.cost_usd = record.cost_usd;
  row.latency_ms = record.latency_ms;
  row.status = record.status_name();
  row.http_status = record.http_status;
  row.retries = record.retries;
  row.cache_hit = record.cache_hit;
  row.error = record.error;
  row.purpose = record.context.purpose;
  row.overrun_usd = record.overrun_usd;
  return row;
}

Status Ledger::Record(const llm::CallRecord& record) {
  const ModelCallRow row = ToModelCallRow(record);
  return store_.Write([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(int64_t id, txn.InsertModelCall(row));
    (void)id;
    return Ok();
  });
}

void Ledger::OnCall(const llm::CallRecord& record) {
  try {
    if (auto status = Record(record); !status) {
      spdlog::error("ledger: dropping the record of a {} call to {}/{}: {}", record.kind,
                    record.provider, record.model, status.error().ToString());
    }
  } catch (const std::exception& e) {
    spdlog::error("ledger: dropping a call record: {}", e.what());
  }
}

Result<std::vector<ModelCallRow>> Ledger::Calls(const ModelCallQuery& query) {
  std::vector<ModelCallRow> calls;
  FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(calls, txn.ListModelCalls(query));
    return Ok();
  }));
  return calls;
}

namespace {

void Add(CostRow& row, const ModelCallRow& call) {
  row.calls += 1;
  if (call.status != "ok") row.failed_calls += 1;
  row.input_tokens += call.input_tokens;
  row.output_tokens += call.output_tokens;
  row.cached_tokens += call.cached_tokens;
  row.cost_usd += call.cost_usd;
  row.overrun_usd += call.overrun_usd;
}

std::string KeyOf(CostGroup group, const ModelCallRow& call) {
  switch (group) {
    case CostGroup::kAgent:
      return call.agent;
    case CostGroup::kModel:
      return call.provider + "/" + call.model;
    case CostGroup::kDay:
      return internal::UtcDay(call.ts_ms);
    case CostGroup::kRun:
      return call.run_id;
  }
  return "";
}

}  // namespace

Result<CostReport> Ledger::Costs(CostGroup group, int64_t since_ms) {
  FACTORY_ASSIGN_OR_RETURN(auto calls, Calls(ModelCallQuery{.since_ms = since_ms}));
  std::map<std::string, CostRow> groups;
  CostReport report;
  report.total.key = "total";
  for (const auto& call : calls) {
    std::string key = KeyOf(group, call);
    CostRow& row = groups[key];
    row.key = std::move(key);
    Add(row, call);
    Add(report.total, call);
  }
  for (auto& [key, row] : groups) report.rows.push_back(std::move(row));
  return report;
}

}  // namespace factory::ledger
