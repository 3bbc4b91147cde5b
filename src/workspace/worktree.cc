#include "workspace/worktree.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace factory {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kExcludeLines[] = {"/.factory/worktrees/", "/.factory/merge.lock"};

std::string Canonical(const std::string& path) {
  std::error_code error;
  fs::path canonical = fs::weakly_canonical(path, error);
  return error ? path : canonical.string();
}

// True when `path` is strictly below `dir` (both canonical).
bool IsUnder(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() + 1 && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

std::string WorktreeName(std::string_view task_id, int attempt) {
  return std::string(task_id) + "-" + std::to_string(attempt);
}

// Parses "<task>-<n>" back into the attempt number (0 when it does not parse).
int AttemptFromDirName(const std::string& name, std::string_view task_id) {
  if (name.size() <= task_id.size() + 1 || name.compare(0, task_id.size(), task_id) != 0 ||
      name[task_id.size()] != '-') {
    return 0;
  }
  try {
    return std::stoi(name.substr(task_id.size() + 1));
  } catch (...) {
    return 0;
  }
}

}  // namespace

WorkspaceManager::WorkspaceManager(std::string root, std::string common_dir,
                                   std::string base_branch, Git git)
    : root_(std::move(root)),
      common_dir_(std::move(common_dir)),
      base_branch_(std::move(base_branch)),
      git_(std::move(git)) {}

Result<std::unique_ptr<WorkspaceManager>> WorkspaceManager::Open(WorkspaceOptions options) {
  Git probe(options.repo_path.empty() ? "." : options.repo_path, options.identity,
            options.git_timeout_ms);
  FACTORY_ASSIGN_OR_RETURN(bool is_repo, probe.IsRepo());
  if (!is_repo) {
    return FailedPrecondition("not inside a git work tree: " + options.repo_path);
  }
  FACTORY_ASSIGN_OR_RETURN(std::string common_dir, probe.CommonDir());
  common_dir = Canonical(common_dir);
  // The main worktree is the one that owns the common directory (<root>/.git); worktrees the
  // factory creates live under it, whichever worktree the caller started from.
  if (fs::path(common_dir).filename() != ".git") {
    return FailedPrecondition("bare repositories are not supported: " + common_dir);
  }
  std::string root = fs::path(common_dir).parent_path().string();
  Git git(root, options.identity, options.git_timeout_ms);

  std::string base = options.base_branch;
  if (base.empty()) {
    FACTORY_ASSIGN_OR_RETURN(std::optional<std::string> current, git.CurrentBranch());
    if (!current) {
      return FailedPrecondition("HEAD of " + root +
                                " is detached; set base_branch in the configuration");
    }
    base = *current;
  }
  FACTORY_ASSIGN_OR_RETURN(bool base_exists, git.RefExists("refs/heads/" + base));
  if (!base_exists) return FailedPrecondition("base branch does not exist: " + base);

  std::unique_ptr<WorkspaceManager> manager(
      new WorkspaceManager(std::move(root), std::move(common_dir), std::move(base), git));
  FACTORY_RETURN_IF_ERROR(manager->EnsureExcluded());
  return manager;
}

Status WorkspaceManager::EnsureExcluded() const {
  fs::path info = fs::path(common_dir_) / "info";
  fs::path exclude = info / "exclude";
  std::string content;
  {
    std::ifstream in(exclude);
    std::stringstream buffer;
    buffer << in.rdbuf();
    content = buffer.str();
  }
  std::string missing;
  for (std::string_view line : kExcludeLines) {
    bool present = false;
    std::istringstream lines(content);
    for (std::string existing; std::getline(lines, existing);) {
      if (existing == line) present = true;
    }
    if (!present) missing += std::string(line) + "\n";
  }
  if (missing.empty()) return Ok();
  std::error_code error;
  fs::create_directories(info, error);
  std::ofstream out(exclude, std::ios::app);
  if (!content.empty() && content.back() != '\n') out << '\n';
  out << "# Agent Factory runtime files\n" << missing;
  if (!out) return Unavailable("cannot update " + exclude.string());
  return Ok();
}

std::string WorkspaceManager::FactoryDir() const { return root_ + "/.factory"; }

std::string WorkspaceManager::RunWorktreesDir(std::string_view run_id) const {
  return FactoryDir() + "/worktrees/" + std::string(run_id);
}

