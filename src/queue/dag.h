#pragma once
// Dependency-graph checks shared by `task add` and the backlog loader.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace factory {

// node id -> ids it depends on. Every dependency must itself be a key.
using DependencyGraph = std::map<std::string, std::vector<std::string>>;

// A cycle as the list of nodes along it, first node repeated at the end
// (e.g. {"a", "b", "c", "a"}: a depends on b, b on c, c on a), or nullopt when acyclic.
// Deterministic: the same graph always yields the same cycle.
std::optional<std::vector<std::string>> FindCycle(const DependencyGraph& graph);

// A topological order (dependencies first; ties broken by id). InvalidArgument naming the
// cycle when there is one, or naming an unknown dependency.
Result<std::vector<std::string>> TopologicalOrder(const DependencyGraph& graph);

// "a -> b -> c -> a"
std::string FormatCycle(const std::vector<std::string>& cycle);

}  // namespace factory
