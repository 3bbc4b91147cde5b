#include "workspace/git.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <utility>

namespace factory {
namespace {

// Git output we parse is small; the cap only guards memory against a pathological repository.
constexpr size_t kGitOutputCap = 64 << 20;

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  size_t start = 0;
  while (start < text.size() && (text[start] == ' ' || text[start] == '\n')) ++start;
  return text.substr(start);
}

std::string TailOf(const std::string& text, size_t max_bytes = 2000) {
  std::string trimmed = Trim(text);
  if (trimmed.size() <= max_bytes) return trimmed;
  return "..." + trimmed.substr(trimmed.size() - max_bytes);
}

std::string JoinArgs(const std::vector<std::string>& args) {
  std::string joined;
  for (const auto& arg : args) {
    if (!joined.empty()) joined += ' ';
    joined += arg;
  }
  return joined;
}

std::unexpected<Error> GitError(const std::vector<std::string>& args, const SubprocessResult& run) {
  std::string message = "git " + JoinArgs(args) + " failed";
  if (run.timed_out) {
    return DeadlineExceeded(message + " (timed out)");
  }
  message += " (exit " + std::to_string(run.exit_code) + ")";
  std::string detail = TailOf(run.stderr_tail);
  if (detail.empty()) detail = TailOf(run.stdout_tail);
  if (!detail.empty()) message += ": " + detail;
  return Unavailable(message);
}

}  // namespace

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

Git::Git(std::string dir, GitIdentity identity, int64_t timeout_ms)
    : dir_(std::move(dir)), identity_(std::move(identity)), timeout_ms_(timeout_ms) {}

std::map<std::string, std::string> Git::BaseEnv() const {
  // A clean environment: an inherited GIT_DIR, GIT_WORK_TREE or GIT_INDEX_FILE (say, the factory
  // started from a git hook) would silently point our commands at the wrong repository or index.
  std::map<std::string, std::string> env;
  for (const char* name : {"HOME", "TMPDIR", "USER", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL",
                           "GIT_CONFIG_NOSYSTEM", "GIT_EXEC_PATH"}) {
    if (const char* value = std::getenv(name)) env[name] = value;
  }
  env["LC_ALL"] = "C";  // stable, parseable messages
  env["GIT_TERMINAL_PROMPT"] = "0";
  env["GIT_AUTHOR_NAME"] = identity_.name;
  env["GIT_AUTHOR_EMAIL"] = identity_.email;
  env["GIT_COMMITTER_NAME"] = identity_.name;
  env["GIT_COMMITTER_EMAIL"] = identity_.email;
  return env;
}

Result<SubprocessResult> Git::RunRaw(const std::vector<std::string>& args,
                                     const std::map<std::string, std::string>& env) const {
  SubprocessOptions options;
  options.argv = {"git", "-C", dir_, "-c", "core.hooksPath=/dev/null"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.clear_env = true;
  options.env_set = BaseEnv();
  for (const auto& [key, value] : env) options.env_set[key] = value;
  options.timeout_ms = timeout_ms_;
  options.tail_bytes = kGitOutputCap;
  auto result = RunSubprocess(options);
  if (!result) return std::unexpected(result.error().Wrap("running git"));
  return result;
}

Result<std::string> Git::Run(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env) const {
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args, env));
  if (run.exit_code != 0 || run.timed_out) return GitError(args, run);
  return std::move(run.stdout_tail);
}

Result<bool> Git::IsRepo() const {
  if (!std::filesystem::is_directory(dir_)) return false;
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw({"rev-parse", "--is-inside-work-tree"}));
  return run.exit_code == 0 && Trim(run.stdout_tail) == "true";
}

Result<std::string> Git::TopLevel() const {
  FACTORY_ASSIGN_OR_RETURN(std::string out, Run({"rev-parse", "--show-toplevel"}));
  return Trim(out);
}

Result<std::string> Git::CommonDir() const {
  FACTORY_ASSIGN_OR_RETURN(std::string out,
                           Run({"rev-parse", "--path-format=absolute", "--git-common-dir"}));
  return Trim(out);
}

