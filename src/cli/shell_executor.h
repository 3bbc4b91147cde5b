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
};

// Thread-safe (no mutable state).
class ShellExecutor final : public Executor {
 public:
  explicit ShellExecutor(ShellExecutorOptions options) : options_(std::move(options)) {}

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

 private:
  ShellExecutorOptions options_;
};

}  // namespace factory::cli
