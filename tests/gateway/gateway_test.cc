// The gateway over loopback HTTP in front of the fake providers: authentication, each
// endpoint, fallback, streaming passthrough, the ledger, budgets, error shapes and secrets.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "gateway/gateway_fixture.h"
#include "ledger/budget.h"
#include "queue/queue.h"

namespace factory::gateway::testing {
namespace {

using llm::Usage;
using llm::fake::FakeReply;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

json Body(const llm::HttpResponse& response) {
  return json::parse(response.body, nullptr, /*allow_exceptions=*/false);
}

// OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
void ExpectOpenAiError(const llm::HttpResponse& response, int status, const std::string& type) {
  EXPECT_EQ(response.status, status) << response.body;
  const json body = Body(response);
  ASSERT_TRUE(body.is_object()) << response.body;
  ASSERT_TRUE(body.contains("error") && body["error"].is_object()) << response.body;
  EXPECT_EQ(body["error"]["type"], type) << response.body;
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_TRUE(body["error"].contains("code"));
  EXPECT_EQ(response.Header("content-type"), "application/json");
}

// Anthropic's: {"type": "error", "error": {"type", "message"}}.
void ExpectAnthropicError(const llm::HttpResponse& response, int status, const std::string& type) {
  EXPECT_EQ(response.status, status) << response.body;
  const json body = Body(response);
  ASSERT_TRUE(body.is_object()) << response.body;
  EXPECT_EQ(body["type"], "error") << response.body;
  EXPECT_EQ(body["error"]["type"], type) << response.body;
  EXPECT_TRUE(body["error"]["message"].is_string());
}

class GatewayTest : public GatewayFixture {};

TEST_F(GatewayTest, RefusesMissingWrongMalformedAndRevokedKeys) {
  StartGateway();
  ExpectOpenAiError(Post("/v1/chat/completions", Chat("cloud/fast"), ""), 401,
                    "invalid_request_error");
  auto wrong = Post("/v1/chat/completions", Chat("cloud/fast"), "fk-not-a-real-key");
  ExpectOpenAiError(wrong, 401, "invalid_request_error");
  EXPECT_EQ(Body(wrong)["error"]["code"], "invalid_api_key");
  ExpectOpenAiError(Send("POST", "/v1/chat/completions", Chat("cloud/fast").dump(),
                         {{"Authorization", "Basic " + key_}}),
                    401, "invalid_request_error");
  ExpectAnthropicError(PostAnthropic(Message("cloud/anthropic"), "fk-wrong"), 401,
                       "authentication_error");
  ExpectOpenAiError(Send("GET", "/v1/models", "", {}), 401, "invalid_request_error");

  auto keys = ListKeys(*store_);
  ASSERT_TRUE(keys && keys->size() == 1);
  ASSERT_TRUE(RevokeKey(*store_, keys->front().id));
  auto revoked = Post("/v1/chat/completions", Chat("cloud/fast"), key_);
  ExpectOpenAiError(revoked, 401, "invalid_request_error");
  EXPECT_THAT(Body(revoked)["error"]["message"].get<std::string>(), HasSubstr("revoked"));
  EXPECT_EQ(fake_.request_count(), 0u);  // nothing reached the provider
  EXPECT_TRUE(LedgerRows().empty());
}

TEST_F(GatewayTest, BadRequestsGetTheProvidersErrorShape) {
  StartGateway();
  ExpectOpenAiError(
      Send("POST", "/v1/chat/completions", "{not json", {{"Authorization", "Bearer " + key_}}), 400,
      "invalid_request_error");
  ExpectOpenAiError(Post("/v1/chat/completions", json{{"messages", json::array()}}, key_), 400,
                    "invalid_request_error");
  ExpectOpenAiError(Post("/v1/chat/completions", json{{"model", "cloud/fast"}}, key_), 400,
                    "invalid_request_error");
  auto unknown = Post("/v1/chat/completions", Chat("no-such-model"), key_);
  ExpectOpenAiError(unknown, 404, "invalid_request_error");
  EXPECT_EQ(Body(unknown)["error"]["code"], "model_not_found");
  // An Anthropic model asked for in the OpenAI format (no translation): a clear 400.
  auto wrong_format = Post("/v1/chat/completions", Chat("haiku"), key_);
  ExpectOpenAiError(wrong_format, 400, "invalid_request_error");
  EXPECT_THAT(wrong_format.body, HasSubstr("/v1/messages"));
  json no_max = Message("cloud/anthropic");
  no_max.erase("max_tokens");
  ExpectAnthropicError(PostAnthropic(no_max, key_), 400, "invalid_request_error");
  ExpectAnthropicError(PostAnthropic(Message("nope"), key_), 404, "not_found_error");
  ExpectOpenAiError(Post("/v1/nowhere", Chat("cloud/fast"), key_), 404, "invalid_request_error");
  EXPECT_EQ(fake_.request_count(), 0u);
}

TEST_F(GatewayTest, ChatCompletionIsForwardedAndLedgeredAtTheConfiguredPrices) {
  StartGateway();
  fake_.Enqueue(FakeReply::Text("hello there", Usage{1'000, 200, 400, 0}));
  json body = Chat("cloud/fast");
  body["temperature"] = 0.25;
  body["max_tokens"] = 5'000;  // above the model's 1000
  body["user"] = "passes-through";
  auto response = Post("/v1/chat/completions", body, key_);
  ASSERT_EQ(response.status, 200) << response.body;
  const json answer = Body(response);
  EXPECT_EQ(answer["choices"][0]["message"]["content"], "hello there");
  EXPECT_EQ(answer["usage"]["prompt_tokens"], 1'000);

  ASSERT_EQ(fake_.request_count(), 1u);
  const auto sent = fake_.requests()[0];
  EXPECT_EQ(sent.path, "/v1/chat/completions");
  EXPECT_EQ(sent.Header("Authorization"), std::string("Bearer ") + kOpenAiKey);
  const json upstream = sent.Json();
  EXPECT_EQ(upstream["model"], "gpt-mini");  // the alias resolved to the model id
  EXPECT_EQ(upstream["max_tokens"], 1'000);  // capped at the model's limit
  EXPECT_EQ(upstream["temperature"], 0.25);
  EXPECT_EQ(upstream["user"], "passes-through");  // fields the gateway does not know go on

  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  const ModelCallRow& row = rows[0];
  EXPECT_EQ(row.agent, "coder");
  EXPECT_EQ(row.provider, "fake-openai");
  EXPECT_EQ(row.model, "mini");
  EXPECT_EQ(row.alias, "cloud/fast");
  EXPECT_EQ(row.status, "ok");
  EXPECT_EQ(row.purpose, "gateway");
  EXPECT_EQ(row.input_tokens, 1'000);
  EXPECT_EQ(row.output_tokens, 200);
  EXPECT_EQ(row.cached_tokens, 400);
  EXPECT_NEAR(row.cost_usd, (600 * kMiniIn + 400 * kMiniCached + 200 * kMiniOut) / 1e6, 1e-12);
  EXPECT_EQ(row.http_status, 200);
}

TEST_F(GatewayTest, FallsBackToTheNextDeploymentOfTheAlias) {
  StartGateway();
  fake_.Enqueue(FakeReply::Error(503, "overloaded"));
  fake_.Enqueue(FakeReply::Text("from backup", Usage{100, 10, 0, 0}));
  auto response = Post("/v1/chat/completions", Chat("cloud/fast"), key_);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response)["choices"][0]["message"]["content"], "from backup");
  ASSERT_EQ(fake_.request_count(), 2u);
  EXPECT_EQ(fake_.requests()[0].Json()["model"], "gpt-mini");
  EXPECT_EQ(fake_.requests()[1].Json()["model"], "gpt-backup");
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].model, "backup");
  EXPECT_EQ(rows[0].retries, 1);
}

TEST_F(GatewayTest, UpstreamErrorsAreMappedWithoutLeakingTheUpstreamKey) {
  StartGateway();
  FakeReply leaky = FakeReply::Error(400, "bad request from");
  leaky.echo_credentials = true;  // the provider quotes the key it got back
  fake_.Enqueue(leaky);
  auto bad = Post("/v1/chat/completions", Chat("mini"), key_);
  ExpectOpenAiError(bad, 400, "invalid_request_error");
  EXPECT_THAT(bad.body, HasSubstr("bad request from"));
  EXPECT_THAT(bad.body, Not(HasSubstr(kOpenAiKey)));

  fake_.Enqueue(FakeReply::Error(401, "bad upstream key"));
  auto auth = PostAnthropic(Message("cloud/anthropic"), key_);
  ExpectAnthropicError(auth, 502, "api_error");

  FakeReply limited = FakeReply::RateLimited(7, "slow down");
  fake_.Enqueue(limited);
  fake_.Enqueue(limited);
  auto response = Post("/v1/chat/completions", Chat("cloud/fast"), key_);
  ExpectOpenAiError(response, 429, "rate_limit_error");
  EXPECT_EQ(response.Header("retry-after"), "7");
  // The Retry-After holds for the next call too: it is not sent upstream meanwhile.
  const size_t sent = fake_.request_count();
  auto again = Post("/v1/chat/completions", Chat("mini"), key_);
  ExpectOpenAiError(again, 429, "rate_limit_error");
  EXPECT_FALSE(again.Header("retry-after").empty());
  EXPECT_EQ(fake_.request_count(), sent);

  for (const auto& row : LedgerRows()) {
    EXPECT_NE(row.status, "ok");
    EXPECT_THAT(row.error, Not(HasSubstr(kOpenAiKey)));
  }
}

TEST_F(GatewayTest, AnthropicMessagesAreForwardedWithCacheUsageLedgered) {
  StartGateway();
  fake_.Enqueue(FakeReply::Text("bonjour", Usage{2'000, 300, 1'200, 500}));
  std::vector<std::pair<std::string, std::string>> headers = {
      {"anthropic-version", "2023-06-01"},
      {"anthropic-beta", "prompt-caching-2024-07-31"},
      {"x-api-key", key_}};
  auto response = Send("POST", "/v1/messages", Message("cloud/anthropic").dump(), headers);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response)["content"][0]["text"], "bonjour");
  ASSERT_EQ(fake_.request_count(), 1u);
  const auto sent = fake_.requests()[0];
  EXPECT_EQ(sent.path, "/v1/messages");
  EXPECT_EQ(sent.Header("x-api-key"), kAnthropicKey);
  EXPECT_EQ(sent.Header("anthropic-beta"), "prompt-caching-2024-07-31");
  EXPECT_EQ(sent.Json()["model"], "claude-haiku");

  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].model, "haiku");
  EXPECT_EQ(rows[0].input_tokens, 2'000);
  EXPECT_EQ(rows[0].cached_tokens, 1'200);
  EXPECT_NEAR(rows[0].cost_usd,
              (300 * kHaikuIn + 1'200 * kHaikuCached + 500 * kHaikuWrite + 300 * kHaikuOut) / 1e6,
              1e-12);
}

TEST_F(GatewayTest, EmbeddingsAndModelListing) {
  StartGateway();
  fake_.Enqueue(FakeReply::Embeddings({{0.5f, 0.25f}, {1.0f, 0.0f}}, Usage{42, 0, 0, 0}));
  auto response = Post("/v1/embeddings", json{{"model", "embed"}, {"input", {"a", "b"}}}, key_);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response)["data"].size(), 2u);
  EXPECT_EQ(fake_.requests()[0].path, "/v1/embeddings");
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].input_tokens, 42);
  EXPECT_NEAR(rows[0].cost_usd, 42 * kEmbedIn / 1e6, 1e-15);

  auto models = Send("GET", "/v1/models", "", {{"Authorization", "Bearer " + key_}});
  ASSERT_EQ(models.status, 200) << models.body;
  std::vector<std::string> ids;
  const json listing = Body(models);
  for (const auto& entry : listing["data"]) ids.push_back(entry["id"]);
  EXPECT_THAT(ids, ::testing::IsSupersetOf({"cloud/fast", "cloud/anthropic", "mini", "haiku"}))
      << models.body;
  auto anthropic =
      Send("GET", "/v1/models", "", {{"x-api-key", key_}, {"anthropic-version", "2023-06-01"}});
  ASSERT_EQ(anthropic.status, 200);
  EXPECT_EQ(Body(anthropic)["data"][0]["type"], "model");
  EXPECT_EQ(Body(anthropic)["has_more"], false);
}

