#include "verify/checkout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_repo.h"
#include "verify/gates.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileBytes;
using testing::TempRepo;
using testing::WriteFileBytes;

class CheckoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFileBytes(repo_.Path(".git/info/exclude"), ".factory/\n");
    // The agent's worktree: a commit plus an untracked leftover and an uncommitted edit.
    agent_dir_ = repo_.Path(".factory/worktrees/r1/t1-1");
    repo_.Git({"worktree", "add", "--quiet", "-b", "task", agent_dir_, "main"});
    WriteFileBytes(agent_dir_ + "/src/feature.txt", "feature\n");
    repo_.CommitAllIn(agent_dir_, "add feature");
    commit_ = repo_.Rev("HEAD", agent_dir_);
    WriteFileBytes(agent_dir_ + "/leftover.txt", "not committed\n");
    WriteFileBytes(agent_dir_ + "/README.md", "edited but not committed\n");
  }

  TempRepo repo_;
  Git git_{repo_.root()};
  std::string agent_dir_;
  std::string commit_;
};

TEST_F(CheckoutTest, SeesExactlyTheCommittedTree) {
  const std::string dir = repo_.Path(".factory/checkouts/r1/t1-1");
  {
    auto checkout = MakeCleanCheckout(git_, commit_, dir);
    ASSERT_TRUE(checkout.has_value()) << checkout.error().ToString();
    EXPECT_EQ(checkout->path(), dir);
    EXPECT_EQ(checkout->commit(), commit_);
    EXPECT_EQ(repo_.Rev("HEAD", dir), commit_);
    EXPECT_EQ(ReadFileBytes(dir + "/src/feature.txt"), "feature\n");
    EXPECT_FALSE(fs::exists(dir + "/leftover.txt"));
    EXPECT_EQ(ReadFileBytes(dir + "/README.md"), "# project\nline two\nline three\n");

    // Gates run there and see the same.
    auto sandbox = MakeSandbox();
    GateRunOptions options;
    options.sandbox = sandbox.get();
    auto results = RunGates({GateConfig{.name = "clean",
                                        .command = "test ! -e leftover.txt && "
                                                   "test -f src/feature.txt && git status "
                                                   "--porcelain && echo clean"}},
                            checkout->path(), options);
    ASSERT_TRUE(results.has_value()) << results.error().ToString();
    ASSERT_EQ(results->size(), 1u);
    EXPECT_TRUE(results->front().passed) << results->front().output_tail;
    EXPECT_EQ(results->front().output_tail, "clean\n");
  }
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_THAT(repo_.Git({"worktree", "list", "--porcelain"}), Not(HasSubstr(dir)));
  // The agent's worktree is untouched.
  EXPECT_TRUE(fs::exists(agent_dir_ + "/leftover.txt"));
  EXPECT_EQ(ReadFileBytes(agent_dir_ + "/README.md"), "edited but not committed\n");
}

TEST_F(CheckoutTest, RemoveAndMoveAndLeftovers) {
  const std::string dir = repo_.Path(".factory/checkouts/r1/t1-2");
  auto first = MakeCleanCheckout(git_, commit_, dir);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  WriteFileBytes(dir + "/junk.txt", "junk");

  CleanCheckout moved = std::move(*first);
  EXPECT_TRUE(first->path().empty());
  EXPECT_EQ(moved.path(), dir);

  // A leftover at the same place (a crash) is replaced.
  auto second = MakeCleanCheckout(git_, "main", dir);
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_FALSE(fs::exists(dir + "/junk.txt"));
  EXPECT_FALSE(fs::exists(dir + "/src/feature.txt"));
  EXPECT_TRUE(second->Remove().has_value());
  EXPECT_TRUE(second->Remove().has_value());  // twice is fine
  EXPECT_FALSE(fs::exists(dir));
  // `moved` now points at a directory already gone; its destructor must cope.
}

TEST_F(CheckoutTest, BadInput) {
  auto missing = MakeCleanCheckout(git_, "0123456789abcdef0123456789abcdef01234567",
                                   repo_.Path(".factory/checkouts/x"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto relative = MakeCleanCheckout(git_, commit_, "relative/dir");
  ASSERT_FALSE(relative.has_value());
  EXPECT_EQ(relative.error().code, ErrorCode::kInvalidArgument);
  auto option_like = MakeCleanCheckout(git_, "--orphan", repo_.Path(".factory/checkouts/y"));
  EXPECT_FALSE(option_like.has_value());
}

}  // namespace
}  // namespace factory
