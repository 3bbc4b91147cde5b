#pragma once
// The task state machine. Every change of a task's state goes through CheckTransition; an
// illegal transition is an error, never a silent no-op.
//
//   pending  -> ready (deps done) | blocked (a dep failed/cancelled) | cancelled
//   ready    -> claimed | blocked | cancelled
//   claimed  -> running | done (work that needs no start, e.g. batched no-ops)
//               | ready (lease expired/released) | failed (attempts exhausted) | cancelled
//   running  -> verifying | review | done | ready (retry after backoff, lease expired, released)
//               | failed | cancelled
//   verifying-> review | done | ready | failed | cancelled
//   review   -> done | ready | failed | cancelled
//   failed   -> ready | pending (`task retry`)
//   blocked  -> ready | pending (its dependency was retried) | cancelled
//   done, cancelled: terminal

#include "core/result.h"
#include "store/model.h"

namespace factory {

bool IsLegalTransition(TaskState from, TaskState to);
// InvalidArgument-free: FailedPrecondition naming both states when illegal.
Status CheckTransition(TaskState from, TaskState to);
bool IsTerminalState(TaskState state);  // done, cancelled

}  // namespace factory
