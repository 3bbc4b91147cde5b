// The backlog agent's answer: JSON extraction, every kind of validation error a planned backlog
// can have (each named with its task and JSON path), and the YAML written to BACKLOG.yaml.

#include "feature/planned_backlog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agents/registry.h"
#include "feature/feature_run.h"
#include "feature_test_util.h"

namespace factory::feature {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class PlannedBacklogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AgentSpec builder;
    builder.name = "builder";
    builder.runner = RunnerKind::kScript;
    builder.command = "true";
    builder.capabilities = {"code"};
    ASSERT_TRUE(agents_.Add(builder).has_value());
  }

  PlannedBacklogCheck Check(const std::string& text, int max_tasks = 30) {
    PlannedBacklogOptions options;
    options.agents = &agents_;
    options.max_tasks = max_tasks;
    return CheckPlannedBacklog(text, options);
  }

  // The one error expected, which must name `fragment`.
  void ExpectError(const std::string& text, const std::string& fragment) {
    PlannedBacklogCheck check = Check(text);
    EXPECT_FALSE(check.ok()) << text;
    std::string all;
    for (const auto& error : check.errors) all += error + "\n";
    EXPECT_THAT(all, HasSubstr(fragment)) << text;
    EXPECT_THAT(all, HasSubstr("backlog agent output")) << "errors name their source";
  }

  AgentRegistry agents_;
};

TEST_F(PlannedBacklogTest, AcceptsAValidBacklogInDependencyOrder) {
  PlannedBacklogCheck check = Check(testing::ValidBacklogJson());
  ASSERT_TRUE(check.ok()) << check.errors.front();
  ASSERT_EQ(check.backlog->value.tasks.size(), 2u);
  EXPECT_EQ(check.backlog->value.tasks[0].id, "greeting");
  EXPECT_EQ(check.backlog->value.tasks[1].depends_on, std::vector<std::string>{"greeting"});
}

TEST_F(PlannedBacklogTest, ExtractsJsonFromAFenceOrProse) {
  const std::string json = testing::ValidBacklogJson();
  EXPECT_TRUE(Check("```json\n" + json + "\n```\n").ok());
  EXPECT_TRUE(Check("Here is the backlog:\n" + json + "\nGood luck.").ok());
  EXPECT_EQ(ExtractJsonObject("  " + json + "\n"), json);
}

TEST_F(PlannedBacklogTest, ReportsEveryKindOfError) {
  ExpectError("this is not JSON at all", "invalid JSON");
  ExpectError("", "empty");
  ExpectError(R"({"items": []})", "missing required field 'tasks'");
  ExpectError(R"({"tasks": {}})", "field 'tasks': must be a list");
  ExpectError(R"({"tasks": []})", "no tasks");
  ExpectError(R"({"tasks": ["just a string"]})", "field 'tasks[0]'");
  ExpectError(R"({"tasks": [{"title": "t", "acceptance": ["a"]}]})",
              "field 'tasks[0].id': missing required field 'id'");
  ExpectError(R"({"tasks": [{"id": "-bad id", "title": "t", "acceptance": ["a"]}]})",
              "not a valid task id");
  ExpectError(R"({"tasks": [{"id": "a", "acceptance": ["a"]}]})",
              "task 'a': field 'tasks[0].title': missing required field 'title'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "", "acceptance": ["a"]}]})",
              "field 'tasks[0].title': must not be empty");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"]},
                            {"id": "a", "title": "u", "acceptance": ["y"]}]})",
              "duplicate task id 'a'");
  ExpectError(testing::InvalidBacklogJson(),
              "task 'greeting': field 'tasks[0].depends_on[0]': unknown dependency 'nowhere'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "depends_on": ["b"]},
                            {"id": "b", "title": "u", "acceptance": ["y"], "depends_on": ["a"]}]})",
              "dependency cycle: a -> b -> a");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "agent": "ghost"}]})",
              "task 'a': field 'tasks[0].agent': unknown agent 'ghost'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"],
                             "capabilities": ["rocket-science"]}]})",
              "field 'tasks[0].capabilities': no agent can take this task");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "priority": "high"}]})",
              "field 'tasks[0].priority'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": "x"}]})",
              "field 'tasks[0].acceptance'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t"}]})",
              "task 'a': field 'tasks[0].acceptance': a planned task needs at least one");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": []}]})",
              "field 'tasks[0].acceptance': a planned task needs at least one");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"],
                             "allow_protected": ["tests/**"]}]})",
              "field 'tasks[0].allow_protected': not allowed in a planned backlog");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "max_attempts": 50}]})",
              "field 'tasks[0].max_attempts': not allowed in a planned backlog");
  // The whole answer of the wrong shape, and fields of the wrong type.
  ExpectError(R"([{"id": "a", "title": "t", "acceptance": ["x"]}])",
              "a backlog must be a mapping with a 'tasks' list");
  ExpectError(R"({"tasks": [{"id": ["a"], "title": "t", "acceptance": ["x"]}]})",
              "field 'tasks[0].id': must be a string");
  ExpectError(R"({"tasks": [{"id": "a", "title": {"text": "t"}, "acceptance": ["x"]}]})",
              "task 'a': field 'tasks[0].title': must be a string");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"],
                             "description": ["one", "two"]}]})",
              "task 'a': field 'tasks[0].description': must be a string");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x", ["y"]]}]})",
              "task 'a': field 'tasks[0].acceptance[1]'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"],
                             "depends_on": {"b": true}}]})",
              "task 'a': field 'tasks[0].depends_on': must be a list of strings");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "depends_on": [""]}]})",
              "task 'a': field 'tasks[0].depends_on[0]': must be a non-empty string");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "depends_on": ["a"]}]})",
              "dependency cycle: a -> a");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "type": ["code"]}]})",
              "task 'a': field 'tasks[0].type': must be a string");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"],
                             "capabilities": {"code": true}}]})",
              "task 'a': field 'tasks[0].capabilities': must be a list of strings");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "agent": ""}]})",
              "task 'a': field 'tasks[0].agent': must name an agent");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "priority": 5000000}]})",
              "task 'a': field 'tasks[0].priority': must be");
}

