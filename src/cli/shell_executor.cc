#include "cli/shell_executor.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "cli/json_format.h"
#include "core/redact.h"
#include "core/simple_command.h"
#include "core/subprocess.h"
#include "workspace/sandbox.h"

namespace factory::cli {
namespace {

constexpr size_t kErrorTailBytes = 2'000;

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  if (text.size() > kErrorTailBytes) text = "..." + text.substr(text.size() - kErrorTailBytes);
  return text;
}

ExecResult StartFailure(std::string error, bool retryable = true) {
  ExecResult result;
  result.retryable = retryable;
  result.error = std::move(error);
  return result;
}

// A command the executor started: Finish waits for it and turns its end into an ExecResult.
class StartedCommand final : public StartedTask {
 public:
  explicit StartedCommand(ExecResult failure) : failure_(std::move(failure)) {}
  StartedCommand(Subprocess process, bool direct, std::filesystem::path dir,
                 std::string stdout_path, std::string stderr_path, int64_t timeout_ms)
      : process_(std::move(process)),
        direct_(direct),
        dir_(std::move(dir)),
        stdout_path_(std::move(stdout_path)),
        stderr_path_(std::move(stderr_path)),
        timeout_ms_(timeout_ms) {}

  ExecResult Finish() override {
    if (!process_) return failure_;
    const SubprocessResult run = process_->Wait();
    ExecResult result;
    Json details;
    details["runner"] = "shell";
    details["exec"] = direct_ ? "direct" : "shell";
    details["exit_code"] = run.exit_code;
    details["signal"] = run.signal.has_value() ? Json(*run.signal) : Json(nullptr);
    details["timed_out"] = run.timed_out;
    details["cancelled"] = run.cancelled;
    details["duration_ms"] = run.duration_ms;
    details["stdout_bytes"] = run.stdout_bytes;
    details["stderr_bytes"] = run.stderr_bytes;
    details["stdout_path"] = stdout_path_;
    details["stderr_path"] = stderr_path_;
    details["pid"] = run.pid;
    details["started_us"] = run.started_us;  // when the process had exec'd (dispatch latency)
    if (!run.output_error.empty()) details["output_error"] = run.output_error;
    result.details_json = DumpJson(details, -1);
    result.exit_code = run.exit_code;

    if (run.cancelled) {
      result.cancelled = true;
      result.error = "cancelled";
      return result;
    }
    const std::string stderr_tail = Trimmed(run.stderr_tail);
    if (run.timed_out) {
      result.error =
          "timed out after " + std::to_string(timeout_ms_) + " ms (process group killed)";
    } else if (run.signal.has_value()) {
      result.error = "killed by signal " + std::to_string(*run.signal);
    } else if (run.exit_code != 0) {
      result.error = "exit code " + std::to_string(run.exit_code);
    } else if (!run.output_error.empty()) {
      // The command ran, but its logs are not where the task's details say: a retry may do
      // better (a full disk), and the output's end is in the error.
      result.error = run.output_error;
    } else {
      result.success = true;
      Json summary;
      summary["exit_code"] = 0;
      summary["duration_ms"] = run.duration_ms;
      summary["artifacts"] = dir_.string();
      summary["stdout_tail"] = Trimmed(run.stdout_tail);
      result.result_json = DumpJson(summary, -1);
      return result;
    }
    if (!stderr_tail.empty()) result.error += ": " + stderr_tail;
    return result;
  }

 private:
  std::optional<Subprocess> process_;  // empty: the start failed
  ExecResult failure_;
  bool direct_ = false;
  std::filesystem::path dir_;
  std::string stdout_path_;
  std::string stderr_path_;
  int64_t timeout_ms_ = 0;
};

// True when `program` (as a direct command names it) is an executable file, looked up in PATH
// when it has no slash: inside bwrap a missing program is bwrap's own error, so the fallback
// to the shell must be decided before.
bool IsExecutable(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const size_t colon = dirs.find(':');
    const std::string dir(dirs.substr(0, colon));
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    struct stat info {};
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
    if (colon == std::string_view::npos) return false;
    dirs.remove_prefix(colon + 1);
  }
}

std::vector<std::string> ContainArgv(const std::string& bwrap) {
  return {bwrap, "--die-with-parent", "--unshare-pid", "--dev-bind", "/", "/", "--"};
}

// Whether bwrap can make a pid namespace here (a container may forbid it).
bool ProbeContainment(const std::string& bwrap) {
  SubprocessOptions probe;
  probe.argv = ContainArgv(bwrap);
  probe.argv.push_back("/bin/true");
  probe.timeout_ms = 10'000;
  auto ran = RunSubprocess(probe);
  if (ran && ran->exit_code == 0) return true;
  spdlog::warn(
      "worker: cannot run tasks in a pid namespace of their own ({}): processes a task starts "
      "may outlive a worker that is killed",
      ran ? "bwrap: " + Trimmed(ran->stderr_tail) : ran.error().message);
  return false;
}

}  // namespace