std::string WorkspaceManager::IntegrationBranch(std::string_view run_id) {
  return "factory/" + std::string(run_id);
}

std::string WorkspaceManager::TaskBranch(std::string_view run_id, std::string_view task_id) {
  return "factory-task/" + std::string(run_id) + "/" + std::string(task_id);
}

Status WorkspaceManager::ValidateId(std::string_view what, std::string_view id) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument(std::string(what) + " '" + std::string(id) + "' " + std::string(why));
  };
  if (id.empty()) return bad("is empty");
  if (id.size() > 128) return bad("is longer than 128 characters");
  if (id.front() == '.' || id.front() == '-') return bad("must not start with '.' or '-'");
  if (id.find("..") != std::string_view::npos) return bad("must not contain '..'");
  if (id.size() >= 5 && id.substr(id.size() - 5) == ".lock") return bad("must not end in .lock");
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return bad("may contain only letters, digits, '.', '_' and '-'");
  }
  return Ok();
}

Result<std::string> WorkspaceManager::EnsureIntegrationBranch(const std::string& run_id) {
  FACTORY_RETURN_IF_ERROR(ValidateId("run id", run_id));
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string branch = IntegrationBranch(run_id);
  auto tip = git_.RevParse("refs/heads/" + branch);
  if (tip) return *tip;
  if (tip.error().code != ErrorCode::kNotFound) return std::unexpected(tip.error());
  auto created = git_.CreateBranch(branch, "refs/heads/" + base_branch_);
  // Another process may have created it between our check and git branch: that is success.
  if (!created && created.error().code != ErrorCode::kAlreadyExists) {
    return std::unexpected(created.error());
  }
  return git_.RevParse("refs/heads/" + branch);
}

Result<AttemptWorkspace> WorkspaceManager::CreateAttempt(const std::string& run_id,
                                                         const std::string& task_id, int attempt) {
  FACTORY_RETURN_IF_ERROR(ValidateId("run id", run_id));
  FACTORY_RETURN_IF_ERROR(ValidateId("task id", task_id));
  if (attempt < 1) return InvalidArgument("attempt must be >= 1");
  std::lock_guard<std::mutex> lock(mutex_);

  const std::string integration = IntegrationBranch(run_id);
  auto tip = git_.RevParse("refs/heads/" + integration);
  if (!tip) {
    if (tip.error().code == ErrorCode::kNotFound) {
      return FailedPrecondition("integration branch " + integration + " does not exist");
    }
    return std::unexpected(tip.error());
  }

  AttemptWorkspace workspace;
  workspace.run_id = run_id;
  workspace.task_id = task_id;
  workspace.attempt = attempt;
  workspace.branch = TaskBranch(run_id, task_id);
  workspace.path = RunWorktreesDir(run_id) + "/" + WorktreeName(task_id, attempt);
  workspace.start_commit = *tip;

  // Leftovers: an earlier attempt's worktree still holding the branch (git refuses to reset a
  // branch checked out elsewhere), or this very path after a crash.
  FACTORY_RETURN_IF_ERROR(git_.WorktreePrune());
  FACTORY_ASSIGN_OR_RETURN(std::vector<GitWorktreeInfo> worktrees, git_.WorktreeList());
  const std::string branch_ref = "refs/heads/" + workspace.branch;
  const std::string target = Canonical(workspace.path);
  for (const auto& info : worktrees) {
    if (info.branch != branch_ref && Canonical(info.path) != target) continue;
    if (!IsUnder(Canonical(info.path), Canonical(RunWorktreesDir(run_id)))) {
      // Someone checked the task branch out in their own worktree: never remove that.
      return FailedPrecondition(workspace.branch + " is checked out in " + info.path +
                                ", which the factory does not own; check out another branch "
                                "there");
    }
    AttemptWorkspace stale = workspace;
    stale.path = info.path;
    stale.attempt = AttemptFromDirName(fs::path(info.path).filename().string(), task_id);
    FACTORY_RETURN_IF_ERROR(RemoveAttemptLocked(stale));
  }
  std::error_code error;
  if (fs::exists(workspace.path, error) && !fs::is_empty(workspace.path, error)) {
    return FailedPrecondition("path exists and is not a worktree of this repository: " +
                              workspace.path);
  }

  // The branch's earlier commits stay reachable if they never merged (normally RemoveAttempt
  // already saved them under the same name).
  FACTORY_ASSIGN_OR_RETURN(bool branch_exists, git_.RefExists(branch_ref));
  if (branch_exists) {
    FACTORY_ASSIGN_OR_RETURN(std::string old_tip, git_.RevParse(branch_ref));
    FACTORY_ASSIGN_OR_RETURN(bool merged, git_.IsAncestor(old_tip, *tip));
    if (!merged) {
      const std::string ref = "refs/factory/attempts/" + run_id + "/" +
                              WorktreeName(task_id, attempt > 1 ? attempt - 1 : 0);
      FACTORY_ASSIGN_OR_RETURN(bool saved, git_.RefExists(ref));
      if (!saved) FACTORY_RETURN_IF_ERROR(git_.UpdateRef(ref, old_tip));
    }
  }

  fs::create_directories(RunWorktreesDir(run_id), error);
  if (error) {
    return Unavailable("cannot create " + RunWorktreesDir(run_id) + ": " + error.message());
  }
  FACTORY_RETURN_IF_ERROR(
      git_.WorktreeAdd(workspace.path, workspace.branch, workspace.start_commit, true));
  return workspace;
}

