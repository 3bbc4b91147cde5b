#include "mcp/server.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/test_util.h"
#include "mcp/factory_backend.h"
#include "queue/queue.h"
#include "store/store.h"

namespace factory::mcp {
namespace {

using json = nlohmann::json;
using testing::TempDir;

class McpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "factory.db"});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    backend_ = NewFactoryBackend(*store_, {.db_path = dir_ / "factory.db",
                                           .factory_dir = dir_.path(),
                                           .project_dir = dir_.path(),
                                           .factory_binary = "/nonexistent/factory"});
    server_ =
        std::make_unique<McpServer>(*backend_, ServerInfo{.name = "factory", .version = "9.9"});
  }

  json Request(const std::string& method, json params = json::object()) {
    json message = {{"jsonrpc", "2.0"}, {"id", ++next_id_}, {"method", method}};
    message["params"] = std::move(params);
    auto response = server_->Handle(message.dump());
    EXPECT_TRUE(response.has_value()) << method;
    return response ? json::parse(*response) : json();
  }

  void Initialize() {
    json reply = Request("initialize", {{"protocolVersion", "2025-06-18"},
                                        {"capabilities", json::object()},
                                        {"clientInfo", {{"name", "test"}, {"version", "1"}}}});
    ASSERT_TRUE(reply.contains("result")) << reply.dump();
    EXPECT_FALSE(server_->Handle(R"({"jsonrpc":"2.0","method":"notifications/initialized"})"));
  }

  // The tools/call result (a tool error is a result with isError).
  json Call(const std::string& tool, json arguments) {
    json reply = Request("tools/call", {{"name", tool}, {"arguments", std::move(arguments)}});
    EXPECT_TRUE(reply.contains("result")) << reply.dump();
    return reply["result"];
  }

  static std::string Text(const json& result) { return result["content"][0]["text"]; }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<McpServer> server_;
  int next_id_ = 0;
};

TEST_F(McpServerTest, InitializeNegotiatesTheProtocolVersion) {
  json reply = Request("initialize", {{"protocolVersion", "2025-03-26"}});
  EXPECT_EQ(reply["result"]["protocolVersion"], "2025-03-26");
  EXPECT_EQ(reply["result"]["serverInfo"]["name"], "factory");
  EXPECT_EQ(reply["result"]["serverInfo"]["version"], "9.9");
  EXPECT_TRUE(reply["result"]["capabilities"].contains("tools"));
  EXPECT_TRUE(reply["result"]["capabilities"].contains("resources"));
  // A version this server does not know: it answers with its newest.
  reply = Request("initialize", {{"protocolVersion", "1999-01-01"}});
  EXPECT_EQ(reply["result"]["protocolVersion"], std::string(kProtocolVersions[0]));
  reply = Request("initialize", {{"capabilities", json::object()}});
  EXPECT_EQ(reply["error"]["code"], kInvalidParams);
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("protocolVersion"),
            std::string::npos);
}

TEST_F(McpServerTest, ToolsNeedAnInitializedSession) {
  json reply = Request("tools/list");
  EXPECT_EQ(reply["error"]["code"], kInvalidRequest);
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("initialize"), std::string::npos);
  EXPECT_TRUE(Request("ping").contains("result"));
}

TEST_F(McpServerTest, EveryToolHasAnObjectInputSchema) {
  Initialize();
  json tools = Request("tools/list")["result"]["tools"];
  std::set<std::string> names;
  for (const json& tool : tools) {
    names.insert(tool["name"]);
    EXPECT_EQ(tool["inputSchema"]["type"], "object") << tool.dump();
    EXPECT_TRUE(tool["inputSchema"]["properties"].is_object()) << tool.dump();
    EXPECT_FALSE(tool["description"].get<std::string>().empty());
  }
  EXPECT_EQ(names,
            (std::set<std::string>{"create_task", "list_tasks", "get_task", "start_run",
                                   "run_status", "cancel_run", "retry_task", "costs", "stats"}));
}

