#include "plan/backlog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agents/registry.h"
#include "common/test_util.h"

namespace factory {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Ids(const Backlog& backlog) {
  std::vector<std::string> ids;
  for (const auto& task : backlog.tasks) ids.push_back(task.id);
  return ids;
}

TEST(BacklogTest, ParsesEveryFieldAndOrdersTopologically) {
  const char* text = R"(tasks:
  - id: ui
    title: Build the UI
    depends_on: [api, model]
  - id: model
    title: Data model
    description: |
      Define the tables.
    acceptance: [tables exist, migrations run]
    type: code
    capabilities: [code, sql]
    agent: builder
    priority: 5
    max_attempts: 2
    allow_protected: ["tests/model/**"]
    scope: ["src/model/**", "tests/model/**"]
  - id: api
    title: API
    depends_on: [model]
)";
  auto loaded = ParseBacklogYaml(text, "BACKLOG.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_TRUE(loaded->warnings.empty());
  const Backlog& backlog = loaded->value;
  EXPECT_EQ(Ids(backlog), (std::vector<std::string>{"model", "api", "ui"}));
  const BacklogTask* model = backlog.Find("model");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->title, "Data model");
  EXPECT_EQ(model->description, "Define the tables.\n");
  EXPECT_EQ(model->acceptance, (std::vector<std::string>{"tables exist", "migrations run"}));
  EXPECT_EQ(model->type, "code");
  EXPECT_EQ(model->capabilities, (std::vector<std::string>{"code", "sql"}));
  EXPECT_EQ(model->agent, "builder");
  EXPECT_EQ(model->priority, 5);
  EXPECT_EQ(model->max_attempts, 2);
  EXPECT_EQ(model->allow_protected, (std::vector<std::string>{"tests/model/**"}));
  EXPECT_EQ(model->scope, (std::vector<std::string>{"src/model/**", "tests/model/**"}));
  EXPECT_TRUE(backlog.Find("api")->scope.empty()) << "no scope: the whole repository";
  EXPECT_EQ(model->line, 5);
  EXPECT_EQ(backlog.Find("ui")->depends_on, (std::vector<std::string>{"api", "model"}));
  EXPECT_FALSE(backlog.Find("ui")->max_attempts.has_value());
  EXPECT_EQ(backlog.Find("nope"), nullptr);
  EXPECT_EQ(backlog.source, "BACKLOG.yaml");
}

