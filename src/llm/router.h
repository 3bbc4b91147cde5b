#pragma once
// The model router: resolves aliases to deployments (a model on a provider) and makes each call
// reliable and metered.
//
// For a call on targets [alias or model name, ...]:
//  1. the targets are resolved to deployments, in order: each alias's models in order, a model
//     name as itself; deployments on unavailable providers (key unset) are skipped; duplicates
//     are dropped;
//  2. a temperature-0 chat request is looked up in the response cache (a hit costs 0);
//  3. deployments are tried in order. Each attempt passes the deployment's cool-down (a
//     Retry-After it answered, to this call or an earlier one, skips it until it has passed),
//     its circuit breaker, the provider's rate limiter (waiting for tokens while the call's
//     total wait stays within retry.max_retry_after_ms, else moving on with a retryable
//     rate-limit error: http_status 429 and retry_after_ms, never a silent longer hold) and the
//     CallAdmission (budgets), then goes out. On a retryable failure (429, 5xx, timeout,
//     connection error, malformed answer) the next deployment is tried at once; 401/403/404
//     drop the deployment for this call; 400-class errors and budget refusals end the call;
//  4. when a whole pass over the deployments failed retryably, the router sleeps (exponential
//     backoff with equal jitter, never less than the largest Retry-After or cool-down seen) and
//     makes another pass, up to retry.max_attempts passes. A Retry-After or cool-down above
//     retry.max_retry_after_ms drops the deployment instead of waiting;
//  5. one CallRecord goes to the CallObserver, with overrun_usd when an attempt cost more than
//     the worst case it reserved.
// A streamed call falls back only while nothing has reached the caller's callback yet.
//
// Thread-safe: one Router serves all agents of a process.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "llm/breaker.h"
#include "llm/call_record.h"
#include "llm/models_config.h"
#include "llm/provider.h"
#include "llm/rate_limiter.h"
#include "llm/response_cache.h"
#include "llm/types.h"

namespace factory::llm {

// Blocks for the given milliseconds. Tests inject one that records and advances a FakeClock.
using Sleeper = std::function<void(int64_t ms)>;
Sleeper RealSleeper();

struct RouterOptions {
  const Clock* clock = nullptr;        // default SystemClock(); must outlive the router
  Sleeper sleeper;                     // default RealSleeper()
  uint64_t seed = 0;                   // jitter; 0 = random
  CallObserver* observer = nullptr;    // not owned; may be null
  CallAdmission* admission = nullptr;  // not owned; may be null
  // Not owned. When null and config.cache.enabled, the router keeps an in-memory LRU cache.
  ResponseCache* cache = nullptr;
  // Creates the provider for each available provider config; default MakeProvider().
  ProviderFactory provider_factory;
};

// What one attempt of a pass-through call (Router::Forward) reports: the caller moved the bytes
// itself; the router needs the usage and status for pricing, budgets and the CallRecord.
struct ForwardResponse {
  Usage usage;
  int http_status = 0;
  // Filled by the Router, as for ChatResponse.
  std::string model_name;
  double cost_usd = 0;
};
// One attempt of a pass-through call on a deployment.
using ForwardAttempt = std::function<CallResult<ForwardResponse>(const Deployment&)>;

// The cost pyramid's choice for one attempt of a task.
struct AliasChoice {
  std::string alias;
  int step = 0;                     // index in `ladder`
  std::vector<std::string> ladder;  // the escalation ladder: available, ceiling-capped
  bool at_top = false;              // no further escalation possible
};

class Router {
 public:
  static Result<std::unique_ptr<Router>> Create(ModelsConfig config, RouterOptions options = {});
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // A routed completion. request.model is ignored (set per deployment); request.max_tokens is
  // capped at the model's max_output_tokens. On success the response's alias, model_name,
  // cost_usd, cache_hit and retries are filled.
  CallResult<ChatResponse> Chat(const std::vector<std::string>& targets, ChatRequest request,
                                const CallContext& context = {});
  CallResult<ChatResponse> ChatStream(const std::vector<std::string>& targets, ChatRequest request,
                                      const StreamCallback& on_delta,
                                      const CallContext& context = {});
  CallResult<EmbeddingResponse> Embed(const std::vector<std::string>& targets,
                                      EmbeddingRequest request, const CallContext& context = {});

