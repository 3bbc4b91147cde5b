// `factory run push RUN` and `factory run pr RUN` through the real binary: a run built by script
// agents in a real git repository, pushed with the real git to a local bare remote (reached
// through a url rewrite in the user's own git configuration when the remote is a GitHub URL),
// and a stand-in `gh` on PATH that records its arguments and standard input and answers with a
// pull request URL as the real one does.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "common/script_project.h"
#include "common/test_repo.h"
#include "store/store.h"

namespace factory::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPullRequestUrl[] = "https://github.com/acme/app/pull/7";

// PATH without any directory holding a real `gh` or `glab`: the stand-in is the only client.
std::string PathWithoutClients() {
  const char* inherited = std::getenv("PATH");
  std::string path;
  std::string all = inherited != nullptr ? inherited : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= all.size()) {
    size_t end = all.find(':', start);
    if (end == std::string::npos) end = all.size();
    const std::string dir = all.substr(start, end - start);
    std::error_code error;
    if (!dir.empty() && !fs::exists(fs::path(dir) / "gh", error) &&
        !fs::exists(fs::path(dir) / "glab", error)) {
      path += (path.empty() ? "" : ":") + dir;
    }
    start = end + 1;
  }
  return path;
}

class PrCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::InitGitRepo(dir(), {{"README.md", "hello\n"}});
    sandbox_.Ok({"init"});
    project_.RemoveExampleAgents();
    project_.WriteConfig(
        "concurrency: 1\nmax_attempts: 1\n"
        "gates:\n  - {name: check, command: 'true', timeout: 60}\n"
        "protected: [\".factory/**\"]\n");
    project_.AddScriptAgent("good", "echo good > good.txt\n");
    project_.AddScriptAgent("bad", "echo broken > bad.txt\nexit 1\n");
    testing::WriteFile(sandbox_.Path("backlog.yaml"),
                       "tasks:\n"
                       "  - id: fine\n    title: Write good.txt\n    agent: good\n"
                       "    acceptance: [\"good.txt says good\"]\n"
                       "    scope: [\"good.txt\"]\n");
    testing::WriteFile(sandbox_.Path("broken.yaml"),
                       "tasks:\n"
                       "  - id: fine\n    title: Write good.txt\n    agent: good\n"
                       "  - id: broken\n    title: Broken\n    agent: bad\n");
    testing::GitIn(remotes_.path(), {"init", "--quiet", "--bare", bare()});
    // The user's own git configuration: GitHub URLs of acme lead to the local bare remotes.
    testing::WriteFile(gitconfig(), "[url \"" + remotes_.path().string() +
                                        "/\"]\n\tinsteadOf = https://github.com/acme/\n");
    // The stand-in `gh`: records its arguments (one per line) and its stdin, prints the URL.
    const fs::path gh = bin_.Write(
        "gh", "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\"; done > '" +
                  (bin_.path() / "gh.args").string() + "'\ncat > '" +
                  (bin_.path() / "gh.stdin").string() + "'\necho " + kPullRequestUrl + "\n");
    fs::permissions(gh, fs::perms::owner_all);
  }

  const fs::path& dir() const { return sandbox_.dir(); }
  std::string bare() const { return (remotes_.path() / "app.git").string(); }
  fs::path gitconfig() const { return home_.path() / ".gitconfig"; }

  // The factory's environment: the test's HOME and git configuration, and PATH with the
  // stand-in `gh` (with_gh) or with no client at all.
  testing::SpawnOptions Env(bool with_gh) const {
    testing::SpawnOptions options;
    options.env["HOME"] = home_.path().string();
    options.env["GIT_CONFIG_GLOBAL"] = gitconfig().string();
    options.env["PATH"] = (with_gh ? bin_.path().string() + ":" : "") + PathWithoutClients();
    return options;
  }
  CliResult Factory(const std::vector<std::string>& args, bool with_gh = false) {
    return sandbox_.Run(args, Env(with_gh));
  }

  void BuildRun(const std::string& backlog, const std::string& run_id) {
    sandbox_.Run({"run", "--backlog", backlog, "--run-id", run_id, "--plain"});
  }

  std::string Rev(const std::string& ref) const {
    return testing::Trimmed(testing::GitIn(dir(), {"rev-parse", ref}));
  }
  std::string RemoteRev(const std::string& ref) const {
    return testing::Trimmed(
        testing::GitIn(bare(), {"for-each-ref", "--format=%(objectname)", "refs/heads/" + ref}));
  }
  std::vector<std::string> GhArgs() const {
    std::vector<std::string> args;
    std::string text = testing::ReadFile(bin_.path() / "gh.args");
    size_t start = 0;
    while (start < text.size()) {
      const size_t end = text.find('\n', start);
      args.push_back(text.substr(start, end - start));
      start = end == std::string::npos ? text.size() : end + 1;
    }
    return args;
  }
  std::string GhStdin() const { return testing::ReadFile(bin_.path() / "gh.stdin"); }

  // The run's events of `kind`, in order.
  std::vector<Event> EventsOf(const std::string& run_id, const std::string& kind) const {
    std::vector<Event> found;
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox_.DbPath().string()});
    EXPECT_TRUE(store.has_value());
    if (!store) return found;
    Status read = (*store)->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto events,
                               txn.ListEvents(EventQuery{.run_id = run_id, .limit = 100'000}));
      for (const auto& event : events) {
        if (event.kind == kind) found.push_back(event);
      }
      return Ok();
    });
    EXPECT_TRUE(read.has_value()) << read.error().ToString();
    return found;
  }

  CliSandbox sandbox_;
  testing::ScriptProject project_{sandbox_.dir()};
  testing::TempDir remotes_{"factory-remotes"};
  testing::TempDir home_{"factory-home"};
  testing::TempDir bin_{"factory-bin"};
};

