// Remote URLs as git accepts them, the forge each host suggests, and the page that opens a pull
// (merge) request there.

#include "forge/remote.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace factory::forge {
namespace {

struct UrlCase {
  std::string url;
  std::string host;
  std::string path;
  ForgeKind kind;
};

TEST(RemoteUrlTest, ParsesEveryFormGitAcceptsForAServer) {
  const std::vector<UrlCase> cases = {
      {"https://github.com/acme/app.git", "github.com", "acme/app", ForgeKind::kGitHub},
      {"https://github.com/acme/app", "github.com", "acme/app", ForgeKind::kGitHub},
      {"https://github.com/acme/app/", "github.com", "acme/app", ForgeKind::kGitHub},
      {"git@github.com:acme/app.git", "github.com", "acme/app", ForgeKind::kGitHub},
      {"ssh://git@github.com/acme/app.git", "github.com", "acme/app", ForgeKind::kGitHub},
      {"https://x-token:ghp_secret@GitHub.com/acme/app.git", "github.com", "acme/app",
       ForgeKind::kGitHub},
      {"ssh://git@gitlab.example.org:2222/group/sub/app.git", "gitlab.example.org", "group/sub/app",
       ForgeKind::kGitLab},
      {"git@gitlab.com:group/app.git", "gitlab.com", "group/app", ForgeKind::kGitLab},
      {"https://codeberg.org/acme/app.git", "codeberg.org", "acme/app", ForgeKind::kGitea},
      {"https://gitea.acme.dev/acme/app", "gitea.acme.dev", "acme/app", ForgeKind::kGitea},
      {"https://user@bitbucket.org/acme/app.git", "bitbucket.org", "acme/app",
       ForgeKind::kBitbucket},
      {"git://git.example.net/app.git", "git.example.net", "app", ForgeKind::kUnknown},
  };
  for (const auto& test : cases) {
    auto parsed = ParseRemoteUrl(test.url);
    ASSERT_TRUE(parsed.has_value()) << test.url << ": " << parsed.error().ToString();
    EXPECT_EQ(parsed->host, test.host) << test.url;
    EXPECT_EQ(parsed->path, test.path) << test.url;
    EXPECT_EQ(parsed->kind, test.kind) << test.url;
    EXPECT_EQ(parsed->web_url, "https://" + test.host + "/" + test.path) << test.url;
  }
}

TEST(RemoteUrlTest, LocalPathsAreNoForgeAndSaySo) {
  for (const std::string url :
       {"/srv/git/app.git", "../app.git", "app.git", "file:///srv/git/app.git", "./x:y"}) {
    auto parsed = ParseRemoteUrl(url);
    ASSERT_FALSE(parsed.has_value()) << url;
    EXPECT_EQ(parsed.error().code, ErrorCode::kFailedPrecondition) << url;
    EXPECT_THAT(parsed.error().message, ::testing::HasSubstr("path on this machine")) << url;
  }
}

TEST(RemoteUrlTest, MalformedUrlsAreInvalid) {
  for (const std::string url :
       {"", "https://github.com", "https:///acme/app", "ftp://example.com/app.git",
        "https://github.com/acme/../app", "git@bad host:app.git"}) {
    auto parsed = ParseRemoteUrl(url);
    ASSERT_FALSE(parsed.has_value()) << url;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << url;
  }
}

TEST(RemoteUrlTest, ACredentialInTheUrlNeverShowsInMessagesOrWebUrls) {
  EXPECT_EQ(WithoutUserInfo("https://x:ghp_secret@github.com/acme/app.git"),
            "https://github.com/acme/app.git");
  EXPECT_EQ(WithoutUserInfo("git@github.com:acme/app.git"), "git@github.com:acme/app.git");
  EXPECT_EQ(WithoutUserInfo("https://github.com/a@b/app.git"), "https://github.com/a@b/app.git");
  auto parsed = ParseRemoteUrl("ftp://x:ghp_secret@example.com/app.git");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message, ::testing::Not(::testing::HasSubstr("ghp_secret")));
  auto github = ParseRemoteUrl("https://x:ghp_secret@github.com/acme/app.git");
  ASSERT_TRUE(github.has_value());
  EXPECT_THAT(github->web_url, ::testing::Not(::testing::HasSubstr("ghp_secret")));
}

TEST(CompareUrlTest, EachForgeItsOwnPage) {
  struct Case {
    std::string url;
    std::string page;
  };
  const std::vector<Case> cases = {
      {"git@github.com:acme/app.git",
       "https://github.com/acme/app/compare/main...factory/r1?expand=1"},
      {"https://gitlab.com/group/sub/app.git",
       "https://gitlab.com/group/sub/app/-/merge_requests/new?"
       "merge_request%5Bsource_branch%5D=factory%2Fr1&merge_request%5Btarget_branch%5D=main"},
      {"https://codeberg.org/acme/app.git",
       "https://codeberg.org/acme/app/compare/main...factory/r1"},
      {"git@bitbucket.org:acme/app.git",
       "https://bitbucket.org/acme/app/pull-requests/new?source=factory%2Fr1&dest=main"},
  };
  for (const auto& test : cases) {
    auto remote = ParseRemoteUrl(test.url);
    ASSERT_TRUE(remote.has_value()) << test.url;
    auto page = CompareUrl(*remote, "main", "factory/r1");
    ASSERT_TRUE(page.has_value()) << test.url << ": " << page.error().ToString();
    EXPECT_EQ(*page, test.page);
  }
}

TEST(CompareUrlTest, BranchNamesAreEncoded) {
  auto remote = ParseRemoteUrl("https://github.com/acme/app.git");
  ASSERT_TRUE(remote.has_value());
  auto page = CompareUrl(*remote, "release 1.0", "factory/r#1");
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(*page, "https://github.com/acme/app/compare/release%201.0...factory/r%231?expand=1");
}

TEST(CompareUrlTest, AnUnknownForgeIsNamedInTheError) {
  auto remote = ParseRemoteUrl("git@git.internal.example:team/app.git");
  ASSERT_TRUE(remote.has_value());
  EXPECT_EQ(remote->kind, ForgeKind::kUnknown);
  auto page = CompareUrl(*remote, "main", "factory/r1");
  ASSERT_FALSE(page.has_value());
  EXPECT_EQ(page.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(page.error().message, ::testing::HasSubstr("git.internal.example"));
}

}  // namespace
}  // namespace factory::forge