Result<std::optional<std::string>> WorkspaceManager::CommitAttempt(
    const AttemptWorkspace& workspace, const std::string& message) const {
  return git_.At(workspace.path).CommitAll(message);
}

Result<std::vector<std::string>> WorkspaceManager::ChangedPaths(
    const AttemptWorkspace& workspace) const {
  return git_.DiffNameOnly(workspace.start_commit, "refs/heads/" + workspace.branch);
}

Result<RemovedAttempt> WorkspaceManager::RemoveAttempt(const AttemptWorkspace& workspace) {
  FACTORY_RETURN_IF_ERROR(ValidateId("run id", workspace.run_id));
  FACTORY_RETURN_IF_ERROR(ValidateId("task id", workspace.task_id));
  std::lock_guard<std::mutex> lock(mutex_);
  return RemoveAttemptLocked(workspace);
}

Result<RemovedAttempt> WorkspaceManager::RemoveAttemptLocked(const AttemptWorkspace& workspace) {
  if (!IsUnder(Canonical(workspace.path), Canonical(FactoryDir() + "/worktrees"))) {
    return InvalidArgument("not a factory worktree: " + workspace.path);
  }
  RemovedAttempt removed;
  const std::string name = WorktreeName(workspace.task_id, workspace.attempt);
  std::error_code error;
  const bool present = fs::exists(fs::path(workspace.path) / ".git", error);
  if (present) {
    Git tree = git_.At(workspace.path);
    FACTORY_ASSIGN_OR_RETURN(std::string status, tree.StatusPorcelain());
    if (!status.empty()) {
      const std::string ref = "refs/factory/snapshots/" + workspace.run_id + "/" + name;
      FACTORY_RETURN_IF_ERROR(tree.SnapshotToRef(
          ref, "factory: snapshot of " + workspace.task_id + " attempt " +
                   std::to_string(workspace.attempt) + " before removal\n\nFactory-Task: " +
                   workspace.task_id + "\nFactory-Run: " + workspace.run_id + "\n"));
      removed.snapshot_ref = ref;
    }
  }

  // Commits on the branch that the integration branch does not contain are saved by name.
  const std::string branch_ref = "refs/heads/" + workspace.branch;
  FACTORY_ASSIGN_OR_RETURN(bool branch_exists, git_.RefExists(branch_ref));
  if (branch_exists) {
    FACTORY_ASSIGN_OR_RETURN(std::string branch_tip, git_.RevParse(branch_ref));
    auto integration_tip = git_.RevParse("refs/heads/" + IntegrationBranch(workspace.run_id));
    bool merged = false;
    if (integration_tip) {
      FACTORY_ASSIGN_OR_RETURN(merged, git_.IsAncestor(branch_tip, *integration_tip));
    }
    if (!merged) {
      const std::string ref = "refs/factory/attempts/" + workspace.run_id + "/" + name;
      FACTORY_RETURN_IF_ERROR(git_.UpdateRef(ref, branch_tip));
      removed.attempt_ref = ref;
    }
  }

  if (present) {
    FACTORY_RETURN_IF_ERROR(git_.WorktreeRemove(workspace.path, /*force=*/true));
  }
  FACTORY_RETURN_IF_ERROR(git_.WorktreePrune());
  return removed;
}