TEST_F(PrCommandsTest, PushSendsTheIntegrationBranchToTheRemote) {
  BuildRun("backlog.yaml", "r1");
  testing::GitIn(dir(), {"remote", "add", "origin", bare()});
  CliResult pushed = Factory({"run", "push", "r1"});
  ASSERT_EQ(pushed.exit_code, kExitOk) << pushed.err;
  EXPECT_THAT(pushed.out,
              HasSubstr("factory: pushed factory/r1 (" + Rev("factory/r1").substr(0, 12) +
                        ") to origin (" + bare() + ")"));
  EXPECT_EQ(RemoteRev("factory/r1"), Rev("factory/r1"));
  EXPECT_EQ(RemoteRev("main"), "");  // only the run's branch

  CliResult again = Factory({"run", "push", "r1", "--json"});
  ASSERT_EQ(again.exit_code, kExitOk) << again.err;
  const json report = again.Json();
  EXPECT_EQ(report["run_id"], "r1");
  EXPECT_EQ(report["remote"], "origin");
  EXPECT_EQ(report["branch"], "factory/r1");
  EXPECT_EQ(report["base_branch"], "main");
  EXPECT_EQ(report["commit"], Rev("factory/r1"));
  EXPECT_EQ(report["up_to_date"], true);
  EXPECT_EQ(report["forced"], false);
  EXPECT_TRUE(report["compare_url"].is_null());  // a path, not a forge

  const std::vector<Event> pushes = EventsOf("r1", "run.pushed");
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_EQ(json::parse(pushes[0].payload_json)["commit"], Rev("factory/r1"));
}

TEST_F(PrCommandsTest, PrOpensTheRequestWithGhFromWhatTheRunDid) {
  BuildRun("backlog.yaml", "r1");
  testing::GitIn(dir(), {"remote", "add", "origin", "https://github.com/acme/app.git"});
  CliResult opened = Factory({"run", "pr", "r1", "--draft"}, /*with_gh=*/true);
  ASSERT_EQ(opened.exit_code, kExitOk) << opened.err;
  EXPECT_THAT(opened.out, HasSubstr("to origin (https://github.com/acme/app.git)"));
  EXPECT_THAT(opened.out, HasSubstr(std::string("factory: opened draft pull request ") +
                                    kPullRequestUrl + " (gh)"));
  // Pushed through the user's url rewrite, then the request names that branch.
  EXPECT_EQ(RemoteRev("factory/r1"), Rev("factory/r1"));
  EXPECT_THAT(GhArgs(), ::testing::ElementsAre("pr", "create", "--repo", "github.com/acme/app",
                                               "--base", "main", "--head", "factory/r1", "--title",
                                               "factory run r1: backlog.yaml", "--body-file", "-",
                                               "--draft"));
  const std::string body = GhStdin();
  EXPECT_THAT(body, HasSubstr("run `r1`, branch `factory/r1` into `main`; 1 of 1 tasks done"));
  EXPECT_THAT(body, HasSubstr("### `fine` Write good.txt\n\ndone · agent `good` · 1 attempt · "));
  EXPECT_THAT(body, HasSubstr("scope `good.txt`"));
  EXPECT_THAT(body, HasSubstr("Gates: `check` passed\n"));
  EXPECT_THAT(body, HasSubstr("Acceptance criteria:\n- good.txt says good\n"));
  EXPECT_THAT(body, HasSubstr("- Every task: 1 gate on a clean checkout of its commit\n"));
  EXPECT_THAT(body, HasSubstr("## Cost\n\n$0.0000 in total"));
  // The audit head is the chain's head when the request was written: the push's event.
  const std::vector<Event> pushes = EventsOf("r1", "run.pushed");
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_THAT(body, HasSubstr("Event log head `" + pushes[0].hash + "`"));
  EXPECT_THAT(body, Not(HasSubstr("Not mergeable")));

  const std::vector<Event> requests = EventsOf("r1", "run.pull_request_opened");
  ASSERT_EQ(requests.size(), 1u);
  const json payload = json::parse(requests[0].payload_json);
  EXPECT_EQ(payload["url"], kPullRequestUrl);
  EXPECT_EQ(payload["client"], "gh");
  EXPECT_EQ(payload["draft"], true);
  EXPECT_EQ(sandbox_.Run({"audit", "verify"}).exit_code, kExitOk);
}

