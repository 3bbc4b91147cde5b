// RunEnvironment: the whole `factory run` set-up from a repository's .factory/ files.

#include "orchestrator/environment.h"

#include <gtest/gtest.h>

#include "run_fixture.h"

namespace factory::testing {
namespace {

class RunEnvironmentTest : public RunFixture {};

TEST_F(RunEnvironmentTest, OpensFromFactoryFilesAndRunsABacklogFile) {
  WriteText(root_ + "/agents/writer.sh",
            "echo \"ok $FACTORY_TASK_ID\" > \"src/$FACTORY_TASK_ID.txt\"\n");
  WriteText(repo_ + "/.factory/config.yaml", R"(concurrency: 2
max_attempts: 2
gates:
  - {name: check, command: "sh check.sh", timeout: 60}
protected: ["check.sh"]
default_agents: {code: writer}
)");
  WriteText(repo_ + "/.factory/agents/writer.md",
            "---\nname: writer\nrole: writes files\n"
            "runner: script\ncapabilities: [code]\n"
            "command: sh " +
                root_ +
                "/agents/writer.sh\n"
                "---\nYou write files.\n");
  WriteText(repo_ + "/.factory/agents/gem.md",
            "---\nname: gem\nrole: a CLI agent\nrunner: cli\n"
            "preset: gemini\ncapabilities: [docs]\n---\n");
  WriteText(root_ + "/backlog.yaml", R"(tasks:
  - id: one
    title: One
    type: code
  - id: two
    title: Two
    type: code
    depends_on: [one]
)");
  WriteText(root_ + "/docs.yaml", R"(tasks:
  - id: doc
    title: Docs by a CLI agent that is not installed
    agent: gem
)");
  auto store = OpenSqliteStore(SqliteOptions{.path = root_ + "/env.db"});
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  auto env = RunEnvironment::Open(
      **store, RunEnvironmentOptions{.repo_path = repo_ + "/src", .use_sandbox = false});
  ASSERT_TRUE(env.has_value()) << env.error().ToString();
  EXPECT_EQ((*env)->config().max_attempts, 2);
  EXPECT_EQ((*env)->workspace().base_branch(), "main");
  EXPECT_EQ((*env)->agents().size(), 2u);
  EXPECT_EQ((*env)->sandbox().name(), "rlimit");

  auto docs = (*env)->LoadBacklog(root_ + "/docs.yaml");
  ASSERT_FALSE(docs.has_value());
  EXPECT_NE(docs.error().message.find("docs.yaml:2: task 'doc': agent 'gem'"), std::string::npos)
      << docs.error().message;

  auto backlog = (*env)->LoadBacklog(root_ + "/backlog.yaml");
  ASSERT_TRUE(backlog.has_value()) << backlog.error().ToString();
  auto created = (*env)->runs().CreateRun(backlog->value, CreateRunOptions{.run_id = "env"});
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  auto summary = (*env)->runs().ExecuteRun("env");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 2);
  EXPECT_EQ(MergeCount("factory/env", "one"), 1);
  EXPECT_EQ(MergeCount("factory/env", "two"), 1);
  auto tasks = (*env)->queue().ListTasks(TaskQuery{.run_id = "env"});
  ASSERT_TRUE(tasks.has_value());
  for (const auto& task : *tasks) EXPECT_EQ(task.max_attempts, 2);
}

TEST_F(RunEnvironmentTest, ReportsConfigErrorsWithFileAndLine) {
  WriteText(repo_ + "/.factory/config.yaml", "concurrency: 0\n");
  auto store = OpenSqliteStore(SqliteOptions{.path = root_ + "/env.db"});
  ASSERT_TRUE(store.has_value());
  auto env = RunEnvironment::Open(**store, RunEnvironmentOptions{.repo_path = repo_});
  ASSERT_FALSE(env.has_value());
  EXPECT_NE(env.error().message.find("config.yaml:1"), std::string::npos) << env.error().message;
  auto outside = RunEnvironment::Open(**store, RunEnvironmentOptions{.repo_path = "/"});
  ASSERT_FALSE(outside.has_value());
  EXPECT_EQ(outside.error().code, ErrorCode::kFailedPrecondition);
}

TEST(BudgetEnvelopeTest, ConfigIsTheProjectLevelAndAgentBudgetsOverrideIt) {
  auto config = ParseProjectConfig(R"(budget:
  usd_per_call: 0.5
  usd_per_task: 2
  tokens_per_task: 100000
  usd_per_run: 20
  usd_per_agent_per_day: 10
  global_usd_per_day: 50
  velocity: {enabled: false, factor: 5, window: 5m, baseline: 2h, min_baseline_usd: 0.25}
)",
                                   "config.yaml");
  ASSERT_TRUE(config) << config.error().ToString();
  AgentRegistry agents;
  auto frugal = ParseAgentFile(
      "---\nname: frugal\nrole: r\nrunner: llm\nmodel: cloud/fast\n"
      "budget: {usd_per_task: 0.25, usd_per_day: 1}\n---\n",
      "frugal.md");
  ASSERT_TRUE(frugal) << frugal.error().ToString();
  ASSERT_TRUE(agents.Add(frugal->value));
  auto plain =
      ParseAgentFile("---\nname: plain\nrole: r\nrunner: script\ncommand: x\n---\n", "plain.md");
  ASSERT_TRUE(plain) << plain.error().ToString();
  ASSERT_TRUE(agents.Add(plain->value));

  const ledger::BudgetEnvelope envelope = MakeBudgetEnvelope(config->value, agents);
  EXPECT_EQ(envelope.global_daily_usd, 50.0);
  EXPECT_FALSE(envelope.velocity_enabled);
  EXPECT_EQ(envelope.velocity_factor, 5.0);
  EXPECT_EQ(envelope.velocity_window_ms, 5 * 60 * 1000);
  EXPECT_EQ(envelope.velocity_baseline_ms, 2 * 60 * 60 * 1000);
  EXPECT_EQ(envelope.velocity_min_baseline_usd, 0.25);

  const ledger::BudgetLimits project = envelope.For("plain");
  EXPECT_EQ(project.per_call_usd, 0.5);
  EXPECT_EQ(project.per_task_usd, 2.0);
  EXPECT_EQ(project.per_task_tokens, 100000);
  EXPECT_EQ(project.per_run_usd, 20.0);
  EXPECT_EQ(project.per_agent_daily_usd, 10.0);

  const ledger::BudgetLimits own = envelope.For("frugal");
  EXPECT_EQ(own.per_task_usd, 0.25);
  EXPECT_EQ(own.per_agent_daily_usd, 1.0);
  EXPECT_EQ(own.per_task_tokens, 100000);  // not set by the agent: the project's
  EXPECT_EQ(own.per_call_usd, 0.5);
  EXPECT_FALSE(envelope.agents.contains("plain"));
}

}  // namespace
}  // namespace factory::testing
