#include "events/event_kind.h"

#include <array>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace factory::events {
namespace {

using enum EventKind;

// The one table of wire names; the array is indexed by the enum's value.
constexpr std::array kKinds = {
    std::pair{kRunCreated, std::string_view("run.created")},
    std::pair{kRunResumed, std::string_view("run.resumed")},
    std::pair{kRunExecuted, std::string_view("run.executed")},
    std::pair{kRunRebaseOff, std::string_view("run.rebase_off")},
    std::pair{kRunMergeForced, std::string_view("run.merge_forced")},
    std::pair{kRunMergedIntoBase, std::string_view("run.merged_into_base")},
    std::pair{kRunPushed, std::string_view("run.pushed")},
    std::pair{kRunPullRequestOpened, std::string_view("run.pull_request_opened")},
    std::pair{kTaskCreated, std::string_view("task.created")},
    std::pair{kTaskPending, std::string_view("task.pending")},
    std::pair{kTaskReady, std::string_view("task.ready")},
    std::pair{kTaskClaimed, std::string_view("task.claimed")},
    std::pair{kTaskStarted, std::string_view("task.started")},
    std::pair{kTaskRunning, std::string_view("task.running")},
    std::pair{kTaskVerifying, std::string_view("task.verifying")},
    std::pair{kTaskReview, std::string_view("task.review")},
    std::pair{kTaskCompleted, std::string_view("task.completed")},
    std::pair{kTaskFailed, std::string_view("task.failed")},
    std::pair{kTaskRetryScheduled, std::string_view("task.retry_scheduled")},
    std::pair{kTaskReleased, std::string_view("task.released")},
    std::pair{kTaskLeaseExpired, std::string_view("task.lease_expired")},
    std::pair{kTaskDeadLeaseExpired, std::string_view("task.dead_lease_expired")},
    std::pair{kTaskBlocked, std::string_view("task.blocked")},
    std::pair{kTaskUnblocked, std::string_view("task.unblocked")},
    std::pair{kTaskCancelled, std::string_view("task.cancelled")},
    std::pair{kTaskRetried, std::string_view("task.retried")},
    std::pair{kTaskMerged, std::string_view("task.merged")},
    std::pair{kTaskRebased, std::string_view("task.rebased")},
    std::pair{kTaskRebaseFailed, std::string_view("task.rebase_failed")},
    std::pair{kAttemptPhase, std::string_view("attempt.phase")},
    std::pair{kAgentStep, std::string_view("agent.step")},
    std::pair{kGateFailed, std::string_view("gate.failed")},
    std::pair{kReviewFailed, std::string_view("review.failed")},
    std::pair{kReviewVerdict, std::string_view("review.verdict")},
    std::pair{kMergeConflict, std::string_view("merge.conflict")},
    std::pair{kBudgetOverrun, std::string_view("budget.overrun")},
    std::pair{kAgentPaused, std::string_view("agent.paused")},
    std::pair{kAgentResumed, std::string_view("agent.resumed")},
    std::pair{kFeaturePlanningStarted, std::string_view("feature.planning.started")},
    std::pair{kFeaturePlanningInterrupted, std::string_view("feature.planning.interrupted")},
    std::pair{kFeaturePlannerStarted, std::string_view("feature.planner.started")},
    std::pair{kFeaturePlannerFinished, std::string_view("feature.planner.finished")},
    std::pair{kFeaturePlannerFailed, std::string_view("feature.planner.failed")},
    std::pair{kFeaturePlannerReused, std::string_view("feature.planner.reused")},
    std::pair{kFeatureBacklogAccepted, std::string_view("feature.backlog.accepted")},
    std::pair{kFeatureBacklogInvalid, std::string_view("feature.backlog.invalid")},
    std::pair{kFeatureFinalGatesPassed, std::string_view("feature.final_gates.passed")},
    std::pair{kFeatureFinalGatesFailed, std::string_view("feature.final_gates.failed")},
};

constexpr bool TableIsInEnumOrder() {
  for (size_t i = 0; i < kKinds.size(); ++i) {
    if (static_cast<size_t>(kKinds[i].first) != i) return false;
  }
  return static_cast<size_t>(kFeatureFinalGatesFailed) + 1 == kKinds.size();
}
static_assert(TableIsInEnumOrder(), "kKinds must list every EventKind in declaration order");

constexpr std::array<EventKind, kKinds.size()> MakeAll() {
  std::array<EventKind, kKinds.size()> all{};
  for (size_t i = 0; i < kKinds.size(); ++i) all[i] = kKinds[i].first;
  return all;
}
constexpr std::array kAll = MakeAll();

}  // namespace

std::string_view EventKindName(EventKind kind) {
  auto index = static_cast<size_t>(kind);
  return index < kKinds.size() ? kKinds[index].second : std::string_view("unknown");
}

std::optional<EventKind> ParseEventKind(std::string_view name) {
  static const auto* const by_name = [] {
    auto* map = new std::unordered_map<std::string_view, EventKind>();
    for (const auto& [kind, wire] : kKinds) map->emplace(wire, kind);
    return map;
  }();
  auto found = by_name->find(name);
  if (found == by_name->end()) return std::nullopt;
  return found->second;
}

std::span<const EventKind> AllEventKinds() { return kAll; }

EventKind TaskStateEventKind(TaskState state) {
  switch (state) {
    case TaskState::kPending:
      return kTaskPending;
    case TaskState::kReady:
      return kTaskReady;
    case TaskState::kClaimed:
      return kTaskClaimed;
    case TaskState::kRunning:
      return kTaskRunning;
    case TaskState::kVerifying:
      return kTaskVerifying;
    case TaskState::kReview:
      return kTaskReview;
    case TaskState::kDone:
      return kTaskCompleted;
    case TaskState::kFailed:
      return kTaskFailed;
    case TaskState::kBlocked:
      return kTaskBlocked;
    case TaskState::kCancelled:
      return kTaskCancelled;
  }
  return kTaskPending;
}

}  // namespace factory::events
