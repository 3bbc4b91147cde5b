#include "queue/state_machine.h"

#include <string>

namespace factory {

bool IsLegalTransition(TaskState from, TaskState to) {
  using S = TaskState;
  switch (from) {
    case S::kPending:
      return to == S::kReady || to == S::kBlocked || to == S::kCancelled;
    case S::kReady:
      return to == S::kClaimed || to == S::kBlocked || to == S::kCancelled;
    case S::kClaimed:
      return to == S::kRunning || to == S::kDone || to == S::kReady || to == S::kFailed ||
             to == S::kCancelled;
    case S::kRunning:
      return to == S::kVerifying || to == S::kReview || to == S::kDone || to == S::kReady ||
             to == S::kFailed || to == S::kCancelled;
    case S::kVerifying:
      return to == S::kReview || to == S::kDone || to == S::kReady || to == S::kFailed ||
             to == S::kCancelled;
    case S::kReview:
      return to == S::kDone || to == S::kReady || to == S::kFailed || to == S::kCancelled;
    case S::kFailed:
      return to == S::kReady || to == S::kPending;
    case S::kBlocked:
      return to == S::kReady || to == S::kPending || to == S::kCancelled;
    case S::kDone:
    case S::kCancelled:
      return false;
  }
  return false;
}

Status CheckTransition(TaskState from, TaskState to) {
  if (IsLegalTransition(from, to)) return Ok();
  return FailedPrecondition("illegal task transition " + std::string(TaskStateName(from)) + " -> " +
                            std::string(TaskStateName(to)));
}

bool IsTerminalState(TaskState state) {
  return state == TaskState::kDone || state == TaskState::kCancelled;
}

}  // namespace factory
