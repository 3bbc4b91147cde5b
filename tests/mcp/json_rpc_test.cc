#include "mcp/json_rpc.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

namespace factory::mcp {
namespace {

using json = nlohmann::json;

class JsonRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dispatcher_.AddMethod("echo", [](const json& params) -> RpcResult { return params; });
    dispatcher_.AddMethod("fail", [](const json&) -> RpcResult {
      return std::unexpected(
          RpcError{kInvalidParams, "Invalid params: 'x' is wrong", {{"f", "x"}}});
    });
    dispatcher_.AddMethod("throw",
                          [](const json&) -> RpcResult { throw std::runtime_error("boom"); });
    dispatcher_.AddNotification("note", [this](const json& params) { notes_.push_back(params); });
  }

  // The parsed response; fails the test when there is none.
  json Reply(const std::string& message) {
    auto response = dispatcher_.Handle(message);
    EXPECT_TRUE(response.has_value()) << message;
    if (!response) return nullptr;
    EXPECT_EQ(response->find('\n'), std::string::npos) << "a response is one line";
    return json::parse(*response);
  }

  JsonRpcDispatcher dispatcher_;
  std::vector<json> notes_;
};

TEST_F(JsonRpcTest, RequestGetsItsResultWithItsId) {
  json reply = Reply(R"({"jsonrpc":"2.0","id":7,"method":"echo","params":{"a":1}})");
  EXPECT_EQ(reply, (json{{"jsonrpc", "2.0"}, {"id", 7}, {"result", {{"a", 1}}}}));
  reply = Reply(R"({"jsonrpc":"2.0","id":"abc","method":"echo"})");
  EXPECT_EQ(reply["id"], "abc");
  EXPECT_EQ(reply["result"], json::object());
}

TEST_F(JsonRpcTest, MalformedJsonIsAParseErrorWithNullId) {
  for (const char* text : {"{", "not json", R"({"jsonrpc":"2.0","id":1,"method":"echo")"}) {
    json reply = Reply(text);
    EXPECT_EQ(reply["error"]["code"], kParseError) << text;
    EXPECT_TRUE(reply["id"].is_null()) << text;
  }
}

TEST_F(JsonRpcTest, UnknownMethodIsMethodNotFoundNamingIt) {
  json reply = Reply(R"({"jsonrpc":"2.0","id":3,"method":"tools/frobnicate"})");
  EXPECT_EQ(reply["id"], 3);
  EXPECT_EQ(reply["error"]["code"], kMethodNotFound);
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("tools/frobnicate"),
            std::string::npos);
}

TEST_F(JsonRpcTest, InvalidRequestsNameWhatIsWrong) {
  struct Case {
    const char* message;
    int code;
    const char* names;
  };
  const Case cases[] = {
      {R"({"id":1,"method":"echo"})", kInvalidRequest, "jsonrpc"},
      {R"({"jsonrpc":"1.0","id":1,"method":"echo"})", kInvalidRequest, "jsonrpc"},
      {R"({"jsonrpc":"2.0","id":1})", kInvalidRequest, "method"},
      {R"({"jsonrpc":"2.0","id":1,"method":42})", kInvalidRequest, "method"},
      {R"({"jsonrpc":"2.0","id":{"x":1},"method":"echo"})", kInvalidRequest, "id"},
      {R"({"jsonrpc":"2.0","id":1,"method":"echo","params":[1,2]})", kInvalidParams, "params"},
      {R"({"jsonrpc":"2.0","id":1,"method":"echo","params":"x"})", kInvalidParams, "params"},
      {R"([1])", kInvalidRequest, "object"},
      {R"("just a string")", kInvalidRequest, "object"},
      {R"([])", kInvalidRequest, "empty batch"},
  };
  for (const Case& test : cases) {
    json reply = Reply(test.message);
    if (reply.is_array()) reply = reply[0];
    EXPECT_EQ(reply["error"]["code"], test.code) << test.message;
    EXPECT_NE(reply["error"]["message"].get<std::string>().find(test.names), std::string::npos)
        << test.message << " -> " << reply.dump();
  }
}

TEST_F(JsonRpcTest, MethodErrorsAndExceptionsBecomeErrorResponses) {
  json reply = Reply(R"({"jsonrpc":"2.0","id":1,"method":"fail"})");
  EXPECT_EQ(reply["error"]["code"], kInvalidParams);
  EXPECT_EQ(reply["error"]["data"], (json{{"f", "x"}}));
  reply = Reply(R"({"jsonrpc":"2.0","id":2,"method":"throw"})");
  EXPECT_EQ(reply["error"]["code"], kInternalError);
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("boom"), std::string::npos);
}

TEST_F(JsonRpcTest, NotificationsAndResponsesGetNoReply) {
  EXPECT_FALSE(dispatcher_.Handle(R"({"jsonrpc":"2.0","method":"note","params":{"n":1}})"));
  EXPECT_FALSE(dispatcher_.Handle(R"({"jsonrpc":"2.0","method":"unknown/notification"})"));
  EXPECT_FALSE(dispatcher_.Handle(R"({"jsonrpc":"2.0","id":9,"result":{}})"));
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_EQ(notes_[0], (json{{"n", 1}}));
}

TEST_F(JsonRpcTest, BatchAnswersEachRequestAndSkipsNotifications) {
  json reply = Reply(R"([{"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}},
                         {"jsonrpc":"2.0","method":"note"},
                         {"jsonrpc":"2.0","id":2,"method":"nope"}])");
  ASSERT_TRUE(reply.is_array());
  ASSERT_EQ(reply.size(), 2u);
  EXPECT_EQ(reply[0]["result"], (json{{"a", 1}}));
  EXPECT_EQ(reply[1]["error"]["code"], kMethodNotFound);
  EXPECT_FALSE(dispatcher_.Handle(R"([{"jsonrpc":"2.0","method":"note"}])"));
}

}  // namespace
}  // namespace factory::mcp
