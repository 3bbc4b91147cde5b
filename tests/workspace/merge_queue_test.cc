#include "workspace/merge_queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/test_repo.h"
#include "workspace/git.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ReadFileBytes;
using testing::TempRepo;
using testing::Trimmed;
using testing::WriteFileBytes;

class MergeQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkspaceOptions options;
    options.repo_path = repo_.root();
    auto manager = WorkspaceManager::Open(options);
    ASSERT_TRUE(manager.has_value()) << manager.error().ToString();
    manager_ = std::move(*manager);
    queue_ = std::make_unique<MergeQueue>(*manager_);
    ASSERT_TRUE(manager_->EnsureIntegrationBranch("r1").has_value());
  }

  // A committed attempt writing `files` (path -> content).
  AttemptWorkspace Attempt(const std::string& task, int attempt,
                           const std::map<std::string, std::string>& files) {
    auto created = manager_->CreateAttempt("r1", task, attempt);
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    if (!created.has_value()) return {};
    for (const auto& [path, content] : files) WriteFileBytes(created->path + "/" + path, content);
    auto commit = manager_->CommitAttempt(*created, task + " attempt " + std::to_string(attempt));
    EXPECT_TRUE(commit.has_value() && commit->has_value());
    return *created;
  }

  static MergeRequest Request(const std::string& task, int attempt = 1) {
    MergeRequest request;
    request.run_id = "r1";
    request.task_id = task;
    request.title = "Implement " + task;
    request.agent = "coder";
    request.attempt = attempt;
    request.gates = {"build", "test"};
    return request;
  }

  // Merge commits on factory/r1 per Factory-Task trailer.
  std::map<std::string, int> MergesPerTask() {
    std::string out = repo_.Git(
        {"log", "--merges", "--format=%(trailers:key=Factory-Task,valueonly)", "factory/r1"});
    std::map<std::string, int> counts;
    for (const auto& line : SplitLines(out)) counts[line]++;
    return counts;
  }

  TempRepo repo_;
  std::unique_ptr<WorkspaceManager> manager_;
  std::unique_ptr<MergeQueue> queue_;
};

TEST_F(MergeQueueTest, FormatsStructuredMessage) {
  MergeRequest request = Request("t1", 2);
  request.title = "Add parser\nwith a second line";
  EXPECT_EQ(MergeQueue::FormatMessage(request),
            "factory: merge t1 Add parser with a second line\n\n"
            "Factory-Task: t1\nFactory-Run: r1\nFactory-Agent: coder\nFactory-Attempt: 2\n"
            "Factory-Gates: build,test\n");
}

TEST_F(MergeQueueTest, BranchesTouchingDifferentFilesBothMergeNoFfWithTrailers) {
  Attempt("t1", 1, {{"a.txt", "a\n"}});
  Attempt("t2", 1, {{"b.txt", "b\n"}});
  const std::string base = repo_.Rev("factory/r1");

  auto first = queue_->Merge(Request("t1"));
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_FALSE(first->already_merged);
  auto second = queue_->Merge(Request("t2"));
  ASSERT_TRUE(second.has_value()) << second.error().ToString();

  EXPECT_EQ(repo_.Rev("factory/r1"), second->merge_commit);
  EXPECT_EQ(second->integration_tip, second->merge_commit);
  // --no-ff: two merge commits, each with the task branch as second parent.
  EXPECT_EQ(repo_.Rev(first->merge_commit + "^1"), base);
  EXPECT_EQ(repo_.Rev(second->merge_commit + "^1"), first->merge_commit);
  EXPECT_EQ(repo_.Rev(second->merge_commit + "^2"), repo_.Rev("factory-task/r1/t2"));
  EXPECT_EQ(repo_.Git({"show", "factory/r1:a.txt"}), "a\n");
  EXPECT_EQ(repo_.Git({"show", "factory/r1:b.txt"}), "b\n");

  EXPECT_EQ(Trimmed(repo_.Git({"log", "-1", "--format=%s", second->merge_commit})),
            "factory: merge t2 Implement t2");
  const std::string trailers =
      repo_.Git({"log", "-1", "--format=%(trailers:only,unfold)", second->merge_commit});
  EXPECT_THAT(trailers, HasSubstr("Factory-Task: t2\n"));
  EXPECT_THAT(trailers, HasSubstr("Factory-Run: r1\n"));
  EXPECT_THAT(trailers, HasSubstr("Factory-Agent: coder\n"));
  EXPECT_THAT(trailers, HasSubstr("Factory-Attempt: 1\n"));
  EXPECT_THAT(trailers, HasSubstr("Factory-Gates: build,test\n"));
  EXPECT_EQ(Trimmed(repo_.Git({"log", "-1", "--format=%an <%ae>", second->merge_commit})),
            "Agent Factory <factory@localhost>");

  // The integration branch is not checked out anywhere: the user may inspect it.
  EXPECT_THAT(repo_.Git({"worktree", "list", "--porcelain"}),
              ::testing::Not(HasSubstr("branch refs/heads/factory/r1\n")));
  EXPECT_EQ(repo_.Rev("main"), base);

  const std::string merge_tree = repo_.root() + "/.factory/worktrees/r1/_merge";
  EXPECT_TRUE(fs::exists(merge_tree));
  ASSERT_TRUE(queue_->RemoveMergeWorktree("r1").has_value());
  EXPECT_FALSE(fs::exists(merge_tree));
  EXPECT_THAT(repo_.Git({"worktree", "list"}), ::testing::Not(HasSubstr("_merge")));
  ASSERT_TRUE(queue_->RemoveMergeWorktree("r1").has_value());
}

