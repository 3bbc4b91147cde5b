// `factory keys` and `factory gateway` from the command line: outputs, exit codes, bad input.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "core/subprocess.h"

namespace factory {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

class GatewayCliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(Factory({"init"}).exit_code, 0); }

  SubprocessResult Factory(std::vector<std::string> args) {
    SubprocessOptions options;
    options.argv = {FACTORY_BINARY, "--db", db_};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.timeout_ms = 60'000;
    auto result = RunSubprocess(options);
    EXPECT_TRUE(result) << result.error().ToString();
    return result ? *result : SubprocessResult{};
  }

  factory::testing::TempDir dir_;
  std::string db_ = dir_ / ".factory/factory.db";
};

TEST_F(GatewayCliTest, KeysAreCreatedListedAndRevoked) {
  auto created = Factory({"keys", "create", "--agent", "coder", "--label", "laptop"});
  ASSERT_EQ(created.exit_code, 0) << created.stderr_tail;
  const std::string key = created.stdout_tail.substr(0, created.stdout_tail.find('\n'));
  EXPECT_EQ(key.rfind("fk-", 0), 0u);
  EXPECT_THAT(created.stderr_tail, HasSubstr("shown once"));

  auto listed = Factory({"keys", "list", "--json"});
  ASSERT_EQ(listed.exit_code, 0);
  const json keys = json::parse(listed.stdout_tail);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0]["agent"], "coder");
  EXPECT_EQ(keys[0]["label"], "laptop");
  EXPECT_EQ(keys[0]["revoked"], false);
  EXPECT_THAT(listed.stdout_tail, Not(HasSubstr(key)));
  auto table = Factory({"keys", "list"});
  EXPECT_THAT(table.stdout_tail, HasSubstr("active"));
  EXPECT_THAT(table.stdout_tail, Not(HasSubstr(key)));

  const std::string id = keys[0]["id"];
  EXPECT_EQ(Factory({"keys", "revoke", id}).exit_code, 0);
  auto again = Factory({"keys", "revoke", id});
  EXPECT_EQ(again.exit_code, 4);
  EXPECT_THAT(again.stderr_tail, HasSubstr("already revoked"));
  EXPECT_EQ(Factory({"keys", "revoke", "01NOSUCHKEY0000000000000000"}).exit_code, 3);
  EXPECT_EQ(json::parse(Factory({"keys", "list", "--json"}).stdout_tail)[0]["revoked"], true);
}

TEST_F(GatewayCliTest, BadInputIsAUsageErrorNamingTheProblem) {
  auto bad_agent = Factory({"keys", "create", "--agent", "two words"});
  EXPECT_EQ(bad_agent.exit_code, 2);
  EXPECT_THAT(bad_agent.stderr_tail, HasSubstr("agent name"));
  EXPECT_EQ(Factory({"keys", "create"}).exit_code, 2);  // --agent is required
  EXPECT_EQ(Factory({"keys"}).exit_code, 2);
  auto listen = Factory({"gateway", "--listen", "nowhere"});
  EXPECT_EQ(listen.exit_code, 2);
  EXPECT_THAT(listen.stderr_tail, HasSubstr("--listen"));
  auto models = Factory({"gateway", "--models", dir_ / "missing.yaml"});
  EXPECT_EQ(models.exit_code, 3);
  EXPECT_THAT(models.stderr_tail, HasSubstr("missing.yaml"));
  factory::testing::WriteFile(dir_ / "broken.yaml", "providers:\n  x: {kind: nonsense}\n");
  auto broken = Factory({"gateway", "--models", dir_ / "broken.yaml"});
  EXPECT_EQ(broken.exit_code, 2);
  EXPECT_THAT(broken.stderr_tail, HasSubstr("broken.yaml:2"));
  for (const char* command : {"gateway", "keys"}) {
    auto help = Factory({command, "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.stdout_tail, HasSubstr("Usage"));
  }
}

}  // namespace
}  // namespace factory
