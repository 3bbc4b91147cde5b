#include "cli/shell_executor.h"

#include <system_error>

#include "cli/json_format.h"
#include "core/simple_command.h"
#include "core/subprocess.h"

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

}  // namespace

std::filesystem::path ShellExecutor::AttemptDir(const std::string& task_id,
                                                int attempt_number) const {
  return options_.artifacts_dir / task_id / std::to_string(attempt_number);
}

ExecResult ShellExecutor::Execute(const ClaimedTask& claimed, const std::atomic<bool>& cancel) {
  ExecResult result;
  const Task& task = claimed.task;
  if (task.command.empty()) {
    result.retryable = false;
    result.error = "task has no command to run";
    return result;
  }
  const auto dir = AttemptDir(task.id, claimed.lease.attempt_number);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    result.error = "cannot create artifacts directory " + dir.string() + ": " + ec.message();
    return result;
  }

  SubprocessOptions options;
  options.argv = {options_.shell, "-c", task.command};
  // Plain words are exec'd without the shell (make's fast path): the same process, environment
  // and exit code, one exec fewer. A program that cannot be exec'd goes back to the shell,
  // which reports it its own way (exit 127, "not found" on stderr).
  std::optional<std::vector<std::string>> direct;
  if (options_.exec_simple_commands) direct = SimpleCommandArgv(task.command);
  options.env_set["FACTORY_TASK_ID"] = task.id;
  options.env_set["FACTORY_ATTEMPT"] = std::to_string(claimed.lease.attempt_number);
  options.env_set["FACTORY_RUN_ID"] = task.run_id;
  options.env_set["FACTORY_ARTIFACTS_DIR"] = dir.string();
  options.stdout_path = (dir / "stdout.log").string();
  options.stderr_path = (dir / "stderr.log").string();
  options.timeout_ms = options_.timeout_ms;
  options.kill_grace_ms = options_.kill_grace_ms;
  options.cancel = &cancel;

  auto run_direct = [&]() {
    SubprocessOptions direct_options = options;
    direct_options.argv = *direct;
    return RunSubprocess(direct_options);
  };
  Result<SubprocessResult> run = direct ? run_direct() : RunSubprocess(options);
  if (direct && !run &&
      (run.error().code == ErrorCode::kNotFound ||
       run.error().code == ErrorCode::kPermissionDenied)) {
    direct.reset();
    run = RunSubprocess(options);
  }
  if (!run) {
    result.error = "could not start " + options_.shell + ": " + run.error().message;
    return result;
  }

  Json details;
  details["runner"] = "shell";
  details["exec"] = direct ? "direct" : "shell";
  details["exit_code"] = run->exit_code;
  details["signal"] = run->signal.has_value() ? Json(*run->signal) : Json(nullptr);
  details["timed_out"] = run->timed_out;
  details["cancelled"] = run->cancelled;
  details["duration_ms"] = run->duration_ms;
  details["stdout_bytes"] = run->stdout_bytes;
  details["stderr_bytes"] = run->stderr_bytes;
  details["stdout_path"] = options.stdout_path;
  details["stderr_path"] = options.stderr_path;
  details["pid"] = run->pid;
  details["started_us"] = run->started_us;  // when the process had exec'd (dispatch latency)
  result.details_json = DumpJson(details, -1);
  result.exit_code = run->exit_code;

  if (run->cancelled) {
    result.cancelled = true;
    result.error = "cancelled";
    return result;
  }
  const std::string stderr_tail = Trimmed(run->stderr_tail);
  if (run->timed_out) {
    result.error =
        "timed out after " + std::to_string(options_.timeout_ms) + " ms (process group killed)";
  } else if (run->signal.has_value()) {
    result.error = "killed by signal " + std::to_string(*run->signal);
  } else if (run->exit_code != 0) {
    result.error = "exit code " + std::to_string(run->exit_code);
  } else {
    result.success = true;
    Json summary;
    summary["exit_code"] = 0;
    summary["duration_ms"] = run->duration_ms;
    summary["artifacts"] = dir.string();
    summary["stdout_tail"] = Trimmed(run->stdout_tail);
    result.result_json = DumpJson(summary, -1);
    return result;
  }
  if (!stderr_tail.empty()) result.error += ": " + stderr_tail;
  return result;
}

}  // namespace factory::cli
