// Pushing a run's branch with the real git to local bare remotes: the remote chosen, what lands
// there, what of the user's own configuration a push uses (url rewrites from the global
// configuration) and what it never does (hooks, the `ext` transport), and how a refused push
// reads.

#include "forge/push.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "common/test_repo.h"
#include "common/test_util.h"
#include "workspace/git.h"

namespace factory::forge {
namespace {

namespace fs = std::filesystem;
using testing::GitIn;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::TempRepo;
using testing::Trimmed;

// Sets (or unsets, with nullopt) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class PushTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bare_ = (remotes_.path() / "app.git").string();
    GitIn(remotes_.path(), {"init", "--quiet", "--bare", bare_});
    repo_.Git({"checkout", "--quiet", "-b", "factory/r1"});
    testing::WriteFile(repo_.Path("feature.txt"), "built\n");
    repo_.CommitAllIn(repo_.root(), "the run's work");
    repo_.Git({"checkout", "--quiet", "main"});
    tip_ = repo_.Rev("factory/r1");
  }

  Git git() const { return Git(repo_.root()); }
  std::string RemoteRev(const std::string& ref) const {
    return Trimmed(GitIn(bare_, {"for-each-ref", "--format=%(objectname)", ref}));  // "": none
  }
  Result<PushOutcome> Push(const std::string& requested = "") const {
    FACTORY_ASSIGN_OR_RETURN(PushTarget target, ResolveRemote(git(), requested, "main"));
    return PushBranch(git(), target, "factory/r1");
  }

  TempRepo repo_;
  TempDir remotes_{"factory-remotes"};
  TempDir home_{"factory-home"};
  std::string bare_;
  std::string tip_;
  // The user's configuration is what the test writes in its own HOME, nothing of the host's.
  ScopedEnv home_env_{"HOME", home_.path().string()};
  ScopedEnv no_global_{"GIT_CONFIG_GLOBAL", std::nullopt};
  ScopedEnv no_xdg_{"XDG_CONFIG_HOME", std::nullopt};
};

TEST_F(PushTest, PushesTheBranchUnderItsOwnNameAndSaysWhenItWasThereAlready) {
  repo_.Git({"remote", "add", "origin", bare_});
  auto pushed = Push();
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString();
  EXPECT_EQ(pushed->remote, "origin");
  EXPECT_EQ(pushed->remote_url, bare_);
  EXPECT_EQ(pushed->branch, "factory/r1");
  EXPECT_EQ(pushed->commit, tip_);
  EXPECT_FALSE(pushed->up_to_date);
  EXPECT_EQ(RemoteRev("refs/heads/factory/r1"), tip_);
  EXPECT_EQ(RemoteRev("refs/heads/main"), "");  // only the run's branch

  auto again = Push();
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_TRUE(again->up_to_date);
}