TEST(BacklogTest, WarningsForUnknownFieldsAndRepeatedDependencies) {
  auto loaded = ParseBacklogYaml(
      "version: 2\ntasks:\n  - id: a\n    title: A\n  - id: b\n    title: B\n    owner: me\n"
      "    depends_on: [a, a]\n",
      "b.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->warnings.size(), 3u);
  EXPECT_EQ(loaded->warnings[0].ToString(),
            "b.yaml:1: warning: field 'version': unknown field (ignored)");
  EXPECT_EQ(loaded->warnings[1].ToString(),
            "b.yaml:7: warning: task 'b': field 'tasks[1].owner': unknown field (ignored)");
  EXPECT_EQ(loaded->warnings[2].ToString(),
            "b.yaml:8: warning: task 'b': field 'tasks[1].depends_on[1]': 'a' is listed twice");
  EXPECT_EQ(loaded->value.Find("b")->depends_on, (std::vector<std::string>{"a"}));
}

struct BadBacklogCase {
  const char* label;
  const char* text;
  const char* expected;
};

class BadBacklogTest : public ::testing::TestWithParam<BadBacklogCase> {};

TEST_P(BadBacklogTest, FailsWithFileLineTaskAndField) {
  auto loaded = ParseBacklogYaml(GetParam().text, "plans/backlog.yaml");
  ASSERT_FALSE(loaded) << GetParam().label;
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(loaded.error().message, HasSubstr(GetParam().expected)) << GetParam().label;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadBacklogTest,
    ::testing::Values(
        BadBacklogCase{"missing_id", "tasks:\n  - id: a\n    title: A\n  - title: B\n",
                       "plans/backlog.yaml:4: field 'tasks[1].id': missing required field 'id'"},
        BadBacklogCase{"missing_title", "tasks:\n  - id: a\n    description: x\n",
                       "plans/backlog.yaml:2: task 'a': field 'tasks[0].title': missing required "
                       "field 'title'"},
        BadBacklogCase{"empty_title", "tasks:\n  - id: a\n    title: ''\n",
                       "plans/backlog.yaml:3: task 'a': field 'tasks[0].title': must not be empty"},
        BadBacklogCase{"invalid_id", "tasks:\n  - id: my task\n    title: A\n",
                       "plans/backlog.yaml:2: field 'tasks[0].id': 'my task' is not a valid task "
                       "id"},
        BadBacklogCase{"id_not_string", "tasks:\n  - id: [a]\n    title: A\n",
                       "plans/backlog.yaml:2: field 'tasks[0].id': must be a string"},
        BadBacklogCase{"duplicate_id",
                       "tasks:\n  - id: a\n    title: A\n  - id: b\n    title: B\n"
                       "  - id: a\n    title: Again\n",
                       "plans/backlog.yaml:6: task 'a': field 'tasks[2].id': duplicate task id "
                       "'a' (also defined at line 2)"},
        BadBacklogCase{"unknown_dependency",
                       "tasks:\n  - id: a\n    title: A\n    depends_on:\n      - b\n      - zz\n"
                       "  - id: b\n    title: B\n",
                       "plans/backlog.yaml:6: task 'a': field 'tasks[0].depends_on[1]': unknown "
                       "dependency 'zz'"},
        BadBacklogCase{"self_dependency", "tasks:\n  - id: a\n    title: A\n    depends_on: [a]\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].depends_on': dependency "
                       "cycle: a -> a"},
        BadBacklogCase{"two_cycle",
                       "tasks:\n  - id: a\n    title: A\n    depends_on: [b]\n"
                       "  - id: b\n    title: B\n    depends_on: [a]\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].depends_on': dependency "
                       "cycle: a -> b -> a"},
        BadBacklogCase{"three_cycle_behind_a_chain",
                       "tasks:\n  - {id: root, title: R}\n"
                       "  - {id: x, title: X, depends_on: [root, y]}\n"
                       "  - {id: y, title: Y, depends_on: [z]}\n"
                       "  - {id: z, title: Z, depends_on: [x]}\n",
                       "plans/backlog.yaml:3: task 'x': field 'tasks[1].depends_on': dependency "
                       "cycle: x -> y -> z -> x"},
        BadBacklogCase{"depends_on_scalar", "tasks:\n  - id: a\n    title: A\n    depends_on: b\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].depends_on': must be a "
                       "list of strings"},
        BadBacklogCase{"acceptance_map",
                       "tasks:\n  - id: a\n    title: A\n    acceptance: {x: 1}\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].acceptance': must be a "
                       "list"},
        BadBacklogCase{"capability_empty",
                       "tasks:\n  - id: a\n    title: A\n    capabilities: [code, '']\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].capabilities[1]': must "
                       "be a non-empty string"},
        BadBacklogCase{"priority_word", "tasks:\n  - id: a\n    title: A\n    priority: high\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].priority': must be an "
                       "integer"},
        BadBacklogCase{"max_attempts_zero",
                       "tasks:\n  - id: a\n    title: A\n    max_attempts: 0\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].max_attempts': must be "
                       "an integer between 1 and 100"},
        BadBacklogCase{"allow_protected_parent",
                       "tasks:\n  - id: a\n    title: A\n    allow_protected: [../x]\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].allow_protected[0]': "
                       "must not contain '..'"},
        BadBacklogCase{"scope_parent", "tasks:\n  - id: a\n    title: A\n    scope: [src/../x]\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].scope[0]': must not "
                       "contain '..'"},
        BadBacklogCase{"scope_absolute", "tasks:\n  - id: a\n    title: A\n    scope: [/etc]\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].scope[0]': must be "
                       "relative to the repository root"},
        BadBacklogCase{"scope_empty_glob",
                       "tasks:\n  - id: a\n    title: A\n    scope:\n      - src/**\n      - ''\n",
                       "plans/backlog.yaml:6: task 'a': field 'tasks[0].scope[1]': must be a "
                       "non-empty string"},
        BadBacklogCase{"scope_empty_list", "tasks:\n  - id: a\n    title: A\n    scope: []\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].scope': must list at "
                       "least one glob"},
        BadBacklogCase{"scope_null", "tasks:\n  - id: a\n    title: A\n    scope: ~\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].scope': must list at "
                       "least one glob"},
        BadBacklogCase{"scope_not_strings", "tasks:\n  - id: a\n    title: A\n    scope: [[a]]\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].scope[0]'"},
        BadBacklogCase{"agent_empty", "tasks:\n  - id: a\n    title: A\n    agent: ''\n",
                       "plans/backlog.yaml:4: task 'a': field 'tasks[0].agent': must name an "
                       "agent"},
        BadBacklogCase{"task_not_map", "tasks:\n  - id: a\n    title: A\n  - just text\n",
                       "plans/backlog.yaml:4: field 'tasks[1]': a task must be a mapping"},
        BadBacklogCase{"tasks_missing", "task:\n  - id: a\n",
                       "plans/backlog.yaml:1: field 'tasks': missing required field 'tasks'"},
        BadBacklogCase{"tasks_not_list", "tasks: {id: a}\n",
                       "plans/backlog.yaml:1: field 'tasks': must be a list of tasks"},
        BadBacklogCase{"tasks_empty", "tasks: []\n",
                       "plans/backlog.yaml:1: field 'tasks': the backlog has no tasks"},
        BadBacklogCase{"root_list", "- id: a\n",
                       "plans/backlog.yaml:1: a backlog must be a mapping"},
        BadBacklogCase{"empty_file", "", "a backlog must be a mapping"},
        BadBacklogCase{"yaml_syntax", "tasks:\n  - id: a\n    title: [A\n", "plans/backlog.yaml:"}),
    [](const ::testing::TestParamInfo<BadBacklogCase>& info) { return info.param.label; });

TEST(BacklogTest, EveryProblemIsReportedInOnePass) {
  const char* text = R"(tasks:
  - id: a
    title: A
    depends_on: [missing]
  - id: a
    title: Duplicate
  - title: No id
  - id: c
    depends_on: [d]
  - id: d
    title: D
    depends_on: [c]
  - id: e
    title: E
    priority: urgent
)";
  auto loaded = ParseBacklogYaml(text, "b.yaml");
  ASSERT_FALSE(loaded);
  const std::string& message = loaded.error().message;
  EXPECT_THAT(message, HasSubstr("b.yaml:4: task 'a': field 'tasks[0].depends_on[0]': unknown "
                                 "dependency 'missing'"));
  EXPECT_THAT(message, HasSubstr("b.yaml:5: task 'a': field 'tasks[1].id': duplicate task id 'a' "
                                 "(also defined at line 2)"));
  EXPECT_THAT(message, HasSubstr("b.yaml:7: field 'tasks[2].id': missing required field 'id'"));
  EXPECT_THAT(message, HasSubstr("b.yaml:8: task 'c': field 'tasks[3].title': missing required"));
  EXPECT_THAT(message, HasSubstr("b.yaml:9: task 'c': field 'tasks[3].depends_on': dependency "
                                 "cycle: c -> d -> c"));
  EXPECT_THAT(message, HasSubstr("b.yaml:15: task 'e': field 'tasks[5].priority'"));
  // One line per problem.
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 5);
}

