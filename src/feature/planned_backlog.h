#pragma once
// The backlog agent's answer: extracted from the model's text, validated, and written out as
// the spec folder's BACKLOG.yaml.
//
// Validation is the backlog validator of plan/backlog.h (ids, titles, duplicates, unknown
// dependencies, cycles, unknown agents, tasks no agent can take, wrong types) plus what a
// *planned* backlog must also satisfy:
//  - every task has at least one acceptance criterion (the gates and reviewers check them);
//  - every task has a `scope` (the globs of the paths it may change), none of whose globs
//    matches the whole repository ("**");
//  - no `allow_protected` and no `max_attempts`: exempting protected paths and granting more
//    attempts are the project's decisions, never a model's;
//  - at most max_tasks tasks.
// Every problem is reported, one per line, in the validator's form
// "LABEL: task 'x': field 'tasks[2].depends_on[0]': unknown dependency 'y'", so the list can
// go back to the model for repair as it is.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/diagnostics.h"
#include "core/result.h"
#include "plan/backlog.h"

namespace factory {
class AgentRegistry;
}

namespace factory::feature {

// The JSON object in a model's answer: the text itself when it parses, else the body of a
// ```json fence, else the span from the first '{' to the last '}'. Returns `text` unchanged when
// none of those is JSON (the validator then reports the parse error).
std::string ExtractJsonObject(std::string_view text);

struct PlannedBacklogCheck {
  std::optional<Loaded<Backlog>> backlog;  // set when valid
  std::vector<std::string> errors;         // every problem, one per entry; empty when valid
  std::string json_text;                   // what was validated (after extraction)
  bool ok() const { return backlog.has_value(); }
};

struct PlannedBacklogOptions {
  const AgentRegistry* agents = nullptr;  // null: agent checks skipped
  int max_tasks = 30;
  std::string label = "backlog agent output";
};

PlannedBacklogCheck CheckPlannedBacklog(std::string_view model_output,
                                        const PlannedBacklogOptions& options);

// The same checks on a stored BACKLOG.yaml (one a person may have edited after planning): every
// problem as "FILE:LINE: task 'x': field 'tasks[2].scope': message". A file that cannot be read
// is one error.
PlannedBacklogCheck CheckPlannedBacklogFile(const std::filesystem::path& path,
                                            const PlannedBacklogOptions& options);

// The backlog as YAML in the format of plan/backlog.h (tasks in the given order), parseable
// by ParseBacklogYaml into the same tasks.
std::string BacklogToYaml(const Backlog& backlog, std::string_view header_comment = "");

}  // namespace factory::feature
