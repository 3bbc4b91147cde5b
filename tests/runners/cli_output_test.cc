#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "runners/cli_runner.h"

namespace factory {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

CliOutput Parse(CliOutputFormat format, const std::string& text, size_t tail = 4096) {
  std::istringstream in(text);
  return ParseCliOutput(format, in, tail);
}

std::vector<std::string> Kinds(const CliOutput& output) {
  std::vector<std::string> kinds;
  for (const auto& step : output.steps) kinds.push_back(step.kind);
  return kinds;
}

TEST(CommandTemplateTest, SplitsLikeAShellWithoutExpanding) {
  auto words = SplitCommandTemplate(
      R"(agent  --flag "two words" 'single $(quoted)' back\ slash "q\"uote" $HOME *.cc)");
  ASSERT_TRUE(words.has_value()) << words.error().ToString();
  EXPECT_THAT(*words, ElementsAre("agent", "--flag", "two words", "single $(quoted)", "back slash",
                                  "q\"uote", "$HOME", "*.cc"));
  EXPECT_FALSE(SplitCommandTemplate("agent 'open").has_value());
  EXPECT_FALSE(SplitCommandTemplate("agent \"open").has_value());
  EXPECT_FALSE(SplitCommandTemplate("agent \\").has_value());
  EXPECT_FALSE(SplitCommandTemplate("   ").has_value());
}

TEST(CommandTemplateTest, SubstitutesPerWordAndNeverRescans) {
  CliTemplateValues values{.prompt_file = "/a/prompt.md",
                           .prompt = "title {model} $(touch pwned) 'x' \"y\"",
                           .model = "sonnet",
                           .worktree = "/w"};
  auto argv = ExpandCommandTemplate(
      {"tool", "--model", "{model}", "--file={prompt_file}", "{prompt}", "-C", "{worktree}"},
      values);
  ASSERT_TRUE(argv.has_value()) << argv.error().ToString();
  EXPECT_THAT(*argv, ElementsAre("tool", "--model", "sonnet", "--file=/a/prompt.md",
                                 "title {model} $(touch pwned) 'x' \"y\"", "-C", "/w"));
}

TEST(CommandTemplateTest, DropsModelWordsWhenNoModel) {
  CliTemplateValues values{.prompt_file = "/p", .prompt = "", .model = "", .worktree = "/w"};
  auto argv = ExpandCommandTemplate(
      {"tool", "--model", "{model}", "--m={model}", "-m", "{model}", "{prompt_file}"}, values);
  ASSERT_TRUE(argv.has_value());
  EXPECT_THAT(*argv, ElementsAre("tool", "/p"));
}

TEST(CommandTemplateTest, UnknownPlaceholderIsAnError) {
  auto argv = ExpandCommandTemplate({"tool", "{promt}"}, CliTemplateValues{});
  ASSERT_FALSE(argv.has_value());
  EXPECT_EQ(argv.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(argv.error().message, HasSubstr("{promt}"));
  // Braces that are not a placeholder name stay literal.
  auto literal = ExpandCommandTemplate({"tool", "-c", R"(x={"a":1})", "{}"}, CliTemplateValues{});
  ASSERT_TRUE(literal.has_value());
  EXPECT_THAT(*literal, ElementsAre("tool", "-c", R"(x={"a":1})", "{}"));
}

TEST(CommandTemplateTest, EveryKnownPresetHasATemplate) {
  for (std::string_view name : kCliPresets) {
    const CliPreset* preset = FindCliPreset(name);
    ASSERT_NE(preset, nullptr) << name;
    auto words = SplitCommandTemplate(preset->command_template);
    ASSERT_TRUE(words.has_value()) << name;
    EXPECT_EQ(words->front(), name);
  }
  EXPECT_EQ(FindCliPreset("nope"), nullptr);
  EXPECT_TRUE(PromptOnStdin(*SplitCommandTemplate(FindCliPreset("claude")->command_template)));
  EXPECT_TRUE(PromptOnStdin(*SplitCommandTemplate(FindCliPreset("codex")->command_template)));
  EXPECT_FALSE(PromptOnStdin(*SplitCommandTemplate(FindCliPreset("aider")->command_template)));
}

TEST(CommandTemplateTest, AgentCommandOverridesPreset) {
  AgentSpec agent;
  agent.name = "c";
  agent.runner = RunnerKind::kCli;
  agent.preset = "claude";
  auto words = CliCommandWords(agent);
  ASSERT_TRUE(words.has_value());
  EXPECT_EQ(words->front(), "claude");
  agent.command = "/opt/claude/bin/claude -p --output-format stream-json";
  words = CliCommandWords(agent);
  ASSERT_TRUE(words.has_value());
  EXPECT_THAT(*words,
              ElementsAre("/opt/claude/bin/claude", "-p", "--output-format", "stream-json"));
  agent.preset = "nope";
  EXPECT_FALSE(CliCommandWords(agent).has_value());
}

constexpr char kClaudeSuccess[] =
    R"({"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5","tools":["Edit","Bash"]}
npm WARN something that is not JSON
{"type":"assistant","message":{"model":"claude-sonnet-4-5","content":[{"type":"text","text":"I will edit\nREADME.md."},{"type":"tool_use","id":"toolu_1","name":"Edit","input":{"file_path":"README.md","old_string":"a","new_string":"b"}}]}}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"The file README.md has been updated."}]}}
{"type":"assistant","message":{"content":[{"type":"tool_use","id":"toolu_2","name":"Bash","input":{"command":"make test"}}]}}
{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"toolu_2","is_error":true,"content":[{"type":"text","text":"1 test failed"}]}]}}
{"type":"stream_event","event":{}}
{"type":"result","subtype":"success","is_error":false,"duration_ms":1234,"num_turns":3,"result":"Edited README.md as asked.","session_id":"s1","total_cost_usd":0.0123,"usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":300,"output_tokens":50}}
)";

