// Inputs the fuzz target planned_backlog found breaking the round trip through BACKLOG.yaml
// (fuzz/regressions/planned_backlog/), replayed through it: a valid planned backlog, written
// as YAML, must read back as the same tasks.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agents/registry.h"
#include "common/fuzz_regressions.h"
#include "feature/planned_backlog.h"
#include "plan/backlog.h"

namespace factory::feature {
namespace {

// A description with a line break but none at its end, with trailing blank lines, with white
// space starting its first line, or with a carriage return was written in the literal block
// style, which reads back otherwise (a final line break added, the blank lines and the
// carriage return dropped) or not at all (an indented first line sets the
// block's indentation, and the next line ends it: BACKLOG.yaml did not parse). A title or an
// acceptance criterion ending with a carriage return was written plain and lost it.
TEST(PlannedBacklogFuzzTest, EveryDescriptionReadsBackFromBacklogYaml) {
  AgentRegistry agents;
  AgentSpec builder;
  builder.name = "builder";
  builder.runner = RunnerKind::kScript;
  builder.command = "true";
  builder.capabilities = {"code"};
  ASSERT_TRUE(agents.Add(builder).has_value());
  const auto inputs = testing::FuzzRegressions("planned_backlog");
  ASSERT_GE(inputs.size(), 5u);
  for (const auto& [name, text] : inputs) {
    const PlannedBacklogCheck check =
        CheckPlannedBacklog(text, PlannedBacklogOptions{.agents = &agents});
    ASSERT_TRUE(check.ok()) << name << ": " << check.errors.front();
    const Backlog& backlog = check.backlog->value;
    const std::string yaml = BacklogToYaml(backlog, "fuzz");
    auto reread = ParseBacklogYaml(yaml, "BACKLOG.yaml", BacklogOptions{.agents = &agents});
    ASSERT_TRUE(reread.has_value()) << name << ": " << reread.error().ToString() << "\n" << yaml;
    ASSERT_EQ(reread->value.tasks.size(), backlog.tasks.size()) << name;
    for (size_t index = 0; index < backlog.tasks.size(); ++index) {
      EXPECT_EQ(reread->value.tasks[index].description, backlog.tasks[index].description)
          << name << "\n"
          << yaml;
      EXPECT_EQ(reread->value.tasks[index].title, backlog.tasks[index].title) << name;
      EXPECT_EQ(reread->value.tasks[index].acceptance, backlog.tasks[index].acceptance) << name;
    }
  }
}

}  // namespace
}  // namespace factory::feature
