#pragma once
// What the router reports about every call, and the two seams later modules plug into:
//  - CallObserver: the ledger (and metrics) receive one CallRecord per routed call;
//  - CallAdmission: budgets reserve a worst-case cost before each attempt goes out and settle
//    the actual cost after it.
// Neither needs anything from the store here; the llm module has no store dependency.

#include <cstdint>
#include <string>

#include "core/result.h"
#include "llm/models_config.h"
#include "llm/types.h"

namespace factory::llm {

// Who a call is made for; copied verbatim into the CallRecord. All fields optional.
struct CallContext {
  std::string run_id;
  std::string task_id;
  std::string attempt_id;
  std::string agent;
  std::string purpose;  // free text, e.g. "tool_loop", "review", "gateway"
  // Absolute time (ms since epoch, on the router's clock) after which the router starts no new
  // attempt and sleeps no backoff; 0 = none. An attempt in flight is bounded by the provider's
  // timeout, not by this.
  int64_t deadline_ms = 0;
};

// A model on a provider: what the router tries, and what breakers and budgets are keyed on.
struct Deployment {
  const ModelSpec* model = nullptr;  // owned by the Router's ModelsConfig
  const ProviderConfig* provider = nullptr;
  std::string alias;  // the target this deployment was resolved from, "" for a direct model

  // "provider/model_name", stable across runs.
  std::string key() const { return provider->name + "/" + model->name; }
};

// One routed call (all its attempts, fallbacks and backoffs), success or failure.
struct CallRecord {
  CallContext context;
  std::string kind;      // "chat", "chat_stream", "embed"
  std::string provider;  // of the deployment that answered (or was tried last)
  std::string model;     // configured model name
  std::string model_id;  // the provider's model id
  std::string alias;
  // Summed over the call's attempts: the answer's usage plus what failed attempts were billed
  // for (CallError::usage; usually zero). Zero on a cache hit.
  Usage usage;
  double cost_usd = 0;  // usage x prices, per attempt's model; 0 on a cache hit
  // How much the attempts' actual costs passed their budget reservations (the worst case was an
  // underestimate; the BudgetGuard also records it as a `budget.overrun` event); 0 normally,
  // and when no CallAdmission reserved anything.
  double overrun_usd = 0;
  int64_t started_at_ms = 0;
  int64_t latency_ms = 0;                   // whole call, including backoff sleeps
  ErrorCode status = ErrorCode::kInternal;  // meaningful only when !ok
  bool ok = false;
  int http_status = 0;
  int attempts = 0;  // requests actually sent
  int retries = 0;   // attempts - 1 (0 when nothing was sent)
  bool cache_hit = false;
  std::string error;  // redacted; "" on success

  std::string status_name() const { return ok ? "ok" : std::string(ErrorCodeName(status)); }
};

// Receives every CallRecord, synchronously on the calling thread, after the call finished.
// Implementations must be thread-safe, fast, and must not throw.
class CallObserver {
 public:
  virtual ~CallObserver() = default;
  virtual void OnCall(const CallRecord& record) = 0;
};

// Budget hook. Before each attempt the router asks for a reservation of the attempt's
// worst-case cost (estimated prompt tokens + max output tokens at the deployment's prices);
// after it, it settles the reservation with the actual cost (0 for a failed attempt).
// A Reserve() error ends the whole call with that error (normally kResourceExhausted): no
// fallback, since a budget does not get larger on another provider.
// Implementations must be thread-safe.
class CallAdmission {
 public:
  virtual ~CallAdmission() = default;
  virtual Result<int64_t> Reserve(const CallContext& context, const Deployment& deployment,
                                  double worst_case_usd) = 0;
  virtual void Settle(int64_t reservation_id, double actual_usd) = 0;
};

}  // namespace factory::llm