// Splits an SSE body into its `data:` payloads.
std::vector<std::string> DataLines(const std::string& body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
  }
  return out;
}

TEST_F(GatewayTest, StreamsArriveBeforeTheUpstreamFinishes) {
  StartGateway();
  FakeReply slow = FakeReply::Text("one two three four five six", Usage{50, 6, 0, 0});
  slow.event_delay_ms = 100;  // about a second for the whole stream
  fake_.Enqueue(slow);
  std::string received;
  int chunks = 0;
  std::optional<size_t> rows_at_first_chunk;
  auto response = Post("/v1/chat/completions", Chat("cloud/fast", /*stream=*/true), key_,
                       [&](std::string_view chunk) {
                         if (chunks++ == 0) {
                           // The call is ledgered when the upstream stream has ended: no row
                           // yet means this chunk was passed on before that.
                           rows_at_first_chunk = LedgerRows().size();
                         }
                         received.append(chunk);
                         return true;
                       });
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.Header("content-type"), "text/event-stream");
  ASSERT_TRUE(rows_at_first_chunk.has_value());
  EXPECT_EQ(*rows_at_first_chunk, 0u);
  EXPECT_GT(chunks, 3);

  std::string text;
  bool saw_usage_chunk = false;
  const auto lines = DataLines(received);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "[DONE]");
  for (const auto& data : lines) {
    if (data == "[DONE]") continue;
    const json chunk = json::parse(data);
    if (chunk.contains("usage") && chunk["usage"].is_object()) saw_usage_chunk = true;
    if (!chunk["choices"].empty() && chunk["choices"][0]["delta"].contains("content")) {
      text += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_EQ(text, "one two three four five six");
  EXPECT_FALSE(saw_usage_chunk);  // the client did not ask for it; the gateway did
  EXPECT_EQ(fake_.requests()[0].Json()["stream_options"]["include_usage"], true);

  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "ok");
  EXPECT_EQ(rows[0].input_tokens, 50);
  EXPECT_EQ(rows[0].output_tokens, 6);
  EXPECT_NEAR(rows[0].cost_usd, (50 * kMiniIn + 6 * kMiniOut) / 1e6, 1e-12);
}

