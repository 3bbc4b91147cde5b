#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "runners/runner.h"
#include "runners/runner_fixture.h"

namespace factory {
namespace {

using ::testing::HasSubstr;
using testing::ReadFileBytes;
using ::testing::StartsWith;

AgentSpec ScriptAgent(std::string command) {
  AgentSpec agent;
  agent.name = "scripter";
  agent.role = "test";
  agent.runner = RunnerKind::kScript;
  agent.command = std::move(command);
  agent.source = "agents/scripter.md";
  return agent;
}

class ScriptRunnerTest : public testing::RunnerFixture {};

TEST_F(ScriptRunnerTest, ChangesTheWorktreeAndSeesEnvAndTaskFile) {
  auto runner = MakeRunner(ScriptAgent(
      "echo \"$FACTORY_TASK_ID|$FACTORY_ATTEMPT|$FACTORY_RUN_ID|$FACTORY_WORKTREE|$EXTRA_VAR\" "
      "> env.txt && cp \"$FACTORY_TASK_FILE\" seen-task.json && pwd > pwd.txt && "
      "echo 'hello' >> README.md && echo 'to stdout'"));
  ASSERT_TRUE(runner.has_value()) << runner.error().ToString();
  RunnerContext context = Context();
  context.extra_env["EXTRA_VAR"] = "extra";
  auto outcome = (*runner)->Run(context);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->success) << outcome->error;
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_TRUE(outcome->error.empty());
  EXPECT_THAT(outcome->output_tail, HasSubstr("to stdout"));

  EXPECT_EQ(ReadFileBytes(repo_.Path("env.txt")), "t1|2|r1|" + repo_.root() + "|extra\n");
  EXPECT_EQ(testing::Trimmed(ReadFileBytes(repo_.Path("pwd.txt"))), repo_.root());
  auto task = nlohmann::json::parse(ReadFileBytes(repo_.Path("seen-task.json")));
  EXPECT_EQ(task["task_id"], "t1");
  EXPECT_EQ(task["attempt"], 2);
  EXPECT_EQ(task["feedback"], "Gate 'test' failed with exit code 1.\nexpected greeting");
  EXPECT_EQ(task["acceptance"][0], "README.md ends with the greeting");
  EXPECT_TRUE(std::filesystem::exists(attempt_dir_ + "/task.json"));
  EXPECT_THAT(ReadFileBytes(attempt_dir_ + "/runner.stdout.log"), HasSubstr("to stdout"));
  EXPECT_THAT(GitStatus(), HasSubstr(" M README.md"));
  EXPECT_THAT(ReadFileBytes(repo_.Path("README.md")), HasSubstr("hello\n"));
}

TEST_F(ScriptRunnerTest, FailureCarriesExitCodeAndStderrTail) {
  auto runner = MakeRunner(
      ScriptAgent("echo progress; echo 'first problem' >&2; echo 'last problem' >&2; exit 3"));
  ASSERT_TRUE(runner.has_value());
  auto outcome = (*runner)->Run(Context());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(outcome->exit_code, 3);
  EXPECT_THAT(outcome->error, StartsWith("exit 3: "));
  EXPECT_THAT(outcome->error, HasSubstr("last problem"));
  EXPECT_THAT(outcome->output_tail, HasSubstr("progress"));
  EXPECT_THAT(outcome->output_tail, HasSubstr("last problem"));
  EXPECT_THAT(ReadFileBytes(attempt_dir_ + "/runner.stderr.log"), HasSubstr("first problem"));
}

TEST_F(ScriptRunnerTest, TimeoutKillsAndSaysSo) {
  auto runner = MakeRunner(ScriptAgent("echo started; sleep 30"));
  ASSERT_TRUE(runner.has_value());
  RunnerContext context = Context();
  context.timeout_ms = 300;
  const auto start = std::chrono::steady_clock::now();
  auto outcome = (*runner)->Run(context);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(outcome->success);
  EXPECT_TRUE(outcome->timed_out);
  EXPECT_EQ(outcome->error, "timed out after 1s");
}

TEST_F(ScriptRunnerTest, CancelStopsTheCommand) {
  auto runner = MakeRunner(ScriptAgent("sleep 30"));
  ASSERT_TRUE(runner.has_value());
  std::atomic<bool> cancel{false};
  RunnerContext context = Context();
  context.cancel = &cancel;
  std::thread canceller([&cancel] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  auto outcome = (*runner)->Run(context);
  canceller.join();
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->success);
  EXPECT_TRUE(outcome->cancelled);
  EXPECT_EQ(outcome->error, "cancelled");
}

TEST_F(ScriptRunnerTest, CannotWriteOutsideTheWorktreeWhenSandboxed) {
  if (sandbox_->name() != "bubblewrap") {
    GTEST_SKIP() << "bwrap is missing or cannot create its namespaces on this host: only "
                    "bubblewrap keeps a script from writing outside its worktree";
  }
  auto runner = MakeRunner(ScriptAgent("echo x > \"$FACTORY_TASK_FILE\""));
  ASSERT_TRUE(runner.has_value());
  RunnerContext context = Context();
  context.worktree = repo_.Path("src");  // the attempt dir is now outside the worktree
  auto outcome = (*runner)->Run(context);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->success);
  EXPECT_THAT(ReadFileBytes(attempt_dir_ + "/task.json"), HasSubstr("\"task_id\""));

  // Unless the caller makes that path writable on purpose.
  context.extra_writable_paths = {attempt_dir_};
  outcome = (*runner)->Run(context);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_TRUE(outcome->success) << outcome->error;
  EXPECT_EQ(ReadFileBytes(attempt_dir_ + "/task.json"), "x\n");
}

TEST_F(ScriptRunnerTest, StartErrorsAreErrors) {
  auto runner = MakeRunner(ScriptAgent("true"));
  ASSERT_TRUE(runner.has_value());
  RunnerContext context = Context();
  context.attempt_dir = repo_.Path(".factory/no-such-dir");
  auto outcome = (*runner)->Run(context);
  ASSERT_FALSE(outcome.has_value());
  EXPECT_EQ(outcome.error().code, ErrorCode::kNotFound);

  context = Context();
  context.sandbox = nullptr;
  EXPECT_FALSE((*runner)->Run(context).has_value());
}

TEST(MakeRunnerTest, KindsAndChecks) {
  AgentSpec script = ScriptAgent("");
  auto no_command = MakeRunner(script);
  ASSERT_FALSE(no_command.has_value());
  EXPECT_THAT(no_command.error().message, HasSubstr("agents/scripter.md"));
  EXPECT_FALSE(CheckRunnerAvailable(script).has_value());
  script.command = "true";
  EXPECT_TRUE(CheckRunnerAvailable(script).has_value());

  AgentSpec llm;
  llm.name = "thinker";
  llm.runner = RunnerKind::kLlm;
  auto made = MakeRunner(llm);
  ASSERT_FALSE(made.has_value());
  EXPECT_EQ(made.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(made.error().message, "the llm runner arrives with the model layer");

  AgentSpec cli;
  cli.name = "odd";
  cli.runner = RunnerKind::kCli;
  cli.preset = "unknown-cli";
  EXPECT_EQ(MakeRunner(cli).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace factory
