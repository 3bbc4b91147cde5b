#pragma once
// The cost ledger: every routed model call, success or failure, as one row in the store, and
// the aggregates behind `factory costs [--by agent|model|day|run] [--since T] [--json]`.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "llm/call_record.h"
#include "store/model.h"
#include "store/store.h"

namespace factory::ledger {

enum class CostGroup { kAgent, kModel, kDay, kRun };
std::string_view CostGroupName(CostGroup group);
// "agent", "model", "day" or "run"; InvalidArgument naming the accepted values otherwise.
Result<CostGroup> ParseCostGroup(std::string_view name);

// Calls, tokens and cost of one group (or of all calls, for the total).
struct CostRow {
  std::string key;  // the agent, "provider/model", UTC "YYYY-MM-DD" or run id; "" = none
  int64_t calls = 0;
  int64_t failed_calls = 0;  // status != "ok"
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;
  double cost_usd = 0;
  // What calls cost above their budget reservations (underestimated worst cases); part of
  // cost_usd, not on top of it.
  double overrun_usd = 0;
};

struct CostReport {
  std::vector<CostRow> rows;  // ordered by key
  CostRow total;              // key "total"
};

// The `--since T` of `factory costs`: an absolute UTC time ("2026-11-21", "2026-11-21T10:00:00Z",
// with optional ".mmm") or a span back from now_ms ("90m", "24h", "7d"). Returns ms since the
// epoch; InvalidArgument naming the accepted forms otherwise.
Result<int64_t> ParseSince(std::string_view text, int64_t now_ms);

// The report as JSON (for --json): {"by": ..., "since_ms": ..., "rows": [{"key", "calls",
// "failed_calls", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "overrun_usd"}...],
// "total": {...}}.
std::string CostReportJson(const CostReport& report, CostGroup group, int64_t since_ms);

// The ledger row for a CallRecord (pure; exposed for the gateway and tests).
ModelCallRow ToModelCallRow(const llm::CallRecord& record);

// Writes every CallRecord to the store (CallObserver) and answers cost queries.
// Thread-safe (the Store is). OnCall never throws: a failed write is logged and dropped, since
// a model call that already happened cannot be undone by failing it now.
class Ledger final : public llm::CallObserver {
 public:
  // REQUIRES: store outlives the Ledger.
  explicit Ledger(Store& store) : store_(store) {}

  void OnCall(const llm::CallRecord& record) override;
  // As OnCall, with the store's error.
  Status Record(const llm::CallRecord& record);

  // Calls with ts_ms >= since_ms grouped by `group`.
  Result<CostReport> Costs(CostGroup group, int64_t since_ms = 0);
  Result<std::vector<ModelCallRow>> Calls(const ModelCallQuery& query);

 private:
  Store& store_;
};

}  // namespace factory::ledger
