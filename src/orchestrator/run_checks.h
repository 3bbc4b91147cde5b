#pragma once
// What the run environment checks before anything runs: that the model names of the agents,
// review gates and rebase agent exist in models.yaml, and that every task of a backlog has an
// agent that can run here without sharing a model with a reviewer. Composition
// (orchestrator/environment.h) opens the pieces; these functions only judge them.

#include <filesystem>
#include <string>

#include "agents/registry.h"
#include "core/result.h"
#include "llm/models_config.h"
#include "llm/router.h"
#include "plan/backlog.h"
#include "plan/config.h"
#include "runners/registry.h"

namespace factory {

// "config.yaml:12: " (the file and line of a config field), or "config.yaml: " without a line.
std::string ConfigWhere(const ProjectConfig& config, int line);

// Every llm agent's model and fallbacks, every review gate's model and (when rebasing) the
// rebase model is an alias or a model of `models`. InvalidArgument listing each unknown name
// with the file and line to fix.
Status CheckModelNames(const ProjectConfig& config, const AgentRegistry& agents,
                       const llm::ModelsConfig& models, const std::filesystem::path& models_path);

// Why `agent` (llm) cannot make its first attempt's calls for a task of `task_type`, naming the
// agent's file and field; "" when it can. router null: `models_problem` says why there is none.
std::string LlmAgentProblem(const llm::Router* router, const std::string& models_problem,
                            const AgentSpec& agent, const std::string& task_type);

struct RunCheckDeps {
  const ProjectConfig* config = nullptr;    // REQUIRES: non-null
  AgentRegistry* agents = nullptr;          // REQUIRES: non-null
  const llm::Router* router = nullptr;      // null: no models.yaml (no reviewer check)
  const RunnerRegistry* runners = nullptr;  // REQUIRES: non-null
};

// Every task of `backlog` (read from `path`) resolves to an agent whose runner kind's check
// passes for the task's type, and no agent a task may get (its explicit or binding default
// agent, else every agent with its capabilities) can use a review gate's model.
// InvalidArgument listing every problem, each naming the backlog line, the task and the agent
// (and config.yaml's line for a review gate).
Status CheckBacklogRunnable(const Backlog& backlog, const std::filesystem::path& path,
                            const RunCheckDeps& deps);

}  // namespace factory
