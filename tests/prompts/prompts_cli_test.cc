// `factory prompts` and `factory prompts show` through the real binary.

#include <gtest/gtest.h>

#include "cli/cli.h"
#include "cli/cli_test_util.h"

namespace factory::cli {
namespace {

using testing::CliSandbox;

TEST(PromptsCliTest, ListsTheDefaultsWithoutADatabase) {
  CliSandbox sandbox;  // no `factory init`: the defaults are in the binary
  auto listed = sandbox.Ok({"prompts", "--json"}).Json();
  ASSERT_TRUE(listed.is_array());
  ASSERT_EQ(listed.size(), 8u);
  for (const auto& prompt : listed) {
    EXPECT_EQ(prompt["source"], "builtin");
    EXPECT_FALSE(prompt["description"].get<std::string>().empty());
    EXPECT_TRUE(prompt["variables"].is_array());
  }
  EXPECT_EQ(listed[0]["name"], "backlog");
  // The table names each prompt with its source.
  const std::string table = sandbox.Ok({"prompts"}).out;
  EXPECT_NE(table.find("implement"), std::string::npos) << table;
  EXPECT_NE(table.find("builtin"), std::string::npos) << table;
  EXPECT_NE(table.find("FEEDBACK?"), std::string::npos) << table;  // optional marked
}

TEST(PromptsCliTest, ShowPrintsTheTemplateAsShipped) {
  CliSandbox sandbox;
  const auto shown = sandbox.Ok({"prompts", "show", "review"});
  EXPECT_EQ(shown.out,
            testing::ReadFile(std::filesystem::path(FACTORY_SOURCE_DIR) / "prompts/review.md"));
  auto json = sandbox.Ok({"prompts", "show", "review", "--json"}).Json();
  EXPECT_EQ(json["name"], "review");
  EXPECT_EQ(json["text"], shown.out);
  auto missing = sandbox.Run({"prompts", "show", "nope"});
  EXPECT_EQ(missing.exit_code, kExitNotFound);
  EXPECT_NE(missing.err.find("no prompt named 'nope'"), std::string::npos) << missing.err;
  EXPECT_EQ(sandbox.Run({"prompts", "show"}).exit_code, kExitUsage);
}

TEST(PromptsCliTest, ProjectOverridesComeFromTheFactoryDirectory) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  const std::string override_text =
      "---\ndescription: ours\nrequired:\n  TASK_TITLE: t\n---\nJust do {{TASK_TITLE}}.\n";
  testing::WriteFile(sandbox.Path(".factory/prompts/implement.md"), override_text);
  auto listed = sandbox.Ok({"prompts", "--json"}).Json();
  bool found = false;
  for (const auto& prompt : listed) {
    if (prompt["name"] != "implement") continue;
    found = true;
    EXPECT_EQ(prompt["source"], "project");
    EXPECT_EQ(prompt["overrides_builtin"], true);
    EXPECT_EQ(prompt["variables"].size(), 1u);
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(sandbox.Ok({"prompts", "show", "implement"}).out, override_text);
  // --db moves the factory directory, and with it the overrides.
  auto elsewhere = sandbox.Ok(
      {"--db", sandbox.Path("other/factory.db").string(), "prompts", "show", "implement"});
  EXPECT_NE(elsewhere.out, override_text);
  // --dir names another override directory.
  testing::WriteFile(sandbox.Path("mine/implement.md"), override_text);
  EXPECT_EQ(
      sandbox.Ok({"prompts", "show", "implement", "--dir", sandbox.Path("mine").string()}).out,
      override_text);

  // A broken override is a usage error naming the file and line.
  testing::WriteFile(sandbox.Path(".factory/prompts/implement.md"),
                     "---\ndescription: ours\n---\nJust do {{TASK_TITLE}}.\n");
  auto broken = sandbox.Run({"prompts"});
  EXPECT_EQ(broken.exit_code, kExitUsage);
  EXPECT_NE(broken.err.find("implement.md:4: variable TASK_TITLE is used but not declared"),
            std::string::npos)
      << broken.err;
}

}  // namespace
}  // namespace factory::cli
