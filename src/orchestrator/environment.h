#pragma once
// Everything `factory run` needs, opened from a repository in one call: the project config
// (.factory/config.yaml), the agents (.factory/agents/*.md), the workspace (git worktrees and
// the merge queue), the sandbox, the queue (with the run retry policy) and the RunManager.
// The store is opened by the caller (the CLI has its own --db handling) and passed in.
//
//   auto env = RunEnvironment::Open(*store, {.repo_path = "."});
//   auto backlog = (*env)->LoadBacklog("BACKLOG.yaml");           // validated, runnable here
//   auto created = (*env)->runs().CreateRun(backlog->value, {.run_id = id});
//   RunView view(stdout);
//   auto summary = (*env)->runs().ExecuteRun(created->run_id, {.observer = &view});
//
// Thread-safety: as RunManager; the accessors may be used from any thread.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agents/diagnostics.h"
#include "agents/registry.h"
#include "core/result.h"
#include "orchestrator/run.h"
#include "plan/backlog.h"
#include "plan/config.h"
#include "queue/queue.h"
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
};

class RunEnvironment {
 public:
  // Loads and opens everything. Errors name the file and line (config, agent files), or say
  // what is wrong with the repository (not a git repository, detached HEAD without a base
  // branch). REQUIRES: store outlives the environment.
  static Result<std::unique_ptr<RunEnvironment>> Open(Store& store,
                                                      const RunEnvironmentOptions& options);

  RunEnvironment(const RunEnvironment&) = delete;
  RunEnvironment& operator=(const RunEnvironment&) = delete;

  // Reads and validates a backlog (YAML, or JSON by extension) against the agents, then checks
  // that the agent each task would get can run here (a cli preset's binary on PATH...).
  // InvalidArgument listing every problem.
  Result<Loaded<Backlog>> LoadBacklog(const std::filesystem::path& path) const;

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

  Store& store_;
  ProjectConfig config_;
  std::vector<Diagnostic> warnings_;
  std::unique_ptr<AgentRegistry> agents_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<WorkspaceManager> workspace_;
  std::unique_ptr<MergeQueue> merges_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<RunManager> runs_;
};

}  // namespace factory
