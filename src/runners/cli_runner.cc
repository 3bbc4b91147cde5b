// The cli runner: an external coding-agent CLI from a preset, run as an argv (never through a
// shell) in the worktree through the sandbox. Its stdout is kept in the attempt directory and
// parsed afterwards for steps, usage and the agent's own verdict (runners/cli_runner.h).

#include "runners/cli_runner.h"

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "core/text_file.h"
#include "runners/internal/runner_common.h"

namespace factory::runners_internal {
namespace {

constexpr size_t kMaxArgBytes = 128 * 1024;

class CliRunner final : public Runner {
 public:
  CliRunner(AgentSpec agent, const CliPreset& preset, std::vector<std::string> words)
      : agent_(std::move(agent)), preset_(preset), words_(std::move(words)) {}

  Result<RunnerOutcome> Run(const RunnerContext& context) override {
    FACTORY_ASSIGN_OR_RETURN(std::string task_file, WriteTaskFile(context));
    const std::string prompt = AgentPrompt(agent_, context.input);
    const std::string prompt_file = context.attempt_dir + "/prompt.md";
    FACTORY_RETURN_IF_ERROR(WriteTextFile(prompt_file, prompt));

    CliTemplateValues values{.prompt_file = prompt_file,
                             .prompt = prompt,
                             .model = agent_.model,
                             .worktree = context.worktree};
    auto argv = ExpandCommandTemplate(words_, values);
    if (!argv) return std::unexpected(argv.error().Wrap("agent '" + agent_.name + "'"));
    for (const auto& arg : *argv) {
      // Linux refuses longer single arguments (MAX_ARG_STRLEN) at exec time.
      if (arg.size() >= kMaxArgBytes) {
        return InvalidArgument("agent '" + agent_.name + "': an argument of " +
                               std::to_string(arg.size()) +
                               " bytes is too long for the command line; use {prompt_file} "
                               "or stdin for the prompt");
      }
    }
    if (!FoundOnPath(argv->front(), EffectivePath(context.extra_env))) {
      return NotFound(MissingBinaryMessage(agent_, argv->front()));
    }

    SandboxedCommand command;
    command.argv = std::move(*argv);
    command.worktree = context.worktree;
    command.writable_paths = context.extra_writable_paths;
    command.network = agent_.network;
    command.env = RunnerEnv(context, task_file);
    command.env["FACTORY_PROMPT_FILE"] = prompt_file;
    for (auto& [name, value] : GatewayEnvironment(context.extra_env)) command.env[name] = value;
    command.pass_env = agent_.env;
    command.read_only_paths = AttemptFiles(command.env);
    if (PromptOnStdin(words_)) command.stdin_data = prompt;
    command.timeout_ms = context.timeout_ms;
    command.limits = context.limits;
    command.tail_bytes = context.output_tail_bytes;
    command.stdout_path = context.attempt_dir + "/runner.stdout.log";
    command.stderr_path = context.attempt_dir + "/runner.stderr.log";
    command.cancel = context.cancel;
    command.disk_quota = context.disk_quota;

    auto process = context.sandbox->Run(command);
    if (!process) return std::unexpected(process.error().Wrap("agent '" + agent_.name + "'"));

    CliOutput parsed;
    {
      std::ifstream log(command.stdout_path, std::ios::binary);
      if (log) {
        parsed = ParseCliOutput(preset_.format, log, context.output_tail_bytes);
      } else {
        std::istringstream tail(process->stdout_tail);
        parsed = ParseCliOutput(preset_.format, tail, context.output_tail_bytes);
      }
    }

    RunnerOutcome outcome;
    std::string detail = process->stderr_tail;
    if (detail.empty()) detail = parsed.reported_error;
    if (detail.empty()) detail = parsed.other_lines;
    FillOutcomeFromProcess(*process, context, detail, outcome);
    if (outcome.success && parsed.reported_ok.has_value() && !*parsed.reported_ok) {
      outcome.success = false;
      outcome.error = "the agent reported an error: " +
                      (parsed.reported_error.empty() ? std::string("(no message)")
                                                     : Utf8Tail(parsed.reported_error, 2048));
    }
    const std::string& stdout_text =
        preset_.format == CliOutputFormat::kPlain ? process->stdout_tail : parsed.other_lines;
    outcome.output_tail =
        CombinedTail(stdout_text, process->stderr_tail, context.output_tail_bytes);
    outcome.summary = std::move(parsed.summary);
    outcome.steps = std::move(parsed.steps);
    outcome.usage = std::move(parsed.usage);
    if (outcome.usage.model.empty()) outcome.usage.model = agent_.model;
    outcome.prompt_bytes = static_cast<int64_t>(prompt.size());
    return outcome;
  }

 private:
  const AgentSpec agent_;
  const CliPreset& preset_;
  const std::vector<std::string> words_;
};

}  // namespace

std::string MissingBinaryMessage(const AgentSpec& agent, const std::string& binary) {
  std::string message = "agent '" + agent.name + "'";
  if (!agent.source.empty()) message += " (" + agent.source + ")";
  message += agent.command.empty() ? ": preset '" + agent.preset + "'" : ": its command";
  message += " needs the `" + binary + "` binary, which is not on PATH";
  return message;
}

Result<std::unique_ptr<Runner>> MakeCliRunner(const AgentSpec& agent) {
  FACTORY_ASSIGN_OR_RETURN(std::vector<std::string> words, CliCommandWords(agent));
  const CliPreset* preset = FindCliPreset(agent.preset);  // known: CliCommandWords checked it
  return std::unique_ptr<Runner>(std::make_unique<CliRunner>(agent, *preset, std::move(words)));
}

}  // namespace factory::runners_internal

namespace factory {

std::map<std::string, std::string> GatewayEnvironment(
    const std::map<std::string, std::string>& extra_env) {
  auto url = extra_env.find(kGatewayUrlVar);
  auto key = extra_env.find(kGatewayKeyVar);
  if (url == extra_env.end() || key == extra_env.end() || url->second.empty() ||
      key->second.empty()) {
    return {};
  }
  std::string base = url->second;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return {{"OPENAI_BASE_URL", base + "/v1"},
          {"OPENAI_API_BASE", base + "/v1"},
          {"OPENAI_API_KEY", key->second},
          {"ANTHROPIC_BASE_URL", base},
          {"ANTHROPIC_API_KEY", key->second}};
}

}  // namespace factory
