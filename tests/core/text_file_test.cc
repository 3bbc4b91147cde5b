// The one reader of user- and agent-written text files: what it refuses, and where it says.

#include "core/text_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/test_util.h"

namespace factory {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string text;
  bool ok;
  int line;          // of the problem
  std::string what;  // of the problem
};

TEST(TextFileTest, FindsTheFirstProblemAndItsLine) {
  const std::vector<Case> cases = {
      {"", true, 0, ""},
      {"plain\nascii\n", true, 0, ""},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n", true, 0, ""},
      {std::string("a\nb\0c", 5), false, 2, "NUL byte"},
      {"one\ntwo\nbad \xff\n", false, 3, "invalid UTF-8"},
      {"\xc0\xaf", false, 1, "invalid UTF-8"},          // overlong '/'
      {"\xed\xa0\x80", false, 1, "invalid UTF-8"},      // surrogate
      {"\xf4\x90\x80\x80", false, 1, "invalid UTF-8"},  // past U+10FFFF
      {"ok\n\xe2\x82", false, 2, "invalid UTF-8"},      // truncated at the end
      {"\xe2\x28\xa1", false, 1, "invalid UTF-8"},      // bad continuation
  };
  for (const auto& c : cases) {
    const auto problem = FindTextProblem(c.text);
    EXPECT_EQ(!problem.has_value(), c.ok) << c.text;
    if (problem) {
      EXPECT_EQ(problem->line, c.line) << c.text;
      EXPECT_EQ(problem->what, c.what) << c.text;
    }
  }
}

TEST(TextFileTest, ReadTextFileNamesFileAndLine) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "good.yaml", "a: 1\n");
  EXPECT_EQ(*ReadTextFile(dir.path() / "good.yaml"), "a: 1\n");

  testing::WriteFile(dir.path() / "bad.yaml", "a: 1\nb: \xfe\n");
  auto bad = ReadTextFile(dir.path() / "bad.yaml");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, (dir.path() / "bad.yaml").string() + ":2: invalid UTF-8");

  testing::WriteFile(dir.path() / "nul.md", std::string("# x\n\nhi\0", 8));
  auto nul = ReadTextFile(dir.path() / "nul.md");
  ASSERT_FALSE(nul.has_value());
  EXPECT_EQ(nul.error().message, (dir.path() / "nul.md").string() + ":3: NUL byte");

  EXPECT_EQ(ReadTextFile(dir.path() / "missing").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(ReadTextFile(dir.path()).error().code, ErrorCode::kNotFound);

  testing::WriteFile(dir.path() / "big.txt", std::string(100, 'x'));
  auto big = ReadTextFile(dir.path() / "big.txt", ReadTextOptions{.max_bytes = 99});
  ASSERT_FALSE(big.has_value());
  EXPECT_THAT(big.error().message, HasSubstr("larger than 99 bytes"));
  EXPECT_TRUE(ReadTextFile(dir.path() / "big.txt", ReadTextOptions{.max_bytes = 100}));
}

}  // namespace
}  // namespace factory