// The gateway's prompt estimate (Gateway: a token per 4 bytes of the request body, plus 8).
int64_t EstimatedPromptTokens(const json& body) {
  return static_cast<int64_t>(body.dump().size() / 4) + 8;
}

// Words enough for ~35 stream events, 100 ms apart (about four seconds in all).
FakeReply SlowStream(Usage usage) {
  std::string words;
  for (int index = 0; index < 40; ++index) words += "w" + std::to_string(index) + " ";
  FakeReply slow = FakeReply::Text(words, usage);
  slow.event_delay_ms = 100;
  return slow;
}

// Sends `body` to `path` and hangs up after the second piece of the answer arrived; then waits
// for the gateway to ledger the call (it notices at its next write).
std::vector<ModelCallRow> HangUpMidStream(llm::HttpClient& client, const std::string& base_url,
                                          const std::string& path, const json& body,
                                          std::vector<std::pair<std::string, std::string>> headers,
                                          const std::function<std::vector<ModelCallRow>()>& rows) {
  llm::HttpRequest request;
  request.url = base_url + path;
  request.headers = std::move(headers);
  request.headers.emplace_back("Content-Type", "application/json");
  request.body = body.dump();
  request.total_timeout_ms = 20'000;
  int chunks = 0;
  auto response = client.Send(request, [&](std::string_view) { return ++chunks < 2; });
  EXPECT_FALSE(response);  // the client hung up after its second piece
  if (!response) {
    EXPECT_EQ(response.error().code, ErrorCode::kAborted);
  }
  std::vector<ModelCallRow> ledgered;
  for (int wait = 0; wait < 200 && ledgered.empty(); ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ledgered = rows();
  }
  return ledgered;
}

