#include "queue/dag.h"

#include <algorithm>
#include <set>

namespace factory {

std::optional<std::vector<std::string>> FindCycle(const DependencyGraph& graph) {
  enum class Mark { kUnvisited, kOnStack, kDone };
  std::map<std::string, Mark> marks;
  std::vector<std::string> stack;
  std::optional<std::vector<std::string>> cycle;

  // Iterative DFS so a long dependency chain cannot overflow the call stack.
  for (const auto& [root, unused] : graph) {
    if (marks[root] != Mark::kUnvisited) continue;
    std::vector<std::pair<std::string, size_t>> frames{{root, 0}};
    marks[root] = Mark::kOnStack;
    stack.push_back(root);
    while (!frames.empty()) {
      auto& [node, next_dep] = frames.back();
      auto it = graph.find(node);
      const std::vector<std::string>* deps = it == graph.end() ? nullptr : &it->second;
      if (deps == nullptr || next_dep >= deps->size()) {
        marks[node] = Mark::kDone;
        stack.pop_back();
        frames.pop_back();
        continue;
      }
      const std::string dep = (*deps)[next_dep++];
      Mark mark = marks[dep];
      if (mark == Mark::kOnStack) {
        std::vector<std::string> found;
        auto start = std::find(stack.begin(), stack.end(), dep);
        found.assign(start, stack.end());
        found.push_back(dep);
        return found;
      }
      if (mark == Mark::kUnvisited) {
        marks[dep] = Mark::kOnStack;
        stack.push_back(dep);
        frames.emplace_back(dep, 0);
      }
    }
  }
  return cycle;
}

Result<std::vector<std::string>> TopologicalOrder(const DependencyGraph& graph) {
  for (const auto& [node, deps] : graph) {
    for (const auto& dep : deps) {
      if (!graph.contains(dep)) {
        return InvalidArgument("'" + node + "' depends on unknown '" + dep + "'");
      }
    }
  }
  if (auto cycle = FindCycle(graph)) {
    return InvalidArgument("dependency cycle: " + FormatCycle(*cycle));
  }
  // Kahn's algorithm with an ordered ready set for a deterministic order.
  std::map<std::string, int> unmet;
  std::map<std::string, std::vector<std::string>> dependents;
  for (const auto& [node, deps] : graph) {
    unmet[node] += 0;
    for (const auto& dep : std::set<std::string>(deps.begin(), deps.end())) {
      ++unmet[node];
      dependents[dep].push_back(node);
    }
  }
  std::set<std::string> ready;
  for (const auto& [node, count] : unmet) {
    if (count == 0) ready.insert(node);
  }
  std::vector<std::string> order;
  while (!ready.empty()) {
    std::string node = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(node);
    for (const auto& dependent : dependents[node]) {
      if (--unmet[dependent] == 0) ready.insert(dependent);
    }
  }
  return order;
}

std::string FormatCycle(const std::vector<std::string>& cycle) {
  std::string out;
  for (size_t i = 0; i < cycle.size(); ++i) {
    if (i > 0) out += " -> ";
    out += cycle[i];
  }
  return out;
}

}  // namespace factory
