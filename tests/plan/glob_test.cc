#include "plan/glob.h"

#include <gtest/gtest.h>

namespace factory {
namespace {

struct GlobCase {
  const char* pattern;
  const char* path;
  bool matches;
};

class GlobTest : public ::testing::TestWithParam<GlobCase> {};

TEST_P(GlobTest, Matches) {
  EXPECT_EQ(MatchesGlob(GetParam().pattern, GetParam().path), GetParam().matches)
      << "pattern '" << GetParam().pattern << "' path '" << GetParam().path << "'";
}

INSTANTIATE_TEST_SUITE_P(
    Table, GlobTest,
    ::testing::Values(
        // literal
        GlobCase{"README.md", "README.md", true}, GlobCase{"README.md", "docs/README.md", false},
        GlobCase{"src/main.cc", "src/main.cc", true}, GlobCase{"src/main.cc", "src/main.c", false},
        // '*' stays within a segment
        GlobCase{"*.md", "README.md", true}, GlobCase{"*.md", "docs/README.md", false},
        GlobCase{"src/*.cc", "src/a.cc", true}, GlobCase{"src/*.cc", "src/sub/a.cc", false},
        GlobCase{"src/*", "src/a.cc", true}, GlobCase{"src/*", "src", false},
        GlobCase{"*", "a", true}, GlobCase{"*", "a/b", false}, GlobCase{"a*b*c", "axxbyyc", true},
        GlobCase{"a*b*c", "axxbyy", false}, GlobCase{"*test*", "my_test_file", true},
        // '?' is one character, never '/'
        GlobCase{"file?.txt", "file1.txt", true}, GlobCase{"file?.txt", "file10.txt", false},
        GlobCase{"a?b", "a/b", false},
        // '**' spans zero or more segments
        GlobCase{"tests/**", "tests/a.cc", true}, GlobCase{"tests/**", "tests/x/y/z.cc", true},
        GlobCase{"tests/**", "src/tests/a.cc", false}, GlobCase{"tests/**", "testsuite/a", false},
        GlobCase{"**/*.lock", "Cargo.lock", true}, GlobCase{"**/*.lock", "a/b/yarn.lock", true},
        GlobCase{"**/*.lock", "a/b/lock", false}, GlobCase{"a/**/b", "a/b", true},
        GlobCase{"a/**/b", "a/x/b", true}, GlobCase{"a/**/b", "a/x/y/b", true},
        GlobCase{"a/**/b", "a/x/y/c", false}, GlobCase{"**", "anything/at/all", true},
        GlobCase{"**/tests/**", "x/tests/y", true}, GlobCase{"**/tests/**", "tests/y", true},
        GlobCase{"a**b", "axyb", true}, GlobCase{"a**b", "ax/yb", false},
        // trailing slash means everything below; leading ./ and / are ignored
        GlobCase{"tests/", "tests/unit/a.cc", true}, GlobCase{"./tests/**", "tests/a", true},
        GlobCase{"/tests/**", "./tests/a", true}, GlobCase{"src//a.cc", "src/a.cc", true},
        // '[' is literal
        GlobCase{"[ab].txt", "[ab].txt", true}, GlobCase{"[ab].txt", "a.txt", false},
        // empty pattern matches nothing
        GlobCase{"", "a", false}));

TEST(GlobTest, ManyDoubleStarsStayFast) {
  // A backtracking matcher would take exponential time here.
  std::string pattern;
  for (int i = 0; i < 30; ++i) pattern += "**/";
  pattern += "x";
  std::string path;
  for (int i = 0; i < 60; ++i) path += "d/";
  path += "y";
  EXPECT_FALSE(MatchesGlob(pattern, path));
  EXPECT_FALSE(MatchesGlob(std::string(40, '*') + "b", std::string(200, 'a')));
}

TEST(GlobTest, CheckGlobRejectsEmptyAndParentSegments) {
  EXPECT_EQ(CheckGlob("tests/**"), "");
  EXPECT_NE(CheckGlob(""), "");
  EXPECT_NE(CheckGlob("./"), "");
  EXPECT_NE(CheckGlob("../secrets/*"), "");
  EXPECT_NE(CheckGlob("a/../../b"), "");
  EXPECT_EQ(CheckGlob("a..b/*"), "");
}

}  // namespace
}  // namespace factory
