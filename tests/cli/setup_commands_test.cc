// `factory init` (detection, the agent it chooses) and what `factory run` says without an
// agent, through the real binary on real git repositories.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "cli/cli.h"
#include "cli/cli_test_util.h"

namespace factory::cli {
namespace {

using testing::CliSandbox;
using ::testing::HasSubstr;

std::string Sh(const std::filesystem::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

class SetupCommandsTest : public ::testing::Test {
 protected:
  // A repository whose `make test` runs tests/check.sh, committed.
  void MakeRepo(const std::string& check) {
    testing::WriteFile(sandbox_.Path("Makefile"), "test:\n\tsh tests/check.sh\n");
    testing::WriteFile(sandbox_.Path("tests/check.sh"), check);
    Sh(sandbox_.dir(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t "
       "&& git add -A && git commit -qm init");
  }

  CliSandbox sandbox_;
};

TEST_F(SetupCommandsTest, InitPrintsWhatItDetectedAndChose) {
  MakeRepo("exit 0\n");
  testing::SpawnOptions local;
  local.env["FACTORY_LLM_BASE_URL"] = "http://127.0.0.1:9/v1";
  auto init = sandbox_.Ok({"init"}, local);
  EXPECT_THAT(init.out, HasSubstr("gate test"));
  EXPECT_THAT(init.out, HasSubstr("make test"));
  EXPECT_THAT(init.out, HasSubstr("(Makefile target test)"));
  EXPECT_THAT(init.out, HasSubstr("protected tests/**"));
  EXPECT_THAT(init.out, HasSubstr("agent: llm-coder (llm, model local/fast)"));
  EXPECT_THAT(init.out, HasSubstr("FACTORY_LLM_BASE_URL is set"));
  EXPECT_THAT(init.out, HasSubstr("review: none"));
  EXPECT_THAT(init.out, HasSubstr("factory doctor"));
  EXPECT_THAT(testing::ReadFile(sandbox_.Path(".factory/config.yaml")),
              HasSubstr("command: \"make test\""));
  EXPECT_FALSE(std::filesystem::exists(sandbox_.Path(".factory/scripts/builder.sh")));

  // Again, as JSON: nothing new is written and the existing config is reported as kept.
  auto again = sandbox_.Ok({"init", "--json"}, local).Json();
  EXPECT_EQ(again["created"].size(), 0u);
  EXPECT_EQ(again["detected"]["written"], false);
  EXPECT_EQ(again["detected"]["gates"][0]["command"], "make test");
  EXPECT_EQ(again["agent"]["kind"], "llm");
  EXPECT_EQ(again["agent"]["written"], false);

  auto bad = sandbox_.Run({"init", "--agent", "cursor"});
  EXPECT_EQ(bad.exit_code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("--agent"));
}

TEST_F(SetupCommandsTest, RunWithoutAnAgentSaysWhatToConfigure) {
  MakeRepo("exit 0\n");
  auto init = sandbox_.Ok({"init"});
  EXPECT_THAT(init.out, HasSubstr("agent: none can run here"));
  testing::WriteFile(sandbox_.Path("backlog.yaml"), "tasks:\n  - id: a\n    title: A\n");
  testing::WriteFile(sandbox_.Path("feature.md"), "# Notes\n\nWrite a note.\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"run", "--backlog", "backlog.yaml"},
        std::vector<std::string>{"run", "feature.md"}}) {
    auto run = sandbox_.Run(args);
    EXPECT_EQ(run.exit_code, kExitNotFound) << run.err;
    EXPECT_THAT(run.err, HasSubstr(sandbox_.Path(".factory/agents").string()));
    for (const char* choice : {"FACTORY_LLM_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                               "claude", "factory init", "examples/"}) {
      EXPECT_THAT(run.err, HasSubstr(choice));
    }
  }
  // Nothing was planned or created.
  EXPECT_FALSE(std::filesystem::exists(sandbox_.Path(".factory/specs")));
  EXPECT_EQ(sandbox_.Ok({"runs", "--json"}).Json().size(), 0u);
}

}  // namespace
}  // namespace factory::cli