TEST(ClaudeStreamJsonTest, ParsesStepsUsageCostAndSummary) {
  CliOutput out = Parse(CliOutputFormat::kClaudeStreamJson, kClaudeSuccess);
  EXPECT_THAT(Kinds(out), ElementsAre("system", "message", "tool_use", "tool_result", "tool_use",
                                      "tool_result", "result"));
  EXPECT_EQ(out.steps[1].summary, "I will edit README.md.");
  EXPECT_EQ(out.steps[2].summary, "Edit: README.md");
  EXPECT_EQ(out.steps[4].summary, "Bash: make test");
  EXPECT_EQ(out.steps[5].summary, "error: 1 test failed");
  ASSERT_TRUE(out.reported_ok.has_value());
  EXPECT_TRUE(*out.reported_ok);
  EXPECT_EQ(out.summary, "Edited README.md as asked.");
  ASSERT_TRUE(out.usage.cost_usd.has_value());
  EXPECT_DOUBLE_EQ(*out.usage.cost_usd, 0.0123);
  EXPECT_EQ(out.usage.input_tokens, 420);
  EXPECT_EQ(out.usage.cached_tokens, 300);
  EXPECT_EQ(out.usage.output_tokens, 50);
  EXPECT_EQ(out.usage.model, "claude-sonnet-4-5");
  EXPECT_EQ(out.other_lines, "npm WARN something that is not JSON\n");
  EXPECT_EQ(out.json_lines, 7);
}

TEST(ClaudeStreamJsonTest, ErrorResultIsReported) {
  CliOutput out = Parse(
      CliOutputFormat::kClaudeStreamJson,
      R"({"type":"result","subtype":"error_max_turns","is_error":true,"total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":2}})"
      "\n");
  ASSERT_TRUE(out.reported_ok.has_value());
  EXPECT_FALSE(*out.reported_ok);
  EXPECT_THAT(out.reported_error, HasSubstr("error_max_turns"));
  EXPECT_DOUBLE_EQ(out.usage.cost_usd.value_or(0), 0.5);
}