TEST_F(PlannedBacklogTest, ReportsATaskTypeWhoseDefaultAgentDoesNotExist) {
  agents_.SetDefaultAgents({{"docs", "ghost-writer"}});
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "type": "docs"}]})",
              "task 'a': field 'tasks[0].type'");
  ExpectError(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "type": "docs"}]})",
              "ghost-writer");
  // Other types still go to an agent that has the capabilities.
  EXPECT_TRUE(Check(R"({"tasks": [{"id": "a", "title": "t", "acceptance": ["x"], "type": "code",
                                   "capabilities": ["code"], "scope": ["src/**"]}]})")
                  .ok());
}

TEST_F(PlannedBacklogTest, ReportsAllErrorsOfOneAnswerTogether) {
  PlannedBacklogCheck check = Check(R"({"tasks": [
    {"id": "a", "title": "t", "acceptance": ["x"], "depends_on": ["missing"], "scope": ["a/**"]},
    {"id": "b", "title": "", "acceptance": ["y"], "agent": "ghost", "scope": ["b/**"]},
    {"id": "c", "title": "u", "scope": ["c/**"]}]})");
  ASSERT_FALSE(check.ok());
  std::string all;
  for (const auto& error : check.errors) all += error + "\n";
  EXPECT_THAT(all, HasSubstr("unknown dependency 'missing'"));
  EXPECT_THAT(all, HasSubstr("task 'b': field 'tasks[1].title'"));
  EXPECT_THAT(all, HasSubstr("unknown agent 'ghost'"));
  EXPECT_THAT(all, HasSubstr("task 'c': field 'tasks[2].acceptance'"));
  EXPECT_EQ(check.errors.size(), 4u) << all;
}

TEST_F(PlannedBacklogTest, EveryPlannedTaskNeedsAScopeThatLimitsSomething) {
  PlannedBacklogCheck check = Check(R"({"tasks": [
    {"id": "a", "title": "t", "acceptance": ["x"]},
    {"id": "b", "title": "u", "acceptance": ["y"], "scope": null},
    {"id": "c", "title": "v", "acceptance": ["z"], "scope": ["src/c/**", "**"]},
    {"id": "d", "title": "w", "acceptance": ["z"], "scope": ["/etc/**"]},
    {"id": "e", "title": "x", "acceptance": ["z"], "scope": []},
    {"id": "f", "title": "y", "acceptance": ["z"], "scope": ["src/f/**"]}]})");
  ASSERT_FALSE(check.ok());
  std::string all;
  for (const auto& error : check.errors) all += error + "\n";
  EXPECT_THAT(all, HasSubstr("task 'a': field 'tasks[0].scope': a planned task needs a scope"));
  EXPECT_THAT(all, HasSubstr("task 'b': field 'tasks[1].scope': must list at least one glob"));
  EXPECT_THAT(all, HasSubstr("task 'c': field 'tasks[2].scope[1]': '**' matches the whole "
                             "repository"));
  EXPECT_THAT(all, HasSubstr("task 'd': field 'tasks[3].scope[0]': must be relative"));
  EXPECT_THAT(all, HasSubstr("task 'e': field 'tasks[4].scope': must list at least one glob"));
  EXPECT_THAT(all, Not(HasSubstr("task 'f'")));
  EXPECT_EQ(check.errors.size(), 5u) << all;
}

TEST_F(PlannedBacklogTest, LimitsTheNumberOfTasks) {
  PlannedBacklogCheck check = Check(testing::ValidBacklogJson(), /*max_tasks=*/1);
  ASSERT_FALSE(check.ok());
  EXPECT_THAT(check.errors.front(), HasSubstr("too many tasks: 2 (at most 1)"));
}

