#include "orchestrator/environment.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "orchestrator/gateway_key_runner.h"
#include "orchestrator/pause_mirror.h"
#include "orchestrator/run_checks.h"
#include "runners/runner.h"
#include "toolloop/llm_runner.h"
#include "workspace/git.h"

namespace factory {

namespace fs = std::filesystem;

namespace {

bool HasAgentOf(const AgentRegistry& agents, RunnerKind kind) {
  const auto all = agents.agents();
  return std::any_of(all.begin(), all.end(),
                     [kind](const AgentSpec* agent) { return agent->runner == kind; });
}
bool HasLlmAgent(const AgentRegistry& agents) { return HasAgentOf(agents, RunnerKind::kLlm); }

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
  env->RegisterRunners();
  FACTORY_ASSIGN_OR_RETURN(env->pause_mirror_,
                           PauseMirror::Start(*env->budget_, *env->agents_, env->pause_poll_ms_));
  return env;
}

RunEnvironment::~RunEnvironment() = default;

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
  FACTORY_RETURN_IF_ERROR(CheckModelNames(config_, *agents_, *models, models_path_));
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

void RunEnvironment::RegisterRunners() {
  runners_ = RunnerRegistry::Builtin();
  // llm: the tool loop over the router, checked against models.yaml for the task's type.
  (void)runners_.Register(
      {.name = std::string(RunnerKindName(RunnerKind::kLlm)),
       .make = [this](const AgentSpec& agent) -> Result<std::unique_ptr<Runner>> {
         if (router_ == nullptr) {
           return FailedPrecondition("agent '" + agent.name + "' " + models_problem_);
         }
         toolloop::LlmRunnerOptions options;
         options.agent_paused = [this](std::string_view name) { return budget_->IsPaused(name); };
         options.pause_poll_ms = pause_poll_ms_;
         return std::unique_ptr<Runner>(
             std::make_unique<toolloop::LlmRunner>(*router_, agent, std::move(options)));
       },
       .check = [this](const AgentSpec& agent, const RunnerCheckContext& context) -> Status {
         std::string problem =
             LlmAgentProblem(router_.get(), models_problem_, agent, context.task_type);
         if (problem.empty()) return Ok();
         return FailedPrecondition(std::move(problem));
       }},
      /*replace=*/true);
  if (config_.gateway.url.empty()) return;
  // cli behind the gateway: the preset's runner with a virtual key per attempt.
  auto cli = runners_.Find(RunnerKindName(RunnerKind::kCli));
  if (!cli) return;
  RunnerKindEntry gated = **cli;
  gated.make = [this,
                make = gated.make](const AgentSpec& agent) -> Result<std::unique_ptr<Runner>> {
    FACTORY_ASSIGN_OR_RETURN(std::unique_ptr<Runner> inner, make(agent));
    return WithGatewayKey(std::move(inner), store_, agent.name, config_.gateway.url,
                          gateway_hidden_variables_);
  };
  (void)runners_.Register(std::move(gated), /*replace=*/true);
}

RunnerFactory RunEnvironment::runner_factory() {
  return [this](const AgentSpec& agent) { return runners_.Make(agent); };
}

Result<std::vector<AgentPause>> RunEnvironment::SyncPauses() { return pause_mirror_->Sync(); }

Result<Loaded<Backlog>> RunEnvironment::LoadBacklog(const fs::path& path) const {
  BacklogOptions backlog_options;
  backlog_options.agents = agents_.get();
  FACTORY_ASSIGN_OR_RETURN(Loaded<Backlog> backlog, factory::LoadBacklog(path, backlog_options));
  FACTORY_RETURN_IF_ERROR(CheckBacklogRunnable(backlog.value, path,
                                               RunCheckDeps{.config = &config_,
                                                            .agents = agents_.get(),
                                                            .router = router_.get(),
                                                            .runners = &runners_}));
  return backlog;
}

}  // namespace factory
