// Wire round trips of the OpenAI-compatible and Anthropic providers against the fake servers
// over real loopback HTTP.

#include "llm/provider.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "llm/fake_provider.h"
#include "llm/models_report.h"

namespace factory::llm {
namespace {

using fake::FakeProviderServer;
using fake::FakeReply;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyEnv[] = "FACTORY_LLM_PROVIDER_TEST_KEY";
constexpr char kKey[] = "sk-test-SUPERSECRET-0123456789";

class ProviderTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv(kKeyEnv, kKey, 1); }
  void TearDown() override { ::unsetenv(kKeyEnv); }

  ProviderConfig Config(ProviderKind kind) {
    ProviderConfig config;
    config.name = kind == ProviderKind::kOpenAi ? "oai" : "ant";
    config.kind = kind;
    config.base_url =
        kind == ProviderKind::kOpenAi ? fake_.openai_base_url() : fake_.anthropic_base_url();
    config.api_key_env = kKeyEnv;
    config.timeout_ms = 5'000;
    config.connect_timeout_ms = 2'000;
    return config;
  }
  std::unique_ptr<Provider> Make(ProviderKind kind) { return MakeProvider(Config(kind), &http_); }

  static ChatRequest Conversation() {
    ChatRequest request;
    request.model = "test-model";
    request.messages = {
        Message::System("You are terse."),
        Message::User("Read a.txt"),
        Message::Assistant("", {ToolCall{"call_1", "read_file", R"({"path":"a.txt"})"},
                                ToolCall{"call_2", "list_dir", R"({"path":"."})"}}),
        Message::ToolResult("call_1", "contents of a"),
        Message::ToolResult("call_2", "a.txt b.txt"),
        Message::User("Now summarise."),
    };
    request.tools = {ToolSpec{"read_file", "Read a file",
                              R"({"type":"object","properties":{"path":{"type":"string"}}})"},
                     ToolSpec{"list_dir", "", ""}};
    request.temperature = 0.2;
    request.max_tokens = 256;
    request.top_p = 0.9;
    request.stop = {"END"};
    request.tool_choice = "read_file";
    return request;
  }

  // Members are destroyed in reverse: the client (and its keep-alive connections) first.
  FakeProviderServer fake_;
  HttpClient http_;
};

class BothKindsTest : public ProviderTest, public ::testing::WithParamInterface<ProviderKind> {};

TEST_F(ProviderTest, OpenAiRequestAndResponseOnTheWire) {
  fake_.Enqueue(FakeReply::Text("Summary.", Usage{1'200, 30, 1'024, 0}));
  auto provider = Make(ProviderKind::kOpenAi);
  auto response = provider->Chat(Conversation());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->text, "Summary.");
  EXPECT_EQ(response->finish_reason, "stop");
  EXPECT_EQ(response->usage, (Usage{1'200, 30, 1'024, 0}));
  EXPECT_EQ(response->provider, "oai");
  EXPECT_EQ(response->model, "test-model");
  EXPECT_EQ(response->http_status, 200);

  ASSERT_EQ(fake_.request_count(), 1u);
  const auto recorded = fake_.requests()[0];
  EXPECT_EQ(recorded.path, "/v1/chat/completions");
  EXPECT_EQ(recorded.Header("Authorization"), std::string("Bearer ") + kKey);
  const json body = recorded.Json();
  EXPECT_EQ(body["model"], "test-model");
  EXPECT_EQ(body["temperature"], 0.2);
  EXPECT_EQ(body["max_tokens"], 256);
  EXPECT_FALSE(body.contains("stream"));
  EXPECT_EQ(body["top_p"], 0.9);
  EXPECT_EQ(body["stop"], json::array({"END"}));
  EXPECT_EQ(body["tool_choice"]["function"]["name"], "read_file");
  ASSERT_EQ(body["messages"].size(), 6u);
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][2]["role"], "assistant");
  EXPECT_TRUE(body["messages"][2]["content"].is_null());
  EXPECT_EQ(body["messages"][2]["tool_calls"][0]["id"], "call_1");
  EXPECT_EQ(body["messages"][2]["tool_calls"][0]["type"], "function");
  EXPECT_EQ(body["messages"][2]["tool_calls"][0]["function"]["arguments"], R"({"path":"a.txt"})");
  EXPECT_EQ(body["messages"][3]["role"], "tool");
  EXPECT_EQ(body["messages"][3]["tool_call_id"], "call_1");
  EXPECT_EQ(body["tools"][0]["type"], "function");
  EXPECT_EQ(body["tools"][0]["function"]["parameters"]["properties"]["path"]["type"], "string");
  EXPECT_EQ(body["tools"][1]["function"]["parameters"]["type"], "object");
}