TEST_F(GatewayTest, AClientThatLeavesMidStreamStopsTheUpstreamReadAndPaysForWhatWasUsed) {
  StartGateway();
  fake_.Enqueue(SlowStream(Usage{50, 40, 0, 0}));
  const json body = Chat("cloud/fast", /*stream=*/true);
  auto rows = HangUpMidStream(*client_, gateway_->base_url(), "/v1/chat/completions", body,
                              {{"Authorization", "Bearer " + key_}}, [&] { return LedgerRows(); });

  // The gateway ends the upstream read at its next write: the call is ledgered as aborted, not
  // as a stream that ran to its end, and not as free: the upstream had read the prompt and
  // produced part of the answer. OpenAI reports usage only at the end, so the prompt estimate
  // and a token per content event passed on stand in for it.
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "aborted");
  EXPECT_EQ(rows[0].input_tokens, EstimatedPromptTokens(body));
  EXPECT_GE(rows[0].output_tokens, 1);
  EXPECT_LT(rows[0].output_tokens, 30);  // cut short: the whole answer is ~35 events
  EXPECT_NEAR(rows[0].cost_usd,
              (rows[0].input_tokens * kMiniIn + rows[0].output_tokens * kMiniOut) / 1e6, 1e-12);
  EXPECT_GT(rows[0].cost_usd, 0);
  EXPECT_THAT(rows[0].error, HasSubstr("usage estimated from the stream"));
  // The agent's spend (what its budgets count) has it too.
  std::optional<double> spent;
  ASSERT_TRUE(store_->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(double sum, txn.SumSpend(SpendQuery{.agent = "coder"}));
    spent = sum;
    return Ok();
  }));
  EXPECT_NEAR(*spent, rows[0].cost_usd, 1e-12);
}