TEST_F(PrCommandsTest, PrWithoutAClientPrintsTheBranchAndThePageThatOpensOne) {
  BuildRun("backlog.yaml", "r1");
  testing::GitIn(dir(), {"remote", "add", "origin", "git@github.com:acme/app.git"});
  // scp-like URLs are rewritten too: the user's configuration maps them to the bare remote.
  testing::WriteFile(gitconfig(), "[url \"" + remotes_.path().string() +
                                      "/\"]\n\tinsteadOf = git@github.com:acme/\n");
  CliResult printed = Factory({"run", "pr", "r1"});
  ASSERT_EQ(printed.exit_code, kExitOk) << printed.err;
  EXPECT_THAT(printed.out, HasSubstr("no `gh` on PATH to open the request"));
  EXPECT_THAT(printed.out, HasSubstr("branch:       factory/r1 into main\n"));
  EXPECT_THAT(printed.out,
              HasSubstr("pull request: https://github.com/acme/app/compare/main...factory/r1"
                        "?expand=1\n"));
  EXPECT_EQ(RemoteRev("factory/r1"), Rev("factory/r1"));

  CliResult as_json = Factory({"run", "pr", "r1", "--json"});
  ASSERT_EQ(as_json.exit_code, kExitOk) << as_json.err;
  const json report = as_json.Json();
  EXPECT_EQ(report["forge"], "github");
  EXPECT_TRUE(report["client"].is_null());
  EXPECT_TRUE(report["url"].is_null());
  EXPECT_EQ(report["compare_url"],
            "https://github.com/acme/app/compare/main...factory/r1?expand=1");
  EXPECT_TRUE(EventsOf("r1", "run.pull_request_opened").empty());
}

TEST_F(PrCommandsTest, PrToARemoteNoForgeServesSaysWhyThereIsNoRequest) {
  BuildRun("backlog.yaml", "r1");
  testing::GitIn(dir(), {"remote", "add", "origin", bare()});
  CliResult refused = Factory({"run", "pr", "r1"}, /*with_gh=*/true);
  EXPECT_EQ(refused.exit_code, kExitPrecondition);
  EXPECT_THAT(refused.err, HasSubstr("cannot open a pull request for factory/r1"));
  EXPECT_THAT(refused.err, HasSubstr("is a path on this machine: no forge serves it"));
  EXPECT_EQ(RemoteRev("factory/r1"), Rev("factory/r1"));  // the push itself was done
  EXPECT_FALSE(fs::exists(bin_.path() / "gh.args"));
}

TEST_F(PrCommandsTest, ARunThatIsNotMergeableIsNotPushedUnlessForced) {
  BuildRun("broken.yaml", "r2");
  testing::GitIn(dir(), {"remote", "add", "origin", "https://github.com/acme/app.git"});
  for (const char* command : {"push", "pr"}) {
    CliResult refused = Factory({"run", command, "r2"}, /*with_gh=*/true);
    EXPECT_EQ(refused.exit_code, kExitPrecondition) << command;
    EXPECT_THAT(refused.err,
                HasSubstr("run r2 is not mergeable: 1 of 2 tasks are not done: broken (failed)"));
    EXPECT_THAT(refused.err, HasSubstr(std::string("`factory run ") + command + " r2 --force`"));
  }
  EXPECT_EQ(RemoteRev("factory/r2"), "");
  EXPECT_FALSE(fs::exists(bin_.path() / "gh.args"));

  CliResult forced = Factory({"run", "pr", "r2", "--force"}, /*with_gh=*/true);
  ASSERT_EQ(forced.exit_code, kExitOk) << forced.err;
  EXPECT_EQ(RemoteRev("factory/r2"), Rev("factory/r2"));
  EXPECT_THAT(GhStdin(), ::testing::StartsWith("> **Not mergeable**, pushed with `--force`:\n"
                                               "> - 1 of 2 tasks are not done: broken (failed)\n"));
  const std::vector<Event> pushes = EventsOf("r2", "run.pushed");
  ASSERT_EQ(pushes.size(), 1u);
  const json payload = json::parse(pushes[0].payload_json);
  EXPECT_EQ(payload["forced"], true);
  EXPECT_EQ(payload["overridden"][0], "1 of 2 tasks are not done: broken (failed)");
}

TEST_F(PrCommandsTest, AnUnknownRunOrRemoteIsNamed) {
  BuildRun("backlog.yaml", "r1");
  CliResult unknown_run = Factory({"run", "push", "nope"});
  EXPECT_EQ(unknown_run.exit_code, kExitNotFound);
  CliResult no_remote = Factory({"run", "push", "r1"});
  EXPECT_EQ(no_remote.exit_code, kExitPrecondition);
  EXPECT_THAT(no_remote.err,
              HasSubstr("no remote to push to: add one (git remote add origin URL)"));
  testing::GitIn(dir(), {"remote", "add", "origin", bare()});
  CliResult wrong_remote = Factory({"run", "push", "r1", "--remote", "upstream"});
  EXPECT_EQ(wrong_remote.exit_code, kExitPrecondition);
  EXPECT_THAT(wrong_remote.err, HasSubstr("no remote 'upstream' (it has origin)"));
}

}  // namespace
}  // namespace factory::cli
