#include "workspace/worktree.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/test_repo.h"
#include "workspace/merge_queue.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::MustRun;
using testing::ReadFileBytes;
using testing::TempRepo;
using testing::Trimmed;
using testing::WriteFileBytes;

MergeRequest Request(const std::string& task, const std::string& title = "") {
  MergeRequest request;
  request.run_id = "r1";
  request.task_id = task;
  request.title = title;
  return request;
}

std::unique_ptr<WorkspaceManager> OpenManager(const TempRepo& repo) {
  WorkspaceOptions options;
  options.repo_path = repo.root();
  auto manager = WorkspaceManager::Open(options);
  EXPECT_TRUE(manager.has_value()) << manager.error().ToString();
  return manager.has_value() ? std::move(*manager) : nullptr;
}

TEST(WorkspaceManagerTest, OpensRepositoryAndDefaultsToCheckedOutBranch) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->repo_root(), repo.root());
  EXPECT_EQ(manager->base_branch(), "main");

  // From a subdirectory too.
  WorkspaceOptions options;
  options.repo_path = repo.Path("src");
  auto from_subdir = WorkspaceManager::Open(options);
  ASSERT_TRUE(from_subdir.has_value());
  EXPECT_EQ((*from_subdir)->repo_root(), repo.root());

  testing::TempDir not_a_repo("factory-not-a-repo");
  options.repo_path = not_a_repo.path().string();
  auto not_repo = WorkspaceManager::Open(options);
  ASSERT_FALSE(not_repo.has_value());
  EXPECT_EQ(not_repo.error().code, ErrorCode::kFailedPrecondition);

  options.repo_path = repo.root();
  options.base_branch = "no-such-branch";
  auto bad_base = WorkspaceManager::Open(options);
  ASSERT_FALSE(bad_base.has_value());
  EXPECT_EQ(bad_base.error().code, ErrorCode::kFailedPrecondition);
}

TEST(WorkspaceManagerTest, RejectsUnsafeIds) {
  for (const char* id : {"", "../etc", "a/b", "a b", "-rf", ".hidden", "x.lock", "a..b", "t;rm"}) {
    auto status = WorkspaceManager::ValidateId("task id", id);
    EXPECT_FALSE(status.has_value()) << "accepted '" << id << "'";
  }
  for (const char* id : {"t1", "01JD4Z6Q3X", "add-parser", "fix_bug.2"}) {
    EXPECT_TRUE(WorkspaceManager::ValidateId("task id", id).has_value()) << id;
  }
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "../escape", 1);
  ASSERT_FALSE(attempt.has_value());
  EXPECT_EQ(attempt.error().code, ErrorCode::kInvalidArgument);
}

TEST(WorkspaceManagerTest, IntegrationBranchStartsAtBaseAndIsIdempotent) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  auto tip = manager->EnsureIntegrationBranch("r1");
  ASSERT_TRUE(tip.has_value()) << tip.error().ToString();
  EXPECT_EQ(*tip, repo.Rev("main"));
  EXPECT_EQ(repo.Rev("factory/r1"), repo.Rev("main"));

  // A second call keeps an integration branch that has moved on.
  std::string tree = Trimmed(repo.Git({"rev-parse", "main^{tree}"}));
  std::string commit =
      Trimmed(repo.Git({"commit-tree", tree, "-p", repo.Rev("main"), "-m", "moved"}));
  repo.Git({"update-ref", "refs/heads/factory/r1", commit});
  auto again = manager->EnsureIntegrationBranch("r1");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, commit);
}