TEST_F(GatewayTest, AnAnthropicClientThatLeavesMidStreamPaysTheReportedPrompt) {
  StartGateway();
  fake_.Enqueue(SlowStream(Usage{900, 40, 300, 100}));
  auto rows = HangUpMidStream(
      *client_, gateway_->base_url(), "/v1/messages", Message("cloud/anthropic", true),
      {{"anthropic-version", "2023-06-01"}, {"x-api-key", key_}}, [&] { return LedgerRows(); });

  // message_start reported the prompt's tokens (and cache use) before the client left: those
  // are billed as reported.
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "aborted");
  EXPECT_EQ(rows[0].input_tokens, 900);
  EXPECT_EQ(rows[0].cached_tokens, 300);
  EXPECT_GE(rows[0].output_tokens, 1);
  EXPECT_LT(rows[0].output_tokens, 30);
  EXPECT_NEAR(rows[0].cost_usd,
              (500 * kHaikuIn + 300 * kHaikuCached + 100 * kHaikuWrite +
               rows[0].output_tokens * kHaikuOut) /
                  1e6,
              1e-12);
}

TEST_F(GatewayTest, StreamKeepsTheUsageChunkWhenTheClientAskedForIt) {
  StartGateway();
  fake_.Enqueue(FakeReply::Text("hi", Usage{10, 2, 0, 0}));
  json body = Chat("cloud/fast", true);
  body["stream_options"] = {{"include_usage", true}};
  auto response = Post("/v1/chat/completions", body, key_);
  ASSERT_EQ(response.status, 200);
  bool saw_usage = false;
  for (const auto& data : DataLines(response.body)) {
    if (data == "[DONE]") continue;
    const json chunk = json::parse(data);
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      saw_usage = true;
      EXPECT_EQ(chunk["usage"]["prompt_tokens"], 10);
    }
  }
  EXPECT_TRUE(saw_usage);
}

TEST_F(GatewayTest, AnthropicStreamPassesEveryEventAndLedgersItsUsage) {
  StartGateway();
  fake_.Enqueue(FakeReply::Text("streamed hello", Usage{900, 40, 300, 100}));
  auto response = PostAnthropic(Message("cloud/anthropic", true), key_);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_THAT(response.body, HasSubstr("event: message_start"));
  EXPECT_THAT(response.body, HasSubstr("event: content_block_delta"));
  EXPECT_THAT(response.body, HasSubstr("event: message_stop"));
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].input_tokens, 900);
  EXPECT_EQ(rows[0].output_tokens, 40);
  EXPECT_EQ(rows[0].cached_tokens, 300);
  EXPECT_NEAR(rows[0].cost_usd,
              (500 * kHaikuIn + 300 * kHaikuCached + 100 * kHaikuWrite + 40 * kHaikuOut) / 1e6,
              1e-12);
}

