#pragma once
// The executor behind `factory worker`: runs a task's `command` with /bin/sh -c (or directly,
// when it is only plain words) in its own process group, output to
// <artifacts>/<task id>/<attempt number>/stdout.log and stderr.log.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "queue/worker.h"

namespace factory::cli {

struct ShellExecutorOptions {
  std::filesystem::path artifacts_dir;  // e.g. .factory/artifacts
  int64_t timeout_ms = 0;               // 0: none; on expiry the whole group is killed
  int64_t kill_grace_ms = 2'000;        // SIGTERM -> SIGKILL delay on timeout and cancel
  std::string shell = "/bin/sh";
  // Exec commands made only of plain words directly instead of through `shell -c` (see
  // core/simple_command.h); the details record which way a command ran ("exec").
  bool exec_simple_commands = true;
  // Variables of the worker's environment a command gets besides PATH, HOME, locale, TERM and
  // TZ (config.yaml `sandbox.env`); nothing else of it passes, provider keys included.
  std::vector<std::string> pass_env;
  // Runs each command as the first process of a pid namespace of its own, with the host's
  // file system as it is (`bwrap --unshare-pid --die-with-parent --dev-bind / /`): when the
  // worker dies, however it dies, the kernel kills every process of the task, also those that
  // left its process group. When bwrap cannot do that here (missing, no namespaces), the
  // command runs as before and only its first process dies with the worker (a warning says
  // so). A command killed by a signal then reports exit code 128 + signal.
  bool contain = true;
  std::string bwrap = "bwrap";
};

// Thread-safe (no mutable state).
class ShellExecutor final : public Executor {
 public:
  // Probes bwrap once when options.contain is set (see contained()).
  explicit ShellExecutor(ShellExecutorOptions options);

  // Environment of the command: a clean one (workspace/sandbox.h CleanEnvironment with
  // options.pass_env, and HOME), plus FACTORY_TASK_ID, FACTORY_ATTEMPT, FACTORY_RUN_ID,
  // FACTORY_ARTIFACTS_DIR (the attempt's directory). Success = exit code 0. A failure's error
  // text holds the exit code (or signal, or timeout) and the end of stderr.
  ExecResult Execute(const ClaimedTask& claimed, const std::atomic<bool>& cancel) override;
  // Creates the attempt's directory and output files and starts the command; Finish waits.
  std::unique_ptr<StartedTask> Start(const ClaimedTask& claimed,
                                     const std::atomic<bool>& cancel) override;

  // The directory of one attempt's artifacts.
  std::filesystem::path AttemptDir(const std::string& task_id, int attempt_number) const;

  // True when commands run in a pid namespace of their own (options.contain and bwrap works).
  bool contained() const { return contained_; }

 private:
  ShellExecutorOptions options_;
  bool contained_ = false;
};

}  // namespace factory::cli
