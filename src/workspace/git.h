#pragma once
// A small wrapper over the real `git` binary. Every command is an argv run through
// RunSubprocess (never a shell string), so no caller input is ever interpreted by a shell; refs
// and paths that could be read as options are placed after `--` or validated by the caller.
//
// Hardened: the factory runs git on trees an agent wrote, on the host, outside any sandbox, so
// nothing git reads from a tree or from configuration may run a program, follow a path the
// agent chose, or fetch:
//  - no system or global configuration (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null, HOME
//    pointing nowhere), no system attributes (GIT_ATTR_NOSYSTEM), no replace refs;
//  - command-scope overrides (GIT_CONFIG_COUNT, the environment form of `-c`, inherited by the
//    git processes git itself starts) for every key that runs a program or fetches:
//    core.fsmonitor, core.hooksPath, core.sshCommand, core.gitProxy, core.pager, core.editor,
//    core.askPass, credential.helper, diff.external, gpg programs and signing, protocol.allow,
//    submodule recursion, automatic gc (HardenedConfig() lists them all);
//  - drivers: an attribute (`filter=x`, `diff=x`, `merge=x`, from a `.gitattributes` the agent
//    wrote) resolves to a command only through `<section>.<x>.*` keys of the configuration, so
//    before each command the repository's configuration is read and every such driver is
//    neutralised by name (filters become no-ops, diff drivers never run, merge drivers become
//    `git merge-file`, git's own text merge). `diff`, `log` and `show` also get --no-ext-diff
//    and --no-textconv;
//  - a worktree an agent had is never found through its `.git` file: ForWorktree() checks that
//    file against what git wrote and then names the git dir and work tree explicitly.
// Identity comes from GitIdentity through the GIT_AUTHOR_* / GIT_COMMITTER_* variables, so no
// repository configuration is needed or changed.
//
// Errors: a git command that exits non-zero becomes an error (kUnavailable unless a more precise
// code applies) whose message names the command and carries the tail of git's stderr.
// Thread-safety: a Git object is immutable after construction; concurrent calls are safe as far
// as git itself allows (callers serialise operations on the same worktree or ref).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
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

// The prefix of every error that says a worktree's git link was not what the factory made.
inline constexpr char kTamperingPrefix[] = "tampering: ";

class Git {
 public:
  // `dir`: the directory commands run in (`git -C dir`): a repository, or one of its worktrees,
  // found by git's discovery. Only for trees no agent wrote (the user's repository).
  explicit Git(std::string dir, GitIdentity identity = {}, int64_t timeout_ms = 300'000);

  const std::string& dir() const { return dir_; }
  // The explicit git dir (`--git-dir`); empty when git discovers it from dir().
  const std::string& git_dir() const { return git_dir_; }
  const GitIdentity& identity() const { return identity_; }
  // The same settings in another directory, found by discovery (a checkout the user owns).
  Git At(std::string dir) const { return Git(std::move(dir), identity_, timeout_ms_); }
  // The same settings on an explicit git dir and work tree: no discovery at all.
  Git WithGitDir(std::string git_dir, std::string work_tree) const;

  // A worktree of this repository, addressed without trusting anything in it: checks that
  // `work_tree` is a real directory whose `.git` is a regular file reading exactly
  // "gitdir: <common>/worktrees/<id>", where <id> is the administrative folder whose own
  // `gitdir` names `work_tree`/.git and whose `commondir` is "../..", then returns a Git with
  // that git dir and work tree. `work_tree` must be absolute and canonical.
  // FailedPrecondition starting with kTamperingPrefix when anything differs; NotFound when no
  // administrative folder names the work tree (it is not, or no longer, a worktree).
  // REQUIRES: this object addresses the repository's main worktree (the user's checkout).
  Result<Git> ForWorktree(const std::string& work_tree) const;

  // Runs `git <args>`; the raw result, whatever the exit code (errors only when git could not
  // be started).
  Result<SubprocessResult> RunRaw(const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env = {}) const;
  // Runs `git <args>` and returns its stdout; a non-zero exit is an error with stderr's tail.
  Result<std::string> Run(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env = {}) const;
  // Run() with `input` on git's standard input.
  Result<std::string> RunWithInput(const std::vector<std::string>& args, const std::string& input,
                                   const std::map<std::string, std::string>& env = {}) const;

  // `git push --porcelain --no-verify --recurse-submodules=no -- <remote> <refspecs...>` to the
  // user's own remote, with the user's credentials: the one command that talks to the network.
  // It keeps the user's HOME, global and system configuration (credential helpers, url
  // rewrites, ssh command) and the variables that carry credentials, certificates or proxies
  // (SSH_AUTH_SOCK, GIT_SSH_COMMAND, GIT_ASKPASS, SSL_CERT_FILE, https_proxy...), and leaves the
  // transport keys to them (core.sshCommand, core.gitProxy, core.askPass, credential.helper,
  // protocol.*.allow; `ext`, which runs a command, stays refused). Every other override of
  // HardenedConfig() still applies: what is pushed was written by agents, and a pre-push hook or
  // an fsmonitor of the user's configuration would run the project's code outside the sandbox.
  // (The receiving repository runs its own hooks, as a server does, even when the remote is a
  // local path.) No terminal prompt (GIT_TERMINAL_PROMPT=0): credentials come from a helper or
  // an ssh agent.
  // The raw result, whatever the exit code (a rejected push is the caller's to explain).
  Result<SubprocessResult> PushToUserRemote(const std::string& remote,
                                            const std::vector<std::string>& refspecs) const;

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

  // `git status --porcelain` in dir() (untracked files included unless told otherwise;
  // submodules ignored).
  Result<std::string> StatusPorcelain(bool include_untracked = true) const;
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
  // kUserTransport: PushToUserRemote's relaxations (the user's configuration and credentials).
  enum class Access { kHardened, kUserTransport };

  Git(std::string dir, std::string git_dir, GitIdentity identity, int64_t timeout_ms);
  std::map<std::string, std::string> BaseEnv(Access access) const;
  std::vector<std::string> Prefix() const;
  Result<SubprocessResult> RunHardened(const std::vector<std::string>& args,
                                       const std::map<std::string, std::string>& env,
                                       const std::string& stdin_data,
                                       Access access = Access::kHardened) const;
  Result<SubprocessResult> Spawn(const std::vector<std::string>& args,
                                 const std::map<std::string, std::string>& env,
                                 const std::string& stdin_data, Access access) const;

  std::string dir_;
  std::string git_dir_;  // empty: discovery from dir_
  GitIdentity identity_;
  int64_t timeout_ms_;
};

// Splits git output into non-empty lines.
std::vector<std::string> SplitLines(const std::string& text);
// Splits NUL-terminated git output (`-z`) into non-empty fields.
std::vector<std::string> SplitNul(const std::string& text);

// The fixed command-scope configuration every command runs with (key, value), in order.
const std::vector<std::pair<std::string, std::string>>& HardenedConfig();

}  // namespace factory
