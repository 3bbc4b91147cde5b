#pragma once
// Every kind of event the factory writes, in one place, with its wire name (the text stored in
// Event::kind and shown to users). A stored event whose name this build does not know (written
// by a newer build) stays readable: Event::kind keeps the text and ParseEventKind says nullopt.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "store/model.h"

namespace factory::events {

enum class EventKind : uint8_t {
  // Runs.
  kRunCreated,            // "run.created"
  kRunResumed,            // "run.resumed"
  kRunExecuted,           // "run.executed": a build pass over the run's tasks ended
  kRunRebaseOff,          // "run.rebase_off": rebasing was switched off for the run
  kRunMergeForced,        // "run.merge_forced"
  kRunMergedIntoBase,     // "run.merged_into_base"
  kRunPushed,             // "run.pushed"
  kRunPullRequestOpened,  // "run.pull_request_opened"
  // Task state changes (written by the queue with the change, "from" and "to" in the payload).
  kTaskCreated,           // "task.created"
  kTaskPending,           // "task.pending"
  kTaskReady,             // "task.ready"
  kTaskClaimed,           // "task.claimed"
  kTaskStarted,           // "task.started"
  kTaskRunning,           // "task.running"
  kTaskVerifying,         // "task.verifying"
  kTaskReview,            // "task.review"
  kTaskCompleted,         // "task.completed"
  kTaskFailed,            // "task.failed"
  kTaskRetryScheduled,    // "task.retry_scheduled"
  kTaskReleased,          // "task.released"
  kTaskLeaseExpired,      // "task.lease_expired"
  kTaskDeadLeaseExpired,  // "task.dead_lease_expired"
  kTaskBlocked,           // "task.blocked"
  kTaskUnblocked,         // "task.unblocked"
  kTaskCancelled,         // "task.cancelled"
  kTaskRetried,           // "task.retried"
  // Task work (not state changes).
  kTaskMerged,        // "task.merged"
  kTaskRebased,       // "task.rebased"
  kTaskRebaseFailed,  // "task.rebase_failed"
  kAttemptPhase,      // "attempt.phase"
  kAgentStep,         // "agent.step"
  kGateFailed,        // "gate.failed"
  kReviewFailed,      // "review.failed": the reviewer could not give a verdict
  kReviewVerdict,     // "review.verdict"
  kMergeConflict,     // "merge.conflict"
  // Budgets and agents.
  kBudgetOverrun,  // "budget.overrun"
  kAgentPaused,    // "agent.paused"
  kAgentResumed,   // "agent.resumed"
  // Feature planning and final gates.
  kFeaturePlanningStarted,      // "feature.planning.started"
  kFeaturePlanningInterrupted,  // "feature.planning.interrupted"
  kFeaturePlannerStarted,       // "feature.planner.started"
  kFeaturePlannerFinished,      // "feature.planner.finished"
  kFeaturePlannerFailed,        // "feature.planner.failed"
  kFeaturePlannerReused,        // "feature.planner.reused"
  kFeatureBacklogAccepted,      // "feature.backlog.accepted"
  kFeatureBacklogInvalid,       // "feature.backlog.invalid"
  kFeatureFinalGatesPassed,     // "feature.final_gates.passed"
  kFeatureFinalGatesFailed,     // "feature.final_gates.failed"
};

// The wire name, e.g. "task.created".
std::string_view EventKindName(EventKind kind);

// The kind with this wire name; nullopt for a name this build does not know.
std::optional<EventKind> ParseEventKind(std::string_view name);

// Every kind, in declaration order.
std::span<const EventKind> AllEventKinds();

// The typed kind of a stored event; nullopt when its name is unknown to this build.
inline std::optional<EventKind> KindOf(const Event& event) { return ParseEventKind(event.kind); }

// The kind the queue writes when a task moves to `state` by a plain transition.
EventKind TaskStateEventKind(TaskState state);

}  // namespace factory::events
