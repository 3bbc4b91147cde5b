// The official MCP TypeScript SDK client (installed by the mcp_npm_ci fixture) starting the
// real `factory mcp` as its subprocess over stdio: initialize, tools, tool errors, resources.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "common/test_util.h"
#include "core/subprocess.h"

namespace factory {
namespace {

using nlohmann::json;

SubprocessResult RunProcess(std::vector<std::string> argv,
                            std::map<std::string, std::string> env = {}, std::string cwd = "") {
  SubprocessOptions options;
  options.argv = std::move(argv);
  options.env_set = std::move(env);
  options.cwd = std::move(cwd);
  options.timeout_ms = 120'000;
  options.tail_bytes = 1 << 20;
  auto result = RunSubprocess(options);
  EXPECT_TRUE(result) << result.error().ToString();
  return result ? *result : SubprocessResult{};
}

TEST(McpNpmTest, OfficialSdkClientDrivesTheFactoryOverStdio) {
  factory::testing::TempDir project;
  ASSERT_EQ(RunProcess({FACTORY_BINARY, "init"}, {}, project.path().string()).exit_code, 0);

  auto client = RunProcess(
      {FACTORY_NODE, "client.mjs"},
      {{"FACTORY_BINARY", FACTORY_BINARY}, {"PROJECT_DIR", project.path().string()}}, MCP_NPM_DIR);
  ASSERT_EQ(client.exit_code, 0) << client.stderr_tail;
  const json seen = json::parse(client.stdout_tail);

  EXPECT_EQ(seen["server"]["name"], "factory");
  EXPECT_TRUE(seen["capabilities"].contains("tools"));
  EXPECT_TRUE(seen["capabilities"].contains("resources"));
  std::set<std::string> tools;
  for (const json& tool : seen["tools"]) {
    tools.insert(tool["name"].get<std::string>());
    EXPECT_EQ(tool["schema"]["type"], "object");
  }
  EXPECT_EQ(tools,
            (std::set<std::string>{"create_task", "list_tasks", "get_task", "start_run",
                                   "run_status", "cancel_run", "retry_task", "costs", "stats"}));

  const json created = seen["created"];
  ASSERT_EQ(created["isError"], false) << created.dump();
  const std::string id = created["structured"]["task"]["id"];
  EXPECT_EQ(created["structured"]["task"]["title"], "from mcp");
  EXPECT_EQ(created["structured"]["task"]["priority"], 5);
  EXPECT_EQ(seen["again"]["structured"]["created"], false);
  EXPECT_EQ(seen["again"]["structured"]["task"]["id"], id);

  EXPECT_EQ(seen["bad_priority"]["isError"], true);
  EXPECT_NE(seen["bad_priority"]["text"].get<std::string>().find("'priority'"), std::string::npos);
  EXPECT_EQ(seen["missing_title"]["isError"], true);
  EXPECT_NE(seen["missing_title"]["text"].get<std::string>().find("'title'"), std::string::npos);
  EXPECT_EQ(seen["unknown_argument"]["isError"], true);
  EXPECT_NE(seen["unknown_argument"]["text"].get<std::string>().find("'colour'"),
            std::string::npos);
  EXPECT_EQ(seen["bad_by"]["isError"], true);

  ASSERT_EQ(seen["listed"]["structured"]["tasks"].size(), 1u);
  EXPECT_EQ(seen["got"]["structured"]["task"]["id"], id);
  EXPECT_EQ(seen["missing_task"]["isError"], true);
  EXPECT_EQ(seen["status"]["structured"]["run"]["id"], "mcp-run");
  EXPECT_EQ(seen["status"]["structured"]["tasks"][0]["state"], "ready");
  EXPECT_EQ(seen["unknown_tool"]["thrown"], true);
  EXPECT_EQ(seen["unknown_tool"]["code"], -32602);
  EXPECT_EQ(seen["stats"]["isError"], false) << seen["stats"].dump();
  EXPECT_EQ(seen["costs"]["isError"], false) << seen["costs"].dump();

  std::set<std::string> uris;
  for (const json& uri : seen["resources"]) uris.insert(uri.get<std::string>());
  EXPECT_TRUE(uris.contains("factory://tasks/" + id));
  EXPECT_TRUE(uris.contains("factory://runs/mcp-run"));
  EXPECT_EQ(seen["read"]["uri"], "factory://tasks/" + id);
  EXPECT_EQ(seen["read"]["mimeType"], "application/json");
  EXPECT_EQ(seen["read"]["body"]["task"]["id"], id);
  EXPECT_EQ(seen["read_missing"]["thrown"], true);
  EXPECT_EQ(seen["read_missing"]["code"], -32002);
  EXPECT_EQ(seen["templates"], (json{"factory://runs/{run_id}", "factory://tasks/{task_id}"}));
  EXPECT_EQ(seen["ping"], true);

  // What the client created is in the project's database for every other command to see.
  auto shown =
      RunProcess({FACTORY_BINARY, "task", "show", id, "--json"}, {}, project.path().string());
  ASSERT_EQ(shown.exit_code, 0) << shown.stderr_tail;
  EXPECT_EQ(json::parse(shown.stdout_tail)["title"], "from mcp");
}

}  // namespace
}  // namespace factory
