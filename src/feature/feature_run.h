#pragma once
// The planning half of `factory run FEATURE.md`: a feature request becomes a
// validated task graph, planned by agents, recorded in the spec repository.
//
//   1. Intake: the repo map (feature/repo_map.h).
//   2. Planning: three planners (spec, architecture, QA) run in parallel threads, each a fresh
//      context: the system prompt is its prompt template (plan-spec, plan-architecture,
//      plan-qa; prompts/library.h) rendered with the feature text and the repo map. Every call
//      goes through the Router with run, agent ("spec-planner"...) and purpose (the prompt
//      name), so the ledger and budgets see it.
//   3. Backlog: the backlog agent (prompt `backlog`) turns the three documents into the task
//      graph as JSON, checked by CheckPlannedBacklog (feature/planned_backlog.h). An invalid
//      answer goes back with every error (prompt `backlog-repair`, same conversation) at most
//      max_repairs times; after that PlanFeature fails with kAborted naming the errors.
// The build half is the run pipeline's (orchestrator/run.h): the caller creates the run from
// FeaturePlan::backlog, then FinishFeatureBuild (feature/final_gates.h) runs the final gates.
// Implementation attempts see only their task; nothing of the planning transcripts reaches
// them.
//
// The spec repository: everything is saved in `spec_dir` (normally .factory/specs/<feature>/):
//   PLAN.md        the feature request and the three planners' documents
//   BACKLOG.yaml   the validated task graph (plan/backlog.h format)
//   context.md     the repo map the planners read
//   metadata.json  {feature_id, version, status, run_id, request_sha256, attempts (backlog
//                  agent answers it took), cost_usd (planning calls), last_generated (UTC),
//                  planners: {spec|architecture|qa: {status, started_ms, ended_ms, model,
//                  input_tokens, output_tokens, cost_usd}}, backlog_errors: [...]}
//   planners/      each planner's output (spec.md, architecture.md, qa.md), the repo map, and
//                  each backlog answer (backlog.1.txt...) with its errors (backlog.1.errors.txt)
//   final-gates/   the final gates' logs (feature/final_gates.h)
//   history/vN/    the files of earlier versions (a later run of the same feature, or
//                  `factory regenerate`: feature/regenerate.h)
// status: planning -> backlog -> planned -> building -> verifying (final gates) -> done |
// failed, or backlog_invalid / planning_failed / interrupted. metadata.json also keeps
// request_path, the request file's absolute path (`factory run resume` reads it again).
//
// Resuming: each planner's output is saved (file first, then metadata) the moment it arrives.
// Planning again with the same run id and the same request text re-uses every saved planner
// output and a saved backlog, so a run killed mid-planning does not pay twice for what it
// already has. The same run id with a different request text is FailedPrecondition; a new run
// id starts a new version (the previous one moves to history/).
//
// Interrupting (Ctrl-C): PlanningInterrupt::Interrupt marks the planners still waiting for their
// answer `interrupted` (status `interrupted`) and writes nothing more; planning again with the
// same run id re-uses what was saved before.
//
// Events (the event log, with the run id): feature.planning.started, feature.planner.started,
// feature.planner.finished (payload started_ms/ended_ms), feature.planner.reused,
// feature.planner.failed, feature.backlog.invalid (payload errors), feature.backlog.accepted,
// feature.planning.interrupted (payload planners).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/diagnostics.h"
#include "core/result.h"
#include "events/event_log.h"
#include "llm/router.h"
#include "plan/backlog.h"
#include "plan/config.h"
#include "prompts/library.h"

namespace factory {
class AgentRegistry;
}

