#pragma once
// Everything `factory run` needs, opened from a repository in one call: the project config
// (.factory/config.yaml), the agents (.factory/agents/*.md), the workspace (git worktrees and
// the merge queue), the sandbox, the queue (with the run retry policy) and the RunManager.
// The store is opened by the caller (the CLI has its own --db handling) and passed in.
//
// The model layer, for agents with `runner: llm`: .factory/models.yaml is loaded and a Router
// built over it whose every call is written to the ledger and admitted by the BudgetGuard (the
// envelope from config.yaml `budget:` and each agent's `budget:`). runner_factory() makes the
// built-in tool-loop runner for llm agents (cost pyramid, budget pauses: toolloop/llm_runner.h)
// and MakeRunner's for the others. Budget pauses recorded in the store (an agent's daily cap,
// the global cap "*", velocity; from this or any other process) are mirrored into the agent
// registry while the environment is open (orchestrator/pause_mirror.h), polled every
// pause_poll_ms, so a paused agent takes no new task until `factory agents resume NAME` lifts
// the pause.
//
// Review gates and rebases (orchestrator/review.h, rebase.h) call models through the same
// Router: it is built whenever models.yaml exists and something needs it (an llm agent, a
// `kind: review` gate, rebasing with rebase.max_per_task > 0). A review gate without a usable
// models.yaml, or naming a model models.yaml does not define, fails Open with config.yaml's line;
// rebasing without one is off (the run logs why). The rebase agent's models: config
// rebase.model, else models.yaml's routing chain for task type "rebase".
//
// The prompt library (prompts/library.h: the shipped templates and <repo>/.factory/prompts/
// overrides) is loaded by Open, so a broken override fails before anything runs, naming its
// file and line; the pipeline renders the implementation, review and rebase prompts from it.
//
// The gateway, for agents with `runner: cli`: when config.yaml names one (`gateway: {url}`),
// runner_factory() wraps their runner so that each attempt gets a virtual key
// (gateway::IssueKey on the run's store) scoped to the agent, the run, the queue's task and the
// attempt, and FACTORY_GATEWAY_URL / FACTORY_GATEWAY_KEY in its environment (which the cli
// runner turns into the SDKs' base-URL and key variables); the provider key variables named in
// models.yaml are blanked for it. The key is revoked when the attempt ends, whatever the
// outcome, and never written to logs, events or the task file.
//
//   auto env = RunEnvironment::Open(*store, {.repo_path = "."});
//   auto backlog = (*env)->LoadBacklog("BACKLOG.yaml");           // validated, runnable here
//   auto created = (*env)->runs().CreateRun(backlog->value, {.run_id = id});
//   RunView view(stdout);
//   auto summary = (*env)->runs().ExecuteRun(
//       created->run_id, {.observer = &view, .make_runner = (*env)->runner_factory()});
//
// Thread-safety: as RunManager; the accessors may be used from any thread.

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agents/diagnostics.h"
#include "agents/registry.h"
#include "core/result.h"
#include "ledger/budget.h"
#include "ledger/ledger.h"
#include "llm/models_config.h"
#include "llm/router.h"
#include "orchestrator/pause_mirror.h"
#include "orchestrator/pipeline.h"
#include "orchestrator/run.h"
#include "plan/backlog.h"
#include "plan/config.h"
#include "prompts/library.h"
#include "queue/queue.h"
#include "runners/registry.h"
#include "store/store.h"
#include "workspace/merge_queue.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory {

struct RunEnvironmentOptions {
  std::string repo_path = ".";  // any directory inside the repository
  // Empty: <repository root>/.factory/config.yaml; a missing default file means the defaults.
  std::filesystem::path config_path;
  // Empty: <repository root>/.factory/agents; a missing default folder means no agents.
  std::filesystem::path agents_dir;
  std::string base_branch;          // overrides the config's base_branch; both empty: current
  std::optional<bool> use_sandbox;  // overrides config sandbox.enabled (bubblewrap)
  // Empty: <repository root>/.factory/models.yaml. Read when an agent has `runner: llm`, a gate
  // is a review gate, or rebasing is on.
  std::filesystem::path models_path;
  // Empty: <repository root>/.factory/prompts (the project's prompt overrides).
  std::filesystem::path prompts_dir;
  // How often budget pauses in the store are mirrored into the agent registry (and how often a
  // paused llm runner checks whether it may go on).
  int64_t pause_poll_ms = 1'000;
};

// The budget envelope of a project: config.yaml `budget:` as the project level, each agent's
// `budget:` (usd_per_task, tokens_per_task, usd_per_day) as its override.
ledger::BudgetEnvelope MakeBudgetEnvelope(const ProjectConfig& config, const AgentRegistry& agents);