TEST_F(GatewayTest, StreamFailingBeforeItsFirstEventFallsBackAfterItEndsWithAnError) {
  StartGateway();
  fake_.Enqueue(FakeReply::Text("lost", Usage{5, 5, 0, 0}).TruncatedAfter(0));
  fake_.Enqueue(FakeReply::Text("rescued", Usage{5, 1, 0, 0}));
  auto rescued = Post("/v1/chat/completions", Chat("cloud/fast", true), key_);
  ASSERT_EQ(rescued.status, 200);
  std::string rescued_text;
  for (const auto& data : DataLines(rescued.body)) {
    if (data == "[DONE]") continue;
    const json chunk = json::parse(data);
    if (!chunk["choices"].empty() && chunk["choices"][0]["delta"].contains("content")) {
      rescued_text += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_EQ(rescued_text, "rescued");
  EXPECT_EQ(fake_.request_count(), 2u);

  // Cut after some events reached the client: no switching deployments now; the stream ends
  // with an error event and the call is ledgered as failed.
  fake_.Enqueue(FakeReply::Text("half an answer", Usage{5, 5, 0, 0}).TruncatedAfter(3));
  const json cut_body = Chat("cloud/fast", true);
  auto cut = Post("/v1/chat/completions", cut_body, key_);
  ASSERT_EQ(cut.status, 200);
  const auto lines = DataLines(cut.body);
  ASSERT_FALSE(lines.empty());
  const json last = json::parse(lines.back());
  EXPECT_EQ(last["error"]["type"], "api_error") << cut.body;
  EXPECT_EQ(fake_.request_count(), 3u);
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].status, "ok");
  EXPECT_EQ(rows[1].status, "unavailable");
  // The rescued call paid only for its answer (the first attempt broke off before any event);
  // the cut one for the prompt (estimated) and the two text events it passed on ("half", " an ").
  EXPECT_EQ(rows[0].input_tokens, 5);
  EXPECT_EQ(rows[0].output_tokens, 1);
  EXPECT_EQ(rows[1].input_tokens, EstimatedPromptTokens(cut_body));
  EXPECT_EQ(rows[1].output_tokens, 2);
  EXPECT_NEAR(rows[1].cost_usd, (rows[1].input_tokens * kMiniIn + 2 * kMiniOut) / 1e6, 1e-12);
}

TEST_F(GatewayTest, PerCallBudgetRefusesWith402BeforeAnythingIsSent) {
  ledger::BudgetEnvelope budgets;
  budgets.project.per_call_usd = 0.0001;  // 1000 output tokens at $8/M is $0.008
  StartGateway(budgets);
  auto openai = Post("/v1/chat/completions", Chat("cloud/fast"), key_);
  ExpectOpenAiError(openai, 402, "insufficient_quota");
  EXPECT_EQ(Body(openai)["error"]["code"], "budget_exceeded");
  EXPECT_THAT(openai.body, HasSubstr("per-call"));
  ExpectAnthropicError(PostAnthropic(Message("cloud/anthropic"), key_), 402, "billing_error");
  EXPECT_EQ(fake_.request_count(), 0u);
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].status, "resource_exhausted");
}

TEST_F(GatewayTest, AgentDailyCapIsEnforcedInTheStoreWithoutPausingTheAgent) {
  ledger::BudgetEnvelope budgets;
  // Worst case of one call: ~10 prompt tokens x $2/M + 100 output x $8/M, about $0.0008.
  budgets.project.per_agent_daily_usd = 0.0015;
  StartGateway(budgets);
  json body = Chat("mini");
  body["max_tokens"] = 100;
  fake_.SetDefault(FakeReply::Text("ok", Usage{10, 100, 0, 0}));
  EXPECT_EQ(Post("/v1/chat/completions", body, key_).status, 200);
  auto refused = Post("/v1/chat/completions", body, key_);
  ExpectOpenAiError(refused, 402, "insufficient_quota");
  EXPECT_THAT(refused.body, HasSubstr("daily"));
  EXPECT_THAT(refused.body, HasSubstr("worst case"));
  EXPECT_EQ(fake_.request_count(), 1u);
  // A worst case that does not fit refuses that call; the agent is not paused for it.
  ledger::BudgetGuard guard(*store_, budgets);
  EXPECT_FALSE(*guard.IsPaused("coder"));
  // Spend recorded as the built-in agent's is: settled reservations in the store.
  std::optional<double> spent;
  ASSERT_TRUE(store_->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(double sum, txn.SumSpend(SpendQuery{.agent = "coder"}));
    spent = sum;
    return Ok();
  }));
  EXPECT_NEAR(*spent, (10 * kMiniIn + 100 * kMiniOut) / 1e6, 1e-12);
}

