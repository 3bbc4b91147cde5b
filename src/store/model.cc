#include "store/model.h"

#include "core/sha256.h"

namespace factory {

std::string_view TaskStateName(TaskState state) {
  switch (state) {
    case TaskState::kPending:
      return "pending";
    case TaskState::kReady:
      return "ready";
    case TaskState::kClaimed:
      return "claimed";
    case TaskState::kRunning:
      return "running";
    case TaskState::kVerifying:
      return "verifying";
    case TaskState::kReview:
      return "review";
    case TaskState::kDone:
      return "done";
    case TaskState::kFailed:
      return "failed";
    case TaskState::kBlocked:
      return "blocked";
    case TaskState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<TaskState> ParseTaskState(std::string_view name) {
  for (TaskState state : kAllTaskStates) {
    if (TaskStateName(state) == name) return state;
  }
  return std::nullopt;
}

bool IsLeasedState(TaskState state) {
  return state == TaskState::kClaimed || state == TaskState::kRunning ||
         state == TaskState::kVerifying || state == TaskState::kReview;
}

std::string_view AttemptStatusName(AttemptStatus status) {
  switch (status) {
    case AttemptStatus::kRunning:
      return "running";
    case AttemptStatus::kSucceeded:
      return "succeeded";
    case AttemptStatus::kFailed:
      return "failed";
    case AttemptStatus::kExpired:
      return "expired";
    case AttemptStatus::kReleased:
      return "released";
    case AttemptStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<AttemptStatus> ParseAttemptStatus(std::string_view name) {
  for (auto status :
       {AttemptStatus::kRunning, AttemptStatus::kSucceeded, AttemptStatus::kFailed,
        AttemptStatus::kExpired, AttemptStatus::kReleased, AttemptStatus::kCancelled}) {
    if (AttemptStatusName(status) == name) return status;
  }
  return std::nullopt;
}

std::string ComputeEventHash(const Event& event) {
  // Length-prefixed fields, so no two different events share an encoding.
  std::string content;
  content.reserve(256 + event.payload_json.size());
  auto add = [&content](std::string_view field) {
    content += std::to_string(field.size());
    content += ':';
    content += field;
    content += '\n';
  };
  add(event.id);
  add(std::to_string(event.ts_ms));
  add(event.run_id);
  add(event.task_id);
  add(event.kind);
  add(event.actor);
  add(event.payload_json);
  add(event.prev_hash);
  return Sha256Hex(content);
}

}  // namespace factory
