// The cli runner points an external agent at the gateway: with FACTORY_GATEWAY_URL and
// FACTORY_GATEWAY_KEY in its context, the agent's process sees the vendors' base-URL and key
// variables set to the gateway and the virtual key, replacing the factory's own.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include "runners/cli_runner.h"
#include "runners/runner.h"
#include "runners/runner_fixture.h"

namespace factory {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Writes the variables it was started with into the worktree, then reports success the way
// Claude Code does.
constexpr char kEnvDumpingClaude[] = R"(#!/bin/sh
cat > /dev/null
env | grep -E '^(OPENAI|ANTHROPIC)_' | sort > "$FACTORY_WORKTREE/.factory/agent-env"
echo '{"type":"result","subtype":"success","is_error":false,"result":"done"}'
)";

class GatewayRunnerEnvTest : public testing::RunnerFixture {};

TEST_F(GatewayRunnerEnvTest, CliAgentGetsTheGatewayUrlAndItsVirtualKey) {
  ::setenv("ANTHROPIC_API_KEY", "sk-ant-real-provider-key-00000", 1);  // the factory's own
  WriteTool("claude", kEnvDumpingClaude);
  AgentSpec agent;
  agent.name = "claude-coder";
  agent.runner = RunnerKind::kCli;
  agent.preset = "claude";
  auto runner = MakeRunner(agent);
  ASSERT_TRUE(runner) << runner.error().ToString();
  RunnerContext context = Context();
  context.extra_env["PATH"] = PathWithBin();
  context.extra_env[kGatewayUrlVar] = "http://127.0.0.1:8788";
  context.extra_env[kGatewayKeyVar] = "fk-virtual-key-for-this-attempt";
  auto outcome = (*runner)->Run(context);
  ::unsetenv("ANTHROPIC_API_KEY");
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_TRUE(outcome->success) << outcome->error << outcome->output_tail;
  const std::string env = testing::ReadFileBytes(repo_.Path(".factory/agent-env"));
  EXPECT_THAT(env, HasSubstr("ANTHROPIC_BASE_URL=http://127.0.0.1:8788\n"));
  EXPECT_THAT(env, HasSubstr("ANTHROPIC_API_KEY=fk-virtual-key-for-this-attempt\n"));
  EXPECT_THAT(env, HasSubstr("OPENAI_BASE_URL=http://127.0.0.1:8788/v1\n"));
  EXPECT_THAT(env, HasSubstr("OPENAI_API_KEY=fk-virtual-key-for-this-attempt\n"));
  EXPECT_THAT(env, Not(HasSubstr("sk-ant-real-provider-key")));
}

TEST_F(GatewayRunnerEnvTest, WithoutAGatewayNothingIsSet) {
  WriteTool("claude", kEnvDumpingClaude);
  AgentSpec agent;
  agent.name = "claude-coder";
  agent.runner = RunnerKind::kCli;
  agent.preset = "claude";
  auto runner = MakeRunner(agent);
  ASSERT_TRUE(runner);
  RunnerContext context = Context();
  context.extra_env["PATH"] = PathWithBin();
  auto outcome = (*runner)->Run(context);
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  const std::string env = testing::ReadFileBytes(repo_.Path(".factory/agent-env"));
  EXPECT_THAT(env, Not(HasSubstr("127.0.0.1")));
}

}  // namespace
}  // namespace factory