TEST_F(ProviderTest, AnthropicRequestAndResponseOnTheWire) {
  fake_.Enqueue(FakeReply::Text("Summary.", Usage{1'500, 40, 1'000, 200}));
  auto provider = Make(ProviderKind::kAnthropic);
  auto response = provider->Chat(Conversation());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->text, "Summary.");
  EXPECT_EQ(response->finish_reason, "stop");
  // input_tokens 300 + cache reads 1,000 + cache writes 200 on the wire.
  EXPECT_EQ(response->usage, (Usage{1'500, 40, 1'000, 200}));

  const auto recorded = fake_.requests()[0];
  EXPECT_EQ(recorded.path, "/v1/messages");
  EXPECT_EQ(recorded.Header("x-api-key"), kKey);
  EXPECT_EQ(recorded.Header("anthropic-version"), "2023-06-01");
  EXPECT_EQ(recorded.Header("Authorization"), "");
  const json body = recorded.Json();
  EXPECT_EQ(body["system"], "You are terse.");
  EXPECT_EQ(body["max_tokens"], 256);
  EXPECT_EQ(body["top_p"], 0.9);
  EXPECT_EQ(body["stop_sequences"], json::array({"END"}));
  EXPECT_EQ(body["tool_choice"], json({{"type", "tool"}, {"name", "read_file"}}));
  ASSERT_EQ(body["messages"].size(), 4u);  // user, assistant, user(tool results), user
  EXPECT_EQ(body["messages"][1]["content"][0]["type"], "tool_use");
  EXPECT_EQ(body["messages"][1]["content"][0]["input"]["path"], "a.txt");
  EXPECT_EQ(body["messages"][2]["role"], "user");
  ASSERT_EQ(body["messages"][2]["content"].size(), 2u);  // both results in one message
  EXPECT_EQ(body["messages"][2]["content"][1]["type"], "tool_result");
  EXPECT_EQ(body["messages"][2]["content"][1]["tool_use_id"], "call_2");
  EXPECT_EQ(body["tools"][0]["input_schema"]["properties"]["path"]["type"], "string");
  EXPECT_EQ(body["tools"][1]["input_schema"]["type"], "object");
}

TEST_P(BothKindsTest, ToolCallsComeBack) {
  const std::vector<ToolCall> calls = {
      ToolCall{"call_9", "write_file", R"({"content":"x","path":"b.txt"})"},
      ToolCall{"call_10", "finish", R"({"summary":"done"})"}};
  fake_.Enqueue(FakeReply::Tools(calls, Usage{50, 20, 0, 0}, "Writing."));
  auto response = Make(GetParam())->Chat(Conversation());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->text, "Writing.");
  EXPECT_EQ(response->finish_reason, "tool_calls");
  ASSERT_EQ(response->tool_calls.size(), 2u);
  EXPECT_EQ(response->tool_calls[0].id, "call_9");
  EXPECT_EQ(response->tool_calls[0].name, "write_file");
  EXPECT_EQ(json::parse(response->tool_calls[0].arguments_json),
            json::parse(calls[0].arguments_json));
  EXPECT_EQ(response->tool_calls[1].name, "finish");
}

