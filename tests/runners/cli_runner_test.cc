#include "runners/cli_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "runners/runner.h"
#include "runners/runner_fixture.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileBytes;
using ::testing::StartsWith;

// A title a shell would act on, were it ever given one.
constexpr char kHostileTitle[] = "Fix $(touch pwned) `touch pwned2` it's \"quoted\"; touch pwned3";

AgentSpec CliAgent(std::string preset, std::string model = "") {
  AgentSpec agent;
  agent.name = "coder";
  agent.role = "test";
  agent.runner = RunnerKind::kCli;
  agent.preset = std::move(preset);
  agent.model = std::move(model);
  agent.source = "agents/coder.md";
  agent.system_prompt = "You write code.";
  return agent;
}

std::vector<std::string> SplitNul(const std::string& text) {
  std::vector<std::string> parts;
  std::string part;
  for (char c : text) {
    if (c == '\0') {
      parts.push_back(part);
      part.clear();
    } else {
      part += c;
    }
  }
  return parts;
}

// Records argv (NUL-separated) and stdin under .factory/ in the worktree, edits README.md and
// prints what Claude Code prints with --output-format stream-json.
constexpr char kFakeClaude[] = R"(#!/bin/sh
printf '%s\0' "$@" > "$FACTORY_WORKTREE/.factory/claude-args"
cat > "$FACTORY_WORKTREE/.factory/claude-stdin"
echo "edited by claude" >> README.md
cat <<'JSON'
{"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5","cwd":"/w","tools":["Edit","Bash"]}
{"type":"assistant","message":{"id":"m1","model":"claude-sonnet-4-5","role":"assistant","content":[{"type":"text","text":"I'll update README.md."},{"type":"tool_use","id":"toolu_1","name":"Edit","input":{"file_path":"README.md","old_string":"x","new_string":"y"}}]},"session_id":"s1"}
this line is not JSON
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"The file README.md has been updated."}]},"session_id":"s1"}
{"type":"result","subtype":"success","is_error":false,"duration_ms":2100,"num_turns":2,"result":"Appended the greeting to README.md.","session_id":"s1","total_cost_usd":0.0421,"usage":{"input_tokens":12,"cache_creation_input_tokens":1000,"cache_read_input_tokens":5000,"output_tokens":345}}
JSON
)";

class CliRunnerTest : public testing::RunnerFixture {
 protected:
  RunnerContext CliContext() {
    RunnerContext context = Context();
    context.input.title = kHostileTitle;
    context.extra_env["PATH"] = PathWithBin();
    return context;
  }
  void ExpectNothingPwned() {
    for (const char* name : {"pwned", "pwned2", "pwned3"}) {
      EXPECT_FALSE(fs::exists(repo_.Path(name))) << name;
      EXPECT_FALSE(fs::exists(attempt_dir_ + "/" + name)) << name;
      EXPECT_FALSE(fs::exists(name)) << name;
    }
  }
};