TEST(WorkspaceManagerTest, CreatesAttemptWorktreeOnTaskBranchFromIntegrationTip) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  // Move the integration branch ahead of main: the attempt must start from it, not from main.
  {
    auto setup = manager->CreateAttempt("r1", "setup", 1);
    ASSERT_TRUE(setup.has_value()) << setup.error().ToString();
    WriteFileBytes(setup->path + "/integration-only.txt", "from integration\n");
    ASSERT_TRUE(manager->CommitAttempt(*setup, "setup").has_value());
    repo.Git({"update-ref", "refs/heads/factory/r1", "refs/heads/" + setup->branch});
  }

  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value()) << attempt.error().ToString();
  EXPECT_EQ(attempt->path, repo.root() + "/.factory/worktrees/r1/t1-1");
  EXPECT_EQ(attempt->branch, "factory-task/r1/t1");
  EXPECT_EQ(attempt->start_commit, repo.Rev("factory/r1"));
  EXPECT_EQ(Trimmed(repo.Git({"symbolic-ref", "--short", "HEAD"}, attempt->path)),
            "factory-task/r1/t1");
  EXPECT_EQ(repo.Rev("HEAD", attempt->path), repo.Rev("factory/r1"));
  EXPECT_EQ(ReadFileBytes(attempt->path + "/integration-only.txt"), "from integration\n");
  EXPECT_EQ(repo.Git({"status", "--porcelain"}, attempt->path), "");

  // Commit and inspect what changed.
  WriteFileBytes(attempt->path + "/feature.txt", "feature\n");
  auto commit = manager->CommitAttempt(*attempt, "t1: add feature\n\nFactory-Task: t1\n");
  ASSERT_TRUE(commit.has_value()) << commit.error().ToString();
  ASSERT_TRUE(commit->has_value());
  EXPECT_EQ(**commit, repo.Rev("factory-task/r1/t1"));
  EXPECT_EQ(Trimmed(repo.Git({"log", "-1", "--format=%an <%ae>", **commit})),
            "Agent Factory <factory@localhost>");
  auto changed = manager->ChangedPaths(*attempt);
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(*changed, std::vector<std::string>{"feature.txt"});

  // Nothing new: no commit.
  auto empty = manager->CommitAttempt(*attempt, "nothing");
  ASSERT_TRUE(empty.has_value());
  EXPECT_FALSE(empty->has_value());
}

TEST(WorkspaceManagerTest, SnapshotCapturesUncommittedStateBeforeRemoval) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value()) << attempt.error().ToString();

  WriteFileBytes(attempt->path + "/committed.txt", "committed\n");
  ASSERT_TRUE(manager->CommitAttempt(*attempt, "partial work").has_value());
  WriteFileBytes(attempt->path + "/README.md", "edited but not committed\n");
  WriteFileBytes(attempt->path + "/new/untracked.txt", "untracked\n");
  WriteFileBytes(attempt->path + "/staged.txt", "staged\n");
  repo.Git({"add", "staged.txt"}, attempt->path);
  const std::string index_before = repo.Git({"diff", "--cached", "--name-only"}, attempt->path);
  const std::string head_before = repo.Rev("HEAD", attempt->path);

  auto removed = manager->RemoveAttempt(*attempt);
  ASSERT_TRUE(removed.has_value()) << removed.error().ToString();
  ASSERT_TRUE(removed->snapshot_ref.has_value());
  EXPECT_EQ(*removed->snapshot_ref, "refs/factory/snapshots/r1/t1-1");
  const std::string& ref = *removed->snapshot_ref;
  EXPECT_EQ(repo.Git({"show", ref + ":README.md"}), "edited but not committed\n");
  EXPECT_EQ(repo.Git({"show", ref + ":new/untracked.txt"}), "untracked\n");
  EXPECT_EQ(repo.Git({"show", ref + ":staged.txt"}), "staged\n");
  EXPECT_EQ(repo.Git({"show", ref + ":committed.txt"}), "committed\n");
  EXPECT_EQ(repo.Rev(ref + "^"), head_before);
  EXPECT_EQ(index_before, "staged.txt\n");

  // The unmerged commit is kept under refs/factory/attempts; the branch stays.
  ASSERT_TRUE(removed->attempt_ref.has_value());
  EXPECT_EQ(repo.Rev(*removed->attempt_ref), head_before);
  EXPECT_EQ(repo.Rev("factory-task/r1/t1"), head_before);

  EXPECT_FALSE(fs::exists(attempt->path));
  EXPECT_THAT(repo.Git({"worktree", "list"}), ::testing::Not(HasSubstr("t1-1")));

  // Removing again is a no-op.
  auto again = manager->RemoveAttempt(*attempt);
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_FALSE(again->snapshot_ref.has_value());
}

