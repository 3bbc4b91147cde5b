#include "agents/agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/test_util.h"

namespace factory {
namespace {

using ::testing::HasSubstr;

TEST(AgentFileTest, ParsesEveryField) {
  const std::string text =
      "---\n"
      "name: coder\n"
      "role: Writes code\n"
      "runner: llm\n"
      "capabilities: [code, test]\n"
      "model: cloud/mid\n"
      "fallbacks: [cloud/frontier]\n"
      "temperature: 0.3\n"
      "max_turns: 25\n"
      "cost_tier: 2\n"
      "budget: {usd_per_task: 1.5, usd_per_day: 10, tokens_per_task: 200000}\n"
      "tools: [read_file, finish]\n"
      "network: true\n"
      "concurrency: 3\n"
      "---\n"
      "\n"
      "You are a coder.\n"
      "Be brief.\n\n";
  auto loaded = ParseAgentFile(text, "agents/coder.md");
  ASSERT_TRUE(loaded) << loaded.error().message;
  const AgentSpec& spec = loaded->value;
  EXPECT_TRUE(loaded->warnings.empty());
  EXPECT_EQ(spec.name, "coder");
  EXPECT_EQ(spec.role, "Writes code");
  EXPECT_EQ(spec.runner, RunnerKind::kLlm);
  EXPECT_EQ(spec.capabilities, (std::vector<std::string>{"code", "test"}));
  EXPECT_EQ(spec.model, "cloud/mid");
  EXPECT_EQ(spec.fallbacks, (std::vector<std::string>{"cloud/frontier"}));
  EXPECT_DOUBLE_EQ(*spec.temperature, 0.3);
  EXPECT_EQ(*spec.max_turns, 25);
  EXPECT_EQ(spec.cost_tier, 2);
  EXPECT_DOUBLE_EQ(*spec.budget.usd_per_task, 1.5);
  EXPECT_DOUBLE_EQ(*spec.budget.usd_per_day, 10);
  EXPECT_EQ(*spec.budget.tokens_per_task, 200000);
  EXPECT_EQ(spec.tools, (std::vector<std::string>{"read_file", "finish"}));
  EXPECT_TRUE(spec.network);
  EXPECT_EQ(spec.concurrency, 3);
  EXPECT_EQ(spec.system_prompt, "You are a coder.\nBe brief.");
  EXPECT_EQ(spec.source, "agents/coder.md");
}

TEST(AgentFileTest, DefaultsForOptionalFields) {
  auto loaded =
      ParseAgentFile("---\nname: b\nrole: r\nrunner: script\ncommand: ./go.sh\n---\n", "b.md");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.concurrency, 1);
  EXPECT_EQ(loaded->value.cost_tier, 1);
  EXPECT_FALSE(loaded->value.network);
  EXPECT_TRUE(loaded->value.capabilities.empty());
  EXPECT_FALSE(loaded->value.temperature.has_value());
  EXPECT_EQ(loaded->value.command, "./go.sh");
  EXPECT_EQ(loaded->value.system_prompt, "");
}

TEST(AgentFileTest, CrlfLineEndingsAndByteOrderMark) {
  auto loaded = ParseAgentFile(
      "\xEF\xBB\xBF---\r\nname: b\r\nrole: r\r\nrunner: cli\r\npreset: codex\r\n---\r\nHi\r\n",
      "b.md");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.preset, "codex");
  EXPECT_EQ(loaded->value.system_prompt, "Hi");
}

TEST(AgentFileTest, UnknownFieldsAreWarningsWithFileLines) {
  auto loaded = ParseAgentFile(
      "---\nname: b\nrole: r\nrunner: script\ncommand: x\ncolour: blue\n"
      "budget: {usd_per_task: 1, per_week: 3}\n---\n",
      "agents/b.md");
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->warnings.size(), 2u);
  EXPECT_EQ(loaded->warnings[0].ToString(),
            "agents/b.md:6: warning: field 'colour': unknown field (ignored)");
  EXPECT_EQ(loaded->warnings[1].ToString(),
            "agents/b.md:7: warning: field 'budget.per_week': unknown field (ignored)");
}

