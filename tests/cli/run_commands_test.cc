// `factory run --backlog`, `runs`, `run show` through the real binary on a real git repository.

#include <gtest/gtest.h>

#include "cli/cli.h"
#include "cli/cli_test_util.h"

namespace factory::cli {
namespace {

using testing::CliSandbox;

std::string Sh(const std::filesystem::path& dir, const std::string& command) {
  std::string full = "cd '" + dir.string() + "' && " + command + " 2>&1";
  std::string out;
  FILE* pipe = popen(full.c_str(), "r");
  char buffer[4096];
  while (pipe != nullptr && fgets(buffer, sizeof(buffer), pipe) != nullptr) out += buffer;
  if (pipe != nullptr) pclose(pipe);
  return out;
}

class RunCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Sh(sandbox_.dir(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "echo hello > README.md && git add README.md && git commit -qm init");
    sandbox_.Ok({"init"});
    testing::WriteFile(
        sandbox_.Path(".factory/agents/writer.md"),
        "---\nname: writer\nrole: writes a note\nrunner: script\n"
        "capabilities: [code]\nconcurrency: 2\n"
        "command: sh -c 'echo \"$FACTORY_TASK_ID\" > \"note-$FACTORY_TASK_ID.txt\"'\n"
        "---\nWrites a note.\n");
    testing::WriteFile(sandbox_.Path("backlog.yaml"),
                       "tasks:\n"
                       "  - id: first\n    title: First\n    agent: writer\n"
                       "  - id: second\n    title: Second\n    depends_on: [first]\n"
                       "    agent: writer\n");
  }
  CliSandbox sandbox_;
};

TEST_F(RunCommandsTest, RunsABacklogMergesEachTaskOnceAndResumesIdempotently) {
  auto first =
      sandbox_.Ok({"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--json", "--no-sandbox"});
  auto summary = first.Json();
  EXPECT_EQ(summary["run_id"], "r1");
  EXPECT_EQ(summary["integration_branch"], "factory/r1");
  EXPECT_EQ(summary["done"], 2);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["blocked"], 0);
  EXPECT_EQ(summary["first_attempt_success_rate"], 1.0);
  // The same run id again creates and merges nothing new.
  auto again = sandbox_.Ok({"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--json"});
  EXPECT_EQ(again.Json()["done"], 2);
  std::string merges =
      Sh(sandbox_.dir(), "git log --merges --format=%B factory/r1 | grep -c '^Factory-Task:'");
  EXPECT_EQ(merges, "2\n");
  // The base branch is untouched.
  EXPECT_EQ(Sh(sandbox_.dir(), "git rev-list --count main"), "1\n");
  auto runs = sandbox_.Ok({"runs", "--json"}).Json();
  ASSERT_TRUE(runs.is_array());
  ASSERT_EQ(runs.size(), 1u);
  auto show = sandbox_.Ok({"run", "show", "r1", "--json"}).Json();
  EXPECT_EQ(show["tasks"].size(), 2u);
  EXPECT_EQ(sandbox_.Run({"run", "show", "nope"}).exit_code, kExitNotFound);
}

TEST_F(RunCommandsTest, InvalidBacklogIsRefusedWithFileAndLine) {
  testing::WriteFile(sandbox_.Path("cycle.yaml"),
                     "tasks:\n  - id: a\n    title: A\n    depends_on: [b]\n"
                     "  - id: b\n    title: B\n    depends_on: [a]\n");
  auto result = sandbox_.Run({"run", "--backlog", "cycle.yaml"});
  EXPECT_EQ(result.exit_code, kExitUsage);
  EXPECT_NE(result.err.find("cycle.yaml:"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("a -> b -> a"), std::string::npos) << result.err;
  auto missing = sandbox_.Run({"run"});
  EXPECT_EQ(missing.exit_code, kExitUsage);
  // Nothing was created by the refused runs.
  EXPECT_EQ(sandbox_.Ok({"runs", "--json"}).Json().size(), 0u);
}

}  // namespace
}  // namespace factory::cli