TEST(WorkspaceManagerTest, CleanRemovalSavesNothing) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value());
  auto removed = manager->RemoveAttempt(*attempt);
  ASSERT_TRUE(removed.has_value());
  EXPECT_FALSE(removed->snapshot_ref.has_value());
  EXPECT_FALSE(removed->attempt_ref.has_value());  // the branch has nothing unmerged
  EXPECT_EQ(repo.Git({"for-each-ref", "refs/factory/"}), "");
}

TEST(WorkspaceManagerTest, NextAttemptResetsBranchAndKeepsThePreviousOne) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto first = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(first.has_value());
  WriteFileBytes(first->path + "/try1.txt", "first try\n");
  ASSERT_TRUE(manager->CommitAttempt(*first, "try 1").has_value());
  WriteFileBytes(first->path + "/left-over.txt", "dirty\n");
  const std::string first_tip = repo.Rev("factory-task/r1/t1");

  // The first worktree was never removed (a crash): the second attempt cleans it up, saving it.
  auto second = manager->CreateAttempt("r1", "t1", 2);
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_FALSE(fs::exists(first->path));
  EXPECT_EQ(repo.Rev("factory-task/r1/t1"), repo.Rev("factory/r1"));
  EXPECT_FALSE(fs::exists(second->path + "/try1.txt"));
  EXPECT_EQ(repo.Rev("refs/factory/attempts/r1/t1-1"), first_tip);
  EXPECT_EQ(repo.Git({"show", "refs/factory/snapshots/r1/t1-1:left-over.txt"}), "dirty\n");
}

TEST(WorkspaceManagerTest, UserCheckoutSurvivesCreateCommitMergeRemoveUntouched) {
  TempRepo repo;
  // The user's work in progress: an unstaged edit, a staged edit, an untracked file.
  WriteFileBytes(repo.Path("README.md"), "# project\nuser edit, not staged\n");
  WriteFileBytes(repo.Path("src/main.txt"), "main, staged by the user\n");
  repo.Git({"add", "src/main.txt"});
  WriteFileBytes(repo.Path("notes.txt"), "user's untracked notes\n");
  const std::string status_before = repo.Git({"status", "--porcelain"});
  const std::string cached_before = repo.Git({"diff", "--cached"});
  const std::string head_before = repo.Rev("HEAD");
  const std::string symbolic_before = repo.Git({"symbolic-ref", "HEAD"});
  const std::string readme_before = ReadFileBytes(repo.Path("README.md"));
  const std::string main_before = ReadFileBytes(repo.Path("src/main.txt"));
  const std::string notes_before = ReadFileBytes(repo.Path("notes.txt"));

  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  MergeQueue queue(*manager);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  std::vector<AttemptWorkspace> attempts;
  for (const std::string task : {"t1", "t2"}) {
    auto attempt = manager->CreateAttempt("r1", task, 1);
    ASSERT_TRUE(attempt.has_value()) << attempt.error().ToString();
    // The agents edit the same file the user is editing (and each other's line).
    WriteFileBytes(attempt->path + "/README.md", "# project\nchanged by " + task + "\n");
    WriteFileBytes(attempt->path + "/" + task + ".txt", task + "\n");
    ASSERT_TRUE(manager->CommitAttempt(*attempt, task).has_value());
    attempts.push_back(*attempt);
  }
  auto merged = queue.Merge(Request("t1", "task t1"));
  ASSERT_TRUE(merged.has_value()) << merged.error().ToString();
  auto conflicted = queue.Merge(Request("t2", "task t2"));
  ASSERT_FALSE(conflicted.has_value());
  EXPECT_EQ(conflicted.error().code, ErrorCode::kAborted);
  for (const auto& attempt : attempts) {
    WriteFileBytes(attempt.path + "/scratch.txt", "dirty\n");
    ASSERT_TRUE(manager->RemoveAttempt(attempt).has_value());
  }
  // A later attempt from the new integration tip merges too.
  auto retry = manager->CreateAttempt("r1", "t2", 2);
  ASSERT_TRUE(retry.has_value());
  WriteFileBytes(retry->path + "/t2.txt", "t2\n");
  ASSERT_TRUE(manager->CommitAttempt(*retry, "t2 again").has_value());
  ASSERT_TRUE(queue.Merge(Request("t2", "task t2")).has_value());
  ASSERT_TRUE(manager->RemoveAttempt(*retry).has_value());

  EXPECT_EQ(repo.Git({"status", "--porcelain"}), status_before);
  EXPECT_EQ(repo.Git({"diff", "--cached"}), cached_before);
  EXPECT_EQ(repo.Rev("HEAD"), head_before);
  EXPECT_EQ(repo.Git({"symbolic-ref", "HEAD"}), symbolic_before);
  EXPECT_EQ(repo.Rev("main"), head_before);
  EXPECT_EQ(ReadFileBytes(repo.Path("README.md")), readme_before);
  EXPECT_EQ(ReadFileBytes(repo.Path("src/main.txt")), main_before);
  EXPECT_EQ(ReadFileBytes(repo.Path("notes.txt")), notes_before);
  EXPECT_FALSE(fs::exists(repo.Path("t1.txt")));
}

