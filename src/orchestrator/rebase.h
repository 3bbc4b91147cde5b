#pragma once
// Rebase: a task that keeps failing its gates gets a better spec.
//
// A task's spec has versions: version 1 is its backlog description (Task::spec); each rebase
// appends a `task.rebased` event (events::EventKind::kTaskRebased) to the event log with the
// task's run and id and the payload
//   {spec_version, previous_spec_version, agent, model, reason, changes, spec, cost_usd,
//    attempt, epoch}
// (epoch: the lease epoch of the attempt that asked for it). The current spec is the spec of
// the latest such event, else the description. A failed rebase call appends
// `task.rebase_failed` {reason, ...}; the attempt then goes on with the old spec and feedback.
//
// When (PipelineExecutor, at the start of an attempt): the task's failed attempts since its last
// rebase whose failed_phase is a gate failure (kPhaseGates or kPhaseReview) number at least
// config `rebase.after_failures`, and the task has had fewer than `rebase.max_per_task`
// rebases. The rebase agent ("rebaser", purpose "rebase") gets the `rebase` prompt (current
// spec, acceptance, every failed attempt since the last rebase with its phase and feedback,
// oldest first) and answers {"spec": "...", "changes": ["..."]}. The attempt after a rebase
// has a clean context: the new spec, no feedback from before the rebase.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "llm/router.h"
#include "prompts/library.h"
#include "queue/queue.h"

namespace factory {

inline constexpr char kRebaseAgent[] = "rebaser";
inline constexpr char kRebasePurpose[] = "rebase";
// When rebasing is configured but has no model, a run-level `run.rebase_off` event {reason}
// is appended once per execution.
// The largest spec a rebase may produce.
inline constexpr size_t kMaxSpecBytes = 64 * 1024;

// True for the failed phases that count towards a rebase: a command gate or a review gate
// rejected the attempt's work (not an agent crash, a merge conflict or the infrastructure).
bool IsGateFailurePhase(std::string_view phase);

// One failed attempt, as the rebase agent is told about it.
struct FailedAttempt {
  int number = 0;  // the attempt's number
  int64_t epoch = 0;
  std::string phase;  // details.failed_phase ("" when unknown)
  std::string feedback;
};

// A task's spec history and its failures, as of the attempt with lease epoch current_epoch.
struct TaskHistory {
  int spec_version = 1;
  std::string spec;  // the current version
  int rebases = 0;   // task.rebased events
  // The lease epoch of the attempt that made the latest rebase; 0 when never rebased.
  // Attempts with an earlier epoch are "before the rebase".
  int64_t rebased_at_epoch = 0;
  // Failed attempts before the current one and not before the latest rebase, oldest first.
  std::vector<FailedAttempt> failures;
  int gate_failures = 0;  // those of `failures` whose phase IsGateFailurePhase

  // The feedback for the current attempt: the latest failure's (after the latest rebase);
  // "" when none.
  std::string Feedback() const;
};

// Reads the task's events and attempts. REQUIRES: task.id names a task of queue.
Result<TaskHistory> ReadTaskHistory(Queue& queue, const Task& task, int64_t current_epoch);

// "" when `answer` is a valid rebase answer: {"spec": non-empty UTF-8 string of at most
// kMaxSpecBytes, "changes": [strings]}; else what is wrong.
std::string CheckRebaseAnswer(const nlohmann::json& answer);

struct RebaseInput {
  std::string task_key;  // the backlog id
  std::string title;
  std::vector<std::string> acceptance;
  std::string relevant_files;  // "" when unknown
  TaskHistory history;
};

struct RebaseResult {
  int spec_version = 0;  // the new version
  std::string spec;
  std::vector<std::string> changes;
  std::string model;
  double cost_usd = 0;
  int calls = 0;
};

// The `rebase` prompt for `input`. InvalidArgument naming the template file on a render error.
Result<std::string> RenderRebasePrompt(const prompts::PromptLibrary& library,
                                       const RebaseInput& input);

// Calls the rebase agent (see the file comment). Errors: the router's, kAborted for an answer
// still invalid after one repair, a render error. `cost_usd` receives what was spent even on
// failure.
Result<RebaseResult> RequestRebase(llm::Router& router, const prompts::PromptLibrary& library,
                                   const std::vector<std::string>& targets,
                                   const RebaseInput& input, const llm::CallContext& context,
                                   double* cost_usd = nullptr);

}  // namespace factory
