#include "agents/examples.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agents/registry.h"
#include "common/test_util.h"

namespace factory {
namespace {

TEST(ExampleAgentsTest, EveryExampleIsAValidAgentFileWithoutWarnings) {
  std::vector<ExampleFile> files = ExampleAgentFiles();
  files.push_back(LlmAgentFile("local/fast", "Chosen because a test said so."));
  for (std::string_view preset : kCliPresets) {
    auto file = CliAgentFile(preset);
    ASSERT_TRUE(file) << preset << ": " << file.error().message;
    files.push_back(std::move(*file));
  }
  for (const ExampleFile& file : files) {
    auto loaded = ParseAgentFile(file.content, file.name);
    ASSERT_TRUE(loaded) << file.name << ": " << loaded.error().message;
    EXPECT_TRUE(loaded->warnings.empty()) << FormatDiagnostics(loaded->warnings);
    EXPECT_EQ(loaded->value.name + ".md", file.name);
    EXPECT_FALSE(loaded->value.system_prompt.empty()) << file.name;
  }
  EXPECT_FALSE(CliAgentFile("cursor"));
}

TEST(ExampleAgentsTest, WritesAnLlmAndAClaudeExampleThatLoad) {
  testing::TempDir dir;
  auto written = WriteAgentFiles(dir.path() / "examples", ExampleAgentFiles());
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(written->size(), 2u);
  auto loaded = AgentRegistry::LoadDirectory(dir.path() / "examples");
  ASSERT_TRUE(loaded) << loaded.error().message;
  const AgentRegistry& registry = *loaded->value;
  const AgentSpec* claude = registry.Find("claude-coder");
  ASSERT_NE(claude, nullptr);
  EXPECT_EQ(claude->runner, RunnerKind::kCli);
  EXPECT_EQ(claude->preset, "claude");
  EXPECT_EQ(claude->env, std::vector<std::string>{"ANTHROPIC_API_KEY"});
  const AgentSpec* llm = registry.Find("llm-coder");
  ASSERT_NE(llm, nullptr);
  EXPECT_EQ(llm->runner, RunnerKind::kLlm);
  EXPECT_EQ(llm->model, "cloud/mid");
}

TEST(ExampleAgentsTest, NeverOverwritesEditedFiles) {
  testing::TempDir dir;
  auto edited = dir.Write("agents/llm-coder.md", "my edits");
  auto written = WriteAgentFiles(dir.path() / "agents", ExampleAgentFiles());
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(written->size(), 1u);
  EXPECT_EQ(testing::ReadFile(edited), "my edits");
}

}  // namespace
}  // namespace factory
