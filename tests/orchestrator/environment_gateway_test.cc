// RunEnvironment::runner_factory() for a cli agent when config.yaml names a gateway: one virtual
// key per attempt, scoped to the attempt, in the agent's environment instead of the real
// provider keys, revoked when the attempt ends (here: a failing one), and masked in what the
// attempt reports should the agent print it. No gateway runs here: the agent only reports what
// it was given (the end-to-end run through `factory gateway` is gateway_run_test.cc).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include "core/sha256.h"
#include "gateway/keys.h"
#include "orchestrator/environment.h"
#include "run_fixture.h"

namespace factory::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class EnvironmentGatewayTest : public RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    ::setenv("GWENV_PROVIDER_KEY", "sk-gwenv-real-provider-key", 1);
    out_ = root_ + "/seen";
    std::filesystem::create_directories(out_);
    WriteText(root_ + "/agents/ext.sh",
              "printf '%s' \"$OPENAI_API_KEY\" > " + out_ + "/openai_key\n" +
                  "printf '%s' \"$ANTHROPIC_API_KEY\" > " + out_ + "/anthropic_key\n" +
                  "printf '%s' \"$OPENAI_BASE_URL\" > " + out_ + "/openai_base\n" +
                  "printf '%s' \"${GWENV_PROVIDER_KEY-unset}\" > " + out_ + "/provider_key\n" +
                  "echo \"auth failed for $OPENAI_API_KEY\" >&2\n"
                  "exit 3\n");
    WriteText(repo_ + "/.factory/agents/ext.md",
              "---\nname: ext\nrole: an external CLI\nrunner: cli\npreset: opencode\n"
              "command: sh " +
                  root_ + "/agents/ext.sh\ncapabilities: [code]\n---\n");
    WriteText(repo_ + "/.factory/models.yaml",
              "providers:\n  p: {kind: openai, base_url: \"http://127.0.0.1:9/v1\", "
              "api_key_env: GWENV_PROVIDER_KEY}\n"
              "models:\n  m: {provider: p, model: m, input_per_mtok: 1, output_per_mtok: 1}\n");
  }
  void TearDown() override {
    ::unsetenv("GWENV_PROVIDER_KEY");
    RunFixture::TearDown();
  }

  std::string out_;
};

TEST_F(EnvironmentGatewayTest, EachAttemptGetsAScopedKeyThatIsRevokedAndNeverReported) {
  WriteText(repo_ + "/.factory/config.yaml", "gateway:\n  url: http://127.0.0.1:8787/\n");
  auto store = OpenSqliteStore(SqliteOptions{.path = root_ + "/env.db"});
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  auto env = RunEnvironment::Open(**store,
                                  RunEnvironmentOptions{.repo_path = repo_, .use_sandbox = false});
  ASSERT_TRUE(env.has_value()) << env.error().ToString();
  EXPECT_EQ((*env)->config().gateway.url, "http://127.0.0.1:8787");
  auto agent = (*env)->agents().Find("ext");
  ASSERT_NE(agent, nullptr);
  auto runner = (*env)->runner_factory()(*agent);
  ASSERT_TRUE(runner.has_value()) << runner.error().ToString();

  RunnerContext context;
  context.input.run_id = "run1";
  context.input.task_id = "greet";
  context.input.queue_task_id = "01TASK";
  context.input.attempt_id = "01ATTEMPT";
  context.input.attempt = 2;
  context.input.title = "Greet";
  context.worktree = repo_;
  context.attempt_dir = root_ + "/attempt";
  std::filesystem::create_directories(context.attempt_dir);
  context.sandbox = &(*env)->sandbox();
  context.timeout_ms = 30'000;
  auto outcome = (*runner)->Run(context);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->success);

  const std::string key = ReadText(out_ + "/openai_key");
  EXPECT_THAT(key, StartsWith("fk-"));
  EXPECT_EQ(ReadText(out_ + "/anthropic_key"), key);
  EXPECT_EQ(ReadText(out_ + "/openai_base"), "http://127.0.0.1:8787/v1");
  EXPECT_EQ(ReadText(out_ + "/provider_key"), "");  // blanked: models.yaml's key variable

  auto keys = gateway::ListKeys(**store);
  ASSERT_TRUE(keys.has_value()) << keys.error().ToString();
  ASSERT_EQ(keys->size(), 1u);
  const VirtualKey& record = (*keys)[0];
  EXPECT_EQ(record.key_hash, Sha256Hex(key));
  EXPECT_EQ(record.agent, "ext");
  EXPECT_EQ(record.run_id, "run1");
  EXPECT_EQ(record.task_id, "01TASK");
  EXPECT_EQ(record.attempt_id, "01ATTEMPT");
  EXPECT_GT(record.revoked_ms, 0) << "the failed attempt's key is still active";

  // The agent printed its key; what the attempt reports (feedback, events) masks it.
  // (the process redactor knows every virtual key it issued, so it masks it first).
  EXPECT_THAT(outcome->error, HasSubstr("auth failed for [REDACTED:VIRTUAL_KEY]"));
  EXPECT_THAT(outcome->error + outcome->output_tail, Not(HasSubstr(key)));
  EXPECT_THAT(ReadText(context.attempt_dir + "/task.json"), Not(HasSubstr(key)));
  EXPECT_THAT(ReadText(context.attempt_dir + "/prompt.md"), Not(HasSubstr(key)));
}

TEST_F(EnvironmentGatewayTest, WithoutAGatewayCliAgentsGetTheProviderKeysTheyName) {
  // The same CLI twice: as `ext` (which names no variable) and as `named`, whose file names the
  // provider key in `env:`. Only the second one sees it.
  WriteText(repo_ + "/.factory/agents/named.md",
            "---\nname: named\nrole: an external CLI\nrunner: cli\npreset: opencode\n"
            "command: sh " +
                root_ + "/agents/ext.sh\ncapabilities: [code]\nenv: [GWENV_PROVIDER_KEY]\n---\n");
  auto store = OpenSqliteStore(SqliteOptions{.path = root_ + "/env.db"});
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  auto env = RunEnvironment::Open(**store,
                                  RunEnvironmentOptions{.repo_path = repo_, .use_sandbox = false});
  ASSERT_TRUE(env.has_value()) << env.error().ToString();
  RunnerContext context;
  context.input.run_id = "run1";
  context.input.task_id = "greet";
  context.worktree = repo_;
  context.attempt_dir = root_ + "/attempt";
  std::filesystem::create_directories(context.attempt_dir);
  context.sandbox = &(*env)->sandbox();
  context.timeout_ms = 30'000;
  for (const std::string name : {"ext", "named"}) {
    auto agent = (*env)->agents().Find(name);
    ASSERT_NE(agent, nullptr) << name;
    auto runner = (*env)->runner_factory()(*agent);
    ASSERT_TRUE(runner.has_value()) << runner.error().ToString();
    ASSERT_TRUE((*runner)->Run(context).has_value());
    EXPECT_EQ(ReadText(out_ + "/provider_key"),
              name == "named" ? "sk-gwenv-real-provider-key" : "unset")
        << name;
  }
  auto keys = gateway::ListKeys(**store);
  ASSERT_TRUE(keys.has_value());
  EXPECT_TRUE(keys->empty());
}

}  // namespace
}  // namespace factory::testing
