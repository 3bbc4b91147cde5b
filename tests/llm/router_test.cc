// Router behaviour over in-process scripted providers: no sockets, a FakeClock, and a sleeper
// that records what it was asked to wait and advances the clock instead of sleeping.

#include "llm/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <map>

namespace factory::llm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Answers from a per-provider script; records the model ids it was asked for.
class ScriptedProvider final : public Provider {
 public:
  explicit ScriptedProvider(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }

  CallResult<ChatResponse> Chat(const ChatRequest& request) override {
    calls.push_back(request.model);
    requests.push_back(request);
    if (script.empty()) return Reply(request);
    auto next = std::move(script.front());
    script.pop_front();
    if (!next) return std::unexpected(next.error());
    ChatResponse response = *next;
    response.provider = name_;
    response.model = request.model;
    return response;
  }
  CallResult<ChatResponse> ChatStream(const ChatRequest& request,
                                      const StreamCallback& on_delta) override {
    auto result = Chat(request);
    if (result && on_delta) {
      on_delta(StreamDelta{StreamDelta::Kind::kText, result->text, 0, "", "", ""});
    }
    return result;
  }
  CallResult<EmbeddingResponse> Embed(const EmbeddingRequest& request) override {
    calls.push_back(request.model);
    EmbeddingResponse response;
    response.embeddings.assign(request.inputs.size(), {1, 2});
    response.usage.input_tokens = 10;
    return response;
  }
  CallResult<std::vector<std::string>> ListModels() override { return std::vector<std::string>{}; }

  CallResult<ChatResponse> Reply(const ChatRequest& request) {
    ChatResponse response;
    response.text = "default answer";
    response.usage = Usage{100, 10, 0, 0};
    response.provider = name_;
    response.model = request.model;
    return response;
  }

  std::string name_;
  std::deque<CallResult<ChatResponse>> script;
  std::vector<std::string> calls;
  std::vector<ChatRequest> requests;
};

CallResult<ChatResponse> Ok(std::string text, Usage usage = {100, 10, 0, 0}) {
  ChatResponse response;
  response.text = std::move(text);
  response.usage = usage;
  response.http_status = 200;
  return response;
}
CallResult<ChatResponse> Fail(int status, int64_t retry_after_ms = -1) {
  ErrorCode code = ErrorCode::kUnavailable;
  if (status == 400) code = ErrorCode::kInvalidArgument;
  if (status == 401) code = ErrorCode::kPermissionDenied;
  if (status == 0) code = ErrorCode::kDeadlineExceeded;
  return std::unexpected(
      CallError{code, status, retry_after_ms, "scripted " + std::to_string(status)});
}

class RecordingObserver final : public CallObserver {
 public:
  void OnCall(const CallRecord& record) override { records.push_back(record); }
  std::vector<CallRecord> records;
};