TEST(BacklogTest, IndependentCyclesAreAllNamed) {
  auto loaded = ParseBacklogYaml(
      "tasks:\n"
      "  - {id: a, title: A, depends_on: [b]}\n"
      "  - {id: b, title: B, depends_on: [a]}\n"
      "  - {id: c, title: C, depends_on: [d]}\n"
      "  - {id: d, title: D, depends_on: [c]}\n",
      "b.yaml");
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("dependency cycle: a -> b -> a"));
  EXPECT_THAT(loaded.error().message, HasSubstr("dependency cycle: c -> d -> c"));
}

TEST(BacklogTest, TopologicalOrderIsDeterministicAndDependenciesFirst) {
  auto loaded = ParseBacklogYaml(
      "tasks:\n"
      "  - {id: e, title: E, depends_on: [d, b]}\n"
      "  - {id: d, title: D, depends_on: [a]}\n"
      "  - {id: c, title: C}\n"
      "  - {id: b, title: B, depends_on: [a]}\n"
      "  - {id: a, title: A}\n",
      "b.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  // Ties broken by id.
  EXPECT_EQ(Ids(loaded->value), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < loaded->value.tasks.size(); ++i) {
    position[loaded->value.tasks[i].id] = i;
  }
  for (const auto& task : loaded->value.tasks) {
    for (const auto& dep : task.depends_on) EXPECT_LT(position[dep], position[task.id]);
  }
}

// Agent checks use the registry: explicit agents must exist and some agent must be able to
// take every task.
class BacklogAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AgentSpec builder;
    builder.name = "builder";
    builder.capabilities = {"code", "test"};
    ASSERT_TRUE(agents_.Add(builder));
    AgentSpec writer;
    writer.name = "writer";
    writer.capabilities = {"docs"};
    ASSERT_TRUE(agents_.Add(writer));
    options_.agents = &agents_;
  }
  AgentRegistry agents_;
  BacklogOptions options_;
};

