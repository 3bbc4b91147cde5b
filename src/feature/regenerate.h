#pragma once
// `factory regenerate FEATURE`: the feature built again from its stored spec, as a
// new version of the spec folder, compared with the previous version's result.
//
//   auto feature = ResolveFeature(repo_root, "add-count");          // or "add-count.md"
//   auto start = StartRegeneration(feature->spec_dir, "");          // version N+1, run id
//   ... CreateRun from start->backlog_path, execute, FinishFeatureBuild (final_gates.h) ...
//   auto code = CompareCode(git, start->previous_run_id, start->run_id);
//   auto report = MakeRegenerationReport(*start, before, after, *code, build);
//
// No planning happens: the stored BACKLOG.yaml (and PLAN.md, context.md, planners/) of the
// current version are the new version's, copied; the previous version's files move to
// history/v<N>/ as for a re-planned version. metadata.json of the new version: version N+1,
// status building, run_id, regenerated_from {version, run_id, status}, plan_version (the version
// whose planners wrote the plan), attempts 0 and cost_usd 0 (no planning calls).

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "orchestrator/run.h"
#include "workspace/git.h"

namespace factory::feature {

struct FeatureRef {
  std::string id;
  std::filesystem::path spec_dir;  // <repo>/.factory/specs/<id>
};

// FEATURE as given on the command line: a feature id (a folder under .factory/specs/), or the
// request file it was planned from (anything ending in .md: its FeatureIdFor). InvalidArgument
// for anything else that is not a valid id; NotFound when the spec folder has no metadata.json
// (message lists the features there are).
Result<FeatureRef> ResolveFeature(const std::filesystem::path& repo_root,
                                  const std::string& argument);

// "<feature>-r<version>", the feature part cut so the id stays a valid run id.
std::string RegenerationRunId(const std::string& feature_id, int version);

struct RegenerationStart {
  std::string feature_id;
  int version = 0;           // the new version
  std::string run_id;        // its run
  int previous_version = 0;  // the version it is compared with
  std::string previous_run_id;
  std::string previous_status;         // that version's status when regeneration started
  bool resumed = false;                // the new version existed already (same run id)
  std::filesystem::path backlog_path;  // spec_dir/BACKLOG.yaml
};

// Starts (or, given the current version's own run id, resumes) a regeneration. `run_id` empty:
// RegenerationRunId(feature, version + 1). Errors: NotFound without metadata; DataLoss for a
// damaged one; FailedPrecondition when the current version has no BACKLOG.yaml (its planning
// never produced one) or `run_id` is the current version's and that version was planned, not
// regenerated (continue it with `factory run FEATURE.md --run-id`); InvalidArgument when
// `run_id` is an earlier version's run.
Result<RegenerationStart> StartRegeneration(const std::filesystem::path& spec_dir,
                                            const std::string& run_id);

// How the code of two runs differs: their integration branches' tips.
struct CodeComparison {
  bool compared = false;      // false: see `reason`
  std::string reason;         // why there is nothing to compare
  std::string before_branch;  // factory/<previous run>
  std::string after_branch;
  std::string before_tip;
  std::string after_tip;
  bool identical_trees = false;
  int files_changed = 0;
  int insertions = 0;
  int deletions = 0;
  std::string diff_stat;  // `git diff --stat before after`
};

// Compares factory/<before_run> with factory/<after_run>. A missing branch is an outcome with
// compared = false and the reason; errors are git's for anything else.
Result<CodeComparison> CompareCode(const Git& git, const std::string& before_run,
                                   const std::string& after_run);

// One task (by backlog id) in each version.
struct TaskResult {
  std::string state;  // done, failed, blocked...
  int attempts = 0;
  double cost_usd = 0;
};
struct TaskComparison {
  std::string key;
  std::optional<TaskResult> before;  // absent: not in the previous run
  std::optional<TaskResult> after;
  bool changed() const;  // state or attempts differ, or present in only one
};

struct VersionResult {
  int version = 0;
  std::string run_id;
  std::string status;      // the feature's status for that version
  bool run_known = false;  // the run is in the store
  RunSummary summary;
};

struct RegenerationReport {
  std::string feature_id;
  VersionResult before;
  VersionResult after;
  std::string final_gates;            // after: passed, failed, error, skipped, reused...
  std::string message;                // why `after` is not done ("" when it is)
  std::vector<TaskComparison> tasks;  // the new run's order, then tasks only the old one had
  CodeComparison code;
};

// Pairs the tasks of the two runs by backlog id. `before` null: the previous run is not in the
// store.
std::vector<TaskComparison> CompareTasks(const RunDetails* before, const RunDetails& after);

// Text (for people) or JSON: {feature, before: {version, run_id, status, done, failed, total,
// attempts, cost_usd, run_known}, after: {...}, final_gates, message, tasks: [{id, before:
// {state, attempts, cost_usd} | null, after: ... | null, changed}], code: {compared, reason,
// before_branch, after_branch, before_tip, after_tip, identical_trees, files_changed,
// insertions, deletions, diff_stat}}.
std::string FormatRegenerationReport(const RegenerationReport& report, bool json);

}  // namespace factory::feature
