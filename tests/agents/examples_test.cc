#include "agents/examples.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "agents/registry.h"
#include "common/test_util.h"

namespace factory {
namespace {

TEST(ExampleAgentsTest, EveryExampleIsAValidAgentFileWithoutWarnings) {
  for (const ExampleFile& file : ExampleAgentFiles()) {
    auto loaded = ParseAgentFile(file.content, std::string(file.name));
    ASSERT_TRUE(loaded) << file.name << ": " << loaded.error().message;
    EXPECT_TRUE(loaded->warnings.empty()) << FormatDiagnostics(loaded->warnings);
    EXPECT_EQ(loaded->value.name + ".md", file.name);
    EXPECT_FALSE(loaded->value.system_prompt.empty()) << file.name;
  }
}

TEST(ExampleAgentsTest, WritesScriptCliAndLlmAgentsThatLoad) {
  testing::TempDir dir;
  auto written = WriteExampleAgents(dir.path() / ".factory" / "agents");
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(written->size(), 3u);
  auto loaded = AgentRegistry::LoadDirectory(dir.path() / ".factory" / "agents");
  ASSERT_TRUE(loaded) << loaded.error().message;
  const AgentRegistry& registry = *loaded->value;

  const AgentSpec* builder = registry.Find("builder");
  ASSERT_NE(builder, nullptr);
  EXPECT_EQ(builder->runner, RunnerKind::kScript);
  EXPECT_THAT(builder->command, ::testing::HasSubstr(kExampleBuilderScriptPath));
  const AgentSpec* claude = registry.Find("claude-coder");
  ASSERT_NE(claude, nullptr);
  EXPECT_EQ(claude->runner, RunnerKind::kCli);
  EXPECT_EQ(claude->preset, "claude");
  const AgentSpec* llm = registry.Find("llm-coder");
  ASSERT_NE(llm, nullptr);
  EXPECT_EQ(llm->runner, RunnerKind::kLlm);
  EXPECT_EQ(llm->model, "cloud/mid");

  // With no LLM configured the demo must work: plain code tasks go to the script builder.
  auto chosen = registry.Resolve({"", {"code"}, ""});
  ASSERT_TRUE(chosen);
  EXPECT_EQ((*chosen)->name, "builder");
}

TEST(ExampleAgentsTest, NeverOverwritesEditedFiles) {
  testing::TempDir dir;
  auto edited = dir.Write("agents/builder.md", "my edits");
  auto written = WriteExampleAgents(dir.path() / "agents");
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(written->size(), 2u);
  EXPECT_EQ(testing::ReadFile(edited), "my edits");
}

TEST(ExampleAgentsTest, BuilderScriptIsExecutableAndNotClobbered) {
  testing::TempDir dir;
  auto path = dir.path() / kExampleBuilderScriptPath;
  auto first = WriteExampleBuilderScript(path);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(*first);
  struct stat info {};
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_TRUE(info.st_mode & S_IXUSR);
  EXPECT_EQ(testing::ReadFile(path), kExampleBuilderScript);
  auto second = WriteExampleBuilderScript(path);
  ASSERT_TRUE(second);
  EXPECT_FALSE(*second);
}

}  // namespace
}  // namespace factory
