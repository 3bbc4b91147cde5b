// The host-side git hardening and the commit policy of WorkspaceManager, on real repositories:
// what an agent may leave in its worktree, and what the factory then refuses to trust or to
// commit.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/test_repo.h"
#include "verify/checkout.h"
#include "workspace/worktree.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ReadFileBytes;
using ::testing::StartsWith;
using testing::TempRepo;
using testing::Trimmed;
using testing::WriteFileBytes;

class CommitPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFileBytes(repo_.Path(".gitignore"), "*.log\n");
    repo_.Git({"add", ".gitignore"});
    repo_.Git({"commit", "--quiet", "-m", "ignore logs"});
    WorkspaceOptions options;
    options.repo_path = repo_.root();
    auto manager = WorkspaceManager::Open(options);
    ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
    manager_ = std::move(*manager);
    ASSERT_TRUE(manager_->EnsureIntegrationBranch("r1").has_value());
    auto attempt = manager_->CreateAttempt("r1", "t1", 1);
    ASSERT_TRUE(attempt.has_value()) << attempt.error().ToString();
    attempt_ = *attempt;
    marker_ = repo_.Path("../" + fs::path(repo_.root()).filename().string() + "-marker");
    evil_ = repo_.Path("../" + fs::path(repo_.root()).filename().string() + "-evil.sh");
    WriteFileBytes(evil_, "#!/bin/sh\necho ran >> '" + marker_ + "'\ncat\n");
    fs::permissions(evil_, fs::perms::owner_all, fs::perm_options::add);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove(marker_, ignored);
    fs::remove(evil_, ignored);
  }

  std::string In(const std::string& relative) const { return attempt_.path + "/" + relative; }

  Result<std::optional<std::string>> Commit(const CommitPolicy& policy = {},
                                            std::vector<std::string>* excluded = nullptr) {
    return manager_->CommitAttempt(attempt_, "attempt", policy, excluded);
  }

  TempRepo repo_;
  std::unique_ptr<WorkspaceManager> manager_;
  AttemptWorkspace attempt_;
  std::string marker_;
  std::string evil_;
};

TEST_F(CommitPolicyTest, ReplacedGitDirIsTamperingAndRemovalDeletesByPath) {
  fs::remove(In(".git"));
  testing::MustRun(attempt_.path, {"git", "init", "--quiet", "."});
  testing::MustRun(attempt_.path, {"git", "config", "core.fsmonitor", evil_});
  WriteFileBytes(In("feature.txt"), "x\n");
  auto commit = Commit();
  ASSERT_FALSE(commit.has_value());
  EXPECT_EQ(commit.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(commit.error().message, StartsWith("tampering: "));
  EXPECT_THAT(commit.error().message, HasSubstr("a directory"));
  EXPECT_FALSE(fs::exists(marker_));

  auto removed = manager_->RemoveAttempt(attempt_);
  ASSERT_TRUE(removed.has_value()) << removed.error().ToString();
  ASSERT_TRUE(removed->tampering.has_value());
  EXPECT_FALSE(removed->snapshot_ref.has_value());
  EXPECT_FALSE(fs::exists(attempt_.path));
  EXPECT_FALSE(fs::exists(marker_));
  EXPECT_THAT(repo_.Git({"worktree", "list"}), ::testing::Not(HasSubstr("t1-1")));
  // The next attempt starts cleanly on the same path.
  auto next = manager_->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(next.has_value()) << next.error().ToString();
}

TEST_F(CommitPolicyTest, RedirectedGitFileNeverReachesTheUsersBranch) {
  const std::string main_before = repo_.Rev("main");
  WriteFileBytes(repo_.Path("user-staged.txt"), "user\n");
  repo_.Git({"add", "user-staged.txt"});
  WriteFileBytes(In(".git"), "gitdir: " + repo_.root() + "/.git\n");
  WriteFileBytes(In("feature.txt"), "x\n");
  auto commit = Commit();
  ASSERT_FALSE(commit.has_value());
  EXPECT_THAT(commit.error().message, StartsWith("tampering: "));
  EXPECT_EQ(repo_.Rev("main"), main_before);
  EXPECT_EQ(repo_.Git({"diff", "--cached", "--name-only"}), "user-staged.txt\n");

  // A symbolic link in place of the file is tampering too, and so is removing it.
  fs::remove(In(".git"));
  fs::create_symlink(repo_.root() + "/.git", In(".git"));
  EXPECT_THAT(Commit().error().message, HasSubstr("a symbolic link"));
  fs::remove(In(".git"));
  EXPECT_THAT(Commit().error().message, HasSubstr("is missing"));
  auto removed = manager_->RemoveAttempt(attempt_);
  ASSERT_TRUE(removed.has_value()) << removed.error().ToString();
  EXPECT_FALSE(fs::exists(attempt_.path));
  EXPECT_TRUE(fs::exists(repo_.Path(".git/HEAD")));
  EXPECT_EQ(repo_.Git({"diff", "--cached", "--name-only"}), "user-staged.txt\n");
}

TEST_F(CommitPolicyTest, DriversNamedByTheTreeNeverRun) {
  // A configuration defining drivers (as a user's might, or an agent could without a sandbox)
  // and attributes naming them: add, commit, a gate checkout and merges run no program.
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"filter.x.clean", evil_},
                                                        {"filter.x.smudge", evil_},
                                                        {"filter.x.required", "true"},
                                                        {"diff.x.textconv", evil_},
                                                        {"diff.x.command", evil_},
                                                        {"merge.x.driver", evil_ + " %A"},
                                                        {"core.fsmonitor", evil_},
                                                        {"core.hooksPath", repo_.root()}}) {
    repo_.Git({"config", key, value});
  }
  WriteFileBytes(repo_.Path("post-checkout"), "#!/bin/sh\necho hook >> '" + marker_ + "'\n");
  fs::permissions(repo_.Path("post-checkout"), fs::perms::owner_all, fs::perm_options::add);
  WriteFileBytes(In(".gitattributes"), "* filter=x diff=x merge=x\n");
  WriteFileBytes(In("feature.txt"), "feature\n");
  auto commit = Commit();
  ASSERT_TRUE(commit.has_value()) << commit.error().ToString();
  ASSERT_TRUE(commit->has_value());
  Git main_git = manager_->git();
  auto checkout = MakeCleanCheckout(main_git, **commit, repo_.Path(".factory/checkouts/c1"));
  ASSERT_TRUE(checkout.has_value()) << checkout.error().ToString();
  EXPECT_EQ(ReadFileBytes(checkout->path() + "/feature.txt"), "feature\n");
  ASSERT_TRUE(checkout->Remove().has_value());
  auto diff = main_git.Run({"diff", attempt_.start_commit, **commit});
  ASSERT_TRUE(diff.has_value()) << diff.error().ToString();
  EXPECT_THAT(*diff, HasSubstr("+feature"));
  EXPECT_FALSE(fs::exists(marker_)) << ReadFileBytes(marker_);
}

