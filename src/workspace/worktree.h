#pragma once
// Git worktrees for task attempts, kept away from the user's own checkout.
//
// Layout in the user's repository (`<root>` = the main worktree):
//   factory/<run>                              integration branch, created from the base branch
//   factory-task/<run>/<task>                  a task's branch, reset to the integration tip for
//                                              every new attempt
//   <root>/.factory/worktrees/<run>/<task>-<n> the worktree of attempt n
//   refs/factory/snapshots/<run>/<task>-<n>    uncommitted state of attempt n, saved on removal
//   refs/factory/attempts/<run>/<task>-<n>     commits of attempt n that never merged
//
// Task branches live under `factory-task/` rather than `factory/<run>/<task>`: git stores refs
// as paths, so a branch `factory/<run>` and a branch `factory/<run>/<task>` cannot coexist.
//
// Trust: an attempt's worktree is the agent's. Every git command on it goes through
// Git::ForWorktree (the `.git` file must be exactly what git wrote; the git dir and work tree are
// then named explicitly, never discovered), so a replaced or redirected `.git` fails the
// operation as tampering, and removal then deletes the folder by the factory's own path.
//
// Safety by construction: nothing is ever checked out in the user's working tree; the base
// branch changes only through MergeIntoBase(); an attempt's uncommitted work and unmerged commits
// are saved to refs before its worktree or branch tip goes away; a branch is deleted only by
// DeleteBranch(). `/.factory/worktrees/` and `/.factory/merge.lock` are added to the
// repository's `info/exclude` (not to any tracked file) so the user's `git status` stays as it
// was.
//
// Ids (run, task) must be safe as a ref and path component: [A-Za-z0-9._-], not starting with
// '.' or '-', no "..", not ending in ".lock", at most 128 characters.
//
// Thread-safety: all methods may be called concurrently; the ones that change worktrees or refs
// are serialised by an internal mutex (they are short git commands). Several processes may use
// the same repository; git's own locks and compare-and-swap ref updates keep them consistent.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/redact.h"  // kMinSecretLength
#include "core/result.h"
#include "workspace/git.h"

namespace factory {

struct WorkspaceOptions {
  std::string repo_path;    // any directory inside the user's repository (main worktree)
  std::string base_branch;  // empty: the branch checked out in the main worktree
  GitIdentity identity;     // author and committer of the factory's commits
  int64_t git_timeout_ms = 300'000;
};

// One attempt's worktree.
struct AttemptWorkspace {
  std::string run_id;
  std::string task_id;
  int attempt = 0;
  std::string path;          // absolute
  std::string branch;        // short name: factory-task/<run>/<task>
  std::string start_commit;  // the integration tip it was made from
};

// What RemoveAttempt() preserved.
struct RemovedAttempt {
  std::optional<std::string> snapshot_ref;  // set when the worktree had uncommitted changes
  std::optional<std::string> attempt_ref;   // set when the branch had commits not yet merged
  // Set when the worktree's git link was tampered with: nothing of its content was saved and
  // the folder was deleted by its path.
  std::optional<std::string> tampering;
};

// A secret the attempt's commit must not add: `value` is never printed, `name` (say, the
// environment variable it came from) is.
struct NamedSecret {
  std::string name;
  std::string value;
};

// The build artefacts never committed unless the project's configuration says otherwise
// (gitignore patterns).
const std::vector<std::string>& DefaultCommitExcludes();

// What CommitAttempt() accepts. Checked on the host against the attempt's whole change (its
// start commit to the staged tree):
//  - new files matching `exclude` (gitignore syntax, below the repository's own .gitignore
//    files) or ignored by the .gitignore files of the attempt's start commit are left out
//    (the agent's own .gitignore edits apply too, as git's, but cannot un-ignore what the
//    project ignores);
//  - a symbolic link whose target is absolute or climbs out of the worktree, a nested git
//    repository (gitlink), a file above `max_file_bytes`, or content that adds the value of a
//    secret fails the commit (FailedPrecondition naming each path; never a secret's value).
struct CommitPolicy {
  std::vector<std::string> exclude = DefaultCommitExcludes();
  int64_t max_file_bytes = 5 * 1024 * 1024;  // 0 = no limit
  std::vector<NamedSecret> secrets;          // values shorter than kMinSecretLength are ignored
};

struct BaseMergeResult {
  std::string base_branch;
  std::string old_tip;
  std::string new_tip;
  bool up_to_date = false;       // nothing to merge; the base was left alone
  bool fast_forward = false;     // the base moved to the integration tip without a merge commit
  std::string checkout_updated;  // the worktree whose checkout was fast-forwarded, if any
};

class WorkspaceManager {
 public:
  // Opens the repository containing options.repo_path. FailedPrecondition when it is not a
  // non-bare git repository or the base branch cannot be determined (detached HEAD, no such
  // branch).
  static Result<std::unique_ptr<WorkspaceManager>> Open(WorkspaceOptions options);

