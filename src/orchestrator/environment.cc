#include "orchestrator/environment.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "gateway/keys.h"
#include "runners/cli_runner.h"
#include "runners/runner.h"
#include "toolloop/llm_runner.h"
#include "workspace/git.h"

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

bool HasAgentOf(const AgentRegistry& agents, RunnerKind kind) {
  const auto all = agents.agents();
  return std::any_of(all.begin(), all.end(),
                     [kind](const AgentSpec* agent) { return agent->runner == kind; });
}
bool HasLlmAgent(const AgentRegistry& agents) { return HasAgentOf(agents, RunnerKind::kLlm); }

void ReplaceAll(std::string& text, std::string_view needle, std::string_view replacement) {
  if (needle.empty()) return;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + replacement.size())) {
    text.replace(at, needle.size(), replacement);
  }
}

// A cli agent's runner behind `factory gateway`: each attempt gets its own virtual key, scoped
// to the agent, run, task and attempt, so the gateway ledgers and budgets the agent's calls
// exactly like the built-in agent's; the key is revoked when the attempt ends, however it ends.
// The key itself is never logged; should the agent print it, it is masked in what the attempt
// reports (error, output tail, summary, steps), which the pipeline turns into events.
class GatewayKeyRunner final : public Runner {
 public:
  GatewayKeyRunner(std::unique_ptr<Runner> inner, Store& store, std::string agent,
                   std::string gateway_url, std::vector<std::string> hidden_variables)
      : inner_(std::move(inner)),
        store_(store),
        agent_(std::move(agent)),
        gateway_url_(std::move(gateway_url)),
        hidden_variables_(std::move(hidden_variables)) {}

  Result<RunnerOutcome> Run(const RunnerContext& context) override {
    const AttemptInput& input = context.input;
    gateway::KeyScope scope;
    scope.run_id = input.run_id;
    // As the llm runner attributes its calls: the queue's ids when there is a queue.
    scope.task_id = input.queue_task_id.empty() ? input.task_id : input.queue_task_id;
    scope.attempt_id = input.attempt_id.empty()
                           ? input.task_id + "-" + std::to_string(input.attempt)
                           : input.attempt_id;
    scope.label = "attempt " + std::to_string(input.attempt) + " of " + input.task_id;
    auto issued = gateway::IssueKey(store_, agent_, scope);
    if (!issued) {
      // Unavailable: the pipeline retries the attempt (the store may be busy).
      return Unavailable("agent '" + agent_ +
                         "': cannot issue a gateway key: " + issued.error().message);
    }
    const std::string key_id = issued->record.id;
    struct Revoke {
      Store& store;
      const std::string& id;
      ~Revoke() {
        if (Status revoked = gateway::RevokeKey(store, id); !revoked) {
          spdlog::warn("cannot revoke gateway key {}: {}", id, revoked.error().ToString());
        }
      }
    } revoke{store_, key_id};

    RunnerContext with_key = context;
    // The real provider keys the factory knows of are blanked; GatewayEnvironment then sets
    // OPENAI_API_KEY and ANTHROPIC_API_KEY to the virtual key.
    for (const std::string& name : hidden_variables_) with_key.extra_env[name] = "";
    with_key.extra_env[kGatewayUrlVar] = gateway_url_;
    with_key.extra_env[kGatewayKeyVar] = issued->key;
    auto outcome = inner_->Run(with_key);
    if (!outcome) {
      Error error = outcome.error();
      ReplaceAll(error.message, issued->key, kMasked);
      return std::unexpected(std::move(error));
    }
    for (std::string* text : {&outcome->error, &outcome->output_tail, &outcome->summary}) {
      ReplaceAll(*text, issued->key, kMasked);
    }
    for (AgentStep& step : outcome->steps) ReplaceAll(step.summary, issued->key, kMasked);
    return outcome;
  }

 private:
  static constexpr std::string_view kMasked = "fk-[gateway key]";

  const std::unique_ptr<Runner> inner_;
  Store& store_;
  const std::string agent_;
  const std::string gateway_url_;
  const std::vector<std::string> hidden_variables_;
};

// The variables models.yaml reads provider API keys from (none when it is missing or broken:
// only the cli agents' environment depends on it, and GatewayEnvironment replaces the usual
// OPENAI_API_KEY and ANTHROPIC_API_KEY anyway).
std::vector<std::string> ProviderKeyVariables(const fs::path& models_path) {
  std::vector<std::string> names;
  auto models = llm::LoadModelsConfig(models_path);
  if (!models) return names;
  for (const llm::ProviderConfig& provider : models->providers) {
    if (provider.api_key_env.empty()) continue;
    if (std::find(names.begin(), names.end(), provider.api_key_env) != names.end()) continue;
    names.push_back(provider.api_key_env);
  }
  return names;
}