TEST_F(CommitPolicyTest, CommitIsOneCommitOnTheTaskBranchWhateverHeadSays) {
  WriteFileBytes(In("feature.txt"), "x\n");
  // An index entry forced in behind the factory's back is not committed.
  WriteFileBytes(In("debug.log"), "forced\n");
  testing::MustRun(attempt_.path, {"git", "add", "-f", "debug.log"});
  auto commit = Commit();
  ASSERT_TRUE(commit.has_value()) << commit.error().ToString();
  ASSERT_TRUE(commit->has_value());
  EXPECT_EQ(repo_.Rev("factory-task/r1/t1"), **commit);
  EXPECT_EQ(repo_.Rev(**commit + "^"), attempt_.start_commit);
  EXPECT_EQ(repo_.Git({"ls-tree", "--name-only", **commit}),
            ".gitignore\nREADME.md\nfeature.txt\nsrc\n");
  EXPECT_EQ(repo_.Git({"status", "--porcelain"}, attempt_.path), "");
  auto again = Commit();
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->has_value());
}

TEST_F(CommitPolicyTest, ArtefactsAndProjectIgnoredFilesAreLeftOutEvenIfTheAgentUnignoresThem) {
  WriteFileBytes(In("pkg/mod.py"), "x = 1\n");
  WriteFileBytes(In("pkg/__pycache__/mod.cpython-311.pyc"), "bytecode");
  WriteFileBytes(In("web/node_modules/left-pad/index.js"), "module.exports = 1;\n");
  WriteFileBytes(In("build.o"), "object");
  WriteFileBytes(In("run.log"), "log\n");
  WriteFileBytes(In(".gitignore"), "!*.log\n!*.o\n");  // the agent's attempt to undo ignores
  std::vector<std::string> excluded;
  auto commit = Commit({}, &excluded);
  ASSERT_TRUE(commit.has_value()) << commit.error().ToString();
  ASSERT_TRUE(commit->has_value());
  EXPECT_EQ(excluded, (std::vector<std::string>{"build.o", "pkg/__pycache__/", "run.log", "web/"}));
  EXPECT_EQ(repo_.Git({"ls-tree", "-r", "--name-only", **commit}),
            ".gitignore\nREADME.md\npkg/mod.py\nsrc/main.txt\n");

  // The project may drop the defaults; its own .gitignore still applies.
  WriteFileBytes(In("other.o"), "object");
  CommitPolicy no_defaults;
  no_defaults.exclude.clear();
  auto second = Commit(no_defaults, &excluded);
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_EQ(excluded, (std::vector<std::string>{"run.log"}));
  EXPECT_THAT(repo_.Git({"ls-tree", "-r", "--name-only", "factory-task/r1/t1"}),
              HasSubstr("other.o"));
}

