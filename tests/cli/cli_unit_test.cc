// Pieces of the CLI that need no binary: input validation, exit codes, JSON shapes, init.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  // Invalid UTF-8 from a child process is replaced, not thrown on.
  Json odd;
  odd["tail"] = std::string("bad \xff byte");
  EXPECT_THAT(DumpJson(odd), HasSubstr("bad "));
}

TEST(InitTest, CreatesLayoutAndIsIdempotent) {
  testing::TempDir dir;
  InitOptions options;
  options.factory_dir = dir.path() / ".factory";
  options.db_path = options.factory_dir / "factory.db";
  auto first = InitFactoryDir(options);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_GT(first->schema_version, 0);
  EXPECT_TRUE(std::filesystem::is_directory(options.factory_dir / "artifacts"));
  // The project files init writes are valid as written.
  auto config = LoadProjectConfig(options.factory_dir / "config.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_TRUE(config->warnings.empty());
  auto models = llm::LoadModelsConfig(options.factory_dir / "models.yaml");
  ASSERT_TRUE(models.has_value()) << models.error().message;
  auto agents = AgentRegistry::LoadDirectory(options.factory_dir / "agents");
  ASSERT_TRUE(agents.has_value()) << agents.error().message;
  EXPECT_GE(agents->value->agents().size(), 3u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / ".factory/scripts/builder.sh"));
  // A user's edit survives a second init.
  testing::WriteFile(options.factory_dir / "config.yaml", "concurrency: 7\n");
  auto second = InitFactoryDir(options);
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->created.empty());
  EXPECT_EQ(testing::ReadFile(options.factory_dir / "config.yaml"), "concurrency: 7\n");
  // A file where the directory should be.
  testing::WriteFile(dir.path() / "occupied", "x");
  options.factory_dir = dir.path() / "occupied";
  options.db_path = options.factory_dir / "factory.db";
  auto blocked = InitFactoryDir(options);
  ASSERT_FALSE(blocked.has_value());
  EXPECT_THAT(blocked.error().message, HasSubstr("occupied"));
}

}  // namespace
}  // namespace factory::cli
