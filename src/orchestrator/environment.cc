#include "orchestrator/environment.h"

#include <set>
#include <utility>

#include "runners/runner.h"
#include "workspace/git.h"

namespace factory {

namespace fs = std::filesystem;

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
  if (config) {
    env->config_ = std::move(config->value);
    for (auto& warning : config->warnings) env->warnings_.push_back(std::move(warning));
  } else if (config.error().code == ErrorCode::kNotFound && !explicit_config) {
    env->config_ = ProjectConfig{};
  } else {
    return std::unexpected(config.error());
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
  env->sandbox_ = MakeSandbox(sandbox_config);

  QueueOptions queue_options;
  queue_options.retry = RunRetryPolicy();
  queue_options.actor = "orchestrator";
  env->queue_ = std::make_unique<Queue>(store, queue_options);

  env->runs_ = std::make_unique<RunManager>(
      RunDeps{&store, env->queue_.get(), env->workspace_.get(), env->merges_.get(),
              env->agents_.get(), env->sandbox_.get(), &env->config_});
  return env;
}

Result<Loaded<Backlog>> RunEnvironment::LoadBacklog(const fs::path& path) const {
  BacklogOptions backlog_options;
  backlog_options.agents = agents_.get();
  FACTORY_ASSIGN_OR_RETURN(Loaded<Backlog> backlog, factory::LoadBacklog(path, backlog_options));

  // Every agent a task would get must be runnable here, checked before anything starts.
  std::string problems;
  std::set<std::string> checked;
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
    if (!checked.insert((*agent)->name).second) continue;
    Status available = CheckRunnerAvailable(**agent);
    if (!available) {
      problems += path.string() + ":" + std::to_string(task.line) + ": task '" + task.id +
                  "': agent '" + (*agent)->name + "': " + available.error().message + "\n";
    }
  }
  if (!problems.empty()) {
    problems.pop_back();
    return InvalidArgument(problems);
  }
  return backlog;
}

}  // namespace factory
