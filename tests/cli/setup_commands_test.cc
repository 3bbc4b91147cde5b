// `factory init` (detection, the agent it chooses), `factory doctor` and what `factory run`
// says without an agent, through the real binary on real git repositories.

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

constexpr char kScriptAgent[] =
    "---\nname: writer\nrole: writes a note\nrunner: script\ncapabilities: [code]\n"
    "command: sh -c 'echo note > note.txt'\n---\nWrites a note.\n";

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

  // The check of a doctor's JSON report named `name` whose detail contains `detail`.
  static nlohmann::json CheckOf(const nlohmann::json& report, const std::string& name,
                                const std::string& detail = "") {
    for (const auto& check : report["checks"]) {
      if (check["name"] == name &&
          check["detail"].get<std::string>().find(detail) != std::string::npos) {
        return check;
      }
    }
    ADD_FAILURE() << "no check " << name << " (" << detail << ") in " << report.dump(2);
    return nlohmann::json::object();
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

TEST_F(SetupCommandsTest, DoctorPassesWhenARunCanSucceed) {
  MakeRepo("test -f Makefile\n");
  sandbox_.Ok({"init"});
  testing::WriteFile(sandbox_.Path(".factory/agents/writer.md"), kScriptAgent);
  auto doctor = sandbox_.Run({"doctor", "--json"});
  EXPECT_EQ(doctor.exit_code, 0) << doctor.out << doctor.err;
  const auto report = doctor.Json();
  EXPECT_EQ(report["ok"], true);
  EXPECT_EQ(CheckOf(report, "git")["status"], "ok");
  EXPECT_EQ(CheckOf(report, "repository")["status"], "ok");
  EXPECT_EQ(CheckOf(report, "sandbox")["status"], "ok");
  EXPECT_EQ(CheckOf(report, "agent", "writer")["status"], "ok");
  EXPECT_EQ(CheckOf(report, "gate", "test")["status"], "ok");
  EXPECT_EQ(CheckOf(report, "disk")["status"], "ok");
  // No provider: feature planning cannot run, which is a warning with its fix.
  const auto models = CheckOf(report, "models");
  EXPECT_EQ(models["status"], "warn");
  EXPECT_THAT(models["fix"].get<std::string>(), HasSubstr("FACTORY_LLM_BASE_URL"));
  // Progress while the gates run, and the temporary checkout is gone.
  EXPECT_THAT(doctor.err, HasSubstr("gate test: make test"));
  EXPECT_EQ(Sh(sandbox_.dir(), "git worktree list | wc -l"), "1\n");
}

TEST_F(SetupCommandsTest, DoctorFailsWithAFixForEachProblem) {
  // The committed tests fail; the working tree's passing copy must not count.
  MakeRepo("echo 'expected 2, got 3' && exit 1\n");
  testing::WriteFile(sandbox_.Path("tests/check.sh"), "exit 0\n");
  testing::SpawnOptions unreachable;
  unreachable.env["FACTORY_LLM_BASE_URL"] = "http://127.0.0.1:1/v1";
  sandbox_.Ok({"init"}, unreachable);
  auto doctor = sandbox_.Run({"doctor"}, unreachable);
  EXPECT_EQ(doctor.exit_code, kExitFailed) << doctor.out << doctor.err;
  EXPECT_THAT(doctor.out, HasSubstr("FAIL  gate"));
  EXPECT_THAT(doctor.out, HasSubstr("expected 2, got 3"));
  EXPECT_THAT(doctor.out, HasSubstr("FAIL  provider"));
  EXPECT_THAT(doctor.out, HasSubstr("fix: "));
  EXPECT_THAT(doctor.out, HasSubstr("fix the failures above"));

  const auto report = sandbox_.Run({"doctor", "--json"}, unreachable).Json();
  EXPECT_EQ(report["ok"], false);
  const auto gate = CheckOf(report, "gate", "test");
  EXPECT_EQ(gate["status"], "fail");
  EXPECT_THAT(gate["fix"].get<std::string>(), HasSubstr("pass on HEAD"));
  const auto provider = CheckOf(report, "provider", "local");
  EXPECT_EQ(provider["status"], "fail");
  EXPECT_THAT(provider["fix"].get<std::string>(), HasSubstr("start the server"));

  // Without an agent file: the agents check fails and says how to get one.
  std::filesystem::remove(sandbox_.Path(".factory/agents/llm-coder.md"));
  const auto no_agent = sandbox_.Run({"doctor", "--json"}).Json();
  const auto agents = CheckOf(no_agent, "agents");
  EXPECT_EQ(agents["status"], "fail");
  EXPECT_THAT(agents["fix"].get<std::string>(), HasSubstr("OPENAI_API_KEY"));
}

TEST_F(SetupCommandsTest, DoctorOutsideARepositorySaysSo) {
  auto doctor = sandbox_.Run({"doctor"});
  EXPECT_EQ(doctor.exit_code, kExitFailed);
  EXPECT_THAT(doctor.out, HasSubstr("not inside a git repository"));
  EXPECT_THAT(doctor.out, HasSubstr("git init"));
}

}  // namespace
}  // namespace factory::cli