// "config.yaml:12: " (the file and line of a config field), or "config.yaml: " without a line.
std::string ConfigWhere(const ProjectConfig& config, int line) {
  std::string where = config.source.empty() ? ".factory/config.yaml" : config.source;
  if (line > 0) where += ":" + std::to_string(line);
  return where + ": ";
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

}  // namespace

ledger::BudgetEnvelope MakeBudgetEnvelope(const ProjectConfig& config,
                                          const AgentRegistry& agents) {
  const BudgetConfig& budget = config.budget;
  ledger::BudgetEnvelope envelope;
  envelope.project.per_call_usd = budget.usd_per_call;
  envelope.project.per_task_usd = budget.usd_per_task;
  envelope.project.per_task_tokens = budget.tokens_per_task;
  envelope.project.per_run_usd = budget.usd_per_run;
  envelope.project.per_agent_daily_usd = budget.usd_per_agent_per_day;
  envelope.global_daily_usd = budget.global_usd_per_day;
  envelope.velocity_enabled = budget.velocity.enabled;
  envelope.velocity_factor = budget.velocity.factor;
  envelope.velocity_window_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(budget.velocity.window).count();
  envelope.velocity_baseline_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(budget.velocity.baseline).count();
  envelope.velocity_min_baseline_usd = budget.velocity.min_baseline_usd;
  for (const AgentSpec* agent : agents.agents()) {
    const AgentBudget& own = agent->budget;
    if (!own.usd_per_task && !own.tokens_per_task && !own.usd_per_day) continue;
    ledger::BudgetLimits limits;
    limits.per_task_usd = own.usd_per_task;
    limits.per_task_tokens = own.tokens_per_task;
    limits.per_agent_daily_usd = own.usd_per_day;
    envelope.agents[agent->name] = limits;
  }
  return envelope;
}

