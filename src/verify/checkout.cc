#include "verify/checkout.h"

#include <filesystem>
#include <utility>

namespace factory {
namespace {

namespace fs = std::filesystem;

// Best effort: git forgets the worktree and the directory goes away. Gates ran in it, so git is
// asked to remove it only when its `.git` is still what git wrote (Git::ForWorktree); otherwise
// the directory is deleted by its path (remove_all never follows symbolic links) and prune
// forgets it.
Status RemoveWorktree(const Git& repo, const std::string& path) {
  std::error_code error;
  Status status = Ok();
  if (fs::symlink_status(path, error).type() != fs::file_type::not_found) {
    if (repo.ForWorktree(path)) status = repo.WorktreeRemove(path, /*force=*/true);
    fs::remove_all(path, error);  // git refuses a directory it does not know as a worktree
  }
  Status pruned = repo.WorktreePrune();
  if (!status) return status;
  if (fs::exists(path, error)) return Internal("cannot remove checkout " + path);
  return pruned;
}

}  // namespace

CleanCheckout::CleanCheckout(Git repo, std::string path, std::string commit)
    : repo_(std::move(repo)), path_(std::move(path)), commit_(std::move(commit)) {}

CleanCheckout::CleanCheckout(CleanCheckout&& other) noexcept
    : repo_(other.repo_),
      path_(std::exchange(other.path_, {})),
      commit_(std::exchange(other.commit_, {})) {}

CleanCheckout& CleanCheckout::operator=(CleanCheckout&& other) noexcept {
  if (this != &other) {
    (void)Remove();
    repo_ = other.repo_;
    path_ = std::exchange(other.path_, {});
    commit_ = std::exchange(other.commit_, {});
  }
  return *this;
}

CleanCheckout::~CleanCheckout() { (void)Remove(); }

Status CleanCheckout::Remove() {
  if (path_.empty()) return Ok();
  std::string path = std::exchange(path_, {});
  return RemoveWorktree(repo_, path);
}

Result<CleanCheckout> MakeCleanCheckout(Git& repo, const std::string& commit,
                                        const std::string& dir) {
  if (dir.empty() || dir.front() != '/') {
    return InvalidArgument("a checkout directory must be an absolute path: '" + dir + "'");
  }
  auto sha = repo.RevParse(commit);
  if (!sha) return std::unexpected(sha.error());
  std::error_code error;
  if (fs::exists(dir, error)) {
    auto removed = RemoveWorktree(repo, dir);
    if (!removed) return std::unexpected(removed.error().Wrap("removing leftover checkout"));
  }
  fs::create_directories(fs::path(dir).parent_path(), error);
  if (error) return Internal("cannot create " + fs::path(dir).parent_path().string());
  auto added = repo.WorktreeAdd(dir, /*branch=*/"", *sha, /*reset_branch=*/false);
  if (!added) return std::unexpected(added.error().Wrap("checking out " + *sha));
  return CleanCheckout(repo, dir, *sha);
}

}  // namespace factory
