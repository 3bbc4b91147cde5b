#include "workspace/worktree.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
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

bool IsTampering(const Error& error) {
  return error.code == ErrorCode::kFailedPrecondition &&
         error.message.rfind(kTamperingPrefix, 0) == 0;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

std::string JoinList(const std::vector<std::string>& items, const std::string& separator) {
  std::string joined;
  for (const auto& item : items) joined += (joined.empty() ? "" : separator) + item;
  return joined;
}

// A temporary directory removed with everything in it on destruction.
class TempTree {
 public:
  static Result<TempTree> Make() {
    std::string tmpl = (fs::temp_directory_path() / "factory-commit-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return Unavailable("mkdtemp for a commit check failed");
    return TempTree(tmpl);
  }
  TempTree(TempTree&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempTree& operator=(TempTree&&) = delete;
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;
  ~TempTree() {
    if (path_.empty()) return;
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempTree(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

bool WriteWholeFile(const fs::path& path, const std::string& content) {
  std::error_code error;
  fs::create_directories(path.parent_path(), error);
  if (error) return false;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  return static_cast<bool>(out);
}

// A path git printed is relative and has no "." or ".." component; anything else is skipped.
bool IsPlainRelative(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == "." || part == "..") return false;
  }
  return true;
}

// Why a symbolic link at `path` (relative to the worktree) with `target` could reach outside the
// worktree, or "" when it cannot. Leading ".." may climb at most as far as the link's folder is
// deep; a ".." after a name is refused too, since that name may itself be a link elsewhere.
std::string SymlinkEscape(const std::string& path, const std::string& target) {
  if (target.empty()) return "";
  if (target.front() == '/') return "is absolute";
  int depth = static_cast<int>(std::count(path.begin(), path.end(), '/'));
  bool named = false;
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string::npos) end = target.size();
    const std::string part = target.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (named) return "climbs back up after a name";
      if (--depth < 0) return "leaves the worktree";
      continue;
    }
    named = true;
  }
  return "";
}

// Agent-written text for a message: printable ASCII only, shortened.
std::string Printable(const std::string& text) {
  std::string printable;
  for (char c : text.substr(0, 200)) printable += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > 200) printable += "...";
  return printable;
}

std::string Mebibytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

// One entry of `git diff-index --raw -z`.
struct RawChange {
  std::string old_mode;
  std::string new_mode;
  std::string old_blob;
  std::string new_blob;
  char status = 0;
  std::string path;
};

std::vector<RawChange> ParseRawDiff(const std::string& out) {
  std::vector<RawChange> changes;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t header_end = out.find('\0', pos);
    if (header_end == std::string::npos) break;
    const std::string header = out.substr(pos, header_end - pos);
    size_t path_end = out.find('\0', header_end + 1);
    if (path_end == std::string::npos) path_end = out.size();
    pos = path_end + 1;
    std::istringstream fields(header.size() > 1 && header[0] == ':' ? header.substr(1) : header);
    RawChange change;
    std::string status;
    if (!(fields >> change.old_mode >> change.new_mode >> change.old_blob >> change.new_blob >>
          status) ||
        status.empty()) {
      continue;
    }
    change.status = status[0];
    change.path = out.substr(header_end + 1, path_end - header_end - 1);
    changes.push_back(std::move(change));
  }
  return changes;
}

// Sizes of blobs (`git cat-file --batch-check`), in the order asked.
Result<std::vector<int64_t>> BlobSizes(const Git& git, const std::vector<std::string>& blobs) {
  std::string input;
  for (const auto& blob : blobs) input += blob + "\n";
  FACTORY_ASSIGN_OR_RETURN(std::string out,
                           git.RunWithInput({"cat-file", "--batch-check=%(objectsize)"}, input));
  std::vector<int64_t> sizes;
  for (const auto& line : SplitLines(out)) {
    try {
      sizes.push_back(std::stoll(line));
    } catch (...) {
      sizes.push_back(-1);  // "<blob> missing": nothing to check
    }
  }
  if (sizes.size() != blobs.size()) return Unavailable("git cat-file answered for too few blobs");
  return sizes;
}

