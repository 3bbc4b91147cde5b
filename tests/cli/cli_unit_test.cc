// Pieces of the CLI that need no binary: input validation, exit codes, JSON shapes, init.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>

#include "agents/registry.h"
#include "cli/cli.h"
#include "cli/init.h"
#include "cli/json_format.h"
#include "cli/validate.h"
#include "common/test_util.h"
#include "llm/models_config.h"
#include "plan/config.h"

namespace factory::cli {
namespace {

using ::testing::HasSubstr;

TEST(Utf8Test, AcceptsValidAndRejectsInvalid) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80"));  // é € 🚀
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));                  // truncated
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));              // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));          // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));      // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("ok \x80 continuation"));  // stray continuation byte
}

TEST(ValidateTest, TextAndRunIds) {
  EXPECT_TRUE(ValidateText("--title", "x", 10).has_value());
  EXPECT_FALSE(ValidateText("--title", "", 10).has_value());
  EXPECT_TRUE(ValidateText("--spec", "", 10, /*allow_empty=*/true).has_value());
  auto too_long = ValidateText("--title", std::string(11, 'a'), 10);
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(too_long.error().message, HasSubstr("--title"));
  EXPECT_FALSE(ValidateText("--title", std::string("a\0b", 3), 10).has_value());
  EXPECT_TRUE(ValidateRunId("--run", "feature-42_v1.2").has_value());
  EXPECT_FALSE(ValidateRunId("--run", "").has_value());
  EXPECT_FALSE(ValidateRunId("--run", "a/b").has_value());
  EXPECT_FALSE(ValidateRunId("--run", std::string(65, 'a')).has_value());
}

TEST(ValidateTest, SpecFileErrorsNameThePath) {
  testing::TempDir dir;
  auto missing = ReadSpecFile(dir / "nope.md");
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().message, HasSubstr("nope.md"));
  auto directory = ReadSpecFile(dir.path().string());
  ASSERT_FALSE(directory.has_value());
  EXPECT_THAT(directory.error().message, HasSubstr("not a regular file"));
  testing::WriteFile(dir.path() / "binary.bin", std::string("\x00\xff\x01", 3));
  EXPECT_FALSE(ReadSpecFile(dir / "binary.bin").has_value());
  testing::WriteFile(dir.path() / "spec.md", "hello\n");
  auto spec = ReadSpecFile(dir / "spec.md");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(*spec, "hello\n");
}

TEST(ExitCodeTest, MapsErrorCodes) {
  EXPECT_EQ(ExitCodeFor(ErrorCode::kInvalidArgument), kExitUsage);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kNotFound), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kFailedPrecondition), kExitPrecondition);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kDataLoss), kExitFailed);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kUnavailable), kExitFailed);
}