TEST_F(BacklogAgentsTest, KnownAgentsAndCapableAgentsPass) {
  auto loaded = ParseBacklogYaml(
      "tasks:\n  - {id: a, title: A, capabilities: [code]}\n"
      "  - {id: b, title: B, agent: writer}\n  - {id: c, title: C}\n",
      "b.yaml", options_);
  ASSERT_TRUE(loaded) << loaded.error().message;
}

TEST_F(BacklogAgentsTest, UnknownAgentAndNoCapableAgentAreErrors) {
  auto loaded = ParseBacklogYaml(
      "tasks:\n"
      "  - id: a\n    title: A\n    agent: ghost\n"
      "  - id: b\n    title: B\n    capabilities: [code, docs]\n",
      "b.yaml", options_);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message,
              HasSubstr("b.yaml:4: task 'a': field 'tasks[0].agent': unknown agent 'ghost'"));
  EXPECT_THAT(loaded.error().message,
              HasSubstr("b.yaml:7: task 'b': field 'tasks[1].capabilities': no agent can take "
                        "this task: no agent has all of the capabilities [code, docs]"));
}

TEST_F(BacklogAgentsTest, UnknownDefaultAgentForTheTaskType) {
  agents_.SetDefaultAgents({{"docs", "scribe"}});
  auto loaded =
      ParseBacklogYaml("tasks:\n  - id: a\n    title: A\n    type: docs\n", "b.yaml", options_);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message,
              HasSubstr("b.yaml:4: task 'a': field 'tasks[0].type': default agent 'scribe'"));
}

TEST_F(BacklogAgentsTest, WithoutARegistryAgentsAreNotChecked) {
  auto loaded =
      ParseBacklogYaml("tasks:\n  - {id: a, title: A, agent: ghost}\n", "b.yaml", BacklogOptions{});
  ASSERT_TRUE(loaded) << loaded.error().message;
}

TEST(BacklogJsonTest, ParsesTheSameStructure) {
  auto loaded = ParseBacklogJson(R"({"tasks": [
      {"id": "b", "title": "B", "depends_on": ["a"], "priority": 3,
       "acceptance": ["works"], "capabilities": ["code"]},
      {"id": "a", "title": "A", "description": "first", "max_attempts": 2}]})",
                                 "backlog agent output");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(Ids(loaded->value), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(loaded->value.Find("b")->priority, 3);
  EXPECT_EQ(loaded->value.Find("a")->max_attempts, 2);
  EXPECT_EQ(loaded->value.Find("a")->description, "first");
  EXPECT_EQ(loaded->value.Find("a")->line, 0);
}

struct BadJsonCase {
  const char* label;
  const char* text;
  const char* expected;
};

class BadBacklogJsonTest : public ::testing::TestWithParam<BadJsonCase> {};