Result<std::optional<std::string>> Git::CurrentBranch() const {
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run,
                           RunRaw({"symbolic-ref", "--quiet", "--short", "HEAD"}));
  if (run.exit_code == 1) return std::optional<std::string>();  // detached
  if (run.exit_code != 0) return GitError({"symbolic-ref", "--quiet", "--short", "HEAD"}, run);
  return std::optional<std::string>(Trim(run.stdout_tail));
}

Result<std::string> Git::RevParse(const std::string& rev) const {
  std::vector<std::string> args = {"rev-parse", "--verify", "--quiet", "--end-of-options",
                                   rev + "^{commit}"};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 1) return NotFound("no such commit: " + rev);
  if (run.exit_code != 0) return GitError(args, run);
  return Trim(run.stdout_tail);
}

Result<bool> Git::RefExists(const std::string& ref) const {
  std::vector<std::string> args = {"show-ref", "--verify", "--quiet", ref};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 0) return true;
  if (run.exit_code == 1) return false;
  return GitError(args, run);
}

Result<bool> Git::IsAncestor(const std::string& ancestor, const std::string& descendant) const {
  std::vector<std::string> args = {"merge-base", "--is-ancestor", ancestor, descendant};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 0) return true;
  if (run.exit_code == 1) return false;
  return GitError(args, run);
}

Status Git::CreateBranch(const std::string& branch, const std::string& start) const {
  FACTORY_ASSIGN_OR_RETURN(bool exists, RefExists("refs/heads/" + branch));
  if (exists) return AlreadyExists("branch already exists: " + branch);
  FACTORY_RETURN_IF_ERROR(Run({"branch", "--no-track", branch, start}));
  return Ok();
}

Status Git::DeleteBranch(const std::string& branch, bool force) const {
  FACTORY_ASSIGN_OR_RETURN(bool exists, RefExists("refs/heads/" + branch));
  if (!exists) return NotFound("no such branch: " + branch);
  FACTORY_RETURN_IF_ERROR(Run({"branch", force ? "-D" : "-d", branch}));
  return Ok();
}

Status Git::UpdateRef(const std::string& ref, const std::string& new_value,
                      const std::optional<std::string>& old_value) const {
  std::vector<std::string> args = {"update-ref", ref, new_value};
  if (old_value) args.push_back(*old_value);
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 0) return Ok();
  if (old_value) {
    return Aborted("ref " + ref + " moved concurrently (expected " + *old_value +
                   "): " + TailOf(run.stderr_tail));
  }
  return GitError(args, run);
}

Status Git::WorktreeAdd(const std::string& path, const std::string& branch,
                        const std::string& start, bool reset_branch) const {
  std::vector<std::string> args = {"worktree", "add", "--quiet"};
  if (branch.empty()) {
    args.push_back("--detach");
  } else {
    args.push_back(reset_branch ? "-B" : "-b");
    args.push_back(branch);
  }
  args.push_back(path);
  args.push_back(start);
  FACTORY_RETURN_IF_ERROR(Run(args));
  return Ok();
}

Status Git::WorktreeRemove(const std::string& path, bool force) const {
  std::vector<std::string> args = {"worktree", "remove"};
  if (force) args.push_back("--force");
  args.push_back(path);
  FACTORY_RETURN_IF_ERROR(Run(args));
  return Ok();
}

Status Git::WorktreePrune() const {
  FACTORY_RETURN_IF_ERROR(Run({"worktree", "prune"}));
  return Ok();
}

Result<std::vector<GitWorktreeInfo>> Git::WorktreeList() const {
  FACTORY_ASSIGN_OR_RETURN(std::string out, Run({"worktree", "list", "--porcelain"}));
  std::vector<GitWorktreeInfo> list;
  size_t start = 0;
  // Records are separated by blank lines; parse line by line keeping empty lines.
  std::optional<GitWorktreeInfo> current;
  while (start <= out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(start, end - start);
    start = end + 1;
    if (line.empty()) {
      if (current) list.push_back(std::move(*current));
      current.reset();
      if (end == out.size()) break;
      continue;
    }
    auto take = [&](std::string_view key) -> std::optional<std::string> {
      if (line.size() >= key.size() && line.compare(0, key.size(), key) == 0) {
        return line.size() > key.size() ? line.substr(key.size() + 1) : std::string();
      }
      return std::nullopt;
    };
    if (auto path = take("worktree")) {
      if (current) list.push_back(std::move(*current));
      current = GitWorktreeInfo{};
      current->path = *path;
    } else if (!current) {
      continue;
    } else if (auto head = take("HEAD")) {
      current->head = *head;
    } else if (auto branch = take("branch")) {
      current->branch = *branch;
    } else if (take("bare")) {
      current->bare = true;
    } else if (take("prunable")) {
      current->prunable = true;
    }
  }
  if (current) list.push_back(std::move(*current));
  return list;
}