Result<std::unique_ptr<RunEnvironment>> RunEnvironment::Open(Store& store,
                                                             const RunEnvironmentOptions& options) {
  std::unique_ptr<RunEnvironment> env(new RunEnvironment(store));

  Git probe(options.repo_path.empty() ? "." : options.repo_path);
  auto top = probe.TopLevel();
  if (!top) {
    return FailedPrecondition("not inside a git repository: " + options.repo_path + " (" +
                              top.error().message + ")");
  }
  const fs::path root(*top);

  // Config: an explicit path must exist; the default one may be missing (defaults).
  const bool explicit_config = !options.config_path.empty();
  const fs::path config_path =
      explicit_config ? options.config_path : root / ".factory" / "config.yaml";
  auto config = LoadProjectConfig(config_path);
  bool config_missing = false;
  if (config) {
    env->config_ = std::move(config->value);
    for (auto& warning : config->warnings) env->warnings_.push_back(std::move(warning));
  } else if (config.error().code == ErrorCode::kNotFound && !explicit_config) {
    env->config_ = ProjectConfig{};
    config_missing = true;
  } else {
    return std::unexpected(config.error());
  }
  // A missing or empty config is legal, but it means that nothing checks an agent's work and
  // nothing is protected from it: said on the console rather than assumed.
  if (env->config_.gates.empty()) {
    Diagnostic warning;
    warning.severity = Severity::kWarning;
    warning.file = config_path.string();
    warning.message = std::string("no gates: ") +
                      (config_missing ? "the file is missing, so" : "it configures none, so") +
                      " tasks merge without any check" +
                      (env->config_.protected_paths.empty() ? " and no path is protected" : "") +
                      " (`factory init` writes a commented example)";
    env->warnings_.push_back(std::move(warning));
  }

  // Agents: likewise.
  const bool explicit_agents = !options.agents_dir.empty();
  const fs::path agents_dir = explicit_agents ? options.agents_dir : root / ".factory" / "agents";
  auto agents = AgentRegistry::LoadDirectory(agents_dir);
  if (agents) {
    env->agents_ = std::move(agents->value);
    for (auto& warning : agents->warnings) env->warnings_.push_back(std::move(warning));
  } else if (agents.error().code == ErrorCode::kNotFound && !explicit_agents) {
    env->agents_ = std::make_unique<AgentRegistry>();
  } else {
    return std::unexpected(agents.error());
  }
  FACTORY_RETURN_IF_ERROR(ValidateDefaultAgents(env->config_, *env->agents_));
  env->agents_->SetDefaultAgents(env->config_.default_agents);

  WorkspaceOptions workspace_options;
  workspace_options.repo_path = root.string();
  workspace_options.base_branch =
      !options.base_branch.empty() ? options.base_branch : env->config_.base_branch.value_or("");
  FACTORY_ASSIGN_OR_RETURN(env->workspace_, WorkspaceManager::Open(workspace_options));
  env->merges_ = std::make_unique<MergeQueue>(*env->workspace_);

  SandboxConfig sandbox_config;
  sandbox_config.use_bubblewrap = options.use_sandbox.value_or(env->config_.sandbox.enabled);
  sandbox_config.read_paths = env->config_.sandbox.read_paths;
  sandbox_config.tmp_mb = env->config_.sandbox.tmp_mb;
  sandbox_config.disk_mb = env->config_.sandbox.disk_mb;
  sandbox_config.env = env->config_.sandbox.env;
  env->sandbox_ = MakeSandbox(sandbox_config);

  QueueOptions queue_options;
  queue_options.retry = RunRetryPolicy();
  queue_options.actor = "orchestrator";
  env->queue_ = std::make_unique<Queue>(store, queue_options);

  // The prompt templates: a broken project override fails here, naming its file and line.
  auto prompts = prompts::PromptLibrary::Load(
      options.prompts_dir.empty() ? root / ".factory" / "prompts" : options.prompts_dir);
  if (!prompts) return std::unexpected(prompts.error());
  env->prompts_ = std::move(*prompts);

  env->ledger_ = std::make_unique<ledger::Ledger>(store);
  env->budget_ =
      std::make_unique<ledger::BudgetGuard>(store, MakeBudgetEnvelope(env->config_, *env->agents_));
  FACTORY_RETURN_IF_ERROR(env->OpenModelLayer(root, options));

  RunDeps run_deps{&store,
                   env->queue_.get(),
                   env->workspace_.get(),
                   env->merges_.get(),
                   env->agents_.get(),
                   env->sandbox_.get(),
                   &env->config_,
                   &*env->prompts_,
                   env->router_.get(),
                   env->rebase_targets_,
                   env->rebase_off_reason_};
  env->runs_ = std::make_unique<RunManager>(std::move(run_deps));
  if (!env->config_.gateway.url.empty() && HasAgentOf(*env->agents_, RunnerKind::kCli)) {
    env->gateway_hidden_variables_ = ProviderKeyVariables(
        options.models_path.empty() ? root / ".factory" / "models.yaml" : options.models_path);
  }

  env->pause_poll_ms_ = std::max<int64_t>(options.pause_poll_ms, 10);
  FACTORY_RETURN_IF_ERROR(env->SyncPauses());
  env->pause_mirror_ = std::thread([raw = env.get()] { raw->PauseMirrorLoop(); });
  return env;
}

RunEnvironment::~RunEnvironment() {
  {
    std::lock_guard lock(pause_mu_);
    stopping_ = true;
  }
  pause_cv_.notify_all();
  if (pause_mirror_.joinable()) pause_mirror_.join();
}

