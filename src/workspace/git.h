#pragma once
// A small wrapper over the real `git` binary. Every command is an argv run through
// RunSubprocess (never a shell string), so no caller input is ever interpreted by a shell; refs
// and paths that could be read as options are placed after `--` or validated by the caller.
//
// All commands run with `-c core.hooksPath=/dev/null`: the user's hooks are meant for the user's
// own commits and checkouts, not for the factory's bookkeeping in its private worktrees (the
// factory's gates are its verification). Identity comes from GitIdentity through the
// GIT_AUTHOR_* / GIT_COMMITTER_* variables, so no repository configuration is needed or changed.
//
// Errors: a git command that exits non-zero becomes an error (kUnavailable unless a more precise
// code applies) whose message names the command and carries the tail of git's stderr.
// Thread-safety: a Git object is immutable after construction; concurrent calls are safe as far
// as git itself allows (callers serialise operations on the same worktree or ref).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/subprocess.h"

namespace factory {

struct GitIdentity {
  std::string name = "Agent Factory";
  std::string email = "factory@localhost";
};

struct GitWorktreeInfo {
  std::string path;
  std::string head;    // commit sha; empty for a bare entry
  std::string branch;  // full ref (refs/heads/x); empty when detached
  bool bare = false;
  bool prunable = false;
};

struct GitMergeResult {
  bool merged = false;                 // false: conflicts (the merge was aborted)
  std::string commit;                  // HEAD after a successful merge
  std::vector<std::string> conflicts;  // paths with conflicts, sorted
};

class Git {
 public:
  // `dir`: the directory commands run in (`git -C dir`): a repository, or one of its worktrees.
  explicit Git(std::string dir, GitIdentity identity = {}, int64_t timeout_ms = 300'000);

  const std::string& dir() const { return dir_; }
  const GitIdentity& identity() const { return identity_; }
  // The same settings in another directory (e.g. a worktree of this repository).
  Git At(std::string dir) const { return Git(std::move(dir), identity_, timeout_ms_); }

  // Runs `git <args>`; the raw result, whatever the exit code (errors only when git could not
  // be started).
  Result<SubprocessResult> RunRaw(const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env = {}) const;
  // Runs `git <args>` and returns its stdout; a non-zero exit is an error with stderr's tail.
  Result<std::string> Run(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env = {}) const;

  // True when dir() is inside a git work tree.
  Result<bool> IsRepo() const;
  // Absolute path of the top of the work tree containing dir().
  Result<std::string> TopLevel() const;
  // Absolute path of the repository's common git directory (shared by all worktrees).
  Result<std::string> CommonDir() const;
  // The branch checked out in dir() (short name), or nullopt when HEAD is detached.
  Result<std::optional<std::string>> CurrentBranch() const;
  // Full sha of `rev` (a commit); NotFound when it does not resolve.
  Result<std::string> RevParse(const std::string& rev) const;
  Result<bool> RefExists(const std::string& ref) const;
  // True when `ancestor` is an ancestor of (or equal to) `descendant`.
  Result<bool> IsAncestor(const std::string& ancestor, const std::string& descendant) const;

  // `git branch <branch> <start>`: creates a branch without checking anything out.
  // AlreadyExists when it exists.
  Status CreateBranch(const std::string& branch, const std::string& start) const;
  // `git branch -d|-D <branch>`; force deletes unmerged work.
  Status DeleteBranch(const std::string& branch, bool force) const;
  // `git update-ref <ref> <new> [<old>]`: with `old` it is a compare-and-swap (Aborted when the
  // ref moved meanwhile).
  Status UpdateRef(const std::string& ref, const std::string& new_value,
                   const std::optional<std::string>& old_value = std::nullopt) const;

  // `git worktree add [-B <branch>] <path> <start>` (reset_branch: -B moves an existing branch
  // to start); `branch` empty: `--detach`.
  Status WorktreeAdd(const std::string& path, const std::string& branch, const std::string& start,
                     bool reset_branch) const;
  // `git worktree remove [--force] <path>`.
  Status WorktreeRemove(const std::string& path, bool force) const;
  Status WorktreePrune() const;
  Result<std::vector<GitWorktreeInfo>> WorktreeList() const;

  // `git status --porcelain` in dir() (untracked files included unless told otherwise).
  Result<std::string> StatusPorcelain(bool include_untracked = true) const;
  // `git add -A` then `git commit -m message` in dir(). Returns the new commit, or nullopt when
  // there was nothing to commit.
  Result<std::optional<std::string>> CommitAll(const std::string& message) const;
  // `git diff --name-only from to`.
  Result<std::vector<std::string>> DiffNameOnly(const std::string& from,
                                                const std::string& to) const;

  // Saves the complete state of the work tree in dir() (tracked changes, staged or not, and
  // untracked files that are not ignored) as a commit whose parent is HEAD, and points `ref` at
  // it. Uses a temporary index (GIT_INDEX_FILE), so neither the work tree nor its index change.
  // Returns the snapshot commit.
  Result<std::string> SnapshotToRef(const std::string& ref, const std::string& message) const;

  // `git merge --no-ff -m message <rev>` (no_ff=false: default fast-forward behaviour) in
  // dir(). On conflicts the merge is aborted (`git merge --abort`), the work tree is back where it
  // was, and the result lists the conflicting paths. Other failures are errors.
  Result<GitMergeResult> Merge(const std::string& rev, const std::string& message,
                               bool no_ff = true) const;

 private:
  std::map<std::string, std::string> BaseEnv() const;

  std::string dir_;
  GitIdentity identity_;
  int64_t timeout_ms_;
};

// Splits git output into non-empty lines.
std::vector<std::string> SplitLines(const std::string& text);

}  // namespace factory
