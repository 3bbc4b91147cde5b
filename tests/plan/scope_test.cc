// Task scopes and the top-level Python modules an attempt may not add (plan/scope.h).

#include "plan/scope.h"

#include <gtest/gtest.h>

namespace factory {
namespace {

using Paths = std::vector<std::string>;

TEST(ScopeTest, PathsOutsideEveryGlobAreReportedInOrder) {
  const Paths scope = {"src/textkit/**", "docs/textkit.md"};
  EXPECT_EQ(OutsideScope(scope, {"src/textkit/a.py", "unittest/__init__.py", "docs/textkit.md",
                                 "src/other/b.py", "README.md"}),
            (Paths{"unittest/__init__.py", "src/other/b.py", "README.md"}));
  EXPECT_TRUE(OutsideScope(scope, {"src/textkit/deep/er/c.py"}).empty());
}

TEST(ScopeTest, NoScopeIsTheWholeRepository) {
  EXPECT_TRUE(OutsideScope({}, {"anything/at/all", "x"}).empty());
}

TEST(ScopeTest, ScopeGlobsAreRelativeAndStayInside) {
  EXPECT_EQ(CheckScopeGlob("src/**"), "");
  EXPECT_EQ(CheckScopeGlob("./src/*.py"), "");
  EXPECT_NE(CheckScopeGlob("/etc/**"), "");
  EXPECT_NE(CheckScopeGlob(""), "");
  EXPECT_NE(CheckScopeGlob("src/../../x"), "");
}

TEST(ScopeTest, GlobsThatLimitNothingAreRecognised) {
  EXPECT_TRUE(IsWholeRepositoryGlob("**"));
  EXPECT_TRUE(IsWholeRepositoryGlob("**/*"));
  EXPECT_FALSE(IsWholeRepositoryGlob("*"));  // the top level only
  EXPECT_FALSE(IsWholeRepositoryGlob("src/**"));
  EXPECT_FALSE(IsWholeRepositoryGlob("**/*.py"));
}

TEST(ScopeTest, TopLevelModulesNamedLikeTheStandardLibraryAreCandidates) {
  const auto found = PythonShadowingCandidates(
      {"unittest/__init__.py", "json.py", "unittest/main.py", "src/json.py", "textkit/types.py",
       "os.cpython-311-x86_64-linux-gnu.so", "re.pyc", "pytest/__init__.py", "mytool.py", "test.py",
       "logging/handlers/__init__.py", "README.md", "json"});
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& item : found) pairs.emplace_back(item.path, item.module);
  EXPECT_EQ(pairs, (std::vector<std::pair<std::string, std::string>>{
                       {"unittest/__init__.py", "unittest"},
                       {"json.py", "json"},
                       {"os.cpython-311-x86_64-linux-gnu.so", "os"},
                       {"re.pyc", "re"},
                       {"pytest/__init__.py", "pytest"}}));
}

TEST(ScopeTest, KnowsTheStandardLibrary) {
  for (const char* name : {"unittest", "json", "os", "sys", "subprocess", "typing", "cProfile"}) {
    EXPECT_TRUE(IsProtectedPythonModule(name)) << name;
  }
  for (const char* name : {"textkit", "test", "tests", "src", "Unittest", ""}) {
    EXPECT_FALSE(IsProtectedPythonModule(name)) << name;
  }
}

}  // namespace
}  // namespace factory
