#pragma once
// What the backlog targets share: the agents a backlog is checked against, and the properties
// of a parse result.

#include <set>
#include <string>

#include "agents/agent.h"
#include "agents/registry.h"
#include "fuzz_util.h"
#include "plan/backlog.h"

namespace factory::fuzz {

// A builder for code and a tester for tests, as a project would have.
inline const AgentRegistry& FuzzAgents() {
  static const AgentRegistry* const registry = [] {
    auto* agents = new AgentRegistry();
    AgentSpec builder;
    builder.name = "builder";
    builder.role = "writes code";
    builder.command = "true";
    builder.capabilities = {"code"};
    AgentSpec tester = builder;
    tester.name = "tester";
    tester.capabilities = {"test"};
    Require(agents->Add(std::move(builder)).has_value(), "adding the builder");
    Require(agents->Add(std::move(tester)).has_value(), "adding the tester");
    return agents;
  }();
  return *registry;
}

// A valid backlog is a graph in topological order with unique, valid ids; an invalid one says
// why.
inline void CheckBacklog(const Result<Loaded<Backlog>>& parsed) {
  if (!parsed) {
    Require(!parsed.error().message.empty(), "a refused backlog names its errors");
    return;
  }
  std::set<std::string> seen;
  for (const BacklogTask& task : parsed->value.tasks) {
    Require(IsValidName(task.id), "task ids are valid names");
    for (const std::string& dependency : task.depends_on) {
      Require(seen.contains(dependency), "every task comes after its dependencies");
    }
    Require(seen.insert(task.id).second, "task ids are unique");
    Require(parsed->value.Find(task.id) == &task, "Find returns the task");
  }
}

}  // namespace factory::fuzz
