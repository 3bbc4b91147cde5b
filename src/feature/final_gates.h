#pragma once
// The end of a feature's build: once
// every task of the run is done, the project's command gates run once more, in order, on a clean
// checkout of the integration branch's tip (the merged whole, which no task's gates have seen).
// The feature is `done` only when they pass.
//
//   auto outcome = FinishFeatureBuild({.workspace = &env.workspace(), .sandbox = &env.sandbox(),
//                                      .config = &env.config(), .events = &env.queue().events()},
//                                     spec_dir, summary);
//
// What is recorded in spec_dir/metadata.json:
//   status        building (the run stopped with tasks left), failed (a task failed or was
//                 blocked, or a final gate failed), done; `verifying` while the final gates run
//   build         {run_id, integration_branch, done, failed, blocked, total, attempts, cost_usd}
//   final_gates   {status: passed | failed | error | cancelled | skipped, commit, branch,
//                 started_at, duration_ms, logs (folder), gates: [{name, passed, exit_code,
//                 timed_out, duration_ms, log}], failed_gate, exit_code, timed_out, output_tail
//                 (last ~4 KB), error (when they could not run), reason (when skipped)}
// The full output of each gate is kept in spec_dir/final-gates/<n>-<name>.log.
// Events (queue log, with the run id, actor "orchestrator"): feature.final_gates.passed and
// feature.final_gates.failed (payload: commit, gates, failed_gate, exit_code).
//
// Resuming: final gates that passed on the current tip are not run again; a build that
// completed but whose final gates never ran, failed or were interrupted runs them.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "events/event_log.h"
#include "orchestrator/run.h"
#include "plan/config.h"
#include "verify/gates.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory::feature {

// None owned. workspace, sandbox and config are required.
struct FinalGatesDeps {
  WorkspaceManager* workspace = nullptr;
  Sandbox* sandbox = nullptr;
  const ProjectConfig* config = nullptr;
  events::EventLog* events = nullptr;         // null: no events recorded
  const std::atomic<bool>* cancel = nullptr;  // stops the gate running (e.g. on Ctrl-C)
};

struct FinalGatesOutcome {
  std::string branch;  // factory/<run>
  std::string commit;  // the tip that was checked
  std::vector<GateResult> results;
  size_t gate_count = 0;  // command gates configured
  std::string error;      // they could not run (no checkout...): not passed
  int64_t duration_ms = 0;

  // True when every command gate ran and passed (so also when none is configured).
  bool passed() const;
  bool cancelled() const;
  // "passed", "failed", "error" (could not run) or "cancelled", as in metadata.json.
  std::string status() const;
  // The first gate that did not pass; null when none.
  const GateResult* failed() const;
};

// The gates that run as final gates: config.gates of kind command (a reviewer gate judges one
// task's diff against its acceptance criteria, which the whole branch has no single one of).
std::vector<GateConfig> FinalGateList(const ProjectConfig& config);

// Checks out the tip of the run's integration branch detached at
// <worktrees>/<run>/_final (removed afterwards) and runs FinalGateList there with the project's
// sandbox policy, logs in spec_dir/final-gates/ (emptied first). Records the event. Errors only
// for a bad run id; a tip that cannot be checked out is an outcome with `error` set.
Result<FinalGatesOutcome> RunFinalGates(const FinalGatesDeps& deps, const std::string& run_id,
                                        const std::filesystem::path& spec_dir);

struct FeatureBuildOutcome {
  std::string status;  // done, failed or building (see the file comment)
  // Why the feature is not done ("" when it is): the tasks' counts, or the failing final gate
  // with its exit code and where its log is.
  std::string message;
  std::optional<FinalGatesOutcome> final_gates;  // when they ran now
  bool final_gates_reused = false;               // they had passed on this tip before
};

// Records the build of `summary`'s run in spec_dir/metadata.json and, when every task is done,
// runs the final gates (unless they passed on this tip already) and records them. Errors: the
// metadata cannot be read or written (NotFound without one), the tip cannot be read.
Result<FeatureBuildOutcome> FinishFeatureBuild(const FinalGatesDeps& deps,
                                               const std::filesystem::path& spec_dir,
                                               const RunSummary& summary);

}  // namespace factory::feature