TEST_F(CliRunnerTest, ClaudeStreamJsonGivesStepsUsageCostAndSummary) {
  WriteTool("claude", kFakeClaude);
  auto runner = MakeRunner(CliAgent("claude", "sonnet"));
  ASSERT_TRUE(runner.has_value()) << runner.error().ToString();
  auto outcome = (*runner)->Run(CliContext());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->success) << outcome->error << "\n" << outcome->output_tail;

  std::vector<std::string> kinds;
  for (const auto& step : outcome->steps) kinds.push_back(step.kind);
  EXPECT_THAT(kinds, ElementsAre("system", "message", "tool_use", "tool_result", "result"));
  EXPECT_EQ(outcome->steps[2].summary, "Edit: README.md");
  EXPECT_EQ(outcome->summary, "Appended the greeting to README.md.");
  ASSERT_TRUE(outcome->usage.cost_usd.has_value());
  EXPECT_DOUBLE_EQ(*outcome->usage.cost_usd, 0.0421);
  EXPECT_EQ(outcome->usage.input_tokens, 6012);
  EXPECT_EQ(outcome->usage.cached_tokens, 5000);
  EXPECT_EQ(outcome->usage.output_tokens, 345);
  EXPECT_EQ(outcome->usage.model, "claude-sonnet-4-5");
  EXPECT_THAT(outcome->output_tail, HasSubstr("this line is not JSON"));
  EXPECT_THAT(outcome->output_tail, Not(HasSubstr("\"type\"")));

  // The preset's argv, the prompt on stdin and in prompt.md; the hostile title stayed text.
  EXPECT_THAT(SplitNul(ReadFileBytes(repo_.Path(".factory/claude-args"))),
              ElementsAre("-p", "--output-format", "stream-json", "--verbose", "--permission-mode",
                          "acceptEdits", "--model", "sonnet"));
  const std::string stdin_text = ReadFileBytes(repo_.Path(".factory/claude-stdin"));
  EXPECT_THAT(stdin_text, HasSubstr(kHostileTitle));
  EXPECT_THAT(stdin_text, HasSubstr("expected greeting"));  // the feedback
  EXPECT_EQ(ReadFileBytes(attempt_dir_ + "/prompt.md"), stdin_text);
  EXPECT_EQ(outcome->prompt_bytes, static_cast<int64_t>(stdin_text.size()));
  EXPECT_THAT(GitStatus(), HasSubstr(" M README.md"));
  ExpectNothingPwned();
}

TEST_F(CliRunnerTest, ClaudeReportedErrorFailsTheAttempt) {
  WriteTool("claude", R"(#!/bin/sh
cat > /dev/null
echo '{"type":"result","subtype":"error_max_turns","is_error":true,"total_cost_usd":0.2,"usage":{"input_tokens":5,"output_tokens":1}}'
)");
  auto runner = MakeRunner(CliAgent("claude"));
  ASSERT_TRUE(runner.has_value());
  auto outcome = (*runner)->Run(CliContext());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_THAT(outcome->error, HasSubstr("error_max_turns"));
  EXPECT_DOUBLE_EQ(outcome->usage.cost_usd.value_or(0), 0.2);
}

TEST_F(CliRunnerTest, CodexJsonLinesGiveStepsAndUsage) {
  WriteTool("codex", R"(#!/bin/sh
printf '%s\0' "$@" > "$FACTORY_WORKTREE/.factory/codex-args"
cat > "$FACTORY_WORKTREE/.factory/codex-stdin"
echo "edited by codex" > NOTES.md
cat <<'JSON'
{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Planning the change**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'echo hi > NOTES.md'","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'echo hi > NOTES.md'","aggregated_output":"","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"NOTES.md","kind":"add"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Created NOTES.md."}}
{"type":"turn.completed","usage":{"input_tokens":3000,"cached_input_tokens":2048,"output_tokens":99}}
JSON
)");
  auto runner = MakeRunner(CliAgent("codex"));  // no model: no --model pair
  ASSERT_TRUE(runner.has_value());
  auto outcome = (*runner)->Run(CliContext());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->success) << outcome->error;
  std::vector<std::string> kinds;
  for (const auto& step : outcome->steps) kinds.push_back(step.kind);
  EXPECT_THAT(kinds, ElementsAre("reasoning", "command", "file_change", "message", "result"));
  EXPECT_EQ(outcome->summary, "Created NOTES.md.");
  EXPECT_EQ(outcome->usage.input_tokens, 3000);
  EXPECT_EQ(outcome->usage.cached_tokens, 2048);
  EXPECT_EQ(outcome->usage.output_tokens, 99);
  EXPECT_FALSE(outcome->usage.cost_usd.has_value());
  EXPECT_THAT(SplitNul(ReadFileBytes(repo_.Path(".factory/codex-args"))),
              ElementsAre("exec", "--json", "--full-auto", "-"));
  EXPECT_THAT(ReadFileBytes(repo_.Path(".factory/codex-stdin")), HasSubstr(kHostileTitle));
  EXPECT_THAT(GitStatus(), HasSubstr("?? NOTES.md"));
  ExpectNothingPwned();
}