TEST_F(McpServerTest, CreateTaskIsIdempotentByKeyAndReadableAsToolAndResource) {
  Initialize();
  json created = Call("create_task", {{"title", "write docs"},
                                      {"command", "true"},
                                      {"priority", 3},
                                      {"idempotency_key", "docs"},
                                      {"run", "r1"}});
  ASSERT_FALSE(created.value("isError", false)) << created.dump();
  const json task = created["structuredContent"]["task"];
  EXPECT_EQ(created["structuredContent"]["created"], true);
  EXPECT_EQ(task["title"], "write docs");
  EXPECT_EQ(task["priority"], 3);
  EXPECT_EQ(task["run"], "r1");
  EXPECT_EQ(json::parse(Text(created)), created["structuredContent"]);

  json again =
      Call("create_task", {{"title", "write docs"}, {"idempotency_key", "docs"}, {"run", "r1"}});
  EXPECT_EQ(again["structuredContent"]["created"], false);
  EXPECT_EQ(again["structuredContent"]["task"]["id"], task["id"]);

  json got = Call("get_task", {{"id", task["id"]}});
  EXPECT_EQ(got["structuredContent"]["task"]["id"], task["id"]);
  EXPECT_TRUE(got["structuredContent"]["attempts"].is_array());

  json listed = Call("list_tasks", {{"run", "r1"}, {"state", "ready"}});
  ASSERT_EQ(listed["structuredContent"]["tasks"].size(), 1u);
  EXPECT_TRUE(
      Call("list_tasks", {{"run", "r1"}, {"state", "done"}})["structuredContent"]["tasks"].empty());

  const std::string uri = "factory://tasks/" + task["id"].get<std::string>();
  json resources = Request("resources/list")["result"]["resources"];
  std::set<std::string> uris;
  for (const json& resource : resources) uris.insert(resource["uri"]);
  EXPECT_TRUE(uris.contains(uri));
  EXPECT_TRUE(uris.contains("factory://runs/r1"));
  json read = Request("resources/read", {{"uri", uri}})["result"]["contents"][0];
  EXPECT_EQ(read["uri"], uri);
  EXPECT_EQ(read["mimeType"], "application/json");
  EXPECT_EQ(json::parse(read["text"].get<std::string>())["task"]["id"], task["id"]);
  json run = Request("resources/read", {{"uri", "factory://runs/r1"}})["result"]["contents"][0];
  EXPECT_EQ(json::parse(run["text"].get<std::string>())["run"]["id"], "r1");
}

TEST_F(McpServerTest, BadArgumentsAreToolErrorsNamingTheField) {
  Initialize();
  struct Case {
    std::string tool;
    json arguments;
    std::string names;
  };
  const std::vector<Case> cases = {
      {"create_task", {{"command", "true"}}, "'title'"},
      {"create_task", {{"title", ""}}, "'title'"},
      {"create_task", {{"title", 7}}, "'title'"},
      {"create_task", {{"title", "x"}, {"priority", "high"}}, "'priority'"},
      {"create_task", {{"title", "x"}, {"depends_on", "a"}}, "'depends_on'"},
      {"create_task", {{"title", "x"}, {"colour", "red"}}, "'colour'"},
      {"create_task", {{"title", "x"}, {"idempotency_key", ""}}, "'idempotency_key'"},
      {"list_tasks", {{"state", "sleeping"}}, "'state'"},
      {"list_tasks", {{"limit", 0}}, "'limit'"},
      {"get_task", json::object(), "'id'"},
      {"run_status", json::object(), "'run'"},
      {"cancel_run", {{"run", 5}}, "'run'"},
      {"costs", {{"by", "colour"}}, "'by'"},
      {"costs", {{"since", "last tuesday"}}, "'since'"},
      {"start_run", json::object(), "'feature'"},
      {"start_run", {{"feature", "x"}, {"backlog", {{"tasks", json::array()}}}}, "'backlog'"},
      {"start_run", {{"backlog", {{"items", json::array()}}}}, "'backlog'"},
      {"start_run", {{"backlog", {{"tasks", {{{"id", "a"}}}}}}}, "backlog"},
      {"start_run", {{"feature", "x"}, {"run_id", "../escape"}}, "run_id"},
  };
  for (const Case& test : cases) {
    json result = Call(test.tool, test.arguments);
    EXPECT_TRUE(result.value("isError", false)) << test.tool << " " << test.arguments.dump();
    EXPECT_NE(Text(result).find(test.names), std::string::npos)
        << test.tool << " " << test.arguments.dump() << " -> " << Text(result);
  }
}

