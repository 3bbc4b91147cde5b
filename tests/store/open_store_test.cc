// OpenStore: which backend each URL form opens, and the errors for the others.

#include "store/open_store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_util.h"

namespace factory {
namespace {

using testing::TempDir;

TEST(OpenStoreTest, PlainPathOpensSqliteFile) {
  TempDir dir;
  const std::string path = dir / "factory.db";
  auto store = OpenStore(path);
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  EXPECT_EQ((*store)->Info().backend, "sqlite");
  EXPECT_GT((*store)->Info().schema_version, 0);
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(OpenStoreTest, SqliteUrlOpensTheAbsolutePath) {
  TempDir dir;
  const std::string path = dir / "via-url.db";
  auto store = OpenStore("sqlite://" + path);
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  EXPECT_EQ((*store)->Info().backend, "sqlite");
  EXPECT_TRUE(std::filesystem::exists(path));
  // The data is the same file whichever form named it.
  ASSERT_TRUE((*store)
                  ->Write([](StoreTxn& txn) -> Status {
                    factory::Run run;
                    run.id = "r1";
                    run.title = "t";
                    return txn.InsertRun(run);
                  })
                  .has_value());
  store->reset();
  auto again = OpenStore(path, {.create_if_missing = false});
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  Status found = (*again)->Read([](StoreTxn& txn) -> Status {
    auto run = txn.GetRun("r1");
    if (!run) return std::unexpected(run.error());
    if (!run->has_value()) return NotFound("run r1");
    return Ok();
  });
  EXPECT_TRUE(found.has_value()) << found.error().ToString();
}

TEST(OpenStoreTest, MissingFileIsNotFoundWhenCreationIsOff) {
  TempDir dir;
  auto store = OpenStore(dir / "absent.db", {.create_if_missing = false});
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, ErrorCode::kNotFound) << store.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir / "absent.db"));
}

TEST(OpenStoreTest, PostgresIsNotBuiltYet) {
  for (const char* url :
       {"postgresql://factory@db.example/factory", "postgres://h/db", "POSTGRESQL://h/db"}) {
    auto store = OpenStore(url);
    ASSERT_FALSE(store.has_value()) << url;
    EXPECT_EQ(store.error().code, ErrorCode::kFailedPrecondition) << url;
    EXPECT_NE(store.error().message.find("PostgreSQL support is not built yet"), std::string::npos)
        << store.error().message;
  }
}

TEST(OpenStoreTest, PasswordNeverAppearsInErrors) {
  for (const char* url :
       {"postgresql://alice:s3cr%40t-pw@db.example:5432/factory", "mysql://alice:s3cr3t-pw@h/db"}) {
    auto store = OpenStore(url);
    ASSERT_FALSE(store.has_value()) << url;
    EXPECT_EQ(store.error().message.find("s3cr"), std::string::npos) << store.error().message;
    EXPECT_NE(store.error().message.find("alice:***@"), std::string::npos) << store.error().message;
  }
  EXPECT_EQ(MaskStoreUrl("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(MaskStoreUrl("postgresql://u@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(MaskStoreUrl("/tmp/a:b@c.db"), "/tmp/a:b@c.db");
}

TEST(OpenStoreTest, UnknownSchemeIsInvalidArgumentNamingTheUrl) {
  auto store = OpenStore("mysql://h/db");
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(store.error().message.find("mysql://h/db"), std::string::npos) << store.error().message;
  EXPECT_NE(store.error().message.find("postgresql://"), std::string::npos)
      << "the message lists the forms it accepts: " << store.error().message;
}

TEST(OpenStoreTest, BadSqliteUrlsAreInvalidArgument) {
  for (const char* url :
       {"sqlite://relative.db", "sqlite://", "sqlite:///", "sqlite:///a.db?x=1"}) {
    auto location = ParseStoreUrl(url);
    ASSERT_FALSE(location.has_value()) << url;
    EXPECT_EQ(location.error().code, ErrorCode::kInvalidArgument) << url;
    EXPECT_NE(location.error().message.find(url), std::string::npos) << location.error().message;
  }
  auto empty = ParseStoreUrl("");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
}

TEST(OpenStoreTest, ParsesEachForm) {
  auto plain = ParseStoreUrl(".factory/factory.db");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->backend, StoreBackend::kSqlite);
  EXPECT_EQ(plain->path, ".factory/factory.db");
  auto url = ParseStoreUrl("sqlite:///var/lib/factory.db");
  ASSERT_TRUE(url.has_value());
  EXPECT_EQ(url->backend, StoreBackend::kSqlite);
  EXPECT_EQ(url->path, "/var/lib/factory.db");
  auto pg = ParseStoreUrl("postgresql://u:pw@h/db");
  ASSERT_TRUE(pg.has_value());
  EXPECT_EQ(pg->backend, StoreBackend::kPostgres);
  EXPECT_EQ(pg->url, "postgresql://u:***@h/db");
}

}  // namespace
}  // namespace factory
