#pragma once
// A clean checkout of one commit for the gates: a detached git worktree, so the gates see
// exactly the committed tree and none of the agent's untracked or ignored leftovers. Made with
// the hardened git of workspace/git.h, so no filter or hook named by the committed tree (its
// `.gitattributes`) runs on the host while checking it out.

#include <string>

#include "core/result.h"
#include "workspace/git.h"

namespace factory {

// Owns a detached worktree and removes it (`git worktree remove --force`, then `git worktree
// prune`, then whatever is left of the directory) when destroyed or Remove()d. Move-only.
// REQUIRES: at most one live CleanCheckout per directory (an older owner destroyed after a new
// checkout took its directory would remove the new one).
// Thread-safety: one object is used by one thread; distinct checkouts of one repository may be
// made and removed concurrently as far as git's own locking allows.
class CleanCheckout {
 public:
  CleanCheckout(Git repo, std::string path, std::string commit);
  CleanCheckout(CleanCheckout&& other) noexcept;
  CleanCheckout& operator=(CleanCheckout&& other) noexcept;
  CleanCheckout(const CleanCheckout&) = delete;
  CleanCheckout& operator=(const CleanCheckout&) = delete;
  ~CleanCheckout();

  // Absolute path of the checkout; empty after Remove() or a move.
  const std::string& path() const { return path_; }
  // The full sha checked out.
  const std::string& commit() const { return commit_; }

  // Removes the checkout now and reports how that went (the destructor ignores errors).
  // Removing twice is a no-op.
  Status Remove();

 private:
  Git repo_;
  std::string path_;
  std::string commit_;
};

// Checks out `commit` (any revision that names a commit) detached at `dir` (created; its parent
// must exist or is created). A leftover checkout at `dir` (from a crash) is removed first.
// NotFound when the commit does not resolve; InvalidArgument when `dir` is not absolute;
// otherwise git's error.
Result<CleanCheckout> MakeCleanCheckout(Git& repo, const std::string& commit,
                                        const std::string& dir);

}  // namespace factory