  WorkspaceManager(const WorkspaceManager&) = delete;
  WorkspaceManager& operator=(const WorkspaceManager&) = delete;

  const std::string& repo_root() const { return root_; }
  const std::string& base_branch() const { return base_branch_; }
  // git in the main worktree (read-only uses: refs, log).
  const Git& git() const { return git_; }
  // <root>/.factory
  std::string FactoryDir() const;
  // <root>/.factory/worktrees/<run>
  std::string RunWorktreesDir(std::string_view run_id) const;

  static std::string IntegrationBranch(std::string_view run_id);
  static std::string TaskBranch(std::string_view run_id, std::string_view task_id);
  // InvalidArgument naming `what` when `id` is not a safe ref/path component.
  static Status ValidateId(std::string_view what, std::string_view id);

  // Creates factory/<run> from the base branch's tip unless it exists. Returns its tip.
  Result<std::string> EnsureIntegrationBranch(const std::string& run_id);

  // Makes the worktree for attempt `attempt` (>= 1) of a task: branch factory-task/<run>/<task>
  // reset to the current integration tip. A worktree left over from an earlier attempt (or a
  // crash) is removed first, with its state saved as RemoveAttempt() does.
  // REQUIRES: EnsureIntegrationBranch(run_id) succeeded (else FailedPrecondition).
  Result<AttemptWorkspace> CreateAttempt(const std::string& run_id, const std::string& task_id,
                                         int attempt);

  // Commits the attempt's worktree as one commit on its task branch (`git add -A` under
  // `policy`, then commit-tree and a compare-and-swap of the branch, so neither the worktree's
  // HEAD nor its hooks are involved). Returns the new commit, or nullopt when nothing changed.
  // The new files `policy` left out go to *excluded_paths when given (a folder left out whole
  // ends in '/').
  // Errors: FailedPrecondition starting with kTamperingPrefix when the worktree's git link was
  // altered or its branch no longer descends from start_commit; FailedPrecondition naming the
  // paths when `policy` refuses the change; git's errors otherwise.
  Result<std::optional<std::string>> CommitAttempt(
      const AttemptWorkspace& workspace, const std::string& message,
      const CommitPolicy& policy = {}, std::vector<std::string>* excluded_paths = nullptr) const;
  // Paths changed by the attempt's commits (start_commit .. branch tip).
  Result<std::vector<std::string>> ChangedPaths(const AttemptWorkspace& workspace) const;

  // Removes the attempt's worktree. A worktree whose git link was tampered with is deleted by
  // its path with nothing saved (RemovedAttempt::tampering says why). Otherwise uncommitted
  // changes are first saved to
  // refs/factory/snapshots/<run>/<task>-<n>, and branch commits not contained in the integration
  // branch to refs/factory/attempts/<run>/<task>-<n>. The branch itself stays. Removing a
  // worktree that is already gone succeeds.
  Result<RemovedAttempt> RemoveAttempt(const AttemptWorkspace& workspace);

  // Deletes a branch. Without `force`, a branch with unmerged commits is refused by git.
  Status DeleteBranch(const std::string& branch, bool force);

  // Brings the integration branch of `run_id` into the base branch, never disturbing a checkout:
  //  - base not checked out anywhere: a fast-forward when possible, else a --no-ff merge made in
  //    a temporary worktree; the base ref is then moved with a compare-and-swap update-ref
  //    (Aborted if it moved meanwhile, Aborted listing the paths on a conflict).
  //  - base checked out in a worktree (typically the user's): FailedPrecondition unless that
  //    worktree has no tracked changes and the integration branch is a fast-forward of the base;
  //    then `git merge --ff-only` in that worktree, which git itself refuses if it would
  //    overwrite an untracked file.
  Result<BaseMergeResult> MergeIntoBase(const std::string& run_id);

 private:
  WorkspaceManager(std::string root, std::string common_dir, std::string base_branch, Git git);

  Status EnsureExcluded() const;
  Result<RemovedAttempt> RemoveAttemptLocked(const AttemptWorkspace& workspace);

  const std::string root_;
  const std::string common_dir_;
  const std::string base_branch_;
  const Git git_;
  std::mutex mutex_;  // serialises worktree and ref changes made through this object
};

}  // namespace factory