TEST_F(PushTest, TheDefaultRemoteIsTheBaseBranchsUpstreamThenOriginThenTheOnlyOne) {
  auto none = ResolveRemote(git(), "", "main");
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(none.error().message, HasSubstr("git remote add origin URL"));

  repo_.Git({"remote", "add", "mine", bare_});
  auto only = ResolveRemote(git(), "", "main");
  ASSERT_TRUE(only.has_value()) << only.error().ToString();
  EXPECT_EQ(only->name, "mine");
  EXPECT_EQ(only->url, bare_);

  repo_.Git({"remote", "add", "theirs", bare_});
  auto several = ResolveRemote(git(), "", "main");
  ASSERT_FALSE(several.has_value());
  EXPECT_THAT(several.error().message, HasSubstr("mine, theirs"));
  EXPECT_THAT(several.error().message, HasSubstr("--remote NAME"));

  repo_.Git({"remote", "add", "origin", bare_});
  EXPECT_EQ(ResolveRemote(git(), "", "main")->name, "origin");
  repo_.Git({"config", "branch.main.remote", "theirs"});
  EXPECT_EQ(ResolveRemote(git(), "", "main")->name, "theirs");
  EXPECT_EQ(ResolveRemote(git(), "mine", "main")->name, "mine");

  auto unknown = ResolveRemote(git(), "upstream", "main");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(unknown.error().message, HasSubstr("no remote 'upstream'"));
  auto option = ResolveRemote(git(), "--mirror", "main");
  ASSERT_FALSE(option.has_value());
  EXPECT_EQ(option.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(PushTest, TheUsersGlobalConfigurationReachesThePush) {
  // A url rewrite in the user's ~/.gitconfig, as a user whose remote needs one would have: the
  // hardened commands never read that file; a push must, or it cannot reach the user's remote.
  testing::WriteFile(home_.path() / ".gitconfig",
                     "[url \"" + remotes_.path().string() +
                         "/\"]\n"
                         "\tinsteadOf = https://forge.example/acme/\n");
  repo_.Git({"remote", "add", "origin", "https://forge.example/acme/app.git"});
  auto pushed = Push();
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString();
  EXPECT_EQ(pushed->remote_url, "https://forge.example/acme/app.git");
  EXPECT_EQ(RemoteRev("refs/heads/factory/r1"), tip_);
}

TEST_F(PushTest, NoHookOfThePushingSideRunsNotEvenOneTheUsersConfigurationNames) {
  // What is pushed was written by agents: a hook here (the repository's, or a hooks path of the
  // user's configuration) would run the project's code outside the sandbox. The receiving
  // repository runs its own hooks, as a server does: with a local path as the remote, that is
  // on this machine, so each hook says where and what it ran.
  const fs::path log = remotes_.path() / "hooks-ran";
  auto hook = [&](const std::string& name) {
    return "#!/bin/sh\necho \"$(pwd) " + name + "\" >> '" + log.string() + "'\n";
  };
  for (const std::string name : {"pre-push", "reference-transaction", "post-update"}) {
    for (const fs::path& dir : {fs::path(repo_.Path(".git/hooks")), home_.path() / "hooks"}) {
      testing::WriteFile(dir / name, hook(name));
      fs::permissions(dir / name, fs::perms::owner_all);
    }
  }
  testing::WriteFile(home_.path() / ".gitconfig",
                     "[core]\n\thooksPath = " + (home_.path() / "hooks").string() + "\n");
  repo_.Git({"remote", "add", "origin", bare_});
  auto pushed = Push();
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString();
  EXPECT_EQ(RemoteRev("refs/heads/factory/r1"), tip_);
  const std::string ran = testing::ReadFile(log);
  EXPECT_THAT(ran, ::testing::Not(HasSubstr(repo_.root() + " ")));
  EXPECT_THAT(ran, ::testing::Not(HasSubstr("pre-push")));
}

TEST_F(PushTest, TheExtTransportStaysRefusedWhateverTheUsersConfigurationSays) {
  // `ext::` runs a command: a remote URL (or a rewrite) naming one must not run it.
  const fs::path marker = remotes_.path() / "ext-ran";
  testing::WriteFile(home_.path() / ".gitconfig",
                     "[protocol]\n\tallow = always\n"
                     "[protocol \"ext\"]\n\tallow = always\n");
  repo_.Git({"remote", "add", "origin", "ext::sh -c touch% " + marker.string()});
  auto pushed = Push();
  ASSERT_FALSE(pushed.has_value());
  EXPECT_EQ(pushed.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(pushed.error().message, HasSubstr("git push to origin"));
  EXPECT_FALSE(fs::exists(marker));
}

TEST_F(PushTest, ARefusedPushSaysTheRemoteHasOtherCommits) {
  // Someone else's factory/r1 on the remote: never overwritten.
  TempDir other_dir{"factory-other"};
  const std::string other = (other_dir.path() / "clone").string();
  GitIn(other_dir.path(), {"clone", "--quiet", bare_, other});
  GitIn(other, {"checkout", "--quiet", "-b", "factory/r1"});
  testing::WriteFile(other + "/theirs.txt", "theirs\n");
  GitIn(other, {"add", "-A"});
  GitIn(other, {"-c", "user.name=o", "-c", "user.email=o@example.com", "commit", "--quiet", "-m",
                "theirs"});
  GitIn(other, {"push", "--quiet", "origin", "factory/r1"});
  const std::string theirs = RemoteRev("refs/heads/factory/r1");

  repo_.Git({"remote", "add", "origin", bare_});
  auto pushed = Push();
  ASSERT_FALSE(pushed.has_value());
  EXPECT_EQ(pushed.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(pushed.error().message, HasSubstr("was refused"));
  EXPECT_THAT(pushed.error().message, HasSubstr("has commits the run's branch does not"));
  EXPECT_EQ(RemoteRev("refs/heads/factory/r1"), theirs);
}

TEST_F(PushTest, AMissingBranchIsNotFound) {
  repo_.Git({"remote", "add", "origin", bare_});
  auto target = ResolveRemote(git(), "", "main");
  ASSERT_TRUE(target.has_value());
  auto pushed = PushBranch(git(), *target, "factory/none");
  ASSERT_FALSE(pushed.has_value());
  EXPECT_EQ(pushed.error().code, ErrorCode::kNotFound);
}

TEST_F(PushTest, ACredentialInTheRemoteUrlIsNotPrinted) {
  repo_.Git({"remote", "add", "origin", "https://x:ghp_secret@127.0.0.1:9/acme/app.git"});
  auto pushed = Push();
  ASSERT_FALSE(pushed.has_value());  // nothing listens on port 9
  EXPECT_THAT(pushed.error().message, HasSubstr("https://127.0.0.1:9/acme/app.git"));
  EXPECT_THAT(pushed.error().message, ::testing::Not(HasSubstr("ghp_secret")));
}

}  // namespace
}  // namespace factory::forge