Result<std::string> Git::StatusPorcelain(bool include_untracked) const {
  return Run({"status", "--porcelain",
              include_untracked ? "--untracked-files=normal" : "--untracked-files=no"});
}

Result<std::optional<std::string>> Git::CommitAll(const std::string& message) const {
  FACTORY_RETURN_IF_ERROR(Run({"add", "-A"}));
  std::vector<std::string> diff_args = {"diff", "--cached", "--quiet"};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult diff, RunRaw(diff_args));
  if (diff.exit_code == 0) return std::optional<std::string>();
  if (diff.exit_code != 1) return GitError(diff_args, diff);
  FACTORY_RETURN_IF_ERROR(Run({"commit", "--quiet", "--no-verify", "-m", message}));
  FACTORY_ASSIGN_OR_RETURN(std::string head, RevParse("HEAD"));
  return std::optional<std::string>(std::move(head));
}

Result<std::vector<std::string>> Git::DiffNameOnly(const std::string& from,
                                                   const std::string& to) const {
  FACTORY_ASSIGN_OR_RETURN(std::string out,
                           Run({"diff", "--name-only", "--no-renames", from, to, "--"}));
  return SplitLines(out);
}

Result<std::string> Git::SnapshotToRef(const std::string& ref, const std::string& message) const {
  std::string tmpl = (std::filesystem::temp_directory_path() / "factory-snapshot-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return Unavailable("mkdtemp for a snapshot index failed");
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{tmpl};
  const std::map<std::string, std::string> env = {{"GIT_INDEX_FILE", tmpl + "/index"}};
  // Start from HEAD's tree so tracked-but-ignored files are kept, then record every change.
  FACTORY_RETURN_IF_ERROR(Run({"read-tree", "HEAD"}, env));
  FACTORY_RETURN_IF_ERROR(Run({"add", "-A"}, env));
  FACTORY_ASSIGN_OR_RETURN(std::string tree, Run({"write-tree"}, env));
  FACTORY_ASSIGN_OR_RETURN(std::string head, RevParse("HEAD"));
  FACTORY_ASSIGN_OR_RETURN(std::string commit,
                           Run({"commit-tree", Trim(tree), "-p", head, "-m", message}, env));
  commit = Trim(commit);
  FACTORY_RETURN_IF_ERROR(UpdateRef(ref, commit));
  return commit;
}

Result<GitMergeResult> Git::Merge(const std::string& rev, const std::string& message,
                                  bool no_ff) const {
  std::vector<std::string> args = {"merge", "--no-edit", "--no-verify", "-m", message};
  if (no_ff) args.insert(args.begin() + 1, "--no-ff");
  args.push_back(rev);
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  GitMergeResult result;
  if (run.exit_code == 0) {
    FACTORY_ASSIGN_OR_RETURN(result.commit, RevParse("HEAD"));
    result.merged = true;
    return result;
  }
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult merging,
                           RunRaw({"rev-parse", "--quiet", "--verify", "MERGE_HEAD"}));
  if (merging.exit_code != 0) return GitError(args, run);  // refused before starting
  FACTORY_ASSIGN_OR_RETURN(std::string unmerged,
                           Run({"diff", "--name-only", "--diff-filter=U", "--no-renames"}));
  result.conflicts = SplitLines(unmerged);
  std::sort(result.conflicts.begin(), result.conflicts.end());
  FACTORY_RETURN_IF_ERROR(Run({"merge", "--abort"}));
  if (result.conflicts.empty()) return GitError(args, run);
  return result;
}

}  // namespace factory
