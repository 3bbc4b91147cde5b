// `factory agents`, `factory models`, `factory costs` and `factory agents resume` through the
// real binary.

#include <gtest/gtest.h>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "ledger/budget.h"
#include "queue/queue.h"

namespace factory::cli {
namespace {

using testing::CliSandbox;

// With a model provider available, init writes the built-in llm agent, which the listing shows.
TEST(ProjectCommandsTest, InitWritesAgentsThatTheListingShows) {
  CliSandbox sandbox;
  testing::SpawnOptions with_key;
  with_key.env["OPENAI_API_KEY"] = "sk-project-commands-test";
  sandbox.Ok({"init"}, with_key);
  auto agents = sandbox.Ok({"agents", "--json"}).Json();
  ASSERT_TRUE(agents.is_array());
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0]["name"], "llm-coder");
  EXPECT_EQ(agents[0]["runner"], "llm");
  EXPECT_EQ(agents[0]["model"], "cloud/fast");
  EXPECT_EQ(agents[0]["status"], "idle");
  auto models = sandbox.Ok({"models", "--json"}).Json();
  EXPECT_TRUE(models.contains("providers"));
  // A broken agent file is reported with its file and line.
  testing::WriteFile(sandbox.Path(".factory/agents/bad.md"),
                     "---\nname: bad\nrole: x\n---\nbody\n");
  auto bad = sandbox.Run({"agents"});
  EXPECT_EQ(bad.exit_code, kExitUsage);
  EXPECT_NE(bad.err.find("bad.md:"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("runner"), std::string::npos) << bad.err;
}

TEST(ProjectCommandsTest, CostsAreEmptyOnAFreshDatabaseAndGroupingIsValidated) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  auto costs = sandbox.Ok({"costs", "--by", "model", "--json"}).Json();
  EXPECT_EQ(costs["total"]["calls"], 0);
  EXPECT_EQ(sandbox.Run({"costs", "--by", "colour"}).exit_code, kExitUsage);
  EXPECT_EQ(sandbox.Run({"costs", "--since", "yesterday"}).exit_code, kExitUsage);
}

TEST(ProjectCommandsTest, ResumeLiftsAPause) {
  CliSandbox sandbox;
  testing::SpawnOptions with_key;
  with_key.env["OPENAI_API_KEY"] = "sk-project-commands-test";
  sandbox.Ok({"init"}, with_key);
  testing::WriteFile(sandbox.Path(".factory/agents/builder.md"),
                     "---\nname: builder\nrole: builds\nrunner: script\ncommand: \"true\"\n"
                     "capabilities: [code]\n---\nBuilds.\n");
  {
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox.DbPath().string()});
    ASSERT_TRUE(store.has_value());
    ledger::BudgetGuard guard(**store, ledger::BudgetEnvelope{});
    ASSERT_TRUE(guard.Pause("builder", "daily cap reached", "test").has_value());
    EXPECT_TRUE(*guard.IsPaused("builder"));
  }
  // The listing shows the pause stored in the database, until it is lifted.
  auto find = [](const nlohmann::json& agents, const std::string& name) {
    for (const auto& agent : agents) {
      if (agent["name"] == name) return agent;
    }
    return nlohmann::json();
  };
  auto listed = sandbox.Ok({"agents", "--json"}).Json();
  EXPECT_EQ(find(listed, "builder")["status"], "paused: daily cap reached");
  EXPECT_EQ(find(listed, "builder")["paused"]["by"], "test");
  EXPECT_TRUE(find(listed, "llm-coder")["paused"].is_null());
  EXPECT_NE(sandbox.Ok({"agents"}).out.find("paused: daily cap reached"), std::string::npos);

  EXPECT_EQ(sandbox.Run({"agents", "resume", "nobody"}).exit_code, kExitNotFound);
  sandbox.Ok({"agents", "resume", "builder"});
  EXPECT_EQ(find(sandbox.Ok({"agents", "--json"}).Json(), "builder")["status"], "idle");
  auto store = OpenSqliteStore(SqliteOptions{.path = sandbox.DbPath().string()});
  Queue queue(**store);
  ledger::BudgetGuard guard(**store, ledger::BudgetEnvelope{});
  EXPECT_FALSE(*guard.IsPaused("builder"));
  auto events = queue.ListEvents(EventQuery{.limit = 0});
  int resumed = 0;
  for (const auto& event : *events) resumed += event.kind == "agent.resumed";
  EXPECT_EQ(resumed, 1);
}

}  // namespace
}  // namespace factory::cli
