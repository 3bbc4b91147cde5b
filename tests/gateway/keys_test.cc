// Virtual keys: random, shown once, stored as a hash, listed without it, revoked once.

#include "gateway/keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_util.h"

namespace factory::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "factory.db"});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
  }
  factory::testing::TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(KeysTest, IssuesRandomKeysStoredOnlyAsTheirHash) {
  FakeClock clock(1'700'000'000'000);
  auto first = IssueKey(
      *store_, "coder",
      KeyScope{.label = "ci", .run_id = "r1", .task_id = "t1", .attempt_id = "a1"}, &clock);
  clock.Advance(1);
  auto second = IssueKey(*store_, "coder", {}, &clock);
  ASSERT_TRUE(first && second);
  EXPECT_THAT(first->key, StartsWith("fk-"));
  EXPECT_EQ(first->key.size(), 3u + 43u);  // 256 random bits in base64url
  EXPECT_NE(first->key, second->key);
  EXPECT_EQ(first->record.key_hash, HashKey(first->key));
  EXPECT_EQ(first->record.prefix, first->key.substr(0, 10));

  auto keys = ListKeys(*store_);
  ASSERT_TRUE(keys);
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].id, first->record.id);
  EXPECT_EQ((*keys)[0].agent, "coder");
  EXPECT_EQ((*keys)[0].run_id, "r1");
  EXPECT_EQ((*keys)[0].task_id, "t1");
  EXPECT_EQ((*keys)[0].attempt_id, "a1");
  EXPECT_EQ((*keys)[0].label, "ci");
  EXPECT_EQ((*keys)[0].created_ms, 1'700'000'000'000);

  const std::string json = KeysJson(*keys);
  EXPECT_THAT(json, Not(HasSubstr(first->key)));
  EXPECT_THAT(json, Not(HasSubstr(first->record.key_hash)));
  EXPECT_EQ(nlohmann::json::parse(json)[0]["revoked"], false);

  store_.reset();  // the database file holds the hash, never the key
  const std::string bytes = factory::testing::ReadFile(dir_ / "factory.db") +
                            factory::testing::ReadFile(dir_ / "factory.db-wal");
  EXPECT_THAT(bytes, HasSubstr(first->record.key_hash));
  EXPECT_THAT(bytes, Not(HasSubstr(first->key)));
  EXPECT_THAT(bytes, Not(HasSubstr(second->key)));
}

TEST_F(KeysTest, RevokesOnceAndNamesUnknownIds) {
  auto issued = IssueKey(*store_, "coder");
  ASSERT_TRUE(issued);
  FakeClock clock(1'800'000'000'000);
  ASSERT_TRUE(RevokeKey(*store_, issued->record.id, &clock));
  auto again = RevokeKey(*store_, issued->record.id, &clock);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kFailedPrecondition);
  auto unknown = RevokeKey(*store_, "01NOSUCHKEY");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto keys = ListKeys(*store_);
  ASSERT_TRUE(keys && keys->size() == 1);
  EXPECT_EQ((*keys)[0].revoked_ms, 1'800'000'000'000);
}

TEST_F(KeysTest, RefusesBadAgentNames) {
  for (const char* name : {"", "has space", "semi;colon", "../x"}) {
    auto issued = IssueKey(*store_, name);
    ASSERT_FALSE(issued) << name;
    EXPECT_EQ(issued.error().code, ErrorCode::kInvalidArgument) << name;
  }
}

}  // namespace
}  // namespace factory::gateway