Status WorkspaceManager::DeleteBranch(const std::string& branch, bool force) {
  std::lock_guard<std::mutex> lock(mutex_);
  return git_.DeleteBranch(branch, force);
}

Result<BaseMergeResult> WorkspaceManager::MergeIntoBase(const std::string& run_id) {
  FACTORY_RETURN_IF_ERROR(ValidateId("run id", run_id));
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string integration = IntegrationBranch(run_id);
  const std::string base_ref = "refs/heads/" + base_branch_;
  auto integration_tip = git_.RevParse("refs/heads/" + integration);
  if (!integration_tip) {
    return FailedPrecondition("integration branch " + integration + " does not exist");
  }
  BaseMergeResult result;
  result.base_branch = base_branch_;
  FACTORY_ASSIGN_OR_RETURN(result.old_tip, git_.RevParse(base_ref));
  FACTORY_ASSIGN_OR_RETURN(bool up_to_date, git_.IsAncestor(*integration_tip, result.old_tip));
  if (up_to_date) {
    result.up_to_date = true;
    result.new_tip = result.old_tip;
    return result;
  }
  FACTORY_ASSIGN_OR_RETURN(bool fast_forward, git_.IsAncestor(result.old_tip, *integration_tip));

  FACTORY_ASSIGN_OR_RETURN(std::vector<GitWorktreeInfo> worktrees, git_.WorktreeList());
  for (const auto& info : worktrees) {
    if (info.branch != base_ref) continue;
    // The base is someone's checkout: move it only in ways that cannot lose or mix anything.
    Git checkout = git_.At(info.path);
    FACTORY_ASSIGN_OR_RETURN(std::string tracked_changes,
                             checkout.StatusPorcelain(/*include_untracked=*/false));
    if (!tracked_changes.empty()) {
      return FailedPrecondition(base_branch_ + " is checked out in " + info.path +
                                " with uncommitted changes; commit or stash them, then retry");
    }
    if (!fast_forward) {
      return FailedPrecondition(base_branch_ + " is checked out in " + info.path + " and has " +
                                "moved since the run started; merge " + base_branch_ + " into " +
                                integration + " or check out another branch there");
    }
    auto merged = checkout.Run({"merge", "--ff-only", "--quiet", *integration_tip});
    if (!merged) {
      return FailedPrecondition("cannot fast-forward the checkout in " + info.path + ": " +
                                merged.error().message);
    }
    result.fast_forward = true;
    result.checkout_updated = info.path;
    result.new_tip = *integration_tip;
    return result;
  }

  if (fast_forward) {
    FACTORY_RETURN_IF_ERROR(git_.UpdateRef(base_ref, *integration_tip, result.old_tip));
    result.fast_forward = true;
    result.new_tip = *integration_tip;
    return result;
  }

  // A real merge, made in a private detached worktree so no checkout is involved.
  const std::string temp_path = RunWorktreesDir(run_id) + "/_base-merge";
  std::error_code error;
  if (fs::exists(temp_path, error)) {
    (void)git_.WorktreeRemove(temp_path, /*force=*/true);
    (void)git_.WorktreePrune();
  }
  fs::create_directories(RunWorktreesDir(run_id), error);
  FACTORY_RETURN_IF_ERROR(git_.WorktreeAdd(temp_path, "", result.old_tip, false));
  Git temp = git_.At(temp_path);
  auto merge = temp.Merge(*integration_tip, "factory: merge run " + run_id + " into " +
                                                base_branch_ + "\n\nFactory-Run: " + run_id + "\n");
  Status update = Ok();
  if (merge && merge->merged) {
    update = git_.UpdateRef(base_ref, merge->commit, result.old_tip);
  }
  (void)git_.WorktreeRemove(temp_path, /*force=*/true);
  (void)git_.WorktreePrune();
  if (!merge) return std::unexpected(merge.error());
  if (!merge->merged) {
    std::string paths;
    for (const auto& path : merge->conflicts) paths += (paths.empty() ? "" : ", ") + path;
    return Aborted("merging " + integration + " into " + base_branch_ + " conflicts in: " + paths);
  }
  FACTORY_RETURN_IF_ERROR(update);
  result.new_tip = merge->commit;
  return result;
}

}  // namespace factory
