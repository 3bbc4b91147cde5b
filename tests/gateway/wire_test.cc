// The gateway's wire helpers: which status and error shape each failure gets, usage
// normalisation, SSE framing, and the cli runner's gateway variables.

#include "gateway/internal/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runners/cli_runner.h"

namespace factory::gateway::internal {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

llm::CallError Failure(ErrorCode code, int http_status = 0, int64_t retry_after_ms = -1) {
  return llm::CallError{code, http_status, retry_after_ms, "why"};
}

TEST(WireTest, EachFailureGetsItsStatusAndType) {
  struct Case {
    llm::CallError error;
    int status;
    std::string openai_type;
    std::string anthropic_type;
  };
  const std::vector<Case> cases = {
      {Failure(ErrorCode::kInvalidArgument, 400), 400, "invalid_request_error",
       "invalid_request_error"},
      {Failure(ErrorCode::kInvalidArgument, 413), 413, "invalid_request_error",
       "request_too_large"},
      {Failure(ErrorCode::kNotFound, 404), 404, "invalid_request_error", "not_found_error"},
      {Failure(ErrorCode::kResourceExhausted), 402, "insufficient_quota", "billing_error"},
      {Failure(ErrorCode::kUnavailable, 429, 2'500), 429, "rate_limit_error", "rate_limit_error"},
      {Failure(ErrorCode::kUnavailable, 503), 502, "api_error", "api_error"},
      {Failure(ErrorCode::kUnavailable, 0, 30'000), 503, "api_error", "api_error"},
      {Failure(ErrorCode::kDeadlineExceeded), 504, "api_error", "api_error"},
      {Failure(ErrorCode::kPermissionDenied, 401), 502, "api_error", "api_error"},
      {Failure(ErrorCode::kFailedPrecondition), 503, "api_error", "api_error"},
  };
  for (const Case& c : cases) {
    const ClientError openai = FromCallError(Protocol::kOpenAi, c.error);
    const ClientError anthropic = FromCallError(Protocol::kAnthropic, c.error);
    EXPECT_EQ(openai.status, c.status) << c.error.ToString();
    EXPECT_EQ(anthropic.status, c.status) << c.error.ToString();
    EXPECT_EQ(openai.type, c.openai_type) << c.error.ToString();
    EXPECT_EQ(anthropic.type, c.anthropic_type) << c.error.ToString();
  }
  EXPECT_EQ(
      FromCallError(Protocol::kOpenAi, Failure(ErrorCode::kUnavailable, 429, 2'500)).retry_after_s,
      3);  // rounded up
  EXPECT_EQ(FromCallError(Protocol::kOpenAi, Failure(ErrorCode::kResourceExhausted)).code,
            "budget_exceeded");
}

TEST(WireTest, ErrorBodiesHaveEachProvidersShape) {
  ClientError error{.status = 402,
                    .type = "insufficient_quota",
                    .code = "budget_exceeded",
                    .message = "no money"};
  const json openai = json::parse(ErrorBody(Protocol::kOpenAi, error));
  EXPECT_EQ(openai, (json{{"error",
                           {{"message", "no money"},
                            {"type", "insufficient_quota"},
                            {"param", nullptr},
                            {"code", "budget_exceeded"}}}}));
  error.type = "billing_error";
  const json anthropic = json::parse(ErrorBody(Protocol::kAnthropic, error));
  EXPECT_EQ(anthropic, (json{{"type", "error"},
                             {"error", {{"type", "billing_error"}, {"message", "no money"}}}}));
  // Bytes that are not UTF-8 in a message do not make the body unserialisable.
  error.message = std::string("bad \xff byte");
  EXPECT_NO_THROW(json::parse(ErrorBody(Protocol::kOpenAi, error)));
}

TEST(WireTest, UpstreamFailuresAreClassifiedAndRedacted) {
  const std::vector<std::string> secrets = {"sk-secret-123456"};
  auto limited = ClassifyUpstream(429, "4", R"({"error":{"message":"slow down"}})", secrets, 0);
  EXPECT_EQ(limited.code, ErrorCode::kUnavailable);
  EXPECT_EQ(limited.retry_after_ms, 4'000);
  EXPECT_THAT(limited.message, HasSubstr("slow down"));
  auto leaky = ClassifyUpstream(
      400, "", R"({"error":{"message":"key sk-secret-123456 is not allowed"}})", secrets, 0);
  EXPECT_EQ(leaky.code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(leaky.message, Not(HasSubstr("sk-secret-123456")));
  EXPECT_THAT(leaky.message, HasSubstr("[REDACTED]"));
  EXPECT_EQ(ClassifyUpstream(401, "", "nope", secrets, 0).code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(ClassifyUpstream(404, "", "", secrets, 0).code, ErrorCode::kNotFound);
  EXPECT_EQ(ClassifyUpstream(529, "", "", secrets, 0).code, ErrorCode::kUnavailable);
}

TEST(WireTest, UsageIsNormalised) {
  const llm::Usage openai = OpenAiUsage(json::parse(
      R"({"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40}})"));
  EXPECT_EQ(openai, (llm::Usage{100, 7, 40, 0}));
  // Anthropic's input_tokens excludes cache reads and writes; ours includes them.
  const llm::Usage anthropic = AnthropicUsage(json::parse(
      R"({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 20})"));
  EXPECT_EQ(anthropic, (llm::Usage{330, 5, 300, 20}));
  EXPECT_EQ(OpenAiUsage(json(nullptr)), llm::Usage{});
}

TEST(WireTest, SseEventsAreFramedLineByLine) {
  std::string out;
  AppendSseEvent(out, llm::SseEvent{"message_start", "{\"a\":1}", ""});
  AppendSseEvent(out, llm::SseEvent{"", "line one\nline two", ""});
  EXPECT_EQ(out, "event: message_start\ndata: {\"a\":1}\n\ndata: line one\ndata: line two\n\n");
  // And it parses back to the same events.
  std::vector<llm::SseEvent> events;
  llm::SseParser parser;
  parser.Feed(out, [&](const llm::SseEvent& event) { events.push_back(event); });
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].data, "line one\nline two");
}

TEST(WireTest, CliRunnerPointsAgentsAtTheGateway) {
  EXPECT_TRUE(GatewayEnvironment({}).empty());
  EXPECT_TRUE(GatewayEnvironment({{kGatewayUrlVar, "http://127.0.0.1:9"}}).empty());
  const auto env = GatewayEnvironment(
      {{kGatewayUrlVar, "http://127.0.0.1:8788/"}, {kGatewayKeyVar, "fk-abc"}, {"OTHER", "x"}});
  EXPECT_EQ(env,
            (std::map<std::string, std::string>{{"OPENAI_BASE_URL", "http://127.0.0.1:8788/v1"},
                                                {"OPENAI_API_BASE", "http://127.0.0.1:8788/v1"},
                                                {"OPENAI_API_KEY", "fk-abc"},
                                                {"ANTHROPIC_BASE_URL", "http://127.0.0.1:8788"},
                                                {"ANTHROPIC_API_KEY", "fk-abc"}}));
}

}  // namespace
}  // namespace factory::gateway::internal
