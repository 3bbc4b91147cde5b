#pragma once
// The merge queue: task branches enter a run's integration branch one at a time.
//
// Each merge is a `git merge --no-ff` made in a dedicated detached worktree
// (<root>/.factory/worktrees/<run>/_merge) starting at the integration tip; the integration
// branch is then moved with a compare-and-swap `update-ref`. The integration branch is never
// checked out by the factory, so the user can check it out to inspect it at any time.
//
// Serialisation: an in-process mutex plus an exclusive flock on <root>/.factory/merge.lock,
// so several factory processes (workers, a resumed run) on one repository merge one at a time.
//
// Commit message (first line, blank line, trailers):
//   factory: merge <task_id> <title>
//
//   Factory-Task: <task_id>
//   Factory-Run: <run_id>
//   Factory-Agent: <agent>
//   Factory-Attempt: <n>
//   Factory-Gates: <gate>,<gate>,...
//
// Exactly once: a task whose Factory-Task/Factory-Run trailers are already on the integration
// branch is reported as merged without merging again, so a worker that crashed after merging
// (before recording it) cannot merge the task twice on resume.
//
// Thread-safety: all methods may be called from any thread.

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "workspace/worktree.h"

namespace factory {

struct MergeRequest {
  std::string run_id;
  std::string task_id;
  std::string title;
  std::string agent;
  int attempt = 1;
  std::vector<std::string> gates;  // names of the gates the attempt passed
  // What to merge; empty: the task branch WorkspaceManager::TaskBranch(run_id, task_id).
  std::string source;
};

struct MergeOutcome {
  bool already_merged = false;  // the task was on the integration branch before this call
  std::string merge_commit;     // the merge commit carrying the task's trailers
  std::string integration_tip;  // the integration branch after the call
};

class MergeQueue {
 public:
  // `workspace` is not owned and must outlive the queue.
  explicit MergeQueue(WorkspaceManager& workspace);

  MergeQueue(const MergeQueue&) = delete;
  MergeQueue& operator=(const MergeQueue&) = delete;

  // Merges the request's source into factory/<run>.
  // Errors: kAborted on conflicts (the merge is aborted and the integration branch unchanged;
  // the message lists the conflicting paths, which are also stored in *conflicting_paths when
  // given); kInvalidArgument for bad ids; kFailedPrecondition when the integration branch or
  // the source does not exist; kUnavailable for git or lock failures.
  Result<MergeOutcome> Merge(const MergeRequest& request,
                             std::vector<std::string>* conflicting_paths = nullptr);

  // The merge commit on factory/<run> carrying this task's trailers, if any.
  Result<std::optional<std::string>> FindMerge(const std::string& run_id,
                                               const std::string& task_id) const;
  Result<bool> IsMerged(const std::string& run_id, const std::string& task_id) const;

  // Removes the run's merge worktree (created by the first Merge of a run); call when the run
  // is finished. Waits for a merge in progress. Removing one that does not exist succeeds.
  Status RemoveMergeWorktree(const std::string& run_id);

  // The structured commit message for `request` (newlines in fields become spaces).
  static std::string FormatMessage(const MergeRequest& request);

 private:
  Result<MergeOutcome> MergeLocked(const MergeRequest& request,
                                   std::vector<std::string>* conflicting_paths);

  WorkspaceManager& workspace_;
  std::mutex mutex_;  // one merge at a time within this process (flock covers other processes)
};

}  // namespace factory
