#pragma once
// Backlogs: the task graph `factory run --backlog FILE` executes, and what the backlog agent
// of a feature run must produce (as JSON, same structure).
//
//   tasks:
//     - id: parser                    # required; [A-Za-z0-9][A-Za-z0-9._-]*, <= 64 chars
//       title: Parse the input        # required
//       description: ...              # the spec given to the agent
//       acceptance: [..]              # acceptance criteria
//       depends_on: [other-id]        # ids in this backlog
//       type: code                    # task type (config default_agents); optional
//       capabilities: [code]          # what the agent must be able to do
//       agent: builder                # explicit agent; optional
//       priority: 0                   # higher first among ready tasks
//       max_attempts: 3               # optional; default from the config
//       allow_protected: ["tests/**"] # optional; exempts these paths from `protected:`
//       scope: ["src/parser/**"]      # optional; the only paths an attempt may change
//                                     # (globs as `protected:`); none: the whole repository
//
// Validation reports every problem, each naming the file and line (YAML) or the JSON path
// (JSON), the task and the field: missing id/title, invalid ids, duplicate ids (with both
// lines), unknown dependencies, dependency cycles (named: "a -> b -> a"), unknown agents, and
// tasks no agent can take. Unknown keys are warnings.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/diagnostics.h"
#include "core/result.h"

namespace factory {

class AgentRegistry;

struct BacklogTask {
  std::string id;
  std::string title;
  std::string description;
  std::vector<std::string> acceptance;
  std::vector<std::string> depends_on;  // duplicates removed, order kept
  std::string type;                     // "" when not given
  std::vector<std::string> capabilities;
  std::string agent;  // "" when not given
  int priority = 0;
  std::optional<int> max_attempts;  // nullopt: the project's max_attempts
  std::vector<std::string> allow_protected;
  // Globs (plan/glob.h) of the paths the task may change; empty: the whole repository. Each is
  // non-empty, relative and without "..".
  std::vector<std::string> scope;
  int line = 0;  // line of the task in its file (0 for JSON)
};

struct Backlog {
  std::vector<BacklogTask> tasks;  // topological order: every task after its dependencies
  std::string source;              // file or label it was parsed from

  // nullptr when there is no task with that id.
  [[nodiscard]] const BacklogTask* Find(std::string_view id) const;
};

struct BacklogOptions {
  // When set, agents are checked: an explicit agent must exist and some agent must be able to
  // take each task (AgentRegistry::Resolve, which honours its default agents). When null,
  // agent checks are skipped (e.g. validating a backlog before agents are loaded).
  const AgentRegistry* agents = nullptr;
};

// Parses and validates backlog YAML. `file` names it in diagnostics. On failure the error is
// InvalidArgument with every problem, one per line ("FILE:LINE: task 'x': field 'y': ...").
Result<Loaded<Backlog>> ParseBacklogYaml(std::string_view text, const std::string& file,
                                         const BacklogOptions& options = {});

// The same for JSON (the backlog agent's output). JSON carries no lines, so diagnostics name
// the JSON path: "LABEL: task 'b': field 'tasks[2].depends_on[0]': unknown dependency 'x'".
Result<Loaded<Backlog>> ParseBacklogJson(std::string_view text, const std::string& label,
                                         const BacklogOptions& options = {});

// Reads a file and parses it as JSON when it ends in ".json", as YAML otherwise. NotFound when
// it cannot be read.
Result<Loaded<Backlog>> LoadBacklog(const std::filesystem::path& path,
                                    const BacklogOptions& options = {});

}  // namespace factory