// Each bad file must fail with a message naming the file line (front matter lines are file
// lines: the YAML after the opening '---' starts at line 2).
struct BadAgentCase {
  const char* label;
  const char* text;
  const char* expected;
};

constexpr char kHead[] = "---\nname: a\nrole: r\n";  // lines 1-3

class BadAgentFileTest : public ::testing::TestWithParam<BadAgentCase> {};

TEST_P(BadAgentFileTest, FailsWithFileLineMessage) {
  auto loaded = ParseAgentFile(GetParam().text, "agents/x.md");
  ASSERT_FALSE(loaded) << GetParam().label;
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(loaded.error().message, HasSubstr(GetParam().expected)) << GetParam().label;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadAgentFileTest,
    ::testing::Values(
        BadAgentCase{"no_front_matter", "name: a\n",
                     "agents/x.md:1: an agent file must start with a '---' line"},
        BadAgentCase{"unclosed", "---\nname: a\nrole: r\n",
                     "agents/x.md:1: front matter is not closed"},
        BadAgentCase{"not_a_map", "---\n- a\n- b\n---\n",
                     "agents/x.md:2: front matter must be a YAML mapping"},
        BadAgentCase{"empty_front_matter", "---\n---\nbody\n",
                     "agents/x.md:1: front matter must be a YAML mapping"},
        BadAgentCase{"yaml_syntax", "---\nname: a\nrole: [r\nrunner: script\n---\n",
                     "agents/x.md:"},
        BadAgentCase{"missing_name", "---\nrole: r\nrunner: script\ncommand: x\n---\n",
                     "agents/x.md:1: missing required field 'name'"},
        BadAgentCase{"missing_role", "---\nname: a\nrunner: script\ncommand: x\n---\n",
                     "agents/x.md:1: missing required field 'role'"},
        BadAgentCase{"missing_runner", "---\nname: a\nrole: r\ncommand: x\n---\n",
                     "agents/x.md:1: missing required field 'runner'"},
        BadAgentCase{"empty_role", "---\nname: a\nrole: ''\nrunner: script\ncommand: x\n---\n",
                     "agents/x.md:3: field 'role': must not be empty"},
        BadAgentCase{"name_not_string",
                     "---\nname: [a]\nrole: r\nrunner: script\ncommand: x\n---\n",
                     "agents/x.md:2: field 'name': must be a string"},
        BadAgentCase{"name_invalid",
                     "---\nname: my agent!\nrole: r\nrunner: script\ncommand: x\n---\n",
                     "agents/x.md:2: field 'name': 'my agent!' is not a valid name"},
        BadAgentCase{
            "runner_unknown", "---\nname: a\nrole: r\nrunner: robot\n---\n",
            "agents/x.md:4: field 'runner': must be one of script, cli, llm (got 'robot')"},
        BadAgentCase{"script_without_command", "---\nname: a\nrole: r\nrunner: script\n---\n",
                     "agents/x.md:4: field 'command': runner 'script' needs a 'command'"},
        BadAgentCase{"cli_without_preset", "---\nname: a\nrole: r\nrunner: cli\n---\n",
                     "agents/x.md:4: field 'preset': runner 'cli' needs a 'preset'"},
        BadAgentCase{"cli_unknown_preset",
                     "---\nname: a\nrole: r\nrunner: cli\npreset: cursor\n---\n",
                     "agents/x.md:5: field 'preset': must be one of claude, codex, opencode, "
                     "aider, gemini (got 'cursor')"},
        BadAgentCase{"llm_without_model", "---\nname: a\nrole: r\nrunner: llm\n---\n",
                     "agents/x.md:4: field 'model': runner 'llm' needs a 'model' alias"},
        BadAgentCase{"capabilities_scalar",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\ncapabilities: code\n---\n",
                     "agents/x.md:6: field 'capabilities': must be a list of strings"},
        BadAgentCase{"capability_not_string",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\ncapabilities:\n  - code\n"
                     "  - {x: 1}\n---\n",
                     "agents/x.md:8: field 'capabilities[1]': must be a non-empty string"},
        BadAgentCase{"fallbacks_scalar",
                     "---\nname: a\nrole: r\nrunner: llm\nmodel: m\nfallbacks: cloud/fast\n---\n",
                     "agents/x.md:6: field 'fallbacks': must be a list of strings"},
        BadAgentCase{"temperature_range",
                     "---\nname: a\nrole: r\nrunner: llm\nmodel: m\ntemperature: 3\n---\n",
                     "agents/x.md:6: field 'temperature': must be a number between 0 and 2 "
                     "(got '3')"},
        BadAgentCase{"temperature_type",
                     "---\nname: a\nrole: r\nrunner: llm\nmodel: m\ntemperature: warm\n---\n",
                     "agents/x.md:6: field 'temperature': must be a number"},
        BadAgentCase{"max_turns_zero",
                     "---\nname: a\nrole: r\nrunner: llm\nmodel: m\nmax_turns: 0\n---\n",
                     "agents/x.md:6: field 'max_turns': must be an integer between 1 and"},
        BadAgentCase{"cost_tier_negative",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\ncost_tier: -1\n---\n",
                     "agents/x.md:6: field 'cost_tier': must be an integer between 0 and 1000"},
        BadAgentCase{"cost_tier_word",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\ncost_tier: low\n---\n",
                     "agents/x.md:6: field 'cost_tier': must be an integer"},
        BadAgentCase{"budget_not_map",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\nbudget: 5\n---\n",
                     "agents/x.md:6: field 'budget': must be a mapping"},
        BadAgentCase{"budget_negative",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\nbudget:\n"
                     "  usd_per_task: -1\n---\n",
                     "agents/x.md:7: field 'budget.usd_per_task': must be a number between 0"},
        BadAgentCase{"budget_tokens_fraction",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\nbudget:\n"
                     "  tokens_per_task: 1.5\n---\n",
                     "agents/x.md:7: field 'budget.tokens_per_task': must be an integer >= 1"},
        BadAgentCase{"tools_map",
                     "---\nname: a\nrole: r\nrunner: llm\nmodel: m\ntools: {a: 1}\n---\n",
                     "agents/x.md:6: field 'tools': must be a list of strings"},
        BadAgentCase{"network_word",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\nnetwork: maybe\n---\n",
                     "agents/x.md:6: field 'network': must be true or false"},
        BadAgentCase{"concurrency_zero",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\nconcurrency: 0\n---\n",
                     "agents/x.md:6: field 'concurrency': must be an integer between 1 and 10000 "
                     "(got '0')"},
        BadAgentCase{"concurrency_word",
                     "---\nname: a\nrole: r\nrunner: script\ncommand: x\nconcurrency: two\n---\n",
                     "agents/x.md:6: field 'concurrency': must be an integer"}),
    [](const ::testing::TestParamInfo<BadAgentCase>& info) { return info.param.label; });

