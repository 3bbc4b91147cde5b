// API tokens on a real SQLite store with a fake clock: scopes nest, lifetimes parse, and a token
// is accepted only while it is active (not revoked, not expired).

#include "server/tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "core/sha256.h"

namespace factory::server {
namespace {

using ::testing::HasSubstr;

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = OpenSqliteStore({.path = (dir_.path() / "factory.db").string()});
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
  }

  Result<ApiToken> Check(const std::string& token) {
    Result<ApiToken> found = NotFound("");
    EXPECT_TRUE(store_->Read([&](StoreTxn& txn) -> Status {
      found = CheckToken(txn, token, clock_.NowMillis());
      return Ok();
    }));
    return found;
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  FakeClock clock_;
};

TEST_F(TokensTest, ScopesNest) {
  EXPECT_TRUE(ScopeAllows(Scope::kAdmin, Scope::kOperator));
  EXPECT_TRUE(ScopeAllows(Scope::kOperator, Scope::kRead));
  EXPECT_TRUE(ScopeAllows(Scope::kRead, Scope::kRead));
  EXPECT_FALSE(ScopeAllows(Scope::kRead, Scope::kOperator));
  EXPECT_FALSE(ScopeAllows(Scope::kOperator, Scope::kAdmin));
  EXPECT_EQ(*ParseScope("operator"), Scope::kOperator);
  auto bad = ParseScope("root");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("scope"));
}

TEST_F(TokensTest, LifetimesParseWithTheirUnit) {
  EXPECT_EQ(*ParseLifetime("30d"), 30LL * 86'400'000);
  EXPECT_EQ(*ParseLifetime("12h"), 12LL * 3'600'000);
  EXPECT_EQ(*ParseLifetime("90m"), 90LL * 60'000);
  EXPECT_EQ(*ParseLifetime("45s"), 45'000);
  for (const char* bad : {"", "d", "30", "30w", "-1d", "0d", "1.5h", "soon"}) {
    auto parsed = ParseLifetime(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_THAT(parsed.error().message, HasSubstr("expires")) << bad;
  }
}

TEST_F(TokensTest, OnlyAnActiveTokenIsAccepted) {
  auto issued = IssueToken(*store_, "ci", Scope::kOperator, 60'000, &clock_);
  ASSERT_TRUE(issued) << issued.error().ToString();
  EXPECT_EQ(issued->record.token_hash, Sha256Hex(issued->token));
  auto accepted = Check(issued->token);
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->name, "ci");
  EXPECT_EQ(accepted->scope, "operator");
  EXPECT_EQ(Check(issued->token + "x").error().code, ErrorCode::kNotFound);

  clock_.Advance(60'000);  // its lifetime is over
  auto expired = Check(issued->token);
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, ErrorCode::kPermissionDenied);
  EXPECT_THAT(expired.error().message, HasSubstr("expired"));

  auto forever = IssueToken(*store_, "forever", Scope::kRead, 0, &clock_);
  ASSERT_TRUE(forever);
  clock_.Advance(365LL * 86'400'000);
  EXPECT_TRUE(Check(forever->token));
  ASSERT_TRUE(RevokeToken(*store_, forever->record.id, &clock_));
  auto revoked = Check(forever->token);
  ASSERT_FALSE(revoked);
  EXPECT_THAT(revoked.error().message, HasSubstr("revoked"));
  EXPECT_EQ(RevokeToken(*store_, "forever", &clock_).error().code, ErrorCode::kFailedPrecondition);

  EXPECT_EQ(IssueToken(*store_, "ci", Scope::kRead, 0, &clock_).error().code,
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(IssueToken(*store_, "two words", Scope::kRead, 0, &clock_).error().code,
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace factory::server