// Contents of blobs (`git cat-file --batch`), asked in chunks so no answer exceeds what Run()
// keeps of git's output.
Result<std::vector<std::string>> BlobContents(const Git& git, const std::vector<std::string>& blobs,
                                              const std::vector<int64_t>& sizes) {
  constexpr int64_t kChunkBytes = 16 << 20;
  std::vector<std::string> contents;
  size_t index = 0;
  while (index < blobs.size()) {
    std::string input;
    int64_t chunk = 0;
    size_t end = index;
    while (end < blobs.size() && (end == index || chunk + sizes[end] <= kChunkBytes)) {
      input += blobs[end] + "\n";
      chunk += std::max<int64_t>(sizes[end], 0);
      ++end;
    }
    FACTORY_ASSIGN_OR_RETURN(std::string out, git.RunWithInput({"cat-file", "--batch"}, input));
    size_t pos = 0;
    for (size_t at = index; at < end; ++at) {
      const size_t line_end = out.find('\n', pos);
      if (line_end == std::string::npos) return Unavailable("git cat-file --batch was cut short");
      const std::string header = out.substr(pos, line_end - pos);
      pos = line_end + 1;
      const size_t space = header.rfind(' ');
      if (header.ends_with(" missing") || space == std::string::npos) {
        contents.emplace_back();
        continue;
      }
      int64_t size = 0;
      try {
        size = std::stoll(header.substr(space + 1));
      } catch (...) {
        return Unavailable("unexpected git cat-file answer: " + header);
      }
      if (pos + static_cast<size_t>(size) > out.size()) {
        return Unavailable("git cat-file --batch was cut short");
      }
      contents.push_back(out.substr(pos, static_cast<size_t>(size)));
      pos += static_cast<size_t>(size) + 1;  // the content, then a newline
    }
    index = end;
  }
  return contents;
}

constexpr char kNestedRepoPlaceholder[] = ".factory-nested-repository";

