// The built-in runner kinds, and MakeRunner / CheckRunnerAvailable over them.

#include "runners/runner.h"

#include <string>

#include "runners/cli_runner.h"
#include "runners/internal/runner_common.h"
#include "runners/registry.h"

namespace factory {
namespace {

std::string AgentLabel(const AgentSpec& agent) {
  std::string label = "agent '" + agent.name + "'";
  if (!agent.source.empty()) label += " (" + agent.source + ")";
  return label;
}

constexpr char kLlmNotYet[] = "the llm runner arrives with the model layer";

Status CheckScript(const AgentSpec& agent, const RunnerCheckContext&) {
  if (agent.command.empty()) {
    return InvalidArgument(AgentLabel(agent) + ": a script agent needs a `command`");
  }
  return Ok();
}

Status CheckCli(const AgentSpec& agent, const RunnerCheckContext&) {
  FACTORY_ASSIGN_OR_RETURN(std::vector<std::string> words, CliCommandWords(agent));
  // A misspelt placeholder fails now rather than at the first attempt.
  if (auto expanded = ExpandCommandTemplate(words, CliTemplateValues{}); !expanded) {
    return std::unexpected(expanded.error().Wrap(AgentLabel(agent)));
  }
  const std::string& program = words.front();
  // A program named through a placeholder ("{worktree}/bin/agent") is only known per attempt;
  // the runner checks it then.
  if (program.find('{') != std::string::npos) return Ok();
  if (!runners_internal::FoundOnPath(program, runners_internal::EffectivePath({}))) {
    return NotFound(runners_internal::MissingBinaryMessage(agent, program));
  }
  return Ok();
}

const RunnerRegistry& BuiltinRegistry() {
  static const RunnerRegistry registry = RunnerRegistry::Builtin();
  return registry;
}

}  // namespace

RunnerRegistry RunnerRegistry::Builtin() {
  RunnerRegistry registry;
  (void)registry.Register({.name = std::string(RunnerKindName(RunnerKind::kScript)),
                           .make = [](const AgentSpec& agent) -> Result<std::unique_ptr<Runner>> {
                             FACTORY_RETURN_IF_ERROR(CheckScript(agent, {}));
                             return runners_internal::MakeScriptRunner(agent);
                           },
                           .check = CheckScript});
  (void)registry.Register({.name = std::string(RunnerKindName(RunnerKind::kCli)),
                           .make = runners_internal::MakeCliRunner,
                           .check = CheckCli});
  (void)registry.Register(
      {.name = std::string(RunnerKindName(RunnerKind::kLlm)),
       .make = [](const AgentSpec&) -> Result<std::unique_ptr<Runner>> {
         return InvalidArgument(kLlmNotYet);
       },
       .check = [](const AgentSpec& agent, const RunnerCheckContext&) -> Status {
         return InvalidArgument(AgentLabel(agent) + ": " + kLlmNotYet);
       }});
  return registry;
}

Status RunnerRegistry::Register(RunnerKindEntry entry, bool replace) {
  if (entry.name.empty()) return InvalidArgument("a runner kind needs a name");
  if (!entry.make) return InvalidArgument("runner kind '" + entry.name + "' has no factory");
  if (!replace && kinds_.contains(entry.name)) {
    return AlreadyExists("runner kind '" + entry.name + "' is already registered");
  }
  std::string name = entry.name;
  kinds_.insert_or_assign(std::move(name), std::move(entry));
  return Ok();
}

Result<const RunnerKindEntry*> RunnerRegistry::Find(std::string_view kind) const {
  if (auto it = kinds_.find(kind); it != kinds_.end()) return &it->second;
  std::string known;
  for (const auto& [name, entry] : kinds_) known += (known.empty() ? "" : ", ") + name;
  return InvalidArgument("unknown runner kind '" + std::string(kind) + "' (known: " + known + ")");
}

std::vector<std::string> RunnerRegistry::Kinds() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : kinds_) names.push_back(name);
  return names;
}

Result<std::unique_ptr<Runner>> RunnerRegistry::Make(const AgentSpec& agent) const {
  auto entry = Find(RunnerKindName(agent.runner));
  if (!entry) return std::unexpected(entry.error().Wrap(AgentLabel(agent)));
  return (*entry)->make(agent);
}

Status RunnerRegistry::Check(const AgentSpec& agent, const RunnerCheckContext& context) const {
  auto entry = Find(RunnerKindName(agent.runner));
  if (!entry) return std::unexpected(entry.error().Wrap(AgentLabel(agent)));
  if (!(*entry)->check) return Ok();
  return (*entry)->check(agent, context);
}

Result<std::unique_ptr<Runner>> MakeRunner(const AgentSpec& agent) {
  return BuiltinRegistry().Make(agent);
}

Status CheckRunnerAvailable(const AgentSpec& agent) { return BuiltinRegistry().Check(agent); }

}  // namespace factory