TEST_F(CliRunnerTest, OverriddenTemplatePassesUserTextAsSingleArguments) {
  WriteTool("fake-agent", R"(#!/bin/sh
printf '%s\0' "$@" > "$FACTORY_WORKTREE/.factory/fake-args"
cat > "$FACTORY_WORKTREE/.factory/fake-stdin"
echo "plain output from the agent"
)");
  AgentSpec agent = CliAgent("opencode");
  agent.command =
      "fake-agent run --flag \"two words\" --file={prompt_file} --model {model} {prompt} "
      "--cwd '{worktree}'";
  auto runner = MakeRunner(agent);
  ASSERT_TRUE(runner.has_value()) << runner.error().ToString();
  auto outcome = (*runner)->Run(CliContext());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->success) << outcome->error;
  auto args = SplitNul(ReadFileBytes(repo_.Path(".factory/fake-args")));
  ASSERT_EQ(args.size(), 7u);
  EXPECT_EQ(args[0], "run");
  EXPECT_EQ(args[1], "--flag");
  EXPECT_EQ(args[2], "two words");
  EXPECT_EQ(args[3], "--file=" + attempt_dir_ + "/prompt.md");
  EXPECT_THAT(args[4], StartsWith("You write code."));
  EXPECT_THAT(args[4], HasSubstr(kHostileTitle));
  EXPECT_EQ(args[5], "--cwd");
  EXPECT_EQ(args[6], repo_.root());
  EXPECT_EQ(ReadFileBytes(repo_.Path(".factory/fake-stdin")), "");  // prompt is in argv
  EXPECT_THAT(outcome->output_tail, HasSubstr("plain output from the agent"));
  ExpectNothingPwned();
}

TEST_F(CliRunnerTest, PromptTooLongForArgvIsRefused) {
  WriteTool("fake-agent", "#!/bin/sh\nexit 0\n");
  AgentSpec agent = CliAgent("gemini");
  agent.command = "fake-agent -p {prompt}";
  auto runner = MakeRunner(agent);
  ASSERT_TRUE(runner.has_value());
  RunnerContext context = CliContext();
  context.input.spec = std::string(200 * 1024, 'x');
  auto outcome = (*runner)->Run(context);
  ASSERT_FALSE(outcome.has_value());
  EXPECT_EQ(outcome.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("{prompt_file}"));
}

TEST_F(CliRunnerTest, FailingCliReportsExitAndStderr) {
  WriteTool("claude", "#!/bin/sh\ncat >/dev/null\necho 'Invalid API key' >&2\nexit 2\n");
  auto runner = MakeRunner(CliAgent("claude"));
  ASSERT_TRUE(runner.has_value());
  auto outcome = (*runner)->Run(CliContext());
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(outcome->exit_code, 2);
  EXPECT_EQ(outcome->error, "exit 2: Invalid API key");
}

TEST_F(CliRunnerTest, MissingBinaryIsReportedBeforeAndAtRun) {
  const std::string saved_path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  AgentSpec agent = CliAgent("claude");
  ::setenv("PATH", bin_dir_.c_str(), 1);  // empty for now
  Status missing = CheckRunnerAvailable(agent);
  WriteTool("claude", kFakeClaude);
  Status present = CheckRunnerAvailable(agent);
  ::setenv("PATH", saved_path.c_str(), 1);

  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message,
            "agent 'coder' (agents/coder.md): preset 'claude' needs the `claude` binary, which "
            "is not on PATH");
  EXPECT_TRUE(present.has_value()) << present.error().ToString();

  agent.command = "no-such-agent-cli --go";
  Status override_missing = CheckRunnerAvailable(agent);
  ASSERT_FALSE(override_missing.has_value());
  EXPECT_THAT(override_missing.error().message, HasSubstr("`no-such-agent-cli`"));

  agent.command = "claude -p {promt_file}";
  Status typo = CheckRunnerAvailable(agent);
  ASSERT_FALSE(typo.has_value());
  EXPECT_EQ(typo.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(typo.error().message, HasSubstr("{promt_file}"));

  agent.command = "no-such-agent-cli --go";
  auto runner = MakeRunner(agent);
  ASSERT_TRUE(runner.has_value());
  auto run = (*runner)->Run(CliContext());
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(run.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace factory