Status RunEnvironment::OpenModelLayer(const fs::path& root, const RunEnvironmentOptions& options) {
  const bool llm_agents = HasLlmAgent(*agents_);
  const std::vector<GateConfig> review_gates = config_.GatesOfKind(GateKind::kReview);
  const bool rebasing = config_.rebase.max_per_task > 0;
  if (!llm_agents && review_gates.empty() && !rebasing) return Ok();
  models_path_ =
      options.models_path.empty() ? root / ".factory" / "models.yaml" : options.models_path;
  auto models = llm::LoadModelsConfig(models_path_);
  if (!models) {
    const bool missing = models.error().code == ErrorCode::kNotFound;
    if (!review_gates.empty()) {
      const GateConfig& gate = review_gates.front();
      return InvalidArgument(
          ConfigWhere(config_, gate.line) + "gate '" + gate.name + "': a review gate needs " +
          (missing ? models_path_.string() + ", which does not exist (`factory init` writes "
                                             "the default)"
                   : "a valid " + models_path_.string() + ": " + models.error().message));
    }
    // A broken file is an error in the project when llm agents need it, reported with its line;
    // a missing one only matters to the tasks that need an llm agent (LoadBacklog says so).
    if (!missing && llm_agents) return std::unexpected(models.error());
    models_problem_ = "needs " + models_path_.string() +
                      ", which does not exist (`factory init` writes the default)";
    rebase_off_reason_ =
        missing ? "there is no " + models_path_.string()
                : "cannot load " + models_path_.string() + ": " + models.error().message;
    return Ok();
  }
  // Every llm agent's model and fallbacks must be an alias or a model of models.yaml.
  std::string unknown;
  for (const AgentSpec* agent : agents_->agents()) {
    if (agent->runner != RunnerKind::kLlm) continue;
    auto known = [&](const std::string& name) { return KnownModel(*models, name); };
    const std::string where = " (not in " + models_path_.string() + ")";
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
  for (size_t index = 0; index < config_.gates.size(); ++index) {
    const GateConfig& gate = config_.gates[index];
    if (gate.kind != GateKind::kReview || KnownModel(*models, gate.model)) continue;
    unknown += ConfigWhere(config_, gate.model_line) + "field 'gates[" + std::to_string(index) +
               "].model': unknown model '" + gate.model + "' (not an alias or a model of " +
               models_path_.string() + ")\n";
  }
  if (rebasing && !config_.rebase.model.empty() && !KnownModel(*models, config_.rebase.model)) {
    unknown += ConfigWhere(config_, config_.rebase.model_line) +
               "field 'rebase.model': unknown model '" + config_.rebase.model +
               "' (not an alias or a model of " + models_path_.string() + ")\n";
  }
  if (!unknown.empty()) {
    unknown.pop_back();
    return InvalidArgument(unknown);
  }
  FACTORY_RETURN_IF_ERROR(ChooseRebaseModels(&*models));
  llm::RouterOptions router_options;
  router_options.observer = ledger_.get();
  router_options.admission = budget_.get();
  FACTORY_ASSIGN_OR_RETURN(router_, llm::Router::Create(std::move(*models), router_options));
  return Ok();
}

Status RunEnvironment::ChooseRebaseModels(const llm::ModelsConfig* models) {
  if (config_.rebase.max_per_task == 0) {
    rebase_off_reason_ = "rebase.max_per_task is 0";
    return Ok();
  }
  if (models == nullptr) return Ok();
  if (!config_.rebase.model.empty()) {
    rebase_targets_ = {config_.rebase.model};
    return Ok();
  }
  auto chain = models->ChainFor("rebase", "");
  if (!chain || chain->empty()) {
    rebase_off_reason_ = "config.yaml names no rebase.model and " + models_path_.string() +
                         " has no routing rule for task type 'rebase'";
    return Ok();
  }
  rebase_targets_ = *chain;
  return Ok();
}

std::string RunEnvironment::LlmAgentProblem(const AgentSpec& agent,
                                            const std::string& task_type) const {
  if (router_ == nullptr) return AgentWhere(agent, "runner") + " " + models_problem_;
  const toolloop::ModelChoice choice =
      toolloop::ChooseModels(*router_, agent, task_type, /*attempt_number=*/1);
  auto resolved = router_->Resolve(choice.targets);
  if (resolved) return "";
  // FailedPrecondition lists each model with its provider's reason ("environment variable
  // OPENAI_API_KEY is not set").
  return AgentWhere(agent, "model") + ": no usable model for its first attempt (" +
         choice.Describe() + "): " + resolved.error().message;
}

RunnerFactory RunEnvironment::runner_factory() {
  return [this](const AgentSpec& agent) -> Result<std::unique_ptr<Runner>> {
    if (agent.runner == RunnerKind::kCli && !config_.gateway.url.empty()) {
      FACTORY_ASSIGN_OR_RETURN(std::unique_ptr<Runner> cli, MakeRunner(agent));
      return std::unique_ptr<Runner>(std::make_unique<GatewayKeyRunner>(
          std::move(cli), store_, agent.name, config_.gateway.url, gateway_hidden_variables_));
    }
    if (agent.runner != RunnerKind::kLlm) return MakeRunner(agent);
    if (router_ == nullptr) {
      return FailedPrecondition("agent '" + agent.name + "' " + models_problem_);
    }
    toolloop::LlmRunnerOptions options;
    options.agent_paused = [this](std::string_view name) { return budget_->IsPaused(name); };
    options.pause_poll_ms = pause_poll_ms_;
    return std::unique_ptr<Runner>(
        std::make_unique<toolloop::LlmRunner>(*router_, agent, std::move(options)));
  };
}

Result<std::vector<AgentPause>> RunEnvironment::SyncPauses() {
  FACTORY_ASSIGN_OR_RETURN(std::vector<AgentPause> pauses, budget_->Pauses());
  const AgentPause* all = nullptr;
  std::map<std::string, const AgentPause*> by_agent;
  for (const auto& pause : pauses) {
    if (pause.agent == ledger::kAllAgents) all = &pause;
    by_agent[pause.agent] = &pause;
  }
  std::lock_guard lock(pause_mu_);
  for (const AgentSpec* agent : agents_->agents()) {
    const AgentPause* pause = all;
    if (auto it = by_agent.find(agent->name); it != by_agent.end()) pause = it->second;
    if (pause != nullptr) {
      if (paused_by_mirror_.insert(agent->name).second) {
        (void)agents_->Pause(agent->name, pause->reason);
        spdlog::info("agent {} paused: {}", agent->name, pause->reason);
      }
    } else if (paused_by_mirror_.erase(agent->name) > 0) {
      (void)agents_->Resume(agent->name);
      spdlog::info("agent {} resumed", agent->name);
    }
  }
  return pauses;
}

void RunEnvironment::PauseMirrorLoop() {
  std::unique_lock lock(pause_mu_);
  while (!stopping_) {
    pause_cv_.wait_for(lock, std::chrono::milliseconds(pause_poll_ms_),
                       [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (auto synced = SyncPauses(); !synced) {
      spdlog::warn("cannot read budget pauses: {}", synced.error().ToString());
    }
    lock.lock();
  }
}

std::string RunEnvironment::ReviewerSharesModel(const BacklogTask& task, const AgentSpec& resolved,
                                                const fs::path& backlog,
                                                std::set<std::string>& reported) const {
  if (router_ == nullptr || !config_.HasReviewGate()) return "";
  const llm::ModelsConfig& models = router_->config();
  // The agents the task may get: the one it names or its binding default, else any capable one.
  std::vector<const AgentSpec*> builders;
  auto binding = config_.default_agents.find(task.type);
  if (!task.agent.empty() ||
      (binding != config_.default_agents.end() && binding->second == resolved.name)) {
    builders.push_back(&resolved);
  } else {
    for (const AgentSpec* agent : agents_->agents()) {
      if (agent->Covers(task.capabilities)) builders.push_back(agent);
    }
  }
  std::string problems;
  for (const GateConfig& gate : config_.gates) {
    if (gate.kind != GateKind::kReview) continue;
    std::map<std::string, std::string> reviewer;
    AddModelsOf(models, gate.model, reviewer);
    for (const AgentSpec* builder : builders) {
      auto shared = SharedModel(reviewer, BuilderModels(models, *builder, task.type));
      if (!shared || !reported.insert(gate.name + "\n" + builder->name).second) continue;
      problems += ConfigWhere(config_, gate.model_line > 0 ? gate.model_line : gate.line) +
                  "gate '" + gate.name + "': the reviewer's model " + gate.model +
                  (*shared == gate.model ? "" : " (" + *shared + ")") + " is also a model of " +
                  AgentWhere(*builder, "model") + ", which may build task '" + task.id + "' (" +
                  backlog.string() + ":" + std::to_string(task.line) +
                  "); the reviewer must use a different model from the builder\n";
    }
  }
  return problems;
}

Result<Loaded<Backlog>> RunEnvironment::LoadBacklog(const fs::path& path) const {
  BacklogOptions backlog_options;
  backlog_options.agents = agents_.get();
  FACTORY_ASSIGN_OR_RETURN(Loaded<Backlog> backlog, factory::LoadBacklog(path, backlog_options));

  // Every agent a task would get must be runnable here, checked before anything starts.
  std::string problems;
  std::set<std::string> checked;
  std::set<std::string> reported_shared;  // "gate\nagent" pairs already reported
  for (const BacklogTask& task : backlog.value.tasks) {
    AgentRequest request;
    request.type = task.type;
    request.capabilities = task.capabilities;
    request.agent = task.agent;
    auto agent = agents_->Resolve(request);
    if (!agent) {
      problems += path.string() + ":" + std::to_string(task.line) + ": task '" + task.id +
                  "': " + agent.error().message + "\n";
      continue;
    }
    const std::string where =
        path.string() + ":" + std::to_string(task.line) + ": task '" + task.id + "': ";
    if (std::string shared = ReviewerSharesModel(task, **agent, path, reported_shared);
        !shared.empty()) {
      problems += shared;
    }
    if ((*agent)->runner == RunnerKind::kLlm) {
      // The first attempt's models depend on the task type (the cost pyramid).
      if (!checked.insert((*agent)->name + "\n" + task.type).second) continue;
      if (std::string problem = LlmAgentProblem(**agent, task.type); !problem.empty()) {
        problems += where + problem + "\n";
      }
      continue;
    }
    if (!checked.insert((*agent)->name).second) continue;
    Status available = CheckRunnerAvailable(**agent);
    if (!available) {
      problems += where + "agent '" + (*agent)->name + "': " + available.error().message + "\n";
    }
  }
  if (!problems.empty()) {
    problems.pop_back();
    return InvalidArgument(problems);
  }
  return backlog;
}

}  // namespace factory
