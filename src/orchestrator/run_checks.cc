#include "orchestrator/run_checks.h"

#include <map>
#include <optional>
#include <set>

#include "toolloop/llm_runner.h"

namespace factory {

namespace fs = std::filesystem;

namespace {

// "agent 'coder' (.factory/agents/coder.md:5)": where to fix an agent's model settings.
std::string AgentWhere(const AgentSpec& agent, const char* field) {
  std::string where = "agent '" + agent.name + "'";
  if (agent.source.empty()) return where;
  where += " (" + agent.source;
  if (auto it = agent.field_lines.find(field); it != agent.field_lines.end()) {
    where += ":" + std::to_string(it->second);
  }
  return where + ")";
}

// A diagnostic on an agent file's field: "FILE:LINE: field 'model': message".
std::string AgentFieldError(const AgentSpec& agent, const char* line_of, const std::string& field,
                            const std::string& message) {
  std::string where = agent.source.empty() ? "agent '" + agent.name + "'" : agent.source;
  if (auto it = agent.field_lines.find(line_of); it != agent.field_lines.end()) {
    where += ":" + std::to_string(it->second);
  }
  return where + ": field '" + field + "': " + message + "\n";
}

bool KnownModel(const llm::ModelsConfig& models, const std::string& name) {
  return models.FindAlias(name) != nullptr || models.FindModel(name) != nullptr;
}

// The models a target (an alias or a model name) stands for: "provider/model_id" -> model name.
void AddModelsOf(const llm::ModelsConfig& models, const std::string& target,
                 std::map<std::string, std::string>& out) {
  auto add = [&](const llm::ModelSpec* model) {
    if (model != nullptr) out.emplace(model->provider + "/" + model->model_id, model->name);
  };
  if (const llm::AliasConfig* alias = models.FindAlias(target)) {
    for (const auto& name : alias->models) add(models.FindModel(name));
  } else {
    add(models.FindModel(target));
  }
}

// Every model an agent's attempts at a task of `task_type` can call, keyed as AddModelsOf; a cli
// agent's `model:` that models.yaml does not know is kept as written (its CLI's own name).
std::map<std::string, std::string> BuilderModels(const llm::ModelsConfig& models,
                                                 const AgentSpec& agent,
                                                 const std::string& task_type) {
  std::map<std::string, std::string> found;
  if (agent.model.empty()) return found;
  if (agent.runner == RunnerKind::kCli) {
    if (KnownModel(models, agent.model)) {
      AddModelsOf(models, agent.model, found);
    } else {
      found.emplace(agent.model, agent.model);
    }
    return found;
  }
  if (agent.runner != RunnerKind::kLlm) return found;
  AddModelsOf(models, agent.model, found);
  for (const auto& fallback : agent.fallbacks) AddModelsOf(models, fallback, found);
  // The cost pyramid: every rung of the task type's chain up to the agent's alias.
  const int ceiling = models.AliasRank(agent.model);
  if (ceiling >= 0) {
    if (auto chain = models.ChainFor(task_type, ""); chain) {
      for (const auto& alias : *chain) {
        const int rank = models.AliasRank(alias);
        if (rank >= 0 && rank <= ceiling) AddModelsOf(models, alias, found);
      }
    }
  }
  return found;
}

// The model of `builder` (a key of BuilderModels) that is also the reviewer's, or nullopt.
std::optional<std::string> SharedModel(const std::map<std::string, std::string>& reviewer,
                                       const std::map<std::string, std::string>& builder) {
  for (const auto& [key, name] : builder) {
    if (reviewer.contains(key)) return name;
    // A cli agent's own model name: the reviewer's by model name or provider model id.
    for (const auto& [reviewer_key, reviewer_name] : reviewer) {
      const std::string model_id = reviewer_key.substr(reviewer_key.find('/') + 1);
      if (key == reviewer_name || key == model_id) return reviewer_name;
    }
  }
  return std::nullopt;
}

std::string ReviewerSharesModel(const RunCheckDeps& deps, const BacklogTask& task,
                                const AgentSpec& resolved, const fs::path& backlog,
                                std::set<std::string>& reported) {
  const ProjectConfig& config = *deps.config;
  if (deps.router == nullptr || !config.HasReviewGate()) return "";
  const llm::ModelsConfig& models = deps.router->config();
  // The agents the task may get: the one it names or its binding default, else any capable one.
  std::vector<const AgentSpec*> builders;
  auto binding = config.default_agents.find(task.type);
  if (!task.agent.empty() ||
      (binding != config.default_agents.end() && binding->second == resolved.name)) {
    builders.push_back(&resolved);
  } else {
    for (const AgentSpec* agent : deps.agents->agents()) {
      if (agent->Covers(task.capabilities)) builders.push_back(agent);
    }
  }
  std::string problems;
  for (const GateConfig& gate : config.gates) {
    if (gate.kind != GateKind::kReview) continue;
    std::map<std::string, std::string> reviewer;
    AddModelsOf(models, gate.model, reviewer);
    for (const AgentSpec* builder : builders) {
      auto shared = SharedModel(reviewer, BuilderModels(models, *builder, task.type));
      if (!shared || !reported.insert(gate.name + "\n" + builder->name).second) continue;
      problems += ConfigWhere(config, gate.model_line > 0 ? gate.model_line : gate.line) +
                  "gate '" + gate.name + "': the reviewer's model " + gate.model +
                  (*shared == gate.model ? "" : " (" + *shared + ")") + " is also a model of " +
                  AgentWhere(*builder, "model") + ", which may build task '" + task.id + "' (" +
                  backlog.string() + ":" + std::to_string(task.line) +
                  "); the reviewer must use a different model from the builder\n";
    }
  }
  return problems;
}

}  // namespace

std::string ConfigWhere(const ProjectConfig& config, int line) {
  std::string where = config.source.empty() ? ".factory/config.yaml" : config.source;
  if (line > 0) where += ":" + std::to_string(line);
  return where + ": ";
}

Status CheckModelNames(const ProjectConfig& config, const AgentRegistry& agents,
                       const llm::ModelsConfig& models, const fs::path& models_path) {
  const bool rebasing = config.rebase.max_per_task > 0;
  // Every llm agent's model and fallbacks must be an alias or a model of models.yaml.
  std::string unknown;
  for (const AgentSpec* agent : agents.agents()) {
    if (agent->runner != RunnerKind::kLlm) continue;
    auto known = [&](const std::string& name) { return KnownModel(models, name); };
    const std::string where = " (not in " + models_path.string() + ")";
    if (agent->model.empty()) {
      unknown += AgentFieldError(*agent, "runner", "model",
                                 "an llm agent needs a model alias (e.g. cloud/mid)");
    } else if (!known(agent->model)) {
      unknown += AgentFieldError(*agent, "model", "model",
                                 "unknown model alias '" + agent->model + "'" + where);
    }
    for (size_t index = 0; index < agent->fallbacks.size(); ++index) {
      if (known(agent->fallbacks[index])) continue;
      unknown += AgentFieldError(*agent, "fallbacks", "fallbacks[" + std::to_string(index) + "]",
                                 "unknown model alias '" + agent->fallbacks[index] + "'" + where);
    }
  }
  // And every review gate's model, and the rebase agent's.
  for (size_t index = 0; index < config.gates.size(); ++index) {
    const GateConfig& gate = config.gates[index];
    if (gate.kind != GateKind::kReview || KnownModel(models, gate.model)) continue;
    unknown += ConfigWhere(config, gate.model_line) + "field 'gates[" + std::to_string(index) +
               "].model': unknown model '" + gate.model + "' (not an alias or a model of " +
               models_path.string() + ")\n";
  }
  if (rebasing && !config.rebase.model.empty() && !KnownModel(models, config.rebase.model)) {
    unknown += ConfigWhere(config, config.rebase.model_line) +
               "field 'rebase.model': unknown model '" + config.rebase.model +
               "' (not an alias or a model of " + models_path.string() + ")\n";
  }
  if (!unknown.empty()) {
    unknown.pop_back();
    return InvalidArgument(unknown);
  }
  return Ok();
}

std::string LlmAgentProblem(const llm::Router* router, const std::string& models_problem,
                            const AgentSpec& agent, const std::string& task_type) {
  if (router == nullptr) return AgentWhere(agent, "runner") + " " + models_problem;
  const toolloop::ModelChoice choice =
      toolloop::ChooseModels(*router, agent, task_type, /*attempt_number=*/1);
  auto resolved = router->Resolve(choice.targets);
  if (resolved) return "";
  // FailedPrecondition lists each model with its provider's reason ("environment variable
  // OPENAI_API_KEY is not set").
  return AgentWhere(agent, "model") + ": no usable model for its first attempt (" +
         choice.Describe() + "): " + resolved.error().message;
}

Status CheckBacklogRunnable(const Backlog& backlog, const fs::path& path,
                            const RunCheckDeps& deps) {
  // Every agent a task would get must be runnable here, checked before anything starts.
  std::string problems;
  std::set<std::string> checked;
  std::set<std::string> reported_shared;  // "gate\nagent" pairs already reported
  for (const BacklogTask& task : backlog.tasks) {
    AgentRequest request;
    request.type = task.type;
    request.capabilities = task.capabilities;
    request.agent = task.agent;
    auto agent = deps.agents->Resolve(request);
    if (!agent) {
      problems += path.string() + ":" + std::to_string(task.line) + ": task '" + task.id +
                  "': " + agent.error().message + "\n";
      continue;
    }
    const std::string where =
        path.string() + ":" + std::to_string(task.line) + ": task '" + task.id + "': ";
    if (std::string shared = ReviewerSharesModel(deps, task, **agent, path, reported_shared);
        !shared.empty()) {
      problems += shared;
    }
    // An llm agent's first attempt's models depend on the task type (the cost pyramid).
    if (!checked.insert((*agent)->name + "\n" + task.type).second) continue;
    Status available = deps.runners->Check(**agent, {.task_type = task.type});
    if (!available) problems += where + available.error().message + "\n";
  }
  if (!problems.empty()) {
    problems.pop_back();
    return InvalidArgument(problems);
  }
  return Ok();
}

}  // namespace factory
