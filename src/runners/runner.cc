// MakeRunner and CheckRunnerAvailable: the runner kinds behind runners/runner.h.

#include "runners/runner.h"

#include <string>

#include "runners/cli_runner.h"
#include "runners/internal/runner_common.h"

namespace factory {
namespace {

std::string AgentLabel(const AgentSpec& agent) {
  std::string label = "agent '" + agent.name + "'";
  if (!agent.source.empty()) label += " (" + agent.source + ")";
  return label;
}

constexpr char kLlmNotYet[] = "the llm runner arrives with the model layer";

}  // namespace

Result<std::unique_ptr<Runner>> MakeRunner(const AgentSpec& agent) {
  switch (agent.runner) {
    case RunnerKind::kScript:
      if (agent.command.empty()) {
        return InvalidArgument(AgentLabel(agent) + ": a script agent needs a `command`");
      }
      return runners_internal::MakeScriptRunner(agent);
    case RunnerKind::kCli:
      return runners_internal::MakeCliRunner(agent);
    case RunnerKind::kLlm:
      return InvalidArgument(kLlmNotYet);
  }
  return InvalidArgument(AgentLabel(agent) + ": unknown runner kind");
}

Status CheckRunnerAvailable(const AgentSpec& agent) {
  switch (agent.runner) {
    case RunnerKind::kScript:
      if (agent.command.empty()) {
        return InvalidArgument(AgentLabel(agent) + ": a script agent needs a `command`");
      }
      return Ok();
    case RunnerKind::kCli: {
      FACTORY_ASSIGN_OR_RETURN(std::vector<std::string> words, CliCommandWords(agent));
      // A misspelt placeholder fails now rather than at the first attempt.
      if (auto expanded = ExpandCommandTemplate(words, CliTemplateValues{}); !expanded) {
        return std::unexpected(expanded.error().Wrap(AgentLabel(agent)));
      }
      const std::string& program = words.front();
      // A program named through a placeholder ("{worktree}/bin/agent") is only known per
      // attempt; the runner checks it then.
      if (program.find('{') != std::string::npos) return Ok();
      if (!runners_internal::FoundOnPath(program, runners_internal::EffectivePath({}))) {
        return NotFound(runners_internal::MissingBinaryMessage(agent, program));
      }
      return Ok();
    }
    case RunnerKind::kLlm:
      return InvalidArgument(AgentLabel(agent) + ": " + kLlmNotYet);
  }
  return InvalidArgument(AgentLabel(agent) + ": unknown runner kind");
}

}  // namespace factory