TEST_P(BadBacklogJsonTest, ErrorsNameTheJsonPath) {
  auto loaded = ParseBacklogJson(GetParam().text, "backlog.json");
  ASSERT_FALSE(loaded) << GetParam().label;
  EXPECT_THAT(loaded.error().message, HasSubstr(GetParam().expected)) << GetParam().label;
  // No line numbers are invented for JSON.
  EXPECT_THAT(loaded.error().message, Not(HasSubstr("backlog.json:0")));
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadBacklogJsonTest,
    ::testing::Values(
        BadJsonCase{"unknown_dependency",
                    R"({"tasks": [{"id": "a", "title": "A"}, {"id": "c", "title": "C"},
                       {"id": "b", "title": "B", "depends_on": ["zz"]}]})",
                    "backlog.json: task 'b': field 'tasks[2].depends_on[0]': unknown dependency "
                    "'zz'"},
        BadJsonCase{"missing_title", R"({"tasks": [{"id": "a"}]})",
                    "backlog.json: task 'a': field 'tasks[0].title': missing required field"},
        BadJsonCase{"missing_id", R"({"tasks": [{"title": "A"}]})",
                    "backlog.json: field 'tasks[0].id': missing required field 'id'"},
        BadJsonCase{"duplicate_id",
                    R"({"tasks": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]})",
                    "backlog.json: task 'a': field 'tasks[1].id': duplicate task id 'a' (also "
                    "defined at tasks[0])"},
        BadJsonCase{"cycle",
                    R"({"tasks": [{"id": "a", "title": "A", "depends_on": ["b"]},
                                  {"id": "b", "title": "B", "depends_on": ["a"]}]})",
                    "backlog.json: task 'a': field 'tasks[0].depends_on': dependency cycle: a -> "
                    "b -> a"},
        BadJsonCase{"depends_on_string",
                    R"({"tasks": [{"id": "a", "title": "A", "depends_on": "b"}]})",
                    "field 'tasks[0].depends_on': must be a list of strings"},
        BadJsonCase{"priority_string",
                    R"({"tasks": [{"id": "a", "title": "A", "priority": "high"}]})",
                    "field 'tasks[0].priority': must be an integer"},
        BadJsonCase{"null_id", R"({"tasks": [{"id": null, "title": "A"}]})",
                    "field 'tasks[0].id': missing required field 'id'"},
        BadJsonCase{"tasks_object", R"({"tasks": {"a": 1}})",
                    "backlog.json: field 'tasks': must be a list of tasks"},
        BadJsonCase{"root_array", R"([{"id": "a"}])", "a backlog must be a mapping"},
        BadJsonCase{"syntax", "{\"tasks\": [\n  {\"id\": \"a\",}\n]}",
                    "backlog.json: invalid JSON"}),
    [](const ::testing::TestParamInfo<BadJsonCase>& info) { return info.param.label; });

TEST(BacklogJsonTest, UnknownAgentByJsonPath) {
  AgentRegistry agents;
  AgentSpec builder;
  builder.name = "builder";
  ASSERT_TRUE(agents.Add(builder));
  auto loaded = ParseBacklogJson(
      R"({"tasks": [{"id": "a", "title": "A"}, {"id": "b", "title": "B", "agent": "ghost"}]})",
      "backlog.json", BacklogOptions{&agents});
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message,
              HasSubstr("backlog.json: task 'b': field 'tasks[1].agent': unknown agent 'ghost'"));
}

TEST(BacklogLoadTest, ChoosesTheFormatByExtension) {
  testing::TempDir dir;
  auto yaml = dir.Write("BACKLOG.yaml", "tasks:\n  - {id: a, title: A}\n");
  auto json = dir.Write("backlog.json", R"({"tasks": [{"id": "a", "title": "A"}]})");
  auto bad = dir.Write("bad.yaml", "tasks:\n  - {id: a}\n");
  ASSERT_TRUE(LoadBacklog(yaml)) << LoadBacklog(yaml).error().message;
  ASSERT_TRUE(LoadBacklog(json)) << LoadBacklog(json).error().message;
  auto failed = LoadBacklog(bad);
  ASSERT_FALSE(failed);
  EXPECT_THAT(failed.error().message,
              HasSubstr(bad.string() + ":2: task 'a': field 'tasks[0].title'"));
  auto missing = LoadBacklog(dir.path() / "none.yaml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace factory