ShellExecutor::ShellExecutor(ShellExecutorOptions options) : options_(std::move(options)) {
  contained_ = options_.contain && ProbeContainment(options_.bwrap);
}

std::filesystem::path ShellExecutor::AttemptDir(const std::string& task_id,
                                                int attempt_number) const {
  // One level, like a run's `<task>-<attempt>` folders: a folder is the most expensive part of
  // a start (an inode and a block of its own; half of the start threads' time in perf when each
  // attempt took two).
  return options_.artifacts_dir / (task_id + "-" + std::to_string(attempt_number));
}

std::unique_ptr<StartedTask> ShellExecutor::Start(const ClaimedTask& claimed,
                                                  const std::atomic<bool>& cancel) {
  const Task& task = claimed.task;
  if (task.command.empty()) {
    return std::make_unique<StartedCommand>(
        StartFailure("task has no command to run", /*retryable=*/false));
  }
  const auto dir = AttemptDir(task.id, claimed.lease.attempt_number);
  std::error_code ec;
  // One mkdir in the common case (the artifacts folder exists; an attempt's folder left by a
  // crashed worker is reused, its logs truncated); create_directories would stat every level.
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    if (errno == ENOENT) {
      std::filesystem::create_directories(dir, ec);
    } else {
      ec.assign(errno, std::generic_category());
    }
  }
  if (ec) {
    return std::make_unique<StartedCommand>(
        StartFailure("cannot create artifacts directory " + dir.string() + ": " + ec.message()));
  }

  SubprocessOptions options;
  // Plain words are exec'd without the shell (make's fast path): the same process, environment
  // and exit code, one exec fewer. A program that cannot be exec'd goes back to the shell,
  // which reports it its own way (exit 127, "not found" on stderr).
  std::optional<std::vector<std::string>> direct;
  if (options_.exec_simple_commands) direct = SimpleCommandArgv(task.command);
  if (direct && contained_ && !IsExecutable(direct->front())) direct.reset();
  auto contain = [&](std::vector<std::string> argv) {
    if (!contained_) return argv;
    std::vector<std::string> wrapped = ContainArgv(options_.bwrap);
    wrapped.insert(wrapped.end(), std::make_move_iterator(argv.begin()),
                   std::make_move_iterator(argv.end()));
    return wrapped;
  };
  auto through_shell = [&] {
    return contain(std::vector<std::string>{options_.shell, "-c", task.command});
  };
  options.argv = direct ? contain(*direct) : through_shell();
  // Queued commands run on the host, not in the sandbox, but get the same clean environment
  // (with the host's HOME): the worker's own variables hold provider keys.
  options.clear_env = true;
  options.env_set = CleanEnvironment(options_.pass_env);
  if (const char* home = std::getenv("HOME"); home != nullptr) options.env_set["HOME"] = home;
  options.env_set["FACTORY_TASK_ID"] = task.id;
  options.env_set["FACTORY_ATTEMPT"] = std::to_string(claimed.lease.attempt_number);
  options.env_set["FACTORY_RUN_ID"] = task.run_id;
  options.env_set["FACTORY_ARTIFACTS_DIR"] = dir.string();
  options.stdout_path = (dir / "stdout.log").string();
  options.stderr_path = (dir / "stderr.log").string();
  // The logs are made by the waiting pool thread: off the start path, where each file was as
  // much work as the pipes and the spawn together.
  options.create_output_files_on_wait = true;
  options.timeout_ms = options_.timeout_ms;
  options.kill_grace_ms = options_.kill_grace_ms;
  options.cancel = &cancel;
  options.redactor = &ProcessRedactor();  // the logs and the tails never hold a known secret

  Result<Subprocess> process = Subprocess::Start(options);
  if (direct && !process &&
      (process.error().code == ErrorCode::kNotFound ||
       process.error().code == ErrorCode::kPermissionDenied)) {
    direct.reset();
    options.argv = through_shell();
    process = Subprocess::Start(options);
  }
  if (!process) {
    return std::make_unique<StartedCommand>(
        StartFailure("could not start " + options_.shell + ": " + process.error().message));
  }
  return std::make_unique<StartedCommand>(std::move(*process), direct.has_value(), dir,
                                          options.stdout_path, options.stderr_path,
                                          options_.timeout_ms);
}

ExecResult ShellExecutor::Execute(const ClaimedTask& claimed, const std::atomic<bool>& cancel) {
  return Start(claimed, cancel)->Finish();
}

}  // namespace factory::cli
