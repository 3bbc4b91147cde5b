// Opening a request with the forge's client: stand-in `gh` and `glab` scripts (real processes)
// that record their arguments and standard input and answer like the real ones.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "forge/pull_request.h"

namespace factory::forge {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ReadFile;
using testing::TempDir;

// The arguments a stand-in recorded, one per line.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

class ClientTest : public ::testing::Test {
 protected:
  // A stand-in `name` in bin/: records its arguments (args) and stdin (stdin), then runs `then`.
  fs::path StandIn(const std::string& name, const std::string& then) const {
    const fs::path script = dir_.Write(
        "bin/" + name, "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\"; done > '" +
                           (dir_.path() / "args").string() + "'\ncat > '" +
                           (dir_.path() / "stdin").string() + "'\n" + then);
    fs::permissions(script, fs::perms::owner_all);
    return script;
  }
  std::string Args() const { return ReadFile(dir_.path() / "args"); }
  std::string Stdin() const { return ReadFile(dir_.path() / "stdin"); }

  PullRequestRequest Request(const std::string& url) const {
    PullRequestRequest request;
    auto remote = ParseRemoteUrl(url);
    EXPECT_TRUE(remote.has_value());
    if (remote) request.remote = *remote;
    request.base_branch = "main";
    request.head_branch = "factory/r1";
    request.title = "Greetings";
    request.body = "## Tasks\n\n- hello\n";
    request.repo_dir = dir_.path().string();
    return request;
  }

  TempDir dir_;
};

TEST_F(ClientTest, FindsTheForgesClientOnPathOnlyWhenExecutable) {
  const std::string bin = (dir_.path() / "bin").string();
  const std::string path = "/nonexistent:" + bin;
  EXPECT_FALSE(FindPrClient(ForgeKind::kGitHub, path).has_value());
  dir_.Write("bin/gh", "#!/bin/sh\n");  // not executable: not a client
  EXPECT_FALSE(FindPrClient(ForgeKind::kGitHub, path).has_value());
  StandIn("gh", "");
  auto gh = FindPrClient(ForgeKind::kGitHub, path);
  ASSERT_TRUE(gh.has_value());
  EXPECT_EQ(gh->name, "gh");
  EXPECT_EQ(gh->path, bin + "/gh");
  EXPECT_FALSE(FindPrClient(ForgeKind::kGitLab, path).has_value());  // glab for GitLab
  StandIn("glab", "");
  EXPECT_EQ(FindPrClient(ForgeKind::kGitLab, path)->name, "glab");
  EXPECT_FALSE(FindPrClient(ForgeKind::kGitea, path).has_value());
  EXPECT_FALSE(FindPrClient(ForgeKind::kUnknown, path).has_value());
}

TEST_F(ClientTest, GhGetsEverythingAsArgumentsAndTheBodyOnStdin) {
  const fs::path gh =
      StandIn("gh",
              "echo 'Creating pull request for factory/r1 into main in acme/app' >&2\n"
              "echo https://github.com/acme/app/pull/7\n");
  PullRequestRequest request = Request("git@github.com:acme/app.git");
  request.draft = true;
  auto opened = OpenPullRequest({.name = "gh", .path = gh.string()}, request);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  EXPECT_EQ(opened->client, "gh");
  EXPECT_EQ(opened->url, "https://github.com/acme/app/pull/7");
  EXPECT_THAT(Lines(Args()), ElementsAre("pr", "create", "--repo", "github.com/acme/app", "--base",
                                         "main", "--head", "factory/r1", "--title", "Greetings",
                                         "--body-file", "-", "--draft"));
  EXPECT_EQ(Stdin(), "## Tasks\n\n- hello\n");
}

TEST_F(ClientTest, GlabGetsTheBodyAsItsDescription) {
  const fs::path glab =
      StandIn("glab", "echo; echo https://gitlab.com/group/app/-/merge_requests/3\n");
  auto opened =
      OpenPullRequest({.name = "glab", .path = glab.string()}, Request("git@gitlab.com:group/app"));
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  EXPECT_EQ(opened->url, "https://gitlab.com/group/app/-/merge_requests/3");
  EXPECT_THAT(Lines(Args()),
              ElementsAre("mr", "create", "--repo", "https://gitlab.com/group/app",
                          "--source-branch", "factory/r1", "--target-branch", "main", "--title",
                          "Greetings", "--description", "## Tasks", "", "- hello", "", "--yes"));
}

TEST_F(ClientTest, AFailingClientIsUnavailableWithItsWords) {
  const fs::path gh = StandIn("gh", "echo 'HTTP 401: Bad credentials' >&2\nexit 1\n");
  auto opened = OpenPullRequest({.name = "gh", .path = gh.string()},
                                Request("https://github.com/acme/app.git"));
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(opened.error().message, HasSubstr("gh pr create failed (exit 1)"));
  EXPECT_THAT(opened.error().message, HasSubstr("Bad credentials"));
}

TEST_F(ClientTest, AClientThatPrintsNoUrlHasNotOpenedAnything) {
  const fs::path gh = StandIn("gh", "echo 'a pull request already exists'\n");
  auto opened = OpenPullRequest({.name = "gh", .path = gh.string()},
                                Request("https://github.com/acme/app.git"));
  ASSERT_FALSE(opened.has_value());
  EXPECT_THAT(opened.error().message, HasSubstr("printed no pull request URL"));
  EXPECT_THAT(opened.error().message, HasSubstr("already exists"));
}

}  // namespace
}  // namespace factory::forge
