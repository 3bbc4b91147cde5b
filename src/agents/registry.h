#pragma once
// The agents of a project and the choice of an agent for a task.
//
// Choosing (Resolve / Acquire), in order:
//   1. the task names an agent: that agent, whatever its capabilities (the author decided);
//      an unknown name is NotFound.
//   2. the project's default agent for the task's type (config `default_agents`), when it
//      covers the task's capabilities. It is then binding: when it is busy the task waits for
//      it rather than spilling onto another (possibly costlier) agent.
//   3. otherwise, among the agents whose capabilities cover the task's, the cheapest by
//      cost_tier (ties by name) that has a free slot.
// "No agent can ever take this task" (FailedPrecondition / NotFound) is kept apart from "every
// agent that could is busy or paused right now" (Unavailable: retry later).

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "agents/agent.h"
#include "agents/diagnostics.h"
#include "core/result.h"

namespace factory {

// What a task asks of an agent.
struct AgentRequest {
  std::string type;                       // task type; "" when none
  std::vector<std::string> capabilities;  // all must be covered
  std::string agent;                      // explicit agent; "" to let the registry choose
};

// task type -> agent name (config `default_agents`).
using DefaultAgents = std::map<std::string, std::string>;

enum class AgentState { kIdle, kBusy, kPaused };

struct AgentStatus {
  std::string name;
  AgentState state = AgentState::kIdle;
  int in_use = 0;       // slots taken
  int concurrency = 1;  // slots in total
  std::string pause_reason;

  // "idle", "busy(1/2)" or "paused: <reason>".
  [[nodiscard]] std::string ToString() const;
};

// Thread-safe: the agent set is fixed once loaded (Add is for set-up, before sharing); slots,
// pauses and defaults are guarded by a mutex. Returned AgentSpec pointers stay valid for the
// registry's lifetime.
class AgentRegistry {
 public:
  AgentRegistry() = default;
  AgentRegistry(const AgentRegistry&) = delete;
  AgentRegistry& operator=(const AgentRegistry&) = delete;

  // Loads every `*.md` in `dir` (not recursive, sorted by file name). All problems are
  // collected: an invalid file or a name used by two files fails the load with every error
  // ("FILE:LINE: ..." one per line); warnings come back with the registry. A missing directory
  // is NotFound; an empty one is a valid, empty registry.
  static Result<Loaded<std::unique_ptr<AgentRegistry>>> LoadDirectory(
      const std::filesystem::path& dir);

  // Adds an agent. AlreadyExists when the name is taken.
  // REQUIRES: no concurrent Resolve/Acquire (set-up only).
  Status Add(AgentSpec spec);

  // The task-type defaults used in step 2 above.
  void SetDefaultAgents(DefaultAgents defaults);

  // nullptr when unknown.
  [[nodiscard]] const AgentSpec* Find(std::string_view name) const;
  // All agents, sorted by name.
  [[nodiscard]] std::vector<const AgentSpec*> agents() const;
  [[nodiscard]] size_t size() const { return agents_.size(); }

  // The agent that would take the task if every slot were free, ignoring pauses. NotFound for
  // an unknown explicit or default agent, FailedPrecondition when no agent covers the task's
  // capabilities. Used to validate a backlog before anything runs.
  [[nodiscard]] Result<const AgentSpec*> Resolve(const AgentRequest& request) const;

  // Chooses as described above and takes one of the chosen agent's slots; the caller must
  // Release(name) when the task ends. Unavailable when every agent that could take it is busy
  // or paused; NotFound / FailedPrecondition as Resolve.
  Result<const AgentSpec*> Acquire(const AgentRequest& request);

  // Takes a slot of a named agent. NotFound when unknown, Unavailable when busy or paused.
  Status TryAcquire(std::string_view name);
  // Returns a slot. REQUIRES: a slot of `name` was taken by Acquire or TryAcquire.
  void Release(std::string_view name);

  // A paused agent is skipped by Acquire until resumed (budget and velocity pauses).
  Status Pause(std::string_view name, std::string reason);
  Status Resume(std::string_view name);

  // Checks every agent's `model` and `fallbacks` with `is_known_alias` (the model layer's alias
  // table, kept out of this module). InvalidArgument listing each unknown alias as
  // "FILE:LINE: field 'model': unknown model alias 'x'".
  Status CheckModelAliases(const std::function<bool(std::string_view)>& is_known_alias) const;

  [[nodiscard]] Result<AgentStatus> StatusOf(std::string_view name) const;
  // Every agent's status, sorted by name.
  [[nodiscard]] std::vector<AgentStatus> Statuses() const;

 private:
  struct Slot {
    int in_use = 0;
    bool paused = false;
    std::string pause_reason;
  };
  struct Choice {
    const AgentSpec* fixed = nullptr;             // explicit or binding default
    std::vector<const AgentSpec*> by_preference;  // capable agents, cheapest first
  };

  Result<Choice> Candidates(const AgentRequest& request, const DefaultAgents& defaults) const;
  AgentStatus StatusLocked(const AgentSpec& spec) const;

  std::map<std::string, std::unique_ptr<AgentSpec>, std::less<>> agents_;

  mutable std::mutex mu_;
  std::map<std::string, Slot, std::less<>> slots_;  // guarded by mu_
  DefaultAgents defaults_;                          // guarded by mu_
};

}  // namespace factory