// Which of the worktree's `untracked` files (from `ls-files --others`) the project leaves out:
// those ignored by the .gitignore files of `start_commit` or matching `patterns`. The check runs
// on a scratch tree holding the start commit's .gitignore files and an empty stand-in for each
// candidate, so what the agent did to its own .gitignore files cannot un-ignore anything.
// A folder left out whole comes back once, ending in '/', without its contents.
Result<std::vector<std::string>> PolicyExcluded(const Git& tree, const std::string& start_commit,
                                                const std::vector<std::string>& untracked,
                                                const std::vector<std::string>& patterns) {
  std::vector<std::string> excluded;
  if (untracked.empty()) return excluded;
  FACTORY_ASSIGN_OR_RETURN(TempTree scratch, TempTree::Make());
  const fs::path root = fs::path(scratch.path()) / "tree";
  const fs::path patterns_file = fs::path(scratch.path()) / "exclude";
  std::string pattern_text;
  for (const auto& pattern : patterns) pattern_text += pattern + "\n";
  if (!WriteWholeFile(patterns_file, pattern_text)) {
    return Unavailable("cannot write " + patterns_file.string());
  }
  std::error_code error;
  fs::create_directories(root, error);
  FACTORY_ASSIGN_OR_RETURN(std::string listing, tree.Run({"ls-tree", "-r", "-z", "--full-tree",
                                                          "--name-only", start_commit}));
  for (const std::string& path : SplitNul(listing)) {
    if (fs::path(path).filename() != ".gitignore" || !IsPlainRelative(path)) continue;
    FACTORY_ASSIGN_OR_RETURN(std::string rules,
                             tree.Run({"cat-file", "blob", start_commit + ":" + path}));
    WriteWholeFile(root / path, rules);  // a path the attempt turned into a folder: skipped
  }
  for (const std::string& path : untracked) {
    if (!IsPlainRelative(path)) continue;
    if (path.back() == '/') {  // a nested repository: a folder with something in it
      WriteWholeFile(root / path / kNestedRepoPlaceholder, "");
    } else if (!fs::exists(root / path, error)) {
      WriteWholeFile(root / path, "");
    }
  }
  // The worktree's own index tells tracked from untracked; the rules are the scratch tree's.
  Git scratch_git = tree.WithGitDir(tree.git_dir(), root.string());
  FACTORY_ASSIGN_OR_RETURN(
      std::string out,
      scratch_git.Run({"ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                       "--directory", "--exclude-from=" + patterns_file.string()}));
  const std::string placeholder_suffix = std::string("/") + kNestedRepoPlaceholder;
  for (std::string path : SplitNul(out)) {
    if (path.ends_with(placeholder_suffix)) {
      path.resize(path.size() - std::string(kNestedRepoPlaceholder).size());
    }
    excluded.push_back(std::move(path));
  }
  // git lists a folder whose every untracked file is ignored, then its contents again: the
  // folder alone says it.
  std::sort(excluded.begin(), excluded.end());
  std::vector<std::string> outermost;
  for (auto& path : excluded) {
    if (!outermost.empty() && outermost.back().back() == '/' &&
        path.starts_with(outermost.back())) {
      continue;
    }
    outermost.push_back(std::move(path));
  }
  return outermost;
}

}  // namespace

const std::vector<std::string>& DefaultCommitExcludes() {
  static const auto* const patterns =
      new std::vector<std::string>{"__pycache__/",  "*.pyc",        "*.pyo", ".pytest_cache/",
                                   ".mypy_cache/",  ".ruff_cache/", ".tox/", ".venv/",
                                   "node_modules/", "*.o",          "*.obj", ".DS_Store"};
  return *patterns;
}

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
    const AttemptWorkspace& workspace, const std::string& message, const CommitPolicy& policy,
    std::vector<std::string>* excluded_paths) const {
  if (excluded_paths != nullptr) excluded_paths->clear();
  FACTORY_RETURN_IF_ERROR(ValidateId("run id", workspace.run_id));
  FACTORY_RETURN_IF_ERROR(ValidateId("task id", workspace.task_id));
  FACTORY_ASSIGN_OR_RETURN(Git tree, git_.ForWorktree(workspace.path));
  const std::string branch_ref = "refs/heads/" + workspace.branch;
  FACTORY_ASSIGN_OR_RETURN(std::string tip, git_.RevParse(branch_ref));
  FACTORY_ASSIGN_OR_RETURN(bool descends, git_.IsAncestor(workspace.start_commit, tip));
  if (!descends) {
    return FailedPrecondition(std::string(kTamperingPrefix) + workspace.branch +
                              " no longer descends from the attempt's start commit " +
                              workspace.start_commit);
  }

  // The index is rebuilt from the branch (keeping git's cached file stats), so nothing staged
  // behind the factory's back (`git add -f` of an ignored file) rides along.
  FACTORY_RETURN_IF_ERROR(tree.Run({"read-tree", "-m", tip}));
  FACTORY_ASSIGN_OR_RETURN(std::string others,
                           tree.Run({"ls-files", "-z", "--others", "--exclude-standard"}));
  FACTORY_ASSIGN_OR_RETURN(
      std::vector<std::string> excluded,
      PolicyExcluded(tree, workspace.start_commit, SplitNul(others), policy.exclude));
  std::string pathspecs = std::string(".") + '\0';
  for (const auto& path : excluded) {
    std::string literal = path;
    if (!literal.empty() && literal.back() == '/') literal.pop_back();
    pathspecs += ":(exclude,literal)" + literal + '\0';
  }
  FACTORY_RETURN_IF_ERROR(
      tree.RunWithInput({"add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"}, pathspecs));
  if (excluded_paths != nullptr) *excluded_paths = excluded;

  // The whole change of the attempt, as it would be committed.
  FACTORY_ASSIGN_OR_RETURN(std::string raw,
                           tree.Run({"diff-index", "--cached", "--raw", "-z", "--no-renames",
                                     workspace.start_commit, "--"}));
  std::vector<std::string> problems;
  std::vector<RawChange> files;  // regular files and links added or changed
  for (RawChange& change : ParseRawDiff(raw)) {
    if (change.status == 'D' || change.new_mode == "000000") continue;
    if (change.new_mode == "160000") {
      problems.push_back("the attempt adds " + change.path +
                         ", a git repository of its own (remove its .git folder)");
      continue;
    }
    files.push_back(std::move(change));
  }
  std::vector<std::string> blobs;
  for (const auto& change : files) blobs.push_back(change.new_blob);
  FACTORY_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, BlobSizes(tree, blobs));
  std::vector<NamedSecret> secrets;
  for (const auto& secret : policy.secrets) {
    if (secret.value.size() >= kMinSecretLength) secrets.push_back(secret);
  }
  std::vector<std::string> scan_blobs;  // links, and every file when there are secrets
  std::vector<int64_t> scan_sizes;
  std::vector<size_t> scanned;  // index into `files`
  for (size_t index = 0; index < files.size(); ++index) {
    const RawChange& change = files[index];
    if (policy.max_file_bytes > 0 && sizes[index] > policy.max_file_bytes) {
      problems.push_back("the attempt adds " + change.path + " (" + Mebibytes(sizes[index]) +
                         "), above the " + Mebibytes(policy.max_file_bytes) +
                         " limit for one file (commit.max_file_mb)");
      continue;
    }
    if (secrets.empty() && change.new_mode != "120000") continue;
    scanned.push_back(index);
    scan_blobs.push_back(change.new_blob);
    scan_sizes.push_back(sizes[index]);
  }
  if (!scanned.empty()) {
    FACTORY_ASSIGN_OR_RETURN(std::vector<std::string> contents,
                             BlobContents(tree, scan_blobs, scan_sizes));
    for (size_t at = 0; at < scanned.size(); ++at) {
      const RawChange& change = files[scanned[at]];
      const std::string& content = contents[at];
      if (change.new_mode == "120000") {
        const std::string why = SymlinkEscape(change.path, content);
        if (!why.empty()) {
          problems.push_back("the attempt adds a symbolic link " + change.path + " -> " +
                             Printable(content) + " that " + why +
                             " (links must stay inside the worktree)");
        }
      }
      std::vector<std::string> found;
      for (const auto& secret : secrets) {
        if (content.find(secret.value) != std::string::npos) found.push_back(secret.name);
      }
      if (found.empty()) continue;
      // Present before the attempt: not added by it.
      if (change.old_mode != "000000" && change.old_mode != "160000") {
        FACTORY_ASSIGN_OR_RETURN(std::string before,
                                 tree.Run({"cat-file", "blob", change.old_blob}));
        std::erase_if(found, [&](const std::string& name) {
          for (const auto& secret : secrets) {
            if (secret.name == name && before.find(secret.value) != std::string::npos) {
              return true;
            }
          }
          return false;
        });
      }
      for (const auto& name : found) {
        problems.push_back("the attempt adds a secret (the value of " + name + ") in " +
                           change.path);
      }
    }
  }
  if (!problems.empty()) return FailedPrecondition(JoinList(problems, "; "));

  FACTORY_ASSIGN_OR_RETURN(std::string written, tree.Run({"write-tree"}));
  const std::string tree_id = Trimmed(written);
  FACTORY_ASSIGN_OR_RETURN(std::string tip_tree, git_.Run({"rev-parse", tip + "^{tree}"}));
  if (tree_id == Trimmed(tip_tree)) return std::optional<std::string>();
  FACTORY_ASSIGN_OR_RETURN(
      std::string made, tree.RunWithInput({"commit-tree", tree_id, "-p", tip, "-F", "-"}, message));
  const std::string commit = Trimmed(made);
  FACTORY_RETURN_IF_ERROR(git_.UpdateRef(branch_ref, commit, tip));
  return std::optional<std::string>(commit);
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
  const bool present = fs::symlink_status(workspace.path, error).type() != fs::file_type::not_found;
  std::optional<Git> tree;
  if (present) {
    auto verified = git_.ForWorktree(workspace.path);
    if (verified) {
      tree = std::move(*verified);
    } else if (IsTampering(verified.error())) {
      removed.tampering = verified.error().message;
    } else if (verified.error().code != ErrorCode::kNotFound) {
      return std::unexpected(verified.error());
    }  // NotFound: a folder git no longer knows (a crash between its steps); just delete it
  }
  if (tree) {
    FACTORY_ASSIGN_OR_RETURN(std::string status, tree->StatusPorcelain());
    if (!status.empty()) {
      const std::string ref = "refs/factory/snapshots/" + workspace.run_id + "/" + name;
      FACTORY_RETURN_IF_ERROR(tree->SnapshotToRef(
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
    // git removes a worktree it can vouch for; anything else (a tampered link, a nested
    // repository git refuses to remove) is deleted by the path the factory computed.
    // remove_all deletes symbolic links, never what they point to.
    if (!tree || !git_.WorktreeRemove(workspace.path, /*force=*/true)) {
      fs::remove_all(workspace.path, error);
      if (error) {
        return Unavailable("cannot delete " + workspace.path + ": " + error.message());
      }
    }
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
  auto temp_git = git_.ForWorktree(temp_path);
  if (!temp_git) {
    (void)git_.WorktreeRemove(temp_path, /*force=*/true);
    (void)git_.WorktreePrune();
    return std::unexpected(temp_git.error());
  }
  const Git& temp = *temp_git;
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