TEST_F(MergeQueueTest, ConflictIsReportedAndLeavesIntegrationUnchanged) {
  Attempt("t1", 1, {{"README.md", "# project\nline two by t1\nline three\n"}});
  Attempt("t2", 1, {{"README.md", "# project\nline two by t2\nline three\n"}, {"c.txt", "c\n"}});
  ASSERT_TRUE(queue_->Merge(Request("t1")).has_value());
  const std::string tip = repo_.Rev("factory/r1");

  std::vector<std::string> conflicts;
  auto conflicted = queue_->Merge(Request("t2"), &conflicts);
  ASSERT_FALSE(conflicted.has_value());
  EXPECT_EQ(conflicted.error().code, ErrorCode::kAborted);
  EXPECT_THAT(conflicted.error().message, HasSubstr("README.md"));
  EXPECT_THAT(conflicts, ElementsAre("README.md"));
  EXPECT_EQ(repo_.Rev("factory/r1"), tip);
  EXPECT_EQ(MergesPerTask().count("t2"), 0u);
  auto merged = queue_->IsMerged("r1", "t2");
  ASSERT_TRUE(merged.has_value());
  EXPECT_FALSE(*merged);

  // The merge worktree was left clean: the next merge works.
  const std::string merge_tree = repo_.root() + "/.factory/worktrees/r1/_merge";
  EXPECT_EQ(repo_.Git({"status", "--porcelain"}, merge_tree), "");
  Attempt("t3", 1, {{"d.txt", "d\n"}});
  ASSERT_TRUE(queue_->Merge(Request("t3")).has_value());

  // The retry starts from the updated integration tip and merges.
  auto retry = Attempt(
      "t2", 2, {{"README.md", "# project\nline two by t1 and t2\nline three\n"}, {"c.txt", "c\n"}});
  EXPECT_EQ(retry.start_commit, repo_.Rev("factory/r1"));
  auto resolved = queue_->Merge(Request("t2", 2), &conflicts);
  ASSERT_TRUE(resolved.has_value()) << resolved.error().ToString();
  EXPECT_TRUE(conflicts.empty());
  EXPECT_EQ(repo_.Git({"show", "factory/r1:README.md"}),
            "# project\nline two by t1 and t2\nline three\n");
  EXPECT_EQ(MergesPerTask()["t2"], 1);
  EXPECT_THAT(
      repo_.Git({"log", "-1", "--format=%(trailers:key=Factory-Attempt,valueonly)", "factory/r1"}),
      HasSubstr("2"));
}

