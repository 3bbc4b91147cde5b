#include "workspace/merge_queue.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

namespace factory {
namespace {

namespace fs = std::filesystem;

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

std::string TrimNewlines(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  size_t start = 0;
  while (start < text.size() && (text[start] == '\n' || text[start] == '\r')) ++start;
  return text.substr(start);
}

// An exclusive flock on a file, released on destruction.
class FileLock {
 public:
  static Result<FileLock> Acquire(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Unavailable("cannot open lock file " + path + ": " + std::strerror(errno));
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Unavailable("cannot lock " + path + ": " + std::strerror(err));
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

MergeQueue::MergeQueue(WorkspaceManager& workspace) : workspace_(workspace) {}

std::string MergeQueue::FormatMessage(const MergeRequest& request) {
  std::string gates;
  for (const auto& gate : request.gates) {
    if (!gates.empty()) gates += ",";
    gates += OneLine(gate);
  }
  if (gates.empty()) gates = "none";
  std::string message = "factory: merge " + request.task_id;
  const std::string title = OneLine(request.title);
  if (!title.empty()) message += " " + title;
  message += "\n\n";
  message += "Factory-Task: " + request.task_id + "\n";
  message += "Factory-Run: " + request.run_id + "\n";
  message +=
      "Factory-Agent: " + (request.agent.empty() ? "unknown" : OneLine(request.agent)) + "\n";
  message += "Factory-Attempt: " + std::to_string(request.attempt) + "\n";
  message += "Factory-Gates: " + gates + "\n";
  return message;
}

Result<std::optional<std::string>> MergeQueue::FindMerge(const std::string& run_id,
                                                         const std::string& task_id) const {
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", run_id));
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("task id", task_id));
  const std::string branch_ref = "refs/heads/" + WorkspaceManager::IntegrationBranch(run_id);
  FACTORY_ASSIGN_OR_RETURN(bool exists, workspace_.git().RefExists(branch_ref));
  if (!exists) return std::optional<std::string>();
  // --grep narrows the walk; the trailers are then compared exactly (t1 must not match t10).
  FACTORY_ASSIGN_OR_RETURN(
      std::string out,
      workspace_.git().Run({"log", "--merges", "--fixed-strings", "--grep=Factory-Task: " + task_id,
                            "--format=%H%x1f%(trailers:key=Factory-Task,valueonly,separator=%x1d)"
                            "%x1f%(trailers:key=Factory-Run,valueonly,separator=%x1d)%x1e",
                            branch_ref, "--"}));
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\x1e', start);
    if (end == std::string::npos) end = out.size();
    std::string record = TrimNewlines(out.substr(start, end - start));
    start = end + 1;
    size_t first = record.find('\x1f');
    if (first == std::string::npos) continue;
    size_t second = record.find('\x1f', first + 1);
    if (second == std::string::npos) continue;
    const std::string commit = record.substr(0, first);
    const std::string tasks = record.substr(first + 1, second - first - 1);
    const std::string runs = record.substr(second + 1);
    auto contains = [](const std::string& values, const std::string& wanted) {
      size_t pos = 0;
      while (pos <= values.size()) {
        size_t next = values.find('\x1d', pos);
        if (next == std::string::npos) next = values.size();
        if (TrimNewlines(values.substr(pos, next - pos)) == wanted) return true;
        pos = next + 1;
      }
      return false;
    };
    if (contains(tasks, task_id) && contains(runs, run_id)) {
      return std::optional<std::string>(commit);
    }
  }
  return std::optional<std::string>();
}

Result<bool> MergeQueue::IsMerged(const std::string& run_id, const std::string& task_id) const {
  FACTORY_ASSIGN_OR_RETURN(std::optional<std::string> commit, FindMerge(run_id, task_id));
  return commit.has_value();
}

Result<MergeOutcome> MergeQueue::Merge(const MergeRequest& request,
                                       std::vector<std::string>* conflicting_paths) {
  if (conflicting_paths != nullptr) conflicting_paths->clear();
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", request.run_id));
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("task id", request.task_id));
  std::lock_guard<std::mutex> lock(mutex_);
  std::error_code error;
  fs::create_directories(workspace_.FactoryDir(), error);
  FACTORY_ASSIGN_OR_RETURN(FileLock file_lock,
                           FileLock::Acquire(workspace_.FactoryDir() + "/merge.lock"));
  return MergeLocked(request, conflicting_paths);
}

Status MergeQueue::RemoveMergeWorktree(const std::string& run_id) {
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", run_id));
  std::lock_guard<std::mutex> lock(mutex_);
  std::error_code error;
  fs::create_directories(workspace_.FactoryDir(), error);
  FACTORY_ASSIGN_OR_RETURN(FileLock file_lock,
                           FileLock::Acquire(workspace_.FactoryDir() + "/merge.lock"));
  const std::string path = workspace_.RunWorktreesDir(run_id) + "/_merge";
  if (fs::symlink_status(path, error).type() != fs::file_type::not_found) {
    if (!workspace_.git().ForWorktree(path) ||
        !workspace_.git().WorktreeRemove(path, /*force=*/true)) {
      fs::remove_all(path, error);
      if (error) return Unavailable("cannot delete " + path + ": " + error.message());
    }
  }
  return workspace_.git().WorktreePrune();
}

Result<MergeOutcome> MergeQueue::MergeLocked(const MergeRequest& request,
                                             std::vector<std::string>* conflicting_paths) {
  const Git& git = workspace_.git();
  const std::string integration = WorkspaceManager::IntegrationBranch(request.run_id);
  const std::string integration_ref = "refs/heads/" + integration;

  MergeOutcome outcome;
  FACTORY_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                           FindMerge(request.run_id, request.task_id));
  if (existing) {
    outcome.already_merged = true;
    outcome.merge_commit = *existing;
    FACTORY_ASSIGN_OR_RETURN(outcome.integration_tip, git.RevParse(integration_ref));
    return outcome;
  }