TEST_F(McpServerTest, UnknownToolAndBadCallParamsAreProtocolErrors) {
  Initialize();
  json reply = Request("tools/call", {{"name", "no_such_tool"}, {"arguments", json::object()}});
  EXPECT_EQ(reply["error"]["code"], kInvalidParams);
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("no_such_tool"), std::string::npos);
  reply = Request("tools/call", {{"arguments", json::object()}});
  EXPECT_EQ(reply["error"]["code"], kInvalidParams);
  reply = Request("resources/read", {{"uri", "https://example.com/x"}});
  EXPECT_EQ(reply["error"]["code"], kInvalidParams);
  reply = Request("resources/read", {{"uri", "factory://tasks/missing"}});
  EXPECT_EQ(reply["error"]["code"], kResourceNotFound);
  EXPECT_EQ(reply["error"]["data"]["uri"], "factory://tasks/missing");
}

TEST_F(McpServerTest, MissingThingsAndIllegalChangesAreToolErrors) {
  Initialize();
  EXPECT_TRUE(Call("get_task", {{"id", "missing"}}).value("isError", false));
  EXPECT_TRUE(Call("run_status", {{"run", "missing"}}).value("isError", false));
  EXPECT_TRUE(Call("stats", {{"run", "missing"}}).value("isError", false));
  json created = Call("create_task", {{"title", "a"}, {"run", "r2"}});
  const std::string id = created["structuredContent"]["task"]["id"];
  // A ready task cannot be retried.
  json retried = Call("retry_task", {{"id", id}});
  EXPECT_TRUE(retried.value("isError", false)) << retried.dump();
  json unknown_dependency = Call("create_task", {{"title", "b"}, {"depends_on", {"nope"}}});
  EXPECT_TRUE(unknown_dependency.value("isError", false));
}

TEST_F(McpServerTest, CancelRunCancelsItsOpenTasksAndRetryBringsOneBack) {
  Initialize();
  json first = Call("create_task", {{"title", "a"}, {"run", "r3"}});
  const std::string first_id = first["structuredContent"]["task"]["id"];
  Call("create_task", {{"title", "b"}, {"run", "r3"}, {"depends_on", {first_id}}});
  Call("create_task", {{"title", "other run"}, {"run", "r4"}});
  json cancelled = Call("cancel_run", {{"run", "r3"}});
  ASSERT_FALSE(cancelled.value("isError", false)) << cancelled.dump();
  EXPECT_EQ(cancelled["structuredContent"]["state"], "cancelled");
  json status = Call("run_status", {{"run", "r3"}})["structuredContent"];
  EXPECT_EQ(status["run"]["state"], "cancelled");
  for (const json& task : status["tasks"]) EXPECT_EQ(task["state"], "cancelled") << task.dump();
  EXPECT_EQ(Call("run_status", {{"run", "r4"}})["structuredContent"]["tasks"][0]["state"], "ready");
  json stats = Call("stats", {{"run", "r3"}});
  EXPECT_FALSE(stats.value("isError", false)) << stats.dump();
  json costs = Call("costs", {{"by", "agent"}, {"since", "7d"}});
  EXPECT_FALSE(costs.value("isError", false)) << costs.dump();
}

TEST_F(McpServerTest, ListTasksPagesWithACursor) {
  Initialize();
  std::vector<std::string> ids;
  for (int index = 0; index < 5; ++index) {
    json created = Call("create_task", {{"title", "t" + std::to_string(index)}, {"run", "pages"}});
    ids.push_back(created["structuredContent"]["task"]["id"]);
  }
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    json arguments = {{"run", "pages"}, {"limit", 2}};
    if (!cursor.empty()) arguments["cursor"] = cursor;
    json page = Call("list_tasks", arguments)["structuredContent"];
    for (const json& task : page["tasks"]) seen.push_back(task["id"]);
    cursor = page.value("next_cursor", "");
    ++pages;
  } while (!cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, ids);
}

TEST_F(McpServerTest, ServeAnswersLineByLine) {
  std::istringstream in(
      R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}})"
      "\n\n"
      R"({"jsonrpc":"2.0","method":"notifications/initialized"})"
      "\n"
      "garbage\r\n"
      R"({"jsonrpc":"2.0","id":2,"method":"ping"})"
      "\n");
  std::ostringstream out;
  server_->Serve(in, out);
  std::istringstream lines(out.str());
  std::vector<json> replies;
  for (std::string line; std::getline(lines, line);) replies.push_back(json::parse(line));
  ASSERT_EQ(replies.size(), 3u) << out.str();
  EXPECT_EQ(replies[0]["result"]["protocolVersion"], "2025-11-25");
  EXPECT_EQ(replies[1]["error"]["code"], kParseError);
  EXPECT_EQ(replies[2]["id"], 2);
}

}  // namespace
}  // namespace factory::mcp