TEST(WorkspaceManagerTest, MergeIntoBaseFastForwardsACleanCheckout) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  MergeQueue queue(*manager);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value());
  WriteFileBytes(attempt->path + "/feature.txt", "feature\n");
  ASSERT_TRUE(manager->CommitAttempt(*attempt, "t1").has_value());
  ASSERT_TRUE(queue.Merge(Request("t1", "feature")).has_value());
  WriteFileBytes(repo.Path("untracked-by-user.txt"), "mine\n");

  // `main` is checked out and clean apart from an untracked file: fast-forwarded in place.
  auto merged = manager->MergeIntoBase("r1");
  ASSERT_TRUE(merged.has_value()) << merged.error().ToString();
  EXPECT_TRUE(merged->fast_forward);
  EXPECT_EQ(merged->checkout_updated, repo.root());
  EXPECT_EQ(repo.Rev("main"), repo.Rev("factory/r1"));
  EXPECT_EQ(ReadFileBytes(repo.Path("feature.txt")), "feature\n");
  EXPECT_EQ(repo.Git({"status", "--porcelain"}), "?? untracked-by-user.txt\n");

  auto again = manager->MergeIntoBase("r1");
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->up_to_date);
}

TEST(WorkspaceManagerTest, MergeIntoBaseRefusesADirtyOrDivergedCheckout) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  MergeQueue queue(*manager);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value());
  WriteFileBytes(attempt->path + "/feature.txt", "feature\n");
  ASSERT_TRUE(manager->CommitAttempt(*attempt, "t1").has_value());
  ASSERT_TRUE(queue.Merge(Request("t1")).has_value());

  WriteFileBytes(repo.Path("README.md"), "user is editing\n");
  const std::string main_before = repo.Rev("main");
  auto dirty = manager->MergeIntoBase("r1");
  ASSERT_FALSE(dirty.has_value());
  EXPECT_EQ(dirty.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(dirty.error().message, HasSubstr("uncommitted changes"));
  EXPECT_EQ(repo.Rev("main"), main_before);
  EXPECT_EQ(ReadFileBytes(repo.Path("README.md")), "user is editing\n");
  EXPECT_FALSE(fs::exists(repo.Path("feature.txt")));

  // The user commits on main meanwhile: no longer a fast-forward of the checkout.
  repo.Git({"commit", "--quiet", "-am", "user commit"});
  const std::string user_commit = repo.Rev("main");
  auto diverged = manager->MergeIntoBase("r1");
  ASSERT_FALSE(diverged.has_value());
  EXPECT_EQ(diverged.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(repo.Rev("main"), user_commit);
  EXPECT_EQ(repo.Git({"status", "--porcelain"}), "");
}

TEST(WorkspaceManagerTest, MergeIntoBaseNotCheckedOutUsesUpdateRef) {
  TempRepo repo;
  repo.Git({"branch", "develop"});
  WorkspaceOptions options;
  options.repo_path = repo.root();
  options.base_branch = "develop";  // the user stays on main
  auto opened = WorkspaceManager::Open(options);
  ASSERT_TRUE(opened.has_value());
  auto& manager = *opened;
  MergeQueue queue(*manager);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value());
  WriteFileBytes(attempt->path + "/feature.txt", "feature\n");
  ASSERT_TRUE(manager->CommitAttempt(*attempt, "t1").has_value());
  ASSERT_TRUE(queue.Merge(Request("t1")).has_value());

  // develop moves on independently: a real merge commit is needed.
  std::string tree = Trimmed(repo.Git({"rev-parse", "develop^{tree}"}));
  std::string side =
      Trimmed(repo.Git({"commit-tree", tree, "-p", repo.Rev("develop"), "-m", "side"}));
  repo.Git({"update-ref", "refs/heads/develop", side});
  const std::string main_before = repo.Rev("main");

  auto merged = manager->MergeIntoBase("r1");
  ASSERT_TRUE(merged.has_value()) << merged.error().ToString();
  EXPECT_FALSE(merged->fast_forward);
  EXPECT_EQ(merged->old_tip, side);
  EXPECT_EQ(repo.Rev("develop"), merged->new_tip);
  EXPECT_EQ(repo.Rev("develop^1"), side);
  EXPECT_EQ(repo.Rev("develop^2"), repo.Rev("factory/r1"));
  EXPECT_EQ(repo.Git({"show", "develop:feature.txt"}), "feature\n");
  EXPECT_EQ(repo.Rev("main"), main_before);
  EXPECT_EQ(repo.Git({"status", "--porcelain"}), "");
  EXPECT_THAT(repo.Git({"worktree", "list"}), ::testing::Not(HasSubstr("_base-merge")));
}