TEST(AgentFileTest, FieldsTheRunnerIgnoresAreWarnings) {
  auto loaded = ParseAgentFile(
      "---\nname: a\nrole: r\nrunner: script\ncommand: x\nmodel: cloud/mid\npreset: claude\n---\n",
      "agents/a.md");
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->warnings.size(), 2u);
  EXPECT_EQ(loaded->warnings[0].ToString(),
            "agents/a.md:7: warning: field 'preset': not used by runner 'script'");
  EXPECT_EQ(loaded->warnings[1].ToString(),
            "agents/a.md:6: warning: field 'model': not used by runner 'script'");
  // A cli agent may name a model (passed to the CLI) without a warning.
  auto cli = ParseAgentFile(
      "---\nname: a\nrole: r\nrunner: cli\npreset: claude\nmodel: sonnet\n---\n", "a.md");
  ASSERT_TRUE(cli) << cli.error().message;
  EXPECT_TRUE(cli->warnings.empty());
}

TEST(AgentFileTest, AllErrorsAreReportedTogether) {
  auto loaded = ParseAgentFile(
      "---\nname: a\nrunner: script\ncommand: x\nconcurrency: 0\nnetwork: maybe\n---\n",
      "agents/x.md");
  ASSERT_FALSE(loaded);
  const std::string& message = loaded.error().message;
  EXPECT_THAT(message, HasSubstr("agents/x.md:1: missing required field 'role'"));
  EXPECT_THAT(message, HasSubstr("agents/x.md:5: field 'concurrency'"));
  EXPECT_THAT(message, HasSubstr("agents/x.md:6: field 'network'"));
}

