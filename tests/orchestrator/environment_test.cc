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

}  // namespace
}  // namespace factory::testing