  // A routed call whose wire format the caller handles (the gateway forwards a client's request
  // body and streams the answer back itself): the same breakers, rate limits, admission,
  // fallback, backoff and CallRecord (of `kind`) as Chat(), over `deployments` (from Resolve(),
  // possibly filtered). `estimated_tokens` feeds the rate limiters, `worst_case_usd` the
  // admission. `may_fall_back` is asked after a failed attempt: false once the caller has passed
  // part of an answer on (a stream already reaching its client cannot switch deployments).
  CallResult<ForwardResponse> Forward(const std::vector<Deployment>& deployments, std::string kind,
                                      int64_t estimated_tokens,
                                      const std::function<double(const ModelSpec&)>& worst_case_usd,
                                      const CallContext& context,
                                      const std::function<bool()>& may_fall_back,
                                      const ForwardAttempt& attempt);

  // The deployments `targets` resolve to, available ones only, in try order. kNotFound for an
  // unknown target; kFailedPrecondition (with each provider's reason) when none is available.
  Result<std::vector<Deployment>> Resolve(const std::vector<std::string>& targets) const;

  // The smallest context window (and max output) among the deployments `targets` resolve to:
  // what a caller must fit a transcript into when it cannot know which deployment will answer.
  // A model with context_window 0 (unknown) is skipped; 0 when all are unknown.
  struct Limits {
    int64_t context_window = 0;
    int64_t max_output_tokens = 0;
  };
  Result<Limits> LimitsFor(const std::vector<std::string>& targets) const;

  // The cost pyramid: the alias for attempt `attempt_number` (1-based) of a task. The ladder is
  // the chain of the first routing rule matching (task_type, complexity), keeping only aliases
  // with an available deployment, ranked no higher than `ceiling` ("" = no ceiling), and each
  // dearer (later in `aliases:`) than the one before it (a cheaper alias after a dearer one is a
  // last resort used only when nothing before it is available). Attempt 1 gets the first rung,
  // each further attempt one rung up, staying at the top once reached.
  // Errors: kInvalidArgument (attempt < 1, unknown ceiling), kNotFound (no rule matches),
  // kFailedPrecondition (no alias of the chain is available).
  Result<AliasChoice> ChooseAlias(std::string_view task_type, std::string_view complexity,
                                  int attempt_number, std::string_view ceiling = "") const;

  const ModelsConfig& config() const { return config_; }
  // The breaker of a deployment key ("provider/model"), for status displays and tests.
  BreakerState BreakerStateOf(const std::string& deployment_key);
  // The provider instance of a configured, available provider; null otherwise.
  Provider* provider(std::string_view name) const;

 private:
  Router(ModelsConfig config, RouterOptions options);

  template <typename Response>
  CallResult<Response> Run(
      const std::vector<Deployment>& deployments, int64_t estimated_tokens,
      const std::function<double(const ModelSpec&)>& worst_case_usd, const CallContext& context,
      CallRecord& record, const std::function<bool()>& may_fall_back,
      const std::function<CallResult<Response>(const Deployment&, Provider&)>& call);
  int64_t Jitter(int64_t nominal_ms);
  RateLimiter* LimiterFor(const std::string& provider) const;
  void Report(CallRecord& record);

  const ModelsConfig config_;
  RouterOptions options_;
  const Clock& clock_;
  std::map<std::string, std::unique_ptr<Provider>> providers_;    // by provider name; immutable
  std::map<std::string, std::unique_ptr<RateLimiter>> limiters_;  // by provider name; immutable
  BreakerSet breakers_;
  std::unique_ptr<ResponseCache> owned_cache_;
  ResponseCache* cache_ = nullptr;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // guarded by rng_mu_
};

// Rough prompt size in tokens (4 characters per token, plus per-message overhead); used for
// rate limiting and worst-case budget reservations before the real count is known.
int64_t EstimatePromptTokens(const ChatRequest& request);

// The most a call can cost on `model`: estimated prompt + max output tokens at its prices.
double WorstCaseCostUsd(const ModelSpec& model, const ChatRequest& request);

}  // namespace factory::llm
