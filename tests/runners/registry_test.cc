// The runner registry: kinds by name, replacement, and the errors for unknown kinds.

#include "runners/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace factory {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A runner that reports which factory made it.
class LabelRunner final : public Runner {
 public:
  explicit LabelRunner(std::string label) : label_(std::move(label)) {}
  Result<RunnerOutcome> Run(const RunnerContext&) override {
    RunnerOutcome outcome;
    outcome.success = true;
    outcome.summary = label_;
    return outcome;
  }

 private:
  std::string label_;
};

AgentSpec Agent(RunnerKind kind) {
  AgentSpec agent;
  agent.name = "a";
  agent.source = "agents/a.md";
  agent.runner = kind;
  agent.command = "true";
  return agent;
}

std::string LabelOf(Runner& runner) {
  RunnerContext context;
  auto outcome = runner.Run(context);
  return outcome ? outcome->summary : "error: " + outcome.error().message;
}

TEST(RunnerRegistryTest, BuiltinKnowsTheAgentFileKinds) {
  const RunnerRegistry registry = RunnerRegistry::Builtin();
  EXPECT_THAT(registry.Kinds(), ElementsAre("cli", "llm", "script"));
  auto script = registry.Make(Agent(RunnerKind::kScript));
  EXPECT_TRUE(script.has_value()) << script.error().ToString();
  // llm needs the model layer, which the run environment registers.
  auto llm = registry.Make(Agent(RunnerKind::kLlm));
  ASSERT_FALSE(llm.has_value());
  EXPECT_EQ(llm.error().code, ErrorCode::kInvalidArgument);
}

TEST(RunnerRegistryTest, UnknownKindListsTheKnownOnes) {
  RunnerRegistry registry;
  ASSERT_TRUE(registry
                  .Register({.name = "script",
                             .make = [](const AgentSpec&) -> Result<std::unique_ptr<Runner>> {
                               return std::unique_ptr<Runner>(new LabelRunner("s"));
                             }})
                  .has_value());
  auto found = registry.Find("llm");
  ASSERT_FALSE(found.has_value());
  EXPECT_EQ(found.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(found.error().message, "unknown runner kind 'llm' (known: script)");

  // Through an agent: the agent's file is named too.
  auto made = registry.Make(Agent(RunnerKind::kCli));
  ASSERT_FALSE(made.has_value());
  EXPECT_THAT(made.error().message, HasSubstr("agent 'a' (agents/a.md)"));
  EXPECT_THAT(made.error().message, HasSubstr("unknown runner kind 'cli' (known: script)"));
  Status checked = registry.Check(Agent(RunnerKind::kCli));
  ASSERT_FALSE(checked.has_value());
  EXPECT_THAT(checked.error().message, HasSubstr("unknown runner kind 'cli'"));
}

TEST(RunnerRegistryTest, RegisterRefusesDuplicatesUnlessReplacing) {
  RunnerRegistry registry = RunnerRegistry::Builtin();
  auto labelled = [](std::string label) {
    return [label](const AgentSpec&) -> Result<std::unique_ptr<Runner>> {
      return std::unique_ptr<Runner>(new LabelRunner(label));
    };
  };
  Status duplicate = registry.Register({.name = "llm", .make = labelled("mine")});
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error().code, ErrorCode::kAlreadyExists);

  ASSERT_TRUE(registry.Register({.name = "llm", .make = labelled("tool loop")}, true).has_value());
  auto runner = registry.Make(Agent(RunnerKind::kLlm));
  ASSERT_TRUE(runner.has_value()) << runner.error().ToString();
  EXPECT_EQ(LabelOf(**runner), "tool loop");
  // Without a check, nothing stands in the agent's way.
  EXPECT_TRUE(registry.Check(Agent(RunnerKind::kLlm)).has_value());

  EXPECT_FALSE(registry.Register({.name = "", .make = labelled("x")}).has_value());
  EXPECT_FALSE(registry.Register({.name = "nofactory"}).has_value());
}

TEST(RunnerRegistryTest, ChecksGetTheTaskType) {
  RunnerRegistry registry;
  std::string seen;
  ASSERT_TRUE(registry
                  .Register({.name = "script",
                             .make = [](const AgentSpec&) -> Result<std::unique_ptr<Runner>> {
                               return std::unique_ptr<Runner>(new LabelRunner("s"));
                             },
                             .check = [&seen](const AgentSpec&,
                                              const RunnerCheckContext& context) -> Status {
                               seen = context.task_type;
                               return Ok();
                             }})
                  .has_value());
  EXPECT_TRUE(registry.Check(Agent(RunnerKind::kScript), {.task_type = "docs"}).has_value());
  EXPECT_EQ(seen, "docs");
}

}  // namespace
}  // namespace factory
