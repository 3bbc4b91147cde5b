// The script runner: the agent's `command`, run with /bin/sh -c in the worktree through the
// sandbox. The task file is written from here before the command starts, so the command needs
// no write access outside the worktree; of the attempt directory the command sees only the task
// and prompt files, read-only.

#include <string>
#include <utility>

#include "runners/internal/runner_common.h"

namespace factory::runners_internal {
namespace {

class ScriptRunner final : public Runner {
 public:
  explicit ScriptRunner(AgentSpec agent) : agent_(std::move(agent)) {}

  Result<RunnerOutcome> Run(const RunnerContext& context) override {
    if (agent_.command.empty()) {
      return InvalidArgument("agent '" + agent_.name + "' has no command");
    }
    FACTORY_ASSIGN_OR_RETURN(std::string task_file, WriteTaskFile(context));

    SandboxedCommand command;
    command.shell = agent_.command;
    command.worktree = context.worktree;
    command.writable_paths = context.extra_writable_paths;
    command.network = agent_.network;
    command.env = RunnerEnv(context, task_file);
    command.pass_env = agent_.env;
    command.read_only_paths = AttemptFiles(command.env);
    command.timeout_ms = context.timeout_ms;
    command.limits = context.limits;
    command.tail_bytes = context.output_tail_bytes;
    command.stdout_path = context.attempt_dir + "/runner.stdout.log";
    command.stderr_path = context.attempt_dir + "/runner.stderr.log";
    command.cancel = context.cancel;
    command.disk_quota = context.disk_quota;

    auto process = context.sandbox->Run(command);
    if (!process) {
      return std::unexpected(process.error().Wrap("agent '" + agent_.name + "'"));
    }
    RunnerOutcome outcome;
    const std::string& detail =
        process->stderr_tail.empty() ? process->stdout_tail : process->stderr_tail;
    FillOutcomeFromProcess(*process, context, detail, outcome);
    outcome.output_tail =
        CombinedTail(process->stdout_tail, process->stderr_tail, context.output_tail_bytes);
    return outcome;
  }

 private:
  const AgentSpec agent_;
};

}  // namespace

std::unique_ptr<Runner> MakeScriptRunner(const AgentSpec& agent) {
  return std::make_unique<ScriptRunner>(agent);
}

}  // namespace factory::runners_internal
