#include "core/simple_command.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace factory {
namespace {

using Words = std::vector<std::string>;

TEST(SimpleCommandTest, PlainWordsAreExecedDirectly) {
  EXPECT_EQ(SimpleCommandArgv("true"), Words{"true"});
  EXPECT_EQ(SimpleCommandArgv("  sleep   0.2 "), (Words{"sleep", "0.2"}));
  EXPECT_EQ(SimpleCommandArgv("exec /opt/bin/stamped_sleep 0.2"),
            (Words{"/opt/bin/stamped_sleep", "0.2"}));
  EXPECT_EQ(SimpleCommandArgv("make -j2 CC=gcc test"), (Words{"make", "-j2", "CC=gcc", "test"}));
  EXPECT_EQ(SimpleCommandArgv("python3 -m pytest -q tests/unit_test.py,x:y@z%+"),
            (Words{"python3", "-m", "pytest", "-q", "tests/unit_test.py,x:y@z%+"}));
  EXPECT_EQ(SimpleCommandArgv("false"), Words{"false"});
}

TEST(SimpleCommandTest, AnythingTheShellWouldInterpretNeedsTheShell) {
  for (const char* command : {"",           "   ",          "exec",
                              "echo hi",    "cd src",       "export A=1",
                              "A=1 make",   "if true",      "test -f x",
                              "[ -f x ]",   "ls *.cc",      "ls ?",
                              "ls [ab]",    "cat ~/x",      "echo $HOME",
                              "echo `id`",  "echo 'a b'",   "echo \"a\"",
                              "a\\ b",      "true; false",  "true && false",
                              "true || x",  "true | cat",   "cat < in",
                              "echo > out", "(true)",       "{ true; }",
                              "! true",     "true # note",  "sleep 1 &",
                              "a\nb",       "exec echo hi", "kill 1",
                              "wait",       "printf x",     "pwd",
                              ". ./env",    ": nothing",    "do",
                              "while true"}) {
    EXPECT_FALSE(SimpleCommandArgv(command).has_value()) << "command: " << command;
  }
}

}  // namespace
}  // namespace factory