TEST_F(GatewayTest, PausedAgentIsRefusedAndUnlimitedSpendStillCounts) {
  StartGateway();
  fake_.SetDefault(FakeReply::Text("ok", Usage{1'000, 1'000, 0, 0}));
  ASSERT_EQ(Post("/v1/chat/completions", Chat("mini"), key_).status, 200);
  ASSERT_TRUE(gateway_->Flush());
  std::optional<double> spent;
  ASSERT_TRUE(store_->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(double sum, txn.SumSpend(SpendQuery{.agent = "coder"}));
    spent = sum;
    return Ok();
  }));
  EXPECT_NEAR(*spent, (1'000 * kMiniIn + 1'000 * kMiniOut) / 1e6, 1e-12);

  ledger::BudgetGuard guard(*store_, {});
  ASSERT_TRUE(guard.Pause("coder", "test", "test"));
  auto refused = Post("/v1/chat/completions", Chat("mini"), key_);
  ExpectOpenAiError(refused, 402, "insufficient_quota");
  EXPECT_THAT(refused.body, HasSubstr("paused"));
  ASSERT_TRUE(guard.Resume("coder", "test"));
  EXPECT_EQ(Post("/v1/chat/completions", Chat("mini"), key_).status, 200);
}

TEST_F(GatewayTest, ConcurrentCallsAreAllLedgeredWithExactTotals) {
  StartGateway();
  fake_.SetDefault(FakeReply::Text("ok", Usage{300, 20, 100, 0}));
  constexpr int kThreads = 8;
  constexpr int kCallsEach = 10;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int index = 0; index < kThreads; ++index) {
    threads.emplace_back([&] {
      llm::HttpClient client;
      for (int call = 0; call < kCallsEach; ++call) {
        llm::HttpRequest request;
        request.url = gateway_->base_url() + "/v1/chat/completions";
        request.body = Chat("cloud/fast").dump();
        request.headers = {{"Authorization", "Bearer " + key_},
                           {"Content-Type", "application/json"}};
        auto response = client.Send(request);
        if (response && response->status == 200) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), kThreads * kCallsEach);
  auto rows = LedgerRows();
  ASSERT_EQ(rows.size(), static_cast<size_t>(kThreads * kCallsEach));
  double total = 0;
  for (const auto& row : rows) total += row.cost_usd;
  EXPECT_NEAR(total,
              kThreads * kCallsEach * (200 * kMiniIn + 100 * kMiniCached + 20 * kMiniOut) / 1e6,
              1e-9);
}

// Captures every log line of the default logger, at every level, while it lives.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return stream_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream stream_;
};

TEST_F(GatewayTest, NoKeyReachesResponsesLogsOrTheStore) {
  LogCapture logs;
  StartGateway();
  FakeReply leaky = FakeReply::Error(500, "internal failure for");
  leaky.echo_credentials = true;
  fake_.SetDefault(leaky);
  std::vector<std::string> bodies;
  bodies.push_back(Post("/v1/chat/completions", Chat("cloud/fast"), key_).body);
  bodies.push_back(Post("/v1/chat/completions", Chat("cloud/fast", true), key_).body);
  bodies.push_back(PostAnthropic(Message("cloud/anthropic"), key_).body);
  bodies.push_back(Post("/v1/chat/completions", Chat("cloud/fast"), key_ + "x").body);
  EXPECT_EQ(LedgerRows().size(), 3u);
  gateway_.reset();  // everything written and logged

  std::string everything = logs.text();
  for (const auto& body : bodies) everything += body;
  everything += factory::testing::ReadFile(dir_ / "factory.db");
  everything += factory::testing::ReadFile(dir_ / "factory.db-wal");
  EXPECT_THAT(bodies[0], HasSubstr("[REDACTED]"));  // the echo was there, and was caught
  for (const std::string& secret : {std::string(kOpenAiKey), std::string(kAnthropicKey), key_}) {
    EXPECT_THAT(everything, Not(HasSubstr(secret)));
  }
  EXPECT_THAT(everything, HasSubstr(HashKey(key_)));  // the store has the hash, not the key
}

}  // namespace
}  // namespace factory::gateway::testing