TEST(ClaudeStreamJsonTest, GarbageNeverFails) {
  std::string text =
      "{\"type\":\"assistant\",\"message\":{\"content\":\"not an array\"}}\n"
      "{\"type\":\"result\",\"usage\":[1,2],\"total_cost_usd\":\"cheap\",\"result\":7}\n"
      "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\"}]}}\n"
      "{truncated json\n"
      "[1,2,3]\n"
      "\xff\xfe binary \xc3\n"
      "\n";
  CliOutput out = Parse(CliOutputFormat::kClaudeStreamJson, text);
  EXPECT_FALSE(out.usage.cost_usd.has_value());
  EXPECT_THAT(out.other_lines, HasSubstr("{truncated json"));
  EXPECT_THAT(out.other_lines, HasSubstr("[1,2,3]"));
  ASSERT_TRUE(out.reported_ok.has_value());
  EXPECT_TRUE(*out.reported_ok);  // a result without is_error or subtype
}

TEST(ClaudeStreamJsonTest, SummaryFallsBackToLastTextAndTailIsBounded) {
  std::string text =
      R"({"type":"assistant","message":{"content":[{"type":"text","text":"all done"}]}})"
      "\n";
  for (int i = 0; i < 2000; ++i) text += "noise line " + std::to_string(i) + "\n";
  CliOutput out = Parse(CliOutputFormat::kClaudeStreamJson, text, 256);
  EXPECT_EQ(out.summary, "all done");
  EXPECT_FALSE(out.reported_ok.has_value());
  EXPECT_LE(out.other_lines.size(), 256u);
  EXPECT_THAT(out.other_lines, HasSubstr("noise line 1999\n"));
}

constexpr char kCodexRun[] =
    R"({"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Looking at the repository**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"README.md\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"README.md","kind":"update"},{"path":"src/new.txt","kind":"add"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Updated README.md and added src/new.txt."}}
{"type":"turn.completed","usage":{"input_tokens":2000,"cached_input_tokens":1500,"output_tokens":120}}
)";

TEST(CodexJsonTest, ParsesItemsAndUsage) {
  CliOutput out = Parse(CliOutputFormat::kCodexJson, kCodexRun);
  EXPECT_THAT(Kinds(out), ElementsAre("reasoning", "command", "file_change", "message", "result"));
  EXPECT_EQ(out.steps[1].summary, "bash -lc ls (exit 0)");
  EXPECT_EQ(out.steps[2].summary, "update README.md, add src/new.txt");
  EXPECT_EQ(out.summary, "Updated README.md and added src/new.txt.");
  EXPECT_EQ(out.usage.input_tokens, 2000);
  EXPECT_EQ(out.usage.cached_tokens, 1500);
  EXPECT_EQ(out.usage.output_tokens, 120);
  EXPECT_FALSE(out.usage.cost_usd.has_value());
  ASSERT_TRUE(out.reported_ok.has_value());
  EXPECT_TRUE(*out.reported_ok);
  EXPECT_TRUE(out.other_lines.empty());
}

TEST(CodexJsonTest, TurnFailedIsReported) {
  CliOutput out = Parse(CliOutputFormat::kCodexJson,
                        R"({"type":"error","message":"You've hit your usage limit."}
{"type":"turn.failed","error":{"message":"You've hit your usage limit."}}
)");
  ASSERT_TRUE(out.reported_ok.has_value());
  EXPECT_FALSE(*out.reported_ok);
  EXPECT_EQ(out.reported_error, "You've hit your usage limit.");
}

TEST(PlainOutputTest, KeepsEverythingAsText) {
  CliOutput out = Parse(CliOutputFormat::kPlain, "{\"type\":\"result\"}\nplain\n");
  EXPECT_TRUE(out.steps.empty());
  EXPECT_EQ(out.other_lines, "{\"type\":\"result\"}\nplain\n");
  EXPECT_FALSE(out.reported_ok.has_value());
}

}  // namespace
}  // namespace factory