  auto tip = git.RevParse(integration_ref);
  if (!tip) {
    if (tip.error().code == ErrorCode::kNotFound) {
      return FailedPrecondition("integration branch " + integration + " does not exist");
    }
    return std::unexpected(tip.error());
  }
  const std::string source =
      request.source.empty()
          ? "refs/heads/" + WorkspaceManager::TaskBranch(request.run_id, request.task_id)
          : request.source;
  auto source_commit = git.RevParse(source);
  if (!source_commit) {
    if (source_commit.error().code == ErrorCode::kNotFound) {
      return FailedPrecondition("nothing to merge: " + source + " does not exist");
    }
    return std::unexpected(source_commit.error());
  }

  // The merge worktree: created once per run, reset to the integration tip for every merge
  // (a crash may have left a half-done merge in it; it is ours, so it is safe to clean).
  // Like an attempt's worktree, it is addressed only through Git::ForWorktree: merged content
  // comes from agents, and a merge worktree that is not exactly what git made is deleted by its
  // path and made again.
  const std::string path = workspace_.RunWorktreesDir(request.run_id) + "/_merge";
  std::error_code error;
  std::optional<Git> reused;
  if (fs::symlink_status(path, error).type() != fs::file_type::not_found) {
    auto verified = git.ForWorktree(path);
    if (verified) {
      reused = std::move(*verified);
    } else if (verified.error().code == ErrorCode::kNotFound ||
               verified.error().message.rfind(kTamperingPrefix, 0) == 0) {
      fs::remove_all(path, error);
      if (error) return Unavailable("cannot delete " + path + ": " + error.message());
    } else {
      return std::unexpected(verified.error());
    }
  }
  if (reused) {
    FACTORY_ASSIGN_OR_RETURN(SubprocessResult merging,
                             reused->RunRaw({"rev-parse", "--quiet", "--verify", "MERGE_HEAD"}));
    if (merging.exit_code == 0) FACTORY_RETURN_IF_ERROR(reused->Run({"merge", "--abort"}));
    FACTORY_RETURN_IF_ERROR(reused->Run({"checkout", "--quiet", "--force", "--detach", *tip}));
    FACTORY_RETURN_IF_ERROR(reused->Run({"clean", "-ffdxq"}));
  } else {
    FACTORY_RETURN_IF_ERROR(git.WorktreePrune());
    fs::create_directories(workspace_.RunWorktreesDir(request.run_id), error);
    FACTORY_RETURN_IF_ERROR(git.WorktreeAdd(path, "", *tip, false));
  }
  FACTORY_ASSIGN_OR_RETURN(Git tree, git.ForWorktree(path));

  FACTORY_ASSIGN_OR_RETURN(GitMergeResult merge,
                           tree.Merge(*source_commit, FormatMessage(request), /*no_ff=*/true));
  if (!merge.merged) {
    std::string paths;
    for (const auto& conflict : merge.conflicts) paths += (paths.empty() ? "" : ", ") + conflict;
    if (conflicting_paths != nullptr) *conflicting_paths = merge.conflicts;
    return Aborted("merge of " + request.task_id + " into " + integration +
                   " conflicts in: " + paths);
  }
  if (merge.commit == *tip) {
    // `--no-ff` of an ancestor is "Already up to date": no commit, so no trailers to find later.
    return FailedPrecondition("nothing to merge: " + source + " is already contained in " +
                              integration);
  }
  // Compare-and-swap: only the queue moves the integration branch, but a user (or a process
  // not using the lock) could have; then nothing is overwritten and the caller retries.
  FACTORY_RETURN_IF_ERROR(git.UpdateRef(integration_ref, merge.commit, *tip));
  outcome.merge_commit = merge.commit;
  outcome.integration_tip = merge.commit;
  return outcome;
}

}  // namespace factory