TEST_P(BothKindsTest, StreamsTextAndToolCallsWithUsage) {
  const std::vector<ToolCall> calls = {
      ToolCall{"call_1", "edit_file", R"({"path":"src/x.cc","search":"a","replace":"b"})"}};
  fake_.Enqueue(FakeReply::Tools(calls, Usage{2'000, 64, 1'536, 0}, "Let me edit that file."));
  std::string streamed_text;
  std::string streamed_args;
  std::string streamed_name;
  int deltas = 0;
  auto response = Make(GetParam())->ChatStream(Conversation(), [&](const StreamDelta& delta) {
    ++deltas;
    if (delta.kind == StreamDelta::Kind::kText) {
      streamed_text += delta.text;
    } else {
      EXPECT_EQ(delta.tool_index, 0);
      streamed_name += delta.tool_name;
      streamed_args += delta.arguments_fragment;
    }
  });
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_GT(deltas, 4);  // really incremental
  EXPECT_EQ(streamed_text, "Let me edit that file.");
  EXPECT_EQ(response->text, streamed_text);
  EXPECT_EQ(streamed_name, "edit_file");
  ASSERT_EQ(response->tool_calls.size(), 1u);
  EXPECT_EQ(response->tool_calls[0].id, "call_1");
  EXPECT_EQ(response->tool_calls[0].arguments_json, streamed_args);
  EXPECT_EQ(json::parse(streamed_args), json::parse(calls[0].arguments_json));
  EXPECT_EQ(response->finish_reason, "tool_calls");
  EXPECT_EQ(response->usage, (Usage{2'000, 64, 1'536, 0}));

  const json body = fake_.requests()[0].Json();
  EXPECT_EQ(body["stream"], true);
  if (GetParam() == ProviderKind::kOpenAi) {
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
  }
}