TEST_F(CommitPolicyTest, SymlinksMustStayInsideTheWorktree) {
  fs::create_directories(In("a/b"));
  fs::create_symlink("../README.md", In("a/readme"));  // inside: fine
  fs::create_symlink("b", In("a/to-b"));
  auto inside = Commit();
  ASSERT_TRUE(inside.has_value()) << inside.error().ToString();

  fs::create_symlink("/etc/passwd", In("passwd"));
  fs::create_symlink("../../..", In("a/up"));
  fs::create_symlink("to-b/../../..", In("a/sneaky"));  // lexically inside, really outside
  auto outside = Commit();
  ASSERT_FALSE(outside.has_value());
  EXPECT_EQ(outside.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(outside.error().message, HasSubstr("passwd -> /etc/passwd that is absolute"));
  EXPECT_THAT(outside.error().message, HasSubstr("a/up -> ../../.. that leaves the worktree"));
  EXPECT_THAT(outside.error().message, HasSubstr("a/sneaky -> to-b/../../.."));
  EXPECT_EQ(repo_.Rev("factory-task/r1/t1"), **inside);
}

TEST_F(CommitPolicyTest, NestedRepositoriesLargeFilesAndSecretsFailNamingThePath) {
  testing::MustRun(attempt_.path, {"git", "init", "--quiet", "vendor/lib"});
  WriteFileBytes(In("vendor/lib/x.txt"), "x\n");
  testing::MustRun(In("vendor/lib"), {"git", "add", "x.txt"});
  testing::MustRun(In("vendor/lib"), {"git", "-c", "user.name=a", "-c", "user.email=a@b", "commit",
                                      "--quiet", "-m", "x"});
  WriteFileBytes(In("big.bin"), std::string(2 * 1024 * 1024 + 1, 'a'));
  WriteFileBytes(In("config.py"), "KEY = 'sk-live-abcdefghijkl'\n");
  CommitPolicy policy;
  policy.max_file_bytes = 2 * 1024 * 1024;
  policy.secrets = {{"OPENAI_API_KEY", "sk-live-abcdefghijkl"}, {"SHORT_KEY", "abc"}};
  auto commit = Commit(policy);
  ASSERT_FALSE(commit.has_value());
  const std::string& message = commit.error().message;
  EXPECT_THAT(message, HasSubstr("vendor/lib, a git repository of its own"));
  EXPECT_THAT(message, HasSubstr("big.bin (2.0 MiB), above the 2.0 MiB limit"));
  EXPECT_THAT(message, HasSubstr("the attempt adds a secret (the value of OPENAI_API_KEY) in "
                                 "config.py"));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("sk-live")));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("SHORT_KEY")));
  EXPECT_EQ(repo_.Rev("factory-task/r1/t1"), attempt_.start_commit);
}

TEST_F(CommitPolicyTest, ASecretAlreadyInTheFileIsNotAddedByTheAttempt) {
  // The base already holds the value (say, a documented example key): editing that file
  // elsewhere is fine.
  WriteFileBytes(In("doc.md"), "example: sk-live-abcdefghijkl\n");
  ASSERT_TRUE(Commit().has_value());
  WriteFileBytes(In("doc.md"), "example: sk-live-abcdefghijkl\nmore\n");
  CommitPolicy policy;
  policy.secrets = {{"OPENAI_API_KEY", "sk-live-abcdefghijkl"}};
  auto commit = Commit(policy);
  // The attempt as a whole (start commit to now) adds it: refused.
  ASSERT_FALSE(commit.has_value());

  // Present in the start commit: not the attempt's doing.
  repo_.Git({"update-ref", "refs/heads/factory/r1", "factory-task/r1/t1"});
  ASSERT_TRUE(manager_->RemoveAttempt(attempt_).has_value());
  auto next = manager_->CreateAttempt("r1", "t1", 2);
  ASSERT_TRUE(next.has_value()) << next.error().ToString();
  attempt_ = *next;
  WriteFileBytes(In("doc.md"), "example: sk-live-abcdefghijkl\nmore\n");
  auto allowed = Commit(policy);
  ASSERT_TRUE(allowed.has_value()) << allowed.error().ToString();
  EXPECT_TRUE(allowed->has_value());
}

}  // namespace
}  // namespace factory