TEST(JsonFormatTest, TaskShapeAndStoredJson) {
  Task task;
  task.id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
  task.run_id = "default";
  task.title = "t";
  task.state = TaskState::kReady;
  task.depends_on = {"a", "b"};
  task.result_json = "not json";
  task.created_ms = 1'700'000'000'000;
  Json json = TaskToJson(task);
  EXPECT_EQ(json["state"], "ready");
  EXPECT_EQ(json["idempotency_key"], nullptr);
  EXPECT_EQ(json["depends_on"], Json::array({"a", "b"}));
  EXPECT_EQ(json["result"], "not json");  // kept as a string, never an exception
  EXPECT_EQ(json["metadata"], Json::object());
  EXPECT_EQ(json["created_at"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(json["updated_at"], nullptr);
  EXPECT_FALSE(json.contains("metadata_error"));
  // A stored value the codec cannot read is shown as stored, with why beside it.
  task.metadata_json = R"({"scope": "src/**"})";
  json = TaskToJson(task);
  EXPECT_EQ(json["metadata"]["scope"], "src/**");
  EXPECT_THAT(json["metadata_error"].get<std::string>(),
              HasSubstr("field 'scope': expected an array of strings"));
  Attempt attempt;
  attempt.details_json = R"({"gates": [{"name": "build", "passed": "yes"}]})";
  Json shown = AttemptToJson(attempt);
  EXPECT_EQ(shown["details"]["gates"][0]["name"], "build");
  EXPECT_THAT(shown["details_error"].get<std::string>(), HasSubstr("field 'gates[0].passed'"));
  attempt.details_json = R"({"agent": "coder", "usage": {"input_tokens": 3}})";
  EXPECT_FALSE(AttemptToJson(attempt).contains("details_error"));
  // Invalid UTF-8 from a child process is replaced, not thrown on.
  Json odd;
  odd["tail"] = std::string("bad \xff byte");
  EXPECT_THAT(DumpJson(odd), HasSubstr("bad "));
}

// A host with exactly these variables set and these programs on PATH.
setup::HostProbe Probe(std::map<std::string, std::string> env,
                       std::set<std::string> binaries = {}) {
  setup::HostProbe probe;
  probe.env = [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  probe.on_path = [binaries](const std::string& program) { return binaries.contains(program); };
  return probe;
}

InitOptions OptionsIn(const std::filesystem::path& root, setup::HostProbe probe) {
  InitOptions options;
  options.factory_dir = root / ".factory";
  options.db_path = options.factory_dir / "factory.db";
  options.probe = std::move(probe);
  return options;
}

TEST(InitTest, CreatesLayoutAndIsIdempotent) {
  testing::TempDir dir;
  InitOptions options = OptionsIn(dir.path(), Probe({{"OPENAI_API_KEY", "sk-test"}}));
  auto first = InitFactoryDir(options);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_GT(first->schema_version, 0);
  EXPECT_TRUE(std::filesystem::is_directory(options.factory_dir / "artifacts"));
  EXPECT_TRUE(first->warnings.empty()) << first->warnings.front();
  // The project files init writes are valid as written.
  auto config = LoadProjectConfig(options.factory_dir / "config.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_TRUE(config->warnings.empty());
  auto models = llm::LoadModelsConfig(options.factory_dir / "models.yaml");
  ASSERT_TRUE(models.has_value()) << models.error().message;
  auto agents = AgentRegistry::LoadDirectory(options.factory_dir / "agents");
  ASSERT_TRUE(agents.has_value()) << agents.error().message;
  // One agent that can run here; the examples stay out of the loaded directory.
  ASSERT_EQ(agents->value->agents().size(), 1u);
  EXPECT_EQ(agents->value->agents().front()->name, "llm-coder");
  EXPECT_EQ(agents->value->agents().front()->model, "cloud/fast");
  auto examples = AgentRegistry::LoadDirectory(options.factory_dir / "agents" / "examples");
  ASSERT_TRUE(examples.has_value()) << examples.error().message;
  EXPECT_EQ(examples->value->agents().size(), 2u);
  // No placeholder script that always fails.
  EXPECT_FALSE(std::filesystem::exists(dir.path() / ".factory/scripts"));
  // A user's edit survives a second init.
  testing::WriteFile(options.factory_dir / "config.yaml", "concurrency: 7\n");
  auto second = InitFactoryDir(options);
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->created.empty());
  EXPECT_FALSE(second->config_written);
  EXPECT_EQ(testing::ReadFile(options.factory_dir / "config.yaml"), "concurrency: 7\n");
  // A file where the directory should be.
  testing::WriteFile(dir.path() / "occupied", "x");
  options.factory_dir = dir.path() / "occupied";
  options.db_path = options.factory_dir / "factory.db";
  auto blocked = InitFactoryDir(options);
  ASSERT_FALSE(blocked.has_value());
  EXPECT_THAT(blocked.error().message, HasSubstr("occupied"));
}

TEST(InitTest, WritesTheDetectedGatesTestFoldersAndAReviewGate) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "Makefile", "build:\n\tcc -o app app.c\ntest: build\n\t./app\n");
  std::filesystem::create_directories(dir.path() / "tests");
  InitOptions options = OptionsIn(dir.path(), Probe({{"FACTORY_LLM_BASE_URL", "http://h:1/v1"},
                                                     {"FACTORY_LLM_REVIEW_MODEL", "judge"}}));
  auto report = InitFactoryDir(options);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_TRUE(report->config_written);
  EXPECT_TRUE(report->agent_written);
  EXPECT_TRUE(report->warnings.empty()) << report->warnings.front();
  auto config = LoadProjectConfig(options.factory_dir / "config.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  const ProjectConfig& project = config->value;
  ASSERT_EQ(project.gates.size(), 3u);
  EXPECT_EQ(project.gates[0].command, "make build");
  EXPECT_EQ(project.gates[1].command, "make test");
  EXPECT_EQ(project.gates[2].kind, GateKind::kReview);
  EXPECT_EQ(project.gates[2].model, "local-review");
  EXPECT_TRUE(project.ProtectedMatch("tests/test_app.c").has_value());
  EXPECT_TRUE(project.ProtectedMatch(".factory/config.yaml").has_value());
  EXPECT_FALSE(project.ProtectedMatch("app.c").has_value());
  auto agents = AgentRegistry::LoadDirectory(options.factory_dir / "agents");
  ASSERT_TRUE(agents.has_value());
  ASSERT_EQ(agents->value->agents().size(), 1u);
  EXPECT_EQ(agents->value->agents().front()->model, "local/fast");

  const auto json = InitReportToJson(*report, options.factory_dir);
  EXPECT_EQ(json["agent"]["kind"], "llm");
  EXPECT_EQ(json["agent"]["provider"], "local");
  EXPECT_EQ(json["review"]["model"], "local-review");
  EXPECT_EQ(json["detected"]["gates"].size(), 2u);
  EXPECT_EQ(json["detected"]["gates"][1]["command"], "make test");
  EXPECT_EQ(json["detected"]["protected"], nlohmann::json::array({"tests/**"}));
}

TEST(InitTest, NoAgentWhenNothingCanRunAndExistingAgentsAreKept) {
  testing::TempDir dir;
  InitOptions options = OptionsIn(dir.path(), Probe({}));
  auto none = InitFactoryDir(options);
  ASSERT_TRUE(none.has_value()) << none.error().ToString();
  EXPECT_EQ(none->agent.kind, setup::AgentKind::kNone);
  EXPECT_FALSE(none->agent_written);
  auto agents = AgentRegistry::LoadDirectory(options.factory_dir / "agents");
  ASSERT_TRUE(agents.has_value());
  EXPECT_EQ(agents->value->agents().size(), 0u);

  // Now a CLI is installed: a second init adds it, as the only agent.
  options.probe = Probe({}, {"claude"});
  auto cli = InitFactoryDir(options);
  ASSERT_TRUE(cli.has_value()) << cli.error().ToString();
  EXPECT_TRUE(cli->agent_written);
  EXPECT_TRUE(std::filesystem::exists(options.factory_dir / "agents" / "claude-coder.md"));

  // An agent of the user's is never joined by another one.
  options.probe = Probe({{"OPENAI_API_KEY", "sk-test"}});
  auto kept = InitFactoryDir(options);
  ASSERT_TRUE(kept.has_value()) << kept.error().ToString();
  EXPECT_FALSE(kept->agent_written);
  EXPECT_EQ(kept->existing_agents.size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(options.factory_dir / "agents" / "llm-coder.md"));
}

TEST(InitTest, WarnsWhenAnExistingModelsFileDoesNotRouteTheChosenAgent) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / ".factory/models.yaml",
                     "providers:\n  p: {kind: openai, base_url: \"http://h:1/v1\"}\n"
                     "models:\n  m: {provider: p, model: m}\naliases:\n  mine: [m]\n"
                     "routing:\n  - {task_type: \"*\", chain: [mine]}\n");
  InitOptions options = OptionsIn(dir.path(), Probe({{"OPENAI_API_KEY", "sk-test"}}));
  auto report = InitFactoryDir(options);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  ASSERT_EQ(report->warnings.size(), 2u);
  EXPECT_THAT(report->warnings[0], HasSubstr("cloud/fast"));
  EXPECT_THAT(report->warnings[1], HasSubstr("gpt-4.1"));
}

}  // namespace
}  // namespace factory::cli