TEST_P(BothKindsTest, RateLimitCarriesRetryAfter) {
  fake_.Enqueue(FakeReply::RateLimited(2));
  auto response = Make(GetParam())->Chat(Conversation());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(response.error().retryable());
  EXPECT_EQ(response.error().http_status, 429);
  EXPECT_EQ(response.error().retry_after_ms, 2'000);
  EXPECT_THAT(response.error().message, HasSubstr("rate limited"));
}

TEST_F(ProviderTest, OpenAiRetryAfterMsHeaderIsPreferred) {
  FakeReply limited = FakeReply::RateLimited(2);
  limited.headers["retry-after-ms"] = "1500";
  fake_.Enqueue(limited);
  auto response = Make(ProviderKind::kOpenAi)->Chat(Conversation());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().retry_after_ms, 1'500);
}

TEST_P(BothKindsTest, StatusesMapToCodes) {
  struct Case {
    int status;
    ErrorCode code;
  };
  for (const Case& c : {Case{500, ErrorCode::kUnavailable}, Case{503, ErrorCode::kUnavailable},
                        Case{529, ErrorCode::kUnavailable}, Case{400, ErrorCode::kInvalidArgument},
                        Case{401, ErrorCode::kPermissionDenied}, Case{404, ErrorCode::kNotFound}}) {
    fake_.Enqueue(FakeReply::Error(c.status, "boom " + std::to_string(c.status)));
    auto response = Make(GetParam())->Chat(Conversation());
    ASSERT_FALSE(response) << c.status;
    EXPECT_EQ(response.error().code, c.code) << c.status;
    EXPECT_EQ(response.error().http_status, c.status);
    EXPECT_EQ(response.error().retry_after_ms, -1);
    EXPECT_THAT(response.error().message, HasSubstr("boom " + std::to_string(c.status)));
  }
}

TEST_P(BothKindsTest, MalformedJsonIsRetryable) {
  fake_.Enqueue(FakeReply::Malformed());
  auto response = Make(GetParam())->Chat(Conversation());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(response.error().message, HasSubstr("unusable response"));
}

TEST_P(BothKindsTest, TruncatedStreamIsRetryable) {
  fake_.Enqueue(
      FakeReply::Text("a long answer that will be cut", Usage{10, 10, 0, 0}).TruncatedAfter(4));
  std::string seen;
  int64_t deltas = 0;
  auto response = Make(GetParam())->ChatStream(Conversation(), [&](const StreamDelta& delta) {
    seen += delta.text;
    ++deltas;
  });
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(response.error().message, HasSubstr("truncated"));
  EXPECT_FALSE(seen.empty());  // some deltas did arrive before the cut
  // The cut stream is billed for its output so far, a token per delta (the reported count is
  // not there yet), and for the input where the provider reported it: Anthropic does in
  // message_start, OpenAI only at the end (the router then estimates it).
  const Usage& billed = response.error().usage;
  EXPECT_EQ(billed.output_tokens, deltas);
  EXPECT_EQ(billed.input_tokens, GetParam() == ProviderKind::kAnthropic ? 10 : 0);
}

TEST_P(BothKindsTest, AStreamCutBeforeItsFirstEventOrARefusedOneIsBilledNothing) {
  fake_.Enqueue(FakeReply::Text("never sent", Usage{10, 10, 0, 0}).TruncatedAfter(0));
  fake_.Enqueue(FakeReply::Error(503, "overloaded"));
  for (int i = 0; i < 2; ++i) {
    auto response = Make(GetParam())->ChatStream(Conversation(), [](const StreamDelta&) {});
    ASSERT_FALSE(response) << i;
    EXPECT_TRUE(response.error().usage.empty()) << i;
  }
}

TEST_P(BothKindsTest, SlowAnswerTimesOut) {
  fake_.Enqueue(FakeReply::Text("late").WithDelay(3'000));
  ProviderConfig config = Config(GetParam());
  config.timeout_ms = 200;
  auto provider = MakeProvider(config, &http_);
  const auto start = std::chrono::steady_clock::now();
  auto response = provider->Chat(Conversation());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(response.error().retryable());
  EXPECT_LT(elapsed, std::chrono::milliseconds(2'000));
}

TEST_P(BothKindsTest, ConnectionRefusedIsRetryable) {
  ProviderConfig config = Config(GetParam());
  {
    FakeProviderServer gone;
    config.base_url =
        GetParam() == ProviderKind::kOpenAi ? gone.openai_base_url() : gone.anthropic_base_url();
  }
  auto response = MakeProvider(config, &http_)->Chat(Conversation());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(response.error().http_status, 0);
}

TEST_P(BothKindsTest, KeyEchoedByTheServerNeverLeaks) {
  FakeReply echo = FakeReply::Error(401, "invalid api key");
  echo.echo_credentials = true;
  fake_.Enqueue(echo);
  fake_.Enqueue(echo);
  FakeReply raw = FakeReply::Error(500, "");
  raw.raw_body = std::string("upstream proxy error, header was: ") + kKey;
  raw.status = 502;
  fake_.Enqueue(raw);
  auto provider = Make(GetParam());
  std::vector<std::string> messages;
  auto plain = provider->Chat(Conversation());
  ASSERT_FALSE(plain);
  messages.push_back(plain.error().ToString());
  auto streamed = provider->ChatStream(Conversation(), [](const StreamDelta&) {});
  ASSERT_FALSE(streamed);
  messages.push_back(streamed.error().ToString());
  auto proxied = provider->Chat(Conversation());
  ASSERT_FALSE(proxied);
  messages.push_back(proxied.error().ToString());
  for (const auto& message : messages) {
    EXPECT_THAT(message, Not(HasSubstr(kKey))) << message;
    EXPECT_THAT(message, Not(HasSubstr("SUPERSECRET"))) << message;
    EXPECT_THAT(message, HasSubstr("[REDACTED]")) << message;
  }
  // The server did receive the key: it was really echoed, and really redacted.
  EXPECT_THAT(fake_.requests()[0].Header(GetParam() == ProviderKind::kOpenAi ? "Authorization"
                                                                             : "x-api-key"),
              HasSubstr(kKey));
}

TEST_P(BothKindsTest, MissingKeyFailsWithoutCalling) {
  ::unsetenv(kKeyEnv);
  auto response = Make(GetParam())->Chat(Conversation());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(response.error().message, HasSubstr(kKeyEnv));
  EXPECT_EQ(fake_.request_count(), 0u);
}

TEST_P(BothKindsTest, ReusesTheConnection) {
  fake_.Enqueue(FakeReply::Text("one"));
  fake_.Enqueue(FakeReply::Text("two"));
  auto provider = Make(GetParam());
  ASSERT_TRUE(provider->Chat(Conversation()));
  ASSERT_TRUE(provider->Chat(Conversation()));
  const auto requests = fake_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].remote_port, requests[1].remote_port);
}

TEST_P(BothKindsTest, ListModelsProbes) {
  auto models = Make(GetParam())->ListModels();
  ASSERT_TRUE(models) << models.error().ToString();
  EXPECT_EQ(*models, std::vector<std::string>{"fake-model"});
}

INSTANTIATE_TEST_SUITE_P(Kinds, BothKindsTest,
                         ::testing::Values(ProviderKind::kOpenAi, ProviderKind::kAnthropic),
                         [](const ::testing::TestParamInfo<ProviderKind>& info) {
                           return std::string(ProviderKindName(info.param));
                         });

TEST_F(ProviderTest, AnthropicPromptCacheBreakpoints) {
  fake_.Enqueue(FakeReply::Text("ok"));
  ChatRequest request = Conversation();
  request.cache_prompt = true;
  ASSERT_TRUE(Make(ProviderKind::kAnthropic)->Chat(request));
  const json body = fake_.requests()[0].Json();
  ASSERT_TRUE(body["system"].is_array());
  EXPECT_EQ(body["system"][0]["text"], "You are terse.");
  EXPECT_EQ(body["system"][0]["cache_control"]["type"], "ephemeral");
  EXPECT_EQ(body["tools"].back()["cache_control"]["type"], "ephemeral");
  EXPECT_FALSE(body["tools"][0].contains("cache_control"));
}

TEST_P(BothKindsTest, StalledStreamHitsTheIdleTimeout) {
  FakeReply stalled = FakeReply::Text("slow words");
  stalled.event_delay_ms = 5'000;
  fake_.Enqueue(stalled);
  ProviderConfig config = Config(GetParam());
  config.timeout_ms = 300;  // streaming: the longest silence allowed (1 s granularity)
  const auto start = std::chrono::steady_clock::now();
  auto response =
      MakeProvider(config, &http_)->ChatStream(Conversation(), [](const StreamDelta&) {});
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2'500));
}

TEST_F(ProviderTest, ModelsReportChecksProviders) {
  ModelsConfig config;
  config.path = "inline";
  config.providers.push_back(Config(ProviderKind::kOpenAi));
  ProviderConfig dead = Config(ProviderKind::kAnthropic);
  dead.name = "dead";
  {
    FakeProviderServer gone;
    dead.base_url = gone.anthropic_base_url();
  }
  config.providers.push_back(dead);
  ProviderConfig keyless = Config(ProviderKind::kOpenAi);
  keyless.name = "keyless";
  keyless.available = false;
  keyless.unavailable_reason = "environment variable X is not set";
  config.providers.push_back(keyless);
  config.models.push_back(ModelSpec{"m", "oai", "m-id", 1, 2, 0.5, 1, 1000, 100, ""});
  config.aliases.push_back(AliasConfig{"cloud/fast", {"m"}, ""});
  const ModelsReport report = DescribeModels(
      config, /*check=*/true,
      [this](const ProviderConfig& provider) { return MakeProvider(provider, &http_); });
  ASSERT_EQ(report.providers.size(), 3u);
  EXPECT_TRUE(report.providers[0].reachable);
  EXPECT_EQ(report.providers[0].served_models, std::vector<std::string>{"fake-model"});
  EXPECT_TRUE(report.providers[1].checked);
  EXPECT_FALSE(report.providers[1].reachable);
  EXPECT_FALSE(report.providers[1].check_error.empty());
  EXPECT_FALSE(report.providers[2].checked);
  const json out = ModelsReportToJson(report);
  EXPECT_EQ(out["models"][0]["aliases"][0], "cloud/fast");
  EXPECT_EQ(out["providers"][2]["unavailable_reason"], "environment variable X is not set");
  EXPECT_THAT(out.dump(), Not(HasSubstr(kKey)));
}

TEST_F(ProviderTest, OpenAiEmbeddings) {
  fake_.Enqueue(FakeReply::Embeddings({{0.1f, 0.2f}, {0.3f, 0.4f}}, Usage{7, 0, 0, 0}));
  EmbeddingRequest request;
  request.model = "embed-small";
  request.inputs = {"first", "second"};
  auto response = Make(ProviderKind::kOpenAi)->Embed(request);
  ASSERT_TRUE(response) << response.error().ToString();
  ASSERT_EQ(response->embeddings.size(), 2u);
  EXPECT_FLOAT_EQ(response->embeddings[1][1], 0.4f);
  EXPECT_EQ(response->usage.input_tokens, 7);
  const json body = fake_.requests()[0].Json();
  EXPECT_EQ(body["input"], json::array({"first", "second"}));
  EXPECT_EQ(body["model"], "embed-small");
  EXPECT_EQ(Make(ProviderKind::kAnthropic)->Embed(request).error().code,
            ErrorCode::kFailedPrecondition);
}

TEST_F(ProviderTest, KeylessLocalServerWorks) {
  ProviderConfig config = Config(ProviderKind::kOpenAi);
  config.api_key_env = "FACTORY_LLM_PROVIDER_TEST_UNSET";
  config.api_key_optional = true;
  fake_.Enqueue(FakeReply::Text("local"));
  auto response = MakeProvider(config, &http_)->Chat(Conversation());
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(fake_.requests()[0].Header("Authorization"), "");
}

}  // namespace
}  // namespace factory::llm