TEST(WorkspaceManagerTest, DeleteBranchOnlyWhenAsked) {
  TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value());
  WriteFileBytes(attempt->path + "/x.txt", "x\n");
  ASSERT_TRUE(manager->CommitAttempt(*attempt, "x").has_value());
  ASSERT_TRUE(manager->RemoveAttempt(*attempt).has_value());
  EXPECT_EQ(repo.Rev("factory-task/r1/t1"), repo.Rev("refs/factory/attempts/r1/t1-1"));

  auto unforced = manager->DeleteBranch("factory-task/r1/t1", false);
  EXPECT_FALSE(unforced.has_value());  // unmerged work: git refuses without force
  ASSERT_TRUE(manager->DeleteBranch("factory-task/r1/t1", true).has_value());
  EXPECT_EQ(Trimmed(repo.Git({"branch", "--list", "factory-task/r1/t1"})), "");
  auto missing = manager->DeleteBranch("factory-task/r1/t1", true);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace factory

namespace factory {
namespace {

TEST(WorkspaceManagerTest, NeverRemovesAWorktreeItDoesNotOwn) {
  testing::TempRepo repo;
  auto manager = OpenManager(repo);
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->EnsureIntegrationBranch("r1").has_value());
  auto attempt = manager->CreateAttempt("r1", "t1", 1);
  ASSERT_TRUE(attempt.has_value());
  ASSERT_TRUE(manager->RemoveAttempt(*attempt).has_value());

  // The user checks the task branch out in a worktree of their own, with work in progress.
  const std::string user_tree = repo.root() + "-user-tree";
  repo.Git({"worktree", "add", "--quiet", user_tree, "factory-task/r1/t1"});
  testing::WriteFileBytes(user_tree + "/wip.txt", "user work\n");

  auto blocked = manager->CreateAttempt("r1", "t1", 2);
  ASSERT_FALSE(blocked.has_value());
  EXPECT_EQ(blocked.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(blocked.error().message, HasSubstr(user_tree));
  EXPECT_EQ(testing::ReadFileBytes(user_tree + "/wip.txt"), "user work\n");

  AttemptWorkspace foreign = *attempt;
  foreign.path = user_tree;
  auto refused = manager->RemoveAttempt(foreign);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(fs::exists(user_tree + "/wip.txt"));

  repo.Git({"worktree", "remove", "--force", user_tree});
}

}  // namespace
}  // namespace factory