class RunEnvironment {
 public:
  // Loads and opens everything. Errors name the file and line (config, agent files), or say
  // what is wrong with the repository (not a git repository, detached HEAD without a base
  // branch). REQUIRES: store outlives the environment.
  static Result<std::unique_ptr<RunEnvironment>> Open(Store& store,
                                                      const RunEnvironmentOptions& options);

  ~RunEnvironment();
  RunEnvironment(const RunEnvironment&) = delete;
  RunEnvironment& operator=(const RunEnvironment&) = delete;

  // Reads and validates a backlog (YAML, or JSON by extension) against the agents, then checks
  // (orchestrator/run_checks.h CheckBacklogRunnable) that the agent each task would get can run
  // here (a cli preset's binary on PATH; for an llm
  // agent a usable models.yaml and, for its first attempt's models, a provider whose API key
  // variable is set), and that no agent a task may get (its explicit or binding default agent,
  // else every agent with its capabilities) can use a review gate's model (llm agents: every
  // model of their alias's cost-pyramid rungs up to the alias and of their fallbacks; cli
  // agents: their `model:`). InvalidArgument listing every problem, each naming the backlog
  // line, the task and the agent (and config.yaml's line for a review gate).
  Result<Loaded<Backlog>> LoadBacklog(const std::filesystem::path& path) const;

  // Runners for the pipeline, from the project's runner registry: toolloop::LlmRunner over
  // router() for llm agents, the built-in kinds for the others (for cli agents behind the
  // configured gateway, with a key per attempt: orchestrator/gateway_key_runner.h). Pass it as
  // ExecuteOptions::make_runner. Valid while the environment lives.
  RunnerFactory runner_factory();

  // The model router; null when nothing needs one (no llm agent, no review gate, rebasing off)
  // or models.yaml is missing (LoadBacklog then explains, for the tasks that need it).
  llm::Router* router() { return router_.get(); }
  const prompts::PromptLibrary& prompts() const { return *prompts_; }
  // The rebase agent's models; empty when rebasing is off, for rebase_off_reason().
  const std::vector<std::string>& rebase_targets() const { return rebase_targets_; }
  const std::string& rebase_off_reason() const { return rebase_off_reason_; }
  ledger::BudgetGuard& budget() { return *budget_; }
  ledger::Ledger& ledger() { return *ledger_; }
  // Re-reads the store's budget pauses into the agent registry now (the mirror does it every
  // pause_poll_ms anyway). Returns the pauses in force.
  Result<std::vector<AgentPause>> SyncPauses();

  RunManager& runs() { return *runs_; }
  Queue& queue() { return *queue_; }
  Store& store() { return store_; }
  WorkspaceManager& workspace() { return *workspace_; }
  MergeQueue& merges() { return *merges_; }
  AgentRegistry& agents() { return *agents_; }
  Sandbox& sandbox() { return *sandbox_; }
  const ProjectConfig& config() const { return config_; }
  // Warnings from the config and agent files (unknown keys...), for the caller to print.
  const std::vector<Diagnostic>& warnings() const { return warnings_; }

 private:
  explicit RunEnvironment(Store& store) : store_(store) {}

  // Loads models.yaml and builds the router when something needs it (see the file comment).
  Status OpenModelLayer(const std::filesystem::path& root, const RunEnvironmentOptions& options);
  // The runner kinds of this project: the built-in ones, llm over router(), cli behind the
  // gateway when one is configured. REQUIRES: after OpenModelLayer.
  void RegisterRunners();
  // The rebase agent's models, or why rebasing is off. REQUIRES: after OpenModelLayer.
  Status ChooseRebaseModels(const llm::ModelsConfig* models);

  Store& store_;
  int64_t pause_poll_ms_ = 1'000;
  ProjectConfig config_;
  std::vector<Diagnostic> warnings_;
  std::unique_ptr<AgentRegistry> agents_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<WorkspaceManager> workspace_;
  std::unique_ptr<MergeQueue> merges_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<RunManager> runs_;
  RunnerRegistry runners_;  // set up by Open, read-only afterwards

  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<ledger::BudgetGuard> budget_;
  std::unique_ptr<llm::Router> router_;  // after ledger_ and budget_: destroyed first
  std::filesystem::path models_path_;
  std::string models_problem_;  // why router_ is null although an llm agent exists
  std::optional<prompts::PromptLibrary> prompts_;
  std::vector<std::string> rebase_targets_;
  std::string rebase_off_reason_;
  // Provider key variables hidden from cli agents behind the gateway (models.yaml's
  // api_key_env names).
  std::vector<std::string> gateway_hidden_variables_;

  std::unique_ptr<PauseMirror> pause_mirror_;  // last: stopped first
};

}  // namespace factory
