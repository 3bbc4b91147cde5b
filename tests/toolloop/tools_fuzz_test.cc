// Inputs the fuzz target tool_call found crashing ExecuteTool (fuzz/regressions/tool_call/),
// replayed through it on a real worktree: each is a tool name, a newline, the arguments JSON.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/fuzz_regressions.h"
#include "common/test_util.h"
#include "toolloop/tools.h"
#include "toolloop/workspace_fs.h"

namespace factory::toolloop {
namespace {

using ::testing::HasSubstr;

class ToolsFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    factory::testing::WriteFile(dir_.path() / "README.md", "# demo\nsome text\n");
    auto opened = WorkspaceFs::Open(dir_.path().string());
    ASSERT_TRUE(opened.has_value());
    fs_.emplace(std::move(*opened));
  }

  ToolResult Replay(const std::string& name) {
    const std::string input = factory::testing::FuzzRegression("tool_call", name);
    const size_t newline = input.find('\n');
    llm::ToolCall call{"call-1", input.substr(0, newline), input.substr(newline + 1)};
    ToolEnv env;
    env.fs = &*fs_;
    return ExecuteTool(env, call);
  }

  factory::testing::TempDir dir_;
  std::optional<WorkspaceFs> fs_;
};

// offset 1e300: the float-to-integer conversion was undefined (UBSan in the fuzz and sanitizer
// builds); it is refused as not an integer.
TEST_F(ToolsFuzzTest, HugeFloatIntegerArgumentIsRefused) {
  const ToolResult result = Replay("read-file-offset-1e300");
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.output, HasSubstr("argument 'offset' must be an integer"));
}

// 30,000 nested groups: compiling the regex overflowed the stack and killed the process.
TEST_F(ToolsFuzzTest, DeeplyNestedRegexIsRefusedNotCompiled) {
  const ToolResult result = Replay("grep-regex-30000-nested-groups");
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.output, HasSubstr("the regular expression is longer than 1024 bytes"));
}

TEST_F(ToolsFuzzTest, AnOrdinaryRegexStillWorks) {
  ToolEnv env;
  env.fs = &*fs_;
  const ToolResult result =
      ExecuteTool(env, {"call-2", "grep", R"({"pattern": "so(me|any) te?xt", "regex": true})"});
  EXPECT_TRUE(result.ok) << result.output;
  EXPECT_THAT(result.output, HasSubstr("README.md:2: some text"));
}

}  // namespace
}  // namespace factory::toolloop