TEST_F(MergeQueueTest, MergingTwiceIsIdempotent) {
  Attempt("t1", 1, {{"a.txt", "a\n"}});
  Attempt("t10", 1, {{"b.txt", "b\n"}});
  auto ten = queue_->Merge(Request("t10"));
  ASSERT_TRUE(ten.has_value());

  // "t1" is a prefix of "t10": the trailer match must be exact.
  auto before = queue_->IsMerged("r1", "t1");
  ASSERT_TRUE(before.has_value());
  EXPECT_FALSE(*before);

  auto first = queue_->Merge(Request("t1"));
  ASSERT_TRUE(first.has_value());
  auto again = queue_->Merge(Request("t1"));
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_TRUE(again->already_merged);
  EXPECT_EQ(again->merge_commit, first->merge_commit);
  EXPECT_EQ(repo_.Rev("factory/r1"), first->merge_commit);

  auto found = queue_->FindMerge("r1", "t1");
  ASSERT_TRUE(found.has_value());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, first->merge_commit);
  EXPECT_EQ(MergesPerTask(), (std::map<std::string, int>{{"t1", 1}, {"t10", 1}}));

  // The same task id in another run is a different task.
  auto other_run = queue_->IsMerged("r2", "t1");
  ASSERT_TRUE(other_run.has_value());
  EXPECT_FALSE(*other_run);
}

TEST_F(MergeQueueTest, MissingBranchesAreErrors) {
  auto no_source = queue_->Merge(Request("never-created"));
  ASSERT_FALSE(no_source.has_value());
  EXPECT_EQ(no_source.error().code, ErrorCode::kFailedPrecondition);

  MergeRequest no_run = Request("t1");
  no_run.run_id = "r-missing";
  auto missing = queue_->Merge(no_run);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kFailedPrecondition);

  MergeRequest bad = Request("../t1");
  auto invalid = queue_->Merge(bad);
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(MergeQueueTest, ConcurrentMergesFromEightThreadsLandExactlyOnce) {
  constexpr int kTasks = 8;
  for (int task = 0; task < kTasks; ++task) {
    const std::string id = "c" + std::to_string(task);
    Attempt(id, 1, {{id + ".txt", id + "\n"}});
  }
  // Every thread tries to merge every task, each in its own order.
  std::vector<std::thread> threads;
  std::vector<int> errors(kTasks, 0);
  std::vector<int> fresh_merges(kTasks, 0);
  std::mutex counts_mutex;
  for (int thread_index = 0; thread_index < kTasks; ++thread_index) {
    threads.emplace_back([&, thread_index] {
      std::vector<int> order(kTasks);
      for (int task = 0; task < kTasks; ++task) order[task] = task;
      std::shuffle(order.begin(), order.end(), std::mt19937(thread_index));
      for (int task : order) {
        auto result = queue_->Merge(Request("c" + std::to_string(task)));
        std::lock_guard<std::mutex> lock(counts_mutex);
        if (!result.has_value()) {
          ++errors[task];
        } else if (!result->already_merged) {
          ++fresh_merges[task];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::map<std::string, int> expected;
  for (int task = 0; task < kTasks; ++task) {
    EXPECT_EQ(errors[task], 0) << "task " << task;
    EXPECT_EQ(fresh_merges[task], 1) << "task " << task;
    expected["c" + std::to_string(task)] = 1;
  }
  EXPECT_EQ(MergesPerTask(), expected);
  for (int task = 0; task < kTasks; ++task) {
    const std::string id = "c" + std::to_string(task);
    EXPECT_EQ(repo_.Git({"show", "factory/r1:" + id + ".txt"}), id + "\n");
  }
}

TEST_F(MergeQueueTest, TwoProcessesMergeOneAtATime) {
  constexpr int kTasks = 6;
  for (int task = 0; task < kTasks; ++task) {
    const std::string id = "p" + std::to_string(task);
    Attempt(id, 1, {{id + ".txt", id + "\n"}});
  }
  // Two processes, each with its own manager and queue (so only the flock serialises them),
  // race to merge all tasks. A child reports failure through its exit code.
  std::vector<pid_t> children;
  for (int process = 0; process < 2; ++process) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      WorkspaceOptions options;
      options.repo_path = repo_.root();
      auto manager = WorkspaceManager::Open(options);
      if (!manager.has_value()) _exit(2);
      MergeQueue queue(**manager);
      for (int step = 0; step < kTasks; ++step) {
        int task = process == 0 ? step : kTasks - 1 - step;
        auto result = queue.Merge(Request("p" + std::to_string(task)));
        if (!result.has_value()) _exit(3);
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t child : children) {
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  std::map<std::string, int> expected;
  for (int task = 0; task < kTasks; ++task) expected["p" + std::to_string(task)] = 1;
  EXPECT_EQ(MergesPerTask(), expected);
}

}  // namespace
}  // namespace factory