constexpr std::string_view kConfig = R"(providers:
  a: {kind: openai, base_url: http://a.invalid/v1, rpm: 0}
  b: {kind: openai, base_url: http://b.invalid/v1}
  c: {kind: anthropic, base_url: http://c.invalid}
  off: {kind: openai, base_url: http://off.invalid/v1, api_key_env: ROUTER_TEST_UNSET_KEY}
models:
  a1: {provider: a, model: a-model, input_per_mtok: 1, output_per_mtok: 2}
  b1: {provider: b, model: b-model, input_per_mtok: 10, output_per_mtok: 20, cached_per_mtok: 1}
  c1: {provider: c, model: c-model, input_per_mtok: 100, output_per_mtok: 200,
       max_output_tokens: 1000}
  off1: {provider: off, model: off-model}
aliases:
  tier/local: [off1]
  tier/fast: [a1, b1]
  tier/mid: [c1]
  tier/top: [b1, c1]
routing:
  - {task_type: review, chain: [tier/mid, tier/top]}
  - {complexity: high, chain: [tier/mid, tier/top, tier/fast]}
  - {chain: [tier/local, tier/fast, tier/mid, tier/top]}
retry: {max_attempts: 3, base_ms: 100, max_ms: 1000, max_retry_after_ms: 5000}
breaker: {failure_threshold: 2, cooldown_s: 10}
cache: {enabled: true, max_entries: 10}
)";

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(std::string(kConfig)); }

  void Build(const std::string& yaml) {
    auto config = ParseModelsConfig(yaml, "router.yaml");
    ASSERT_TRUE(config) << config.error().ToString();
    providers_.clear();
    RouterOptions options;
    options.clock = &clock_;
    options.seed = 42;
    options.sleeper = [this](int64_t ms) {
      sleeps_.push_back(ms);
      clock_.Advance(ms);
    };
    options.observer = &observer_;
    options.admission = admission_;
    options.provider_factory = [this](const ProviderConfig& provider) {
      auto scripted = std::make_unique<ScriptedProvider>(provider.name);
      providers_[provider.name] = scripted.get();
      return scripted;
    };
    auto router = Router::Create(std::move(*config), std::move(options));
    ASSERT_TRUE(router);
    router_ = std::move(*router);
  }

  ChatRequest Question(std::string text = "hi") {
    ChatRequest request;
    request.messages.push_back(Message::User(std::move(text)));
    return request;
  }

  FakeClock clock_;
  std::vector<int64_t> sleeps_;
  RecordingObserver observer_;
  CallAdmission* admission_ = nullptr;
  std::map<std::string, ScriptedProvider*> providers_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterTest, ResolvesAliasesSkippingUnavailableProviders) {
  auto deployments = router_->Resolve({"tier/local", "tier/fast", "c1", "b1"});
  ASSERT_TRUE(deployments) << deployments.error().ToString();
  std::vector<std::string> keys;
  for (const auto& deployment : *deployments) keys.push_back(deployment.key());
  EXPECT_THAT(keys, ElementsAre("a/a1", "b/b1", "c/c1"));  // off skipped, b1 deduplicated
  EXPECT_EQ((*deployments)[0].alias, "tier/fast");
  EXPECT_EQ((*deployments)[2].alias, "");

  auto none = router_->Resolve({"tier/local"});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(none.error().message, HasSubstr("ROUTER_TEST_UNSET_KEY"));
  EXPECT_EQ(router_->Resolve({"nope"}).error().code, ErrorCode::kNotFound);
}

TEST_F(RouterTest, LimitsAreTheSmallestAmongDeployments) {
  auto limits = router_->LimitsFor({"tier/top"});
  ASSERT_TRUE(limits) << limits.error().ToString();
  EXPECT_EQ(limits->context_window, 0);  // neither b1 nor c1 declares one
  EXPECT_EQ(limits->max_output_tokens, 1'000);
  EXPECT_EQ(router_->LimitsFor({"nope"}).error().code, ErrorCode::kNotFound);
}

TEST_F(RouterTest, SuccessFillsCostAndRecord) {
  providers_["a"]->script.push_back(Ok("hello", Usage{1'000, 500, 0, 0}));
  CallContext context{"run1", "task1", "att1", "coder", "test"};
  auto response = router_->Chat({"tier/fast"}, Question(), context);
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->text, "hello");
  EXPECT_EQ(response->alias, "tier/fast");
  EXPECT_EQ(response->model_name, "a1");
  EXPECT_EQ(response->model, "a-model");
  EXPECT_DOUBLE_EQ(response->cost_usd, (1'000 * 1 + 500 * 2) / 1e6);
  EXPECT_THAT(providers_["a"]->calls, ElementsAre("a-model"));
  ASSERT_EQ(observer_.records.size(), 1u);
  const CallRecord& record = observer_.records[0];
  EXPECT_TRUE(record.ok);
  EXPECT_EQ(record.status_name(), "ok");
  EXPECT_EQ(record.context.task_id, "task1");
  EXPECT_EQ(record.provider, "a");
  EXPECT_EQ(record.model, "a1");
  EXPECT_EQ(record.alias, "tier/fast");
  EXPECT_EQ(record.usage.input_tokens, 1'000);
  EXPECT_DOUBLE_EQ(record.cost_usd, response->cost_usd);
  EXPECT_EQ(record.attempts, 1);
  EXPECT_EQ(record.retries, 0);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(RouterTest, FallsBackAlongTheChainInOrder) {
  providers_["a"]->script.push_back(Fail(500));
  providers_["b"]->script.push_back(Fail(429));
  providers_["c"]->script.push_back(Ok("from c"));
  auto response = router_->Chat({"tier/fast", "tier/mid"}, Question());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->text, "from c");
  EXPECT_EQ(response->provider, "c");
  EXPECT_EQ(response->retries, 2);
  EXPECT_THAT(providers_["a"]->calls, ElementsAre("a-model"));
  EXPECT_THAT(providers_["b"]->calls, ElementsAre("b-model"));
  EXPECT_THAT(providers_["c"]->calls, ElementsAre("c-model"));
  EXPECT_TRUE(sleeps_.empty());  // fallback to another deployment does not wait
  ASSERT_EQ(observer_.records.size(), 1u);
  EXPECT_EQ(observer_.records[0].attempts, 3);
  EXPECT_EQ(observer_.records[0].alias, "tier/mid");
}

TEST_F(RouterTest, BadRequestIsNotRetriedAnywhere) {
  providers_["a"]->script.push_back(Fail(400));
  auto response = router_->Chat({"tier/fast"}, Question());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(providers_["b"]->calls.empty());
  ASSERT_EQ(observer_.records.size(), 1u);
  EXPECT_FALSE(observer_.records[0].ok);
  EXPECT_EQ(observer_.records[0].status, ErrorCode::kInvalidArgument);
}

TEST_F(RouterTest, AuthFailureFallsBackButIsNotRetried) {
  providers_["a"]->script = {};
  providers_["a"]->script.push_back(Fail(401));
  providers_["b"]->script.push_back(Fail(503));
  providers_["b"]->script.push_back(Ok("second pass"));
  auto response = router_->Chat({"tier/fast"}, Question());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(providers_["a"]->calls.size(), 1u);  // dropped after the 401
  EXPECT_EQ(providers_["b"]->calls.size(), 2u);
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_GE(sleeps_[0], 50);  // base 100 with equal jitter: [50, 100]
  EXPECT_LE(sleeps_[0], 100);
}

TEST_F(RouterTest, BackoffHonoursRetryAfter) {
  providers_["c"]->script.push_back(Fail(429, /*retry_after_ms=*/2'000));
  providers_["c"]->script.push_back(Fail(429, /*retry_after_ms=*/3'000));
  providers_["c"]->script.push_back(Ok("finally"));
  auto response = router_->Chat({"tier/mid"}, Question());
  ASSERT_TRUE(response) << response.error().ToString();
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_GE(sleeps_[0], 2'000);
  EXPECT_GE(sleeps_[1], 3'000);
  EXPECT_EQ(response->retries, 2);
  // 429s say nothing about health: the breaker stays closed.
  EXPECT_EQ(router_->BreakerStateOf("c/c1"), BreakerState::kClosed);
}

TEST_F(RouterTest, BackoffIsExponentialAndGivesUpAfterMaxAttempts) {
  std::string yaml(kConfig);
  yaml.replace(yaml.find("failure_threshold: 2"), 20, "failure_threshold: 9");
  Build(yaml);
  for (int i = 0; i < 3; ++i) providers_["c"]->script.push_back(Fail(0));  // timeouts
  auto response = router_->Chat({"c1"}, Question());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(providers_["c"]->calls.size(), 3u);
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_GE(sleeps_[0], 50);
  EXPECT_LE(sleeps_[0], 100);
  EXPECT_GE(sleeps_[1], 100);
  EXPECT_LE(sleeps_[1], 200);
  EXPECT_EQ(observer_.records.back().attempts, 3);
  EXPECT_EQ(observer_.records.back().retries, 2);
}

TEST_F(RouterTest, DeadlineStopsBackoffAndNewAttempts) {
  providers_["c"]->script.push_back(Fail(429, /*retry_after_ms=*/2'000));
  CallContext context;
  context.deadline_ms = clock_.NowMillis() + 1'000;
  auto response = router_->Chat({"c1"}, Question(), context);
  ASSERT_FALSE(response);
  // The last real failure is kept (a 429, retryable), and no sleep past the deadline happened.
  EXPECT_EQ(response.error().http_status, 429);
  EXPECT_THAT(response.error().message, HasSubstr("deadline"));
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(providers_["c"]->calls.size(), 1u);

  context.deadline_ms = clock_.NowMillis();  // already passed: nothing is sent
  auto late = router_->Chat({"c1"}, Question(), context);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(providers_["c"]->calls.size(), 1u);
}

TEST_F(RouterTest, TooLongRetryAfterDropsTheDeploymentInsteadOfWaiting) {
  providers_["a"]->script.push_back(Fail(429, /*retry_after_ms=*/60'000));
  providers_["b"]->script.push_back(Fail(500));
  providers_["b"]->script.push_back(Ok("b again"));
  auto response = router_->Chat({"tier/fast"}, Question());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(providers_["a"]->calls.size(), 1u);
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_LT(sleeps_[0], 60'000);
}

TEST_F(RouterTest, BreakerOpensSkipsAndHalfOpensAfterCooldown) {
  // Two consecutive failures open c/c1 (threshold 2).
  providers_["c"]->script.push_back(Fail(500));
  providers_["c"]->script.push_back(Fail(500));
  providers_["b"]->script.push_back(Ok("b1"));
  providers_["b"]->script.push_back(Ok("b2"));
  ASSERT_TRUE(router_->Chat({"tier/mid", "b1"}, Question()));
  EXPECT_EQ(router_->BreakerStateOf("c/c1"), BreakerState::kClosed);
  ASSERT_TRUE(router_->Chat({"tier/mid", "b1"}, Question()));
  EXPECT_EQ(router_->BreakerStateOf("c/c1"), BreakerState::kOpen);

  // Open: c is not called at all.
  ASSERT_TRUE(router_->Chat({"tier/mid", "b1"}, Question()));
  EXPECT_EQ(providers_["c"]->calls.size(), 2u);

  // A breaker that opens during a call stops the passes over that deployment.
  ASSERT_EQ(router_->BreakerStateOf("b/b1"), BreakerState::kClosed);

  // Only c, breaker open: fail fast with a retry hint, no sleeping, nothing sent.
  sleeps_.clear();
  auto blocked = router_->Chat({"c1"}, Question());
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(blocked.error().message, HasSubstr("circuit"));
  EXPECT_GT(blocked.error().retry_after_ms, 0);
  EXPECT_LE(blocked.error().retry_after_ms, 10'000);
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(providers_["c"]->calls.size(), 2u);

  // After the cool-down one probe goes through; its success closes the breaker.
  clock_.Advance(10'000);
  providers_["c"]->script.push_back(Ok("probe ok"));
  auto probe = router_->Chat({"c1"}, Question());
  ASSERT_TRUE(probe) << probe.error().ToString();
  EXPECT_EQ(router_->BreakerStateOf("c/c1"), BreakerState::kClosed);
}

TEST_F(RouterTest, CacheHitCostsNothingAndIsFlagged) {
  providers_["a"]->script.push_back(Ok("cached answer", Usage{1'000, 100, 0, 0}));
  ChatRequest request = Question("deterministic?");
  request.temperature = 0;
  auto first = router_->Chat({"tier/fast"}, request);
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->cache_hit);
  EXPECT_GT(first->cost_usd, 0);
  auto second = router_->Chat({"tier/fast"}, request);
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->cache_hit);
  EXPECT_EQ(second->cost_usd, 0);
  EXPECT_EQ(second->text, "cached answer");
  EXPECT_EQ(providers_["a"]->calls.size(), 1u);
  ASSERT_EQ(observer_.records.size(), 2u);
  EXPECT_TRUE(observer_.records[1].cache_hit);
  EXPECT_EQ(observer_.records[1].cost_usd, 0);
  EXPECT_EQ(observer_.records[1].usage.total_tokens(), 0);
  EXPECT_EQ(observer_.records[1].model, "a1");

  // Streaming gets the cached answer replayed as deltas.
  std::string streamed;
  auto third = router_->ChatStream({"tier/fast"}, request,
                                   [&](const StreamDelta& delta) { streamed += delta.text; });
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->cache_hit);
  EXPECT_EQ(streamed, "cached answer");

  // Non-zero temperature, or another target, is not served from the cache.
  request.temperature = 0.7;
  ASSERT_TRUE(router_->Chat({"tier/fast"}, request));
  request.temperature = 0;
  ASSERT_TRUE(router_->Chat({"tier/top"}, request));
  EXPECT_EQ(providers_["a"]->calls.size(), 2u);
  EXPECT_EQ(providers_["b"]->calls.size(), 1u);
}

TEST_F(RouterTest, StreamDoesNotFallBackAfterOutputStarted) {
  // A provider that emits a delta and then fails.
  class HalfStream final : public Provider {
   public:
    const std::string& name() const override { return name_; }
    CallResult<ChatResponse> Chat(const ChatRequest&) override { return Fail(500); }
    CallResult<ChatResponse> ChatStream(const ChatRequest&, const StreamCallback& cb) override {
      cb(StreamDelta{StreamDelta::Kind::kText, "partial", 0, "", "", ""});
      return Fail(500);
    }
    CallResult<EmbeddingResponse> Embed(const EmbeddingRequest&) override {
      return std::unexpected(CallError{});
    }
    CallResult<std::vector<std::string>> ListModels() override { return {}; }
    std::string name_ = "a";
  };
  auto config = ParseModelsConfig(kConfig, "router.yaml");
  ASSERT_TRUE(config);
  RouterOptions options;
  options.clock = &clock_;
  options.sleeper = [this](int64_t ms) { sleeps_.push_back(ms); };
  ScriptedProvider* b = nullptr;
  options.provider_factory = [&](const ProviderConfig& provider) -> std::unique_ptr<Provider> {
    if (provider.name == "a") return std::make_unique<HalfStream>();
    auto scripted = std::make_unique<ScriptedProvider>(provider.name);
    if (provider.name == "b") b = scripted.get();
    return scripted;
  };
  auto router = Router::Create(std::move(*config), std::move(options));
  ASSERT_TRUE(router);
  std::string seen;
  auto result = (*router)->ChatStream({"tier/fast"}, Question(),
                                      [&](const StreamDelta& delta) { seen += delta.text; });
  ASSERT_FALSE(result);
  EXPECT_EQ(seen, "partial");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->calls.empty());
  // Without output, the same failure falls back.
  auto plain = (*router)->Chat({"tier/fast"}, Question());
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_EQ(plain->provider, "b");
}

TEST_F(RouterTest, RateLimiterMakesCallsWaitWithinMaxRetryAfter) {
  std::string yaml(kConfig);
  yaml.replace(yaml.find("rpm: 0"), 6, "rpm: 2");
  std::string patient = yaml;
  patient.replace(patient.find("max_retry_after_ms: 5000"), 24, "max_retry_after_ms: 60000");
  Build(patient);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(router_->Chat({"a1"}, Question()));
  EXPECT_TRUE(sleeps_.empty());
  ASSERT_TRUE(router_->Chat({"a1"}, Question()));  // third in the same minute waits ~30 s
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_GE(sleeps_[0], 29'000);
  EXPECT_LE(sleeps_[0], 30'000);
  // A wait above max_retry_after_ms (5 s) is not made: the caller gets a retryable
  // rate-limit error saying when to come back.
  sleeps_.clear();
  Build(yaml);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(router_->Chat({"a1"}, Question()));
  auto refused = router_->Chat({"a1"}, Question());
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().retryable());
  EXPECT_EQ(refused.error().http_status, 429);
  EXPECT_GE(refused.error().retry_after_ms, 29'000);
  EXPECT_THAT(refused.error().message, HasSubstr("local rate limit"));
  EXPECT_TRUE(sleeps_.empty());
  // With a fallback available, the router moves on instead.
  auto moved = router_->Chat({"tier/fast"}, Question());
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->provider, "b");
}

TEST_F(RouterTest, MaxTokensCappedAndSetForAnthropic) {
  ChatRequest request = Question();
  request.max_tokens = 50'000;
  ASSERT_TRUE(router_->Chat({"c1"}, request));
  ASSERT_EQ(providers_["c"]->requests.size(), 1u);
  EXPECT_EQ(providers_["c"]->requests[0].max_tokens, 1'000);
  ASSERT_TRUE(router_->Chat({"c1"}, Question()));
  EXPECT_EQ(providers_["c"]->requests[1].max_tokens, 1'000);
  ASSERT_TRUE(router_->Chat({"a1"}, Question()));
  EXPECT_FALSE(providers_["a"]->requests[0].max_tokens.has_value());
}

class CountingAdmission final : public CallAdmission {
 public:
  Result<int64_t> Reserve(const CallContext&, const Deployment& deployment,
                          double worst_case_usd) override {
    reserved.push_back(worst_case_usd);
    if (refuse) return ResourceExhausted("task budget exhausted at " + deployment.key());
    return static_cast<int64_t>(reserved.size());
  }
  void Settle(int64_t id, double actual_usd) override { settled.emplace_back(id, actual_usd); }
  bool refuse = false;
  std::vector<double> reserved;
  std::vector<std::pair<int64_t, double>> settled;
};

TEST_F(RouterTest, AdmissionReservesWorstCaseAndSettlesActual) {
  CountingAdmission admission;
  admission_ = &admission;
  Build(std::string(kConfig));
  providers_["c"]->script.push_back(Fail(500));
  providers_["b"]->script.push_back(Ok("ok", Usage{1'000, 100, 0, 0}));
  auto response = router_->Chat({"tier/mid", "b1"}, Question());
  ASSERT_TRUE(response);
  ASSERT_EQ(admission.reserved.size(), 2u);
  // c1: 1,000 max output tokens at 200/Mtok dominate its worst case.
  EXPECT_GE(admission.reserved[0], 1'000 * 200 / 1e6);
  ASSERT_EQ(admission.settled.size(), 2u);
  EXPECT_EQ(admission.settled[0].second, 0);  // the failed attempt costs nothing
  EXPECT_DOUBLE_EQ(admission.settled[1].second, response->cost_usd);

  admission.refuse = true;
  auto refused = router_->Chat({"tier/fast"}, Question());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_TRUE(providers_["b"]->calls.size() == 1u);  // nothing else was sent
  EXPECT_EQ(observer_.records.back().status, ErrorCode::kResourceExhausted);
}

TEST_F(RouterTest, AFailedAttemptPaysWhatItWasBilledForInTheRecordAndTheBudget) {
  CountingAdmission admission;
  admission_ = &admission;
  Build(std::string(kConfig));
  // c1 read the prompt and streamed some output before its stream broke off; b1 then answers.
  CallResult<ChatResponse> broke_off = Fail(500);
  broke_off.error().usage = Usage{2'000, 30, 0, 0};
  providers_["c"]->script.push_back(broke_off);
  providers_["b"]->script.push_back(Ok("ok", Usage{1'000, 100, 0, 0}));
  auto response = router_->Chat({"tier/mid", "b1"}, Question());
  ASSERT_TRUE(response) << response.error().ToString();

  const double c_cost = (2'000 * 100 + 30 * 200) / 1e6;  // at c1's prices
  const double b_cost = (1'000 * 10 + 100 * 20) / 1e6;   // at b1's
  EXPECT_DOUBLE_EQ(response->cost_usd, b_cost);          // the answer's own cost
  ASSERT_EQ(admission.settled.size(), 2u);
  EXPECT_DOUBLE_EQ(admission.settled[0].second, c_cost);
  EXPECT_DOUBLE_EQ(admission.settled[1].second, b_cost);
  ASSERT_EQ(observer_.records.size(), 1u);
  const CallRecord& record = observer_.records[0];
  EXPECT_TRUE(record.ok);
  EXPECT_EQ(record.usage, (Usage{3'000, 130, 0, 0}));  // the whole call
  EXPECT_DOUBLE_EQ(record.cost_usd, c_cost + b_cost);

  // A call that fails in the end is recorded with what it was billed for.
  CallResult<ChatResponse> cut = Fail(400);  // not retried anywhere
  cut.error().usage = Usage{500, 5, 0, 0};
  providers_["a"]->script.push_back(cut);
  ASSERT_FALSE(router_->Chat({"a1"}, Question()));
  ASSERT_EQ(observer_.records.size(), 2u);
  EXPECT_FALSE(observer_.records[1].ok);
  EXPECT_EQ(observer_.records[1].usage, (Usage{500, 5, 0, 0}));
  EXPECT_DOUBLE_EQ(observer_.records[1].cost_usd, (500 * 1 + 5 * 2) / 1e6);
}

TEST_F(RouterTest, EmbedRoutesAndPrices) {
  EmbeddingRequest request;
  request.inputs = {"a", "b"};
  auto response = router_->Embed({"a1"}, request);
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->embeddings.size(), 2u);
  EXPECT_DOUBLE_EQ(response->cost_usd, 10 * 1 / 1e6);
  EXPECT_EQ(observer_.records.back().kind, "embed");
}

TEST_F(RouterTest, CostPyramidEscalatesOneTierPerAttemptUpToTheCeiling) {
  // Default rule chain: tier/local (unavailable), tier/fast, tier/mid, tier/top.
  EXPECT_EQ(router_->ChooseAlias("code", "low", 1)->alias, "tier/fast");
  EXPECT_EQ(router_->ChooseAlias("code", "low", 2)->alias, "tier/mid");
  EXPECT_EQ(router_->ChooseAlias("code", "low", 3)->alias, "tier/top");
  auto top = router_->ChooseAlias("code", "low", 9);
  EXPECT_EQ(top->alias, "tier/top");
  EXPECT_TRUE(top->at_top);
  // A ceiling caps escalation.
  auto capped = router_->ChooseAlias("code", "low", 3, "tier/mid");
  EXPECT_EQ(capped->alias, "tier/mid");
  EXPECT_THAT(capped->ladder, ElementsAre("tier/fast", "tier/mid"));
  // Rules pick the chain; a cheaper alias after a dearer one is not an escalation.
  EXPECT_THAT(router_->ChooseAlias("code", "high", 1)->ladder, ElementsAre("tier/mid", "tier/top"));
  EXPECT_EQ(router_->ChooseAlias("review", "low", 1)->alias, "tier/mid");
  // Errors.
  EXPECT_EQ(router_->ChooseAlias("code", "low", 0).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(router_->ChooseAlias("code", "low", 1, "tier/none").error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(router_->ChooseAlias("code", "low", 1, "tier/local").error().code,
            ErrorCode::kFailedPrecondition);
}

TEST(CacheKeyTest, StableAndSensitiveToContent) {
  ChatRequest a;
  a.messages.push_back(Message::User("x"));
  a.temperature = 0;
  ChatRequest b = a;
  b.model = "ignored";
  EXPECT_EQ(CacheKey(a, {"t"}), CacheKey(b, {"t"}));
  EXPECT_NE(CacheKey(a, {"t"}), CacheKey(a, {"u"}));
  b.messages[0].content = "y";
  EXPECT_NE(CacheKey(a, {"t"}), CacheKey(b, {"t"}));
  EXPECT_TRUE(IsCacheable(a));
  a.temperature.reset();
  EXPECT_FALSE(IsCacheable(a));
}

}  // namespace
}  // namespace factory::llm
