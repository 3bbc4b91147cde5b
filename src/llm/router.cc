#include "llm/router.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <set>
#include <thread>

namespace factory::llm {
namespace {

int64_t ElapsedSince(const Clock& clock, int64_t start_ms) {
  return std::max<int64_t>(0, clock.NowMillis() - start_ms);
}

// Whether a failure says the deployment is unhealthy (counts toward its breaker).
bool CountsAgainstBreaker(const CallError& error) {
  if (error.http_status == 429) return false;
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kDeadlineExceeded;
}

void FillRecordFrom(const Deployment& deployment, CallRecord& record) {
  record.provider = deployment.provider->name;
  record.model = deployment.model->name;
  record.model_id = deployment.model->model_id;
  record.alias = deployment.alias;
}

}  // namespace

Sleeper RealSleeper() {
  return [](int64_t ms) {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  };
}

int64_t EstimatePromptTokens(const ChatRequest& request) {
  size_t chars = 0;
  int64_t overhead = 3;
  for (const Message& message : request.messages) {
    chars += message.content.size();
    for (const ToolCall& call : message.tool_calls) {
      chars += call.name.size() + call.arguments_json.size() + call.id.size();
    }
    overhead += 4;
  }
  for (const ToolSpec& tool : request.tools) {
    chars += tool.name.size() + tool.description.size() + tool.parameters_json_schema.size();
    overhead += 8;
  }
  return static_cast<int64_t>((chars + 3) / 4) + overhead;
}

double WorstCaseCostUsd(const ModelSpec& model, const ChatRequest& request) {
  Usage usage;
  usage.input_tokens = EstimatePromptTokens(request);
  usage.output_tokens = request.max_tokens
                            ? std::min<int64_t>(*request.max_tokens, model.max_output_tokens)
                            : model.max_output_tokens;
  // Worst case: no cache discount, and an input price at least the cache-write price.
  ModelSpec priced = model;
  priced.input_per_mtok = std::max(model.input_per_mtok, model.cache_write_per_mtok);
  return CostUsd(priced, usage);
}

Result<std::unique_ptr<Router>> Router::Create(ModelsConfig config, RouterOptions options) {
  if (config.retry.max_attempts < 1) return InvalidArgument("retry.max_attempts must be >= 1");
  std::unique_ptr<Router> router(new Router(std::move(config), std::move(options)));
  return router;
}

Router::Router(ModelsConfig config, RouterOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : SystemClock()),
      breakers_(config_.breaker, clock_) {
  if (!options_.sleeper) options_.sleeper = RealSleeper();
  if (!options_.provider_factory) {
    options_.provider_factory = [](const ProviderConfig& provider) {
      return MakeProvider(provider);
    };
  }
  for (const ProviderConfig& provider : config_.providers) {
    if (!provider.available) continue;
    providers_[provider.name] = options_.provider_factory(provider);
    if (provider.rpm > 0 || provider.tpm > 0) {
      limiters_[provider.name] = std::make_unique<RateLimiter>(provider.rpm, provider.tpm, clock_);
    }
  }
  cache_ = options_.cache;
  if (cache_ == nullptr && config_.cache.enabled) {
    owned_cache_ = MakeMemoryResponseCache(config_.cache.max_entries);
    cache_ = owned_cache_.get();
  }
  rng_.seed(options_.seed != 0 ? options_.seed : std::random_device{}());
}

Router::~Router() = default;

Provider* Router::provider(std::string_view name) const {
  auto it = providers_.find(std::string(name));
  return it == providers_.end() ? nullptr : it->second.get();
}

RateLimiter* Router::LimiterFor(const std::string& provider) const {
  auto it = limiters_.find(provider);
  return it == limiters_.end() ? nullptr : it->second.get();
}

BreakerState Router::BreakerStateOf(const std::string& deployment_key) {
  return breakers_.Get(deployment_key).state();
}

int64_t Router::Jitter(int64_t nominal_ms) {
  if (nominal_ms <= 1) return std::max<int64_t>(0, nominal_ms);
  std::lock_guard lock(rng_mu_);
  std::uniform_int_distribution<int64_t> spread(0, nominal_ms / 2);
  return nominal_ms - nominal_ms / 2 + spread(rng_);  // equal jitter: [nominal/2, nominal]
}

Result<std::vector<Deployment>> Router::Resolve(const std::vector<std::string>& targets) const {
  if (targets.empty()) return InvalidArgument("no model or alias given");
  std::vector<Deployment> out;
  std::set<std::string> seen;
  std::vector<std::string> reasons;
  for (const std::string& target : targets) {
    std::vector<std::string> model_names;
    std::string alias;
    if (const AliasConfig* found = config_.FindAlias(target)) {
      model_names = found->models;
      alias = found->name;
    } else if (config_.FindModel(target) != nullptr) {
      model_names = {target};
    } else {
      return NotFound("unknown model or alias '" + target + "' (see " + config_.path + ")");
    }
    for (const std::string& model_name : model_names) {
      const ModelSpec* model = config_.FindModel(model_name);
      const ProviderConfig* provider = config_.FindProvider(model->provider);
      if (!provider->available || providers_.find(provider->name) == providers_.end()) {
        reasons.push_back(model_name + " (" + provider->name + ": " + provider->unavailable_reason +
                          ")");
        continue;
      }
      Deployment deployment{model, provider, alias};
      if (seen.insert(deployment.key()).second) out.push_back(std::move(deployment));
    }
  }
  if (out.empty()) {
    std::string joined;
    for (const auto& reason : reasons) joined += (joined.empty() ? "" : "; ") + reason;
    std::string names;
    for (const auto& target : targets) names += (names.empty() ? "" : ", ") + target;
    return FailedPrecondition("no available deployment for [" + names + "]: " + joined);
  }
  return out;
}

Result<Router::Limits> Router::LimitsFor(const std::vector<std::string>& targets) const {
  FACTORY_ASSIGN_OR_RETURN(std::vector<Deployment> deployments, Resolve(targets));
  Limits limits;
  for (const Deployment& deployment : deployments) {
    const int64_t window = deployment.model->context_window;
    if (window > 0 && (limits.context_window == 0 || window < limits.context_window)) {
      limits.context_window = window;
    }
    const int64_t output = deployment.model->max_output_tokens;
    if (limits.max_output_tokens == 0 || output < limits.max_output_tokens) {
      limits.max_output_tokens = output;
    }
  }
  return limits;
}

void Router::Report(CallRecord& record) {
  record.retries = std::max(0, record.attempts - 1);
  if (options_.observer != nullptr) options_.observer->OnCall(record);
}

template <typename Response>
CallResult<Response> Router::Run(
    const std::vector<Deployment>& deployments, int64_t estimated_tokens,
    const std::function<double(const ModelSpec&)>& worst_case_usd, const CallContext& context,
    CallRecord& record, const std::function<bool()>& may_fall_back,
    const std::function<CallResult<Response>(const Deployment&, Provider&)>& call) {
  const RetryConfig& retry = config_.retry;
  std::vector<bool> dropped(deployments.size(), false);
  std::optional<CallError> last_error;
  int64_t limiter_held_ms = 0;  // slept waiting for local rate limits, over the whole call

  auto fail = [&](CallError error) -> CallResult<Response> {
    record.ok = false;
    record.status = error.code;
    record.http_status = error.http_status;
    record.error = error.message;
    record.latency_ms = ElapsedSince(clock_, record.started_at_ms);
    Report(record);
    return std::unexpected(std::move(error));
  };

  // True when `wait_ms` from now is past the caller's deadline.
  auto past_deadline = [&](int64_t wait_ms) {
    return context.deadline_ms > 0 && clock_.NowMillis() + wait_ms >= context.deadline_ms;
  };
  auto deadline_error = [&]() {
    CallError error = last_error.value_or(CallError{ErrorCode::kDeadlineExceeded, 0, -1, ""});
    error.message = "call deadline reached after " + std::to_string(record.attempts) +
                    " attempt(s)" + (error.message.empty() ? "" : ": " + error.message);
    if (!last_error) error.code = ErrorCode::kDeadlineExceeded;
    return error;
  };

  for (int pass = 0; pass < retry.max_attempts; ++pass) {
    bool retry_worthwhile = false;  // some deployment failed in a way a later pass may fix
    int sent_this_pass = 0;
    int64_t wait_at_least_ms = 0;  // largest Retry-After / rate-limit wait seen this pass
    int64_t earliest_probe_ms = std::numeric_limits<int64_t>::max();

    for (size_t index = 0; index < deployments.size(); ++index) {
      if (dropped[index]) continue;
      const Deployment& deployment = deployments[index];
      FillRecordFrom(deployment, record);
      CircuitBreaker& breaker = breakers_.Get(deployment.key());
      // A Retry-After from an earlier call still holds: skip the deployment this pass (the
      // pass's backoff waits for it when it is not too long), as if it had just answered 429.
      if (const int64_t cooling_ms = breaker.CoolingUntilMs() - clock_.NowMillis();
          cooling_ms > 0) {
        if (past_deadline(0)) return fail(deadline_error());
        if (cooling_ms > retry.max_retry_after_ms) {
          dropped[index] = true;
        } else {
          retry_worthwhile = true;
          wait_at_least_ms = std::max(wait_at_least_ms, cooling_ms);
        }
        last_error = CallError{ErrorCode::kUnavailable, 429, cooling_ms,
                               deployment.key() + ": cooling down after a rate limit (" +
                                   std::to_string(cooling_ms) + " ms left of its Retry-After)"};
        continue;
      }
      if (!breaker.Allow()) {
        earliest_probe_ms = std::min(earliest_probe_ms, breaker.ProbeAtMs());
        if (!last_error) {
          last_error = CallError{ErrorCode::kUnavailable, 0, -1,
                                 deployment.key() + ": circuit breaker open"};
        }
        continue;
      }

      if (past_deadline(0)) {
        breaker.RecordNeutral();
        return fail(deadline_error());
      }

      RateLimiter* limiter = LimiterFor(deployment.provider->name);
      if (limiter != nullptr) {
        int64_t wait_ms = limiter->TryAcquire(estimated_tokens);
        // Waits for the bucket only while the call's total wait stays within
        // retry.max_retry_after_ms; past that the caller hears it (a retryable rate-limit error,
        // 429 with Retry-After on the gateway) instead of being held silently.
        for (int waits = 0; wait_ms > 0 && limiter_held_ms + wait_ms <= retry.max_retry_after_ms &&
                            !past_deadline(wait_ms) && waits < 100;
             ++waits) {
          options_.sleeper(wait_ms);
          limiter_held_ms += wait_ms;
          wait_ms = limiter->TryAcquire(estimated_tokens);
        }
        if (wait_ms > 0) {
          breaker.RecordNeutral();
          dropped[index] = true;  // waiting longer for it is what the caller must decide
          last_error = CallError{ErrorCode::kUnavailable, 429, wait_ms,
                                 deployment.provider->name +
                                     ": local rate limit (rpm/tpm) reached; free again in " +
                                     std::to_string(wait_ms) + " ms"};
          continue;
        }
      }

      int64_t reservation = -1;
      double reserved_usd = 0;
      if (options_.admission != nullptr) {
        reserved_usd = worst_case_usd(*deployment.model);
        auto reserved = options_.admission->Reserve(context, deployment, reserved_usd);
        if (!reserved) {
          breaker.RecordNeutral();
          if (limiter != nullptr) limiter->Settle(estimated_tokens, 0);
          const Error& error = reserved.error();
          return fail(CallError{error.code, 0, -1, error.message});
        }
        reservation = *reserved;
      }

      ++record.attempts;
      ++sent_this_pass;
      auto provider_it = providers_.find(deployment.provider->name);
      CallResult<Response> result = call(deployment, *provider_it->second);

      if (result) {
        breaker.RecordSuccess();
        const double cost = CostUsd(*deployment.model, result->usage);
        if (limiter != nullptr) limiter->Settle(estimated_tokens, result->usage.total_tokens());
        if (options_.admission != nullptr) {
          options_.admission->Settle(reservation, cost);
          record.overrun_usd += std::max(0.0, cost - reserved_usd);
        }
        result->model_name = deployment.model->name;
        result->cost_usd = cost;
        record.ok = true;
        record.usage += result->usage;
        record.cost_usd += cost;
        record.http_status = result->http_status;
        record.latency_ms = ElapsedSince(clock_, record.started_at_ms);
        Report(record);
        return result;
      }

      CallError error = std::move(result.error());
      // A failed attempt costs what the provider billed before it failed (usually nothing). A
      // stream cut before the provider reported its input (OpenAI reports usage at the end)
      // has read the prompt all the same: the estimate stands in for it.
      if (!error.usage.empty() && error.usage.input_tokens == 0) {
        error.usage.input_tokens = estimated_tokens;
        error.message += " (input tokens estimated from the prompt)";
      }
      const double billed = error.usage.empty() ? 0 : CostUsd(*deployment.model, error.usage);
      record.usage += error.usage;
      record.cost_usd += billed;
      if (limiter != nullptr) limiter->Settle(estimated_tokens, error.usage.total_tokens());
      if (options_.admission != nullptr) {
        options_.admission->Settle(reservation, billed);
        record.overrun_usd += std::max(0.0, billed - reserved_usd);
      }
      if (error.retry_after_ms > 0) breaker.CoolUntil(clock_.NowMillis() + error.retry_after_ms);
      if (CountsAgainstBreaker(error)) {
        breaker.RecordFailure();
      } else {
        breaker.RecordNeutral();
      }
      last_error = error;
      if (!error.fallback_allowed() || !may_fall_back()) return fail(std::move(error));
      if (error.retryable()) {
        if (error.retry_after_ms > retry.max_retry_after_ms) {
          dropped[index] = true;  // asks for a longer wait than we are willing to make
        } else {
          retry_worthwhile = true;
          wait_at_least_ms = std::max(wait_at_least_ms, error.retry_after_ms);
        }
      } else {
        dropped[index] = true;  // 401/403/404/not configured: this deployment will not work
      }
    }

    if (!retry_worthwhile || pass + 1 >= retry.max_attempts) break;
    if (sent_this_pass == 0 && earliest_probe_ms != std::numeric_limits<int64_t>::max() &&
        wait_at_least_ms == 0) {
      break;  // only open breakers stood in the way: fail fast rather than wait them out
    }
    const int64_t nominal =
        std::min<int64_t>(retry.max_ms, retry.base_ms * (int64_t{1} << std::min(pass, 30)));
    const int64_t delay = std::max(Jitter(nominal), wait_at_least_ms);
    // Sleep only if some deployment will be callable after it (breakers that opened during
    // this pass may have closed the door on all of them).
    const int64_t wake_at = clock_.NowMillis() + delay;
    bool worth_waiting = false;
    for (size_t index = 0; index < deployments.size() && !worth_waiting; ++index) {
      if (dropped[index]) continue;
      const int64_t probe_at = breakers_.Get(deployments[index].key()).ProbeAtMs();
      worth_waiting = probe_at == 0 || probe_at <= wake_at;
    }
    if (!worth_waiting) break;
    if (past_deadline(delay)) return fail(deadline_error());
    options_.sleeper(delay);
  }

  CallError error = last_error.value_or(
      CallError{ErrorCode::kUnavailable, 0, -1, "no deployment could be tried"});
  if (error.code == ErrorCode::kUnavailable && record.attempts == 0 && error.retry_after_ms < 0) {
    // Every deployment was behind an open breaker: tell the caller when to come back.
    int64_t probe = std::numeric_limits<int64_t>::max();
    for (const Deployment& deployment : deployments) {
      const int64_t at = breakers_.Get(deployment.key()).ProbeAtMs();
      if (at > 0) probe = std::min(probe, at);
    }
    if (probe != std::numeric_limits<int64_t>::max()) {
      error.retry_after_ms = std::max<int64_t>(0, probe - clock_.NowMillis());
      error.message = "all deployments unavailable (circuit breakers open): " + error.message;
    }
  }
  if (record.attempts > 1 || deployments.size() > 1) {
    error.message = "after " + std::to_string(record.attempts) + " attempt(s) over " +
                    std::to_string(deployments.size()) + " deployment(s): " + error.message;
  }
  return fail(std::move(error));
}

namespace {

void ReplayAsDeltas(const ChatResponse& response, const StreamCallback& on_delta) {
  if (!on_delta) return;
  if (!response.text.empty()) {
    on_delta(StreamDelta{StreamDelta::Kind::kText, response.text, 0, "", "", ""});
  }
  for (size_t i = 0; i < response.tool_calls.size(); ++i) {
    const ToolCall& call = response.tool_calls[i];
    on_delta(StreamDelta{StreamDelta::Kind::kToolCall, "", static_cast<int>(i), call.id, call.name,
                         call.arguments_json});
  }
}

}  // namespace

CallResult<ChatResponse> Router::Chat(const std::vector<std::string>& targets, ChatRequest request,
                                      const CallContext& context) {
  return ChatStream(targets, std::move(request), StreamCallback(), context);
}

CallResult<ChatResponse> Router::ChatStream(const std::vector<std::string>& targets,
                                            ChatRequest request, const StreamCallback& on_delta,
                                            const CallContext& context) {
  const bool streaming = static_cast<bool>(on_delta);
  CallRecord record;
  record.context = context;
  record.kind = streaming ? "chat_stream" : "chat";
  record.started_at_ms = clock_.NowMillis();
  request.stream = streaming;

  auto deployments = Resolve(targets);
  if (!deployments) {
    record.status = deployments.error().code;
    record.error = deployments.error().message;
    Report(record);
    return std::unexpected(CallError{deployments.error().code, 0, -1, deployments.error().message});
  }

  std::string cache_key;
  if (cache_ != nullptr && IsCacheable(request)) {
    cache_key = CacheKey(request, targets);
    if (auto hit = cache_->Get(cache_key)) {
      ChatResponse response = std::move(*hit);
      response.cache_hit = true;
      response.cost_usd = 0;
      response.retries = 0;
      response.latency_ms = 0;
      ReplayAsDeltas(response, on_delta);
      record.ok = true;
      record.cache_hit = true;
      record.provider = response.provider;
      record.model = response.model_name;
      record.model_id = response.model;
      record.alias = response.alias;
      record.latency_ms = ElapsedSince(clock_, record.started_at_ms);
      Report(record);
      return response;
    }
  }

  const int64_t estimated_tokens = EstimatePromptTokens(request);
  bool delivered = false;
  StreamCallback forward;
  if (streaming) {
    forward = [&](const StreamDelta& delta) {
      delivered = true;
      on_delta(delta);
    };
  }
  std::function<CallResult<ChatResponse>(const Deployment&, Provider&)> call =
      [&](const Deployment& deployment, Provider& provider) -> CallResult<ChatResponse> {
    ChatRequest attempt = request;
    attempt.model = deployment.model->model_id;
    if (attempt.max_tokens) {
      attempt.max_tokens = static_cast<int>(
          std::min<int64_t>(*attempt.max_tokens, deployment.model->max_output_tokens));
    } else if (deployment.provider->kind == ProviderKind::kAnthropic) {
      attempt.max_tokens = static_cast<int>(deployment.model->max_output_tokens);
    }
    auto result = streaming ? provider.ChatStream(attempt, forward) : provider.Chat(attempt);
    if (result) result->alias = deployment.alias;
    return result;
  };
  auto result = Run<ChatResponse>(
      *deployments, estimated_tokens,
      [&](const ModelSpec& model) { return WorstCaseCostUsd(model, request); }, context, record,
      [&] { return !delivered; }, call);
  if (result) {
    result->retries = record.retries;
    if (!cache_key.empty()) cache_->Put(cache_key, *result);
  }
  return result;
}

CallResult<EmbeddingResponse> Router::Embed(const std::vector<std::string>& targets,
                                            EmbeddingRequest request, const CallContext& context) {
  CallRecord record;
  record.context = context;
  record.kind = "embed";
  record.started_at_ms = clock_.NowMillis();
  auto deployments = Resolve(targets);
  if (!deployments) {
    record.status = deployments.error().code;
    record.error = deployments.error().message;
    Report(record);
    return std::unexpected(CallError{deployments.error().code, 0, -1, deployments.error().message});
  }
  size_t chars = 0;
  for (const auto& input : request.inputs) chars += input.size();
  const int64_t estimated_tokens = static_cast<int64_t>((chars + 3) / 4);
  std::function<CallResult<EmbeddingResponse>(const Deployment&, Provider&)> call =
      [&](const Deployment& deployment, Provider& provider) {
        EmbeddingRequest attempt = request;
        attempt.model = deployment.model->model_id;
        return provider.Embed(attempt);
      };
  return Run<EmbeddingResponse>(
      *deployments, estimated_tokens,
      [&](const ModelSpec& model) {
        return CostUsd(model, Usage{estimated_tokens, 0, 0, 0});
      },
      context, record, [] { return true; }, call);
}

CallResult<ForwardResponse> Router::Forward(
    const std::vector<Deployment>& deployments, std::string kind, int64_t estimated_tokens,
    const std::function<double(const ModelSpec&)>& worst_case_usd, const CallContext& context,
    const std::function<bool()>& may_fall_back, const ForwardAttempt& attempt) {
  CallRecord record;
  record.context = context;
  record.kind = std::move(kind);
  record.started_at_ms = clock_.NowMillis();
  if (deployments.empty()) {
    record.status = ErrorCode::kFailedPrecondition;
    record.error = "no deployment to forward to";
    Report(record);
    return MakeCallError(ErrorCode::kFailedPrecondition, record.error);
  }
  std::function<CallResult<ForwardResponse>(const Deployment&, Provider&)> call =
      [&](const Deployment& deployment, Provider&) { return attempt(deployment); };
  return Run<ForwardResponse>(deployments, estimated_tokens, worst_case_usd, context, record,
                              may_fall_back, call);
}

Result<AliasChoice> Router::ChooseAlias(std::string_view task_type, std::string_view complexity,
                                        int attempt_number, std::string_view ceiling) const {
  if (attempt_number < 1) return InvalidArgument("attempt_number must be >= 1");
  int ceiling_rank = std::numeric_limits<int>::max();
  if (!ceiling.empty()) {
    ceiling_rank = config_.AliasRank(ceiling);
    if (ceiling_rank < 0) {
      return InvalidArgument("unknown ceiling alias '" + std::string(ceiling) + "'");
    }
  }
  FACTORY_ASSIGN_OR_RETURN(std::vector<std::string> chain, config_.ChainFor(task_type, complexity));
  AliasChoice choice;
  int top_rank = -1;
  for (const std::string& alias : chain) {
    const int rank = config_.AliasRank(alias);
    if (rank > ceiling_rank) continue;
    if (!choice.ladder.empty() && rank <= top_rank) continue;  // not an escalation
    const AliasConfig* config = config_.FindAlias(alias);
    const bool available = std::any_of(config->models.begin(), config->models.end(),
                                       [&](const std::string& model_name) {
                                         const ModelSpec* model = config_.FindModel(model_name);
                                         return providers_.contains(model->provider);
                                       });
    if (!available) continue;
    choice.ladder.push_back(alias);
    top_rank = rank;
  }
  if (choice.ladder.empty()) {
    std::string joined;
    for (const auto& alias : chain) joined += (joined.empty() ? "" : ", ") + alias;
    return FailedPrecondition("no available alias for task_type '" + std::string(task_type) +
                              "', complexity '" + std::string(complexity) + "' within ceiling '" +
                              std::string(ceiling) + "' (chain: " + joined + ")");
  }
  choice.step = std::min<int>(attempt_number - 1, static_cast<int>(choice.ladder.size()) - 1);
  choice.alias = choice.ladder[static_cast<size_t>(choice.step)];
  choice.at_top = choice.step + 1 == static_cast<int>(choice.ladder.size());
  return choice;
}

}  // namespace factory::llm
