#pragma once
// The runner kinds: one registry from a kind's name (an agent file's `runner:`) to what makes
// and checks its runners. A new kind is one file and one Register call; nothing else switches on
// the kind.
//
//   RunnerRegistry runners = RunnerRegistry::Builtin();      // script, cli, llm (placeholder)
//   runners.Register({.name = "llm", .make = ..., .check = ...}, /*replace=*/true);
//   auto runner = runners.Make(agent);
//
// Thread-safety: const methods may be called from any thread; Register is not thread-safe and
// belongs to setup, before the registry is shared.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agents/agent.h"
#include "core/result.h"
#include "runners/runner.h"

namespace factory {

// What a kind's availability check may depend on beyond the agent.
struct RunnerCheckContext {
  std::string task_type;  // the task the agent would build ("" when not for a task)
};

struct RunnerKindEntry {
  std::string name;  // "script", "cli", "llm"...
  // Makes the runner for an agent of this kind. InvalidArgument or NotFound when it never can
  // (a bad agent file); Unavailable when it may later.
  std::function<Result<std::unique_ptr<Runner>>(const AgentSpec&)> make;
  // Checks, before a run starts, that the agent can run here (a binary on PATH, a usable
  // model). Its error names the agent ("agent 'x' (file): ..."). Empty: nothing to check.
  std::function<Status(const AgentSpec&, const RunnerCheckContext&)> check;
};

class RunnerRegistry {
 public:
  // script and cli (runners/script_runner, cli_runner), and llm as a kind that cannot be made
  // without the model layer (the run environment registers the tool-loop runner over it).
  static RunnerRegistry Builtin();

  // Adds a kind. AlreadyExists when the name is taken and !replace; InvalidArgument for an
  // empty name or no `make`.
  Status Register(RunnerKindEntry entry, bool replace = false);

  // The entry of a kind; InvalidArgument "unknown runner kind 'x' (known: cli, llm, script)".
  Result<const RunnerKindEntry*> Find(std::string_view kind) const;
  // The registered names, sorted.
  std::vector<std::string> Kinds() const;

  // The runner for an agent, by the agent's kind; Find's error for an unknown kind.
  Result<std::unique_ptr<Runner>> Make(const AgentSpec& agent) const;
  // The agent's kind's check; Find's error for an unknown kind.
  Status Check(const AgentSpec& agent, const RunnerCheckContext& context = {}) const;

 private:
  std::map<std::string, RunnerKindEntry, std::less<>> kinds_;
};

}  // namespace factory