TEST_F(PlannedBacklogTest, YamlRoundTripKeepsEveryField) {
  PlannedBacklogCheck check = Check(R"({"tasks": [
    {"id": "a", "title": "Title: with colon", "description": "line one\nline two: \"quoted\"\n",
     "acceptance": ["first", "- second"], "type": "code", "capabilities": ["code"],
     "agent": "builder", "priority": 3, "scope": ["src/a/**", "docs/a.md"]},
    {"id": "b", "title": "B", "acceptance": ["x"], "depends_on": ["a"], "scope": ["b/*"]}]})");
  ASSERT_TRUE(check.ok()) << check.errors.front();
  const std::string yaml = BacklogToYaml(check.backlog->value, "generated");
  BacklogOptions options;
  options.agents = &agents_;
  auto parsed = ParseBacklogYaml(yaml, "BACKLOG.yaml", options);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString() << "\n" << yaml;
  ASSERT_EQ(parsed->value.tasks.size(), 2u);
  const BacklogTask& original = check.backlog->value.tasks[0];
  const BacklogTask& read = parsed->value.tasks[0];
  EXPECT_EQ(read.id, original.id);
  EXPECT_EQ(read.title, original.title);
  EXPECT_EQ(read.description, original.description);
  EXPECT_EQ(read.acceptance, original.acceptance);
  EXPECT_EQ(read.type, "code");
  EXPECT_EQ(read.capabilities, original.capabilities);
  EXPECT_EQ(read.agent, "builder");
  EXPECT_EQ(read.priority, 3);
  EXPECT_EQ(read.scope, original.scope);
  EXPECT_EQ(read.scope, (std::vector<std::string>{"src/a/**", "docs/a.md"}));
  EXPECT_EQ(parsed->value.tasks[1].depends_on, std::vector<std::string>{"a"});
  EXPECT_TRUE(parsed->warnings.empty());
}

// A stored BACKLOG.yaml a person edited: the same rules, each error with the file's line.
TEST_F(PlannedBacklogTest, AStoredBacklogIsCheckedWithTheSameRulesAndLines) {
  testing::TempDir dir;
  const std::filesystem::path path = dir.path() / "BACKLOG.yaml";
  PlannedBacklogOptions options;
  options.agents = &agents_;
  options.max_tasks = 2;

  testing::WriteFile(path,
                     "tasks:\n"
                     "  - id: a\n"
                     "    title: A\n"
                     "    acceptance: [it works]\n"
                     "    capabilities: [code]\n"
                     "    scope: [\"src/a/**\"]\n");
  PlannedBacklogCheck valid = CheckPlannedBacklogFile(path, options);
  ASSERT_TRUE(valid.ok()) << valid.errors.front();
  EXPECT_EQ(valid.backlog->value.tasks.size(), 1u);

  testing::WriteFile(path,
                     "tasks:\n"
                     "  - id: a\n"                        // 2
                     "    title: A\n"                     // 3
                     "    acceptance: []\n"               // 4
                     "    capabilities: [code]\n"         // 5
                     "    scope: [\"src/**\", \"**\"]\n"  // 6
                     "    max_attempts: 9\n"              // 7
                     "  - id: b\n"                        // 8
                     "    title: B\n"                     // 9
                     "    acceptance: [x]\n"              // 10
                     "    capabilities: [code]\n"         // 11
                     "  - id: c\n"                        // 12
                     "    title: C\n"                     // 13
                     "    acceptance: [x]\n"              // 14
                     "    depends_on: [a, ghost]\n"       // 15
                     "    capabilities: [code]\n"         // 16
                     "    scope: [c/**]\n");              // 17
  PlannedBacklogCheck check = CheckPlannedBacklogFile(path, options);
  EXPECT_FALSE(check.ok());
  const std::string file = path.string();
  auto has = [&](const std::string& fragment) {
    for (const auto& error : check.errors) {
      if (error.find(fragment) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(has(file + ":4: task 'a': field 'tasks[0].acceptance'"));
  EXPECT_TRUE(has(file + ":6: task 'a': field 'tasks[0].scope[1]': '**' matches the whole"));
  EXPECT_TRUE(has(file + ":7: task 'a': field 'tasks[0].max_attempts': not allowed"));
  EXPECT_TRUE(has(file + ":8: task 'b': field 'tasks[1].scope': a planned task needs a scope"));
  EXPECT_TRUE(has("too many tasks: 3 (at most 2)"));
  EXPECT_TRUE(has("unknown dependency 'ghost'"));
  EXPECT_FALSE(has("src/**")) << "a glob that limits something is fine";

  std::filesystem::remove(path);
  PlannedBacklogCheck missing = CheckPlannedBacklogFile(path, options);
  EXPECT_FALSE(missing.ok());
  ASSERT_EQ(missing.errors.size(), 1u);
}

TEST(FeatureIdTest, DerivedFromTheFileName) {
  EXPECT_EQ(FeatureIdFor("docs/Add Count Flag.md"), "add-count-flag");
  EXPECT_EQ(FeatureIdFor("FEATURE.md"), "feature");
  EXPECT_EQ(FeatureIdFor("__.md"), "feature");
  EXPECT_EQ(FeatureIdFor("v2_API--limits!.md"), "v2-api-limits");
  EXPECT_EQ(FeatureIdFor(std::string(100, 'x') + ".md").size(), 64u);
}

}  // namespace
}  // namespace factory::feature