TEST(AgentFileTest, YamlSyntaxErrorLineIsAFileLine) {
  // The stray indented mapping is on file line 4 (line 3 of the YAML): the reported line must
  // count the opening fence.
  auto loaded =
      ParseAgentFile("---\nname: a\nrole: r\n  bad: x\nrunner: script\n---\n", "agents/x.md");
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("agents/x.md:4: invalid YAML"));
  auto tab = ParseAgentFile("---\nname: a\n\trole: r\nrunner: script\n---\n", "agents/x.md");
  ASSERT_FALSE(tab);
  EXPECT_THAT(tab.error().message, HasSubstr("agents/x.md:3: invalid YAML"));
}

TEST(AgentFileTest, DuplicateKeysAreErrors) {
  // yaml-cpp keeps the first of two equal keys silently; the author meant one of them.
  auto loaded = ParseAgentFile(
      "---\nname: a\nrole: r\nrunner: script\ncommand: x\nrole: again\n---\n", "agents/x.md");
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message,
              HasSubstr("agents/x.md:6: field 'role': duplicate key (first at line 3)"));
}

TEST(AgentFileTest, LoadAgentFileReadsFromDisk) {
  testing::TempDir dir;
  auto path = dir.Write("agents/b.md", "---\nname: b\nrole: r\nrunner: cli\npreset: aider\n---\n");
  auto loaded = LoadAgentFile(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.source, path.string());
  auto missing = LoadAgentFile(dir.path() / "nope.md");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST(AgentFileTest, NamesSafeForBranchesAndFiles) {
  EXPECT_TRUE(IsValidName("builder"));
  EXPECT_TRUE(IsValidName("llm-coder_2.v1"));
  EXPECT_FALSE(IsValidName(""));
  EXPECT_FALSE(IsValidName("-x"));
  EXPECT_FALSE(IsValidName(".hidden"));
  EXPECT_FALSE(IsValidName("a..b"));
  EXPECT_FALSE(IsValidName("a/b"));
  EXPECT_FALSE(IsValidName("a b"));
  EXPECT_FALSE(IsValidName(std::string(65, 'a')));
}

TEST(AgentFileTest, CoversRequiresEveryCapability) {
  AgentSpec spec;
  spec.capabilities = {"code", "test"};
  EXPECT_TRUE(spec.Covers({}));
  EXPECT_TRUE(spec.Covers({"code"}));
  EXPECT_TRUE(spec.Covers({"test", "code"}));
  EXPECT_FALSE(spec.Covers({"code", "docs"}));
}

TEST(AgentFileTest, RunnerKindNamesRoundTrip) {
  for (RunnerKind kind : {RunnerKind::kScript, RunnerKind::kCli, RunnerKind::kLlm}) {
    EXPECT_EQ(ParseRunnerKind(RunnerKindName(kind)), kind);
  }
  EXPECT_FALSE(ParseRunnerKind("robot"));
}

}  // namespace
}  // namespace factory