namespace factory::feature {

// The planners, in the order their documents appear in PLAN.md.
inline constexpr const char* kPlannerNames[] = {"spec", "architecture", "qa"};

struct FeatureRequest {
  std::string id;      // [a-z0-9][a-z0-9-]*, from the file name ("Add-Count.md" -> "add-count")
  std::string text;    // as written
  std::string source;  // the file it was read from
};

// The feature id for a request file: its stem, lowercased, runs of other characters turned
// into '-', trimmed, at most 64 characters; "feature" when nothing is left.
std::string FeatureIdFor(const std::filesystem::path& path);

// Reads a feature request. NotFound when unreadable; InvalidArgument (naming the file) when it
// is not a .md file, is empty, is not valid UTF-8 or is larger than 256 KiB.
Result<FeatureRequest> LoadFeatureRequest(const std::filesystem::path& path);

// Everything planning works with; none of it owned. router, prompts and agents are required.
struct PlanningDeps {
  llm::Router* router = nullptr;
  const prompts::PromptLibrary* prompts = nullptr;
  const AgentRegistry* agents = nullptr;
  const ProjectConfig* config = nullptr;  // gates and task types for the prompts; may be null
  events::EventLog* events = nullptr;     // null: no events recorded
};

// One planner's state, for displays. `name` is spec, architecture, qa or backlog.
struct PlannerProgress {
  std::string name;
  std::string state;       // running, done, reused, failed, invalid (a backlog answer), interrupted
  int64_t elapsed_ms = 0;  // done, failed, invalid: the call's wall time
  double cost_usd = 0;     // done, invalid, reused: what the call cost
  std::string model;
  int attempt = 0;  // backlog: the answer's number (1 + repairs)
};

// Planning progress for displays. Called from the planner threads, possibly concurrently:
// implementations must be thread-safe and cheap.
class PlanningObserver {
 public:
  virtual ~PlanningObserver() = default;
  virtual void OnPlanner(const PlannerProgress& progress) = 0;
};

// Lets another thread (a signal watcher) interrupt a PlanFeature in progress. Thread-safe.
class PlanningInterrupt {
 public:
  // Marks the planners still waiting for their answer `interrupted` in metadata.json (and its
  // status `interrupted`), records feature.planning.interrupted, and stops the planning from
  // writing anything more to the spec folder: the caller may end the process at once. Returns
  // the planners interrupted (the backlog agent as "backlog"); empty when no planning was in
  // progress. Later calls return empty.
  std::vector<std::string> Interrupt();
  bool interrupted() const;

  // PlanFeature's: what Interrupt does while a planning is in progress.
  void Attach(std::function<std::vector<std::string>()> interrupt);
  void Detach();

 private:
  mutable std::mutex mu_;
  std::function<std::vector<std::string>()> interrupt_;  // guarded by mu_
  bool interrupted_ = false;                             // guarded by mu_
};

struct PlanningOptions {
  std::string run_id;                // required
  std::filesystem::path repo_root;   // required: the repository the map is made of
  std::filesystem::path spec_dir;    // required: specs/<feature-id>
  std::vector<std::string> targets;  // models; empty: models.yaml's chain for task type "plan"
  int max_repairs = 2;               // backlog repairs before giving up
  int max_tasks = 30;
  size_t repo_map_bytes = 16 * 1024;
  std::optional<int> max_output_tokens;    // per planning call; unset: the model's maximum
  PlanningObserver* observer = nullptr;    // not owned; may be null
  PlanningInterrupt* interrupt = nullptr;  // not owned; may be null
};

struct PlannerOutcome {
  std::string name;  // spec, architecture, qa
  std::string output;
  int64_t started_ms = 0;  // wall clock, ms since the epoch
  int64_t ended_ms = 0;
  bool reused = false;  // saved by an earlier execution of this run; no call made now
  std::string model;
  double cost_usd = 0;
};

struct FeaturePlan {
  Loaded<Backlog> backlog;               // as read back from BACKLOG.yaml
  std::filesystem::path backlog_path;    // spec_dir / BACKLOG.yaml
  std::vector<PlannerOutcome> planners;  // spec, architecture, qa
  int backlog_attempts = 0;              // backlog agent answers (1 + repairs); 0 when reused
  bool reused_backlog = false;
  int version = 1;
  double cost_usd = 0;  // of the calls made by this execution
};

// Plans the feature (see the file comment). Errors: a planner's or the backlog agent's call
// failing (the router's error: kUnavailable, kResourceExhausted for budgets...), kAborted when
// the backlog is still invalid after max_repairs repairs (message: every error),
// kFailedPrecondition when the run id was planned from another request text or no model is
// configured for planning, kAborted "planning was interrupted" (options.interrupt). Thread-safety:
// one call at a time per spec_dir.
Result<FeaturePlan> PlanFeature(const FeatureRequest& request, const PlanningDeps& deps,
                                const PlanningOptions& options);

// The status in spec_dir/metadata.json after the build ("building", "done", "failed"), with the
// run's summary figures merged in under "build". NotFound when there is no metadata.
Status SetSpecStatus(const std::filesystem::path& spec_dir, std::string_view status,
                     std::string_view build_json = "{}");

// The spec folder's metadata.json as text ("" when absent).
std::string ReadSpecMetadata(const std::filesystem::path& spec_dir);

// Whether a spec folder in this status still needs planning (no validated backlog yet).
bool NeedsPlanning(std::string_view status);

}  // namespace factory::feature
