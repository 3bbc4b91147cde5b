#include "cli/json_format.h"

#include "core/clock.h"
#include "store/details.h"

namespace factory::cli {
namespace {

Json Timestamp(int64_t millis) {
  if (millis <= 0) return nullptr;
  return FormatTimestamp(millis);
}

// A typed column as stored, checked by its codec: a malformed value is shown as it is, with why
// it cannot be read beside it ("details_error").
template <typename T>
void PutChecked(Json& json, const char* key, std::string_view stored, const Result<T>& parsed) {
  json[key] = ParseStoredJson(stored);
  if (!parsed) json[std::string(key) + "_error"] = parsed.error().message;
}

}  // namespace

Json ParseStoredJson(std::string_view text) {
  if (text.empty()) return nullptr;
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::string(text);
  return parsed;
}

std::string DumpJson(const Json& json, int indent) {
  return json.dump(indent, ' ', false, Json::error_handler_t::replace);
}

Json TaskToJson(const Task& task) {
  Json json;
  json["id"] = task.id;
  json["run"] = task.run_id;
  json["state"] = std::string(TaskStateName(task.state));
  json["title"] = task.title;
  json["spec"] = task.spec;
  json["priority"] = task.priority;
  json["depends_on"] = task.depends_on;
  json["attempts"] = task.attempts;
  json["max_attempts"] = task.max_attempts;
  json["crashes"] = task.crashes;
  json["max_crashes"] = task.max_crashes;
  json["idempotency_key"] =
      task.idempotency_key.has_value() ? Json(*task.idempotency_key) : Json(nullptr);
  json["command"] = task.command;
  json["type"] = task.type;
  json["agent"] = task.agent;
  json["not_before_ms"] = task.not_before_ms;
  json["lease_owner"] = task.lease_owner.empty() ? Json(nullptr) : Json(task.lease_owner);
  json["lease_expires_ms"] = task.lease_expires_ms;
  json["result"] = ParseStoredJson(task.result_json);
  PutChecked(json, "metadata", task.metadata_json, ParseTaskMetadata(task.metadata_json));
  json["created_ms"] = task.created_ms;
  json["created_at"] = Timestamp(task.created_ms);
  json["updated_ms"] = task.updated_ms;
  json["updated_at"] = Timestamp(task.updated_ms);
  return json;
}

Json AttemptToJson(const Attempt& attempt) {
  Json json;
  json["id"] = attempt.id;
  json["number"] = attempt.number;
  json["epoch"] = attempt.epoch;
  json["owner"] = attempt.owner;
  json["status"] = std::string(AttemptStatusName(attempt.status));
  json["started_ms"] = attempt.started_ms;
  json["started_at"] = Timestamp(attempt.started_ms);
  json["finished_ms"] = attempt.finished_ms;
  json["finished_at"] = Timestamp(attempt.finished_ms);
  json["exit_code"] = attempt.exit_code.has_value() ? Json(*attempt.exit_code) : Json(nullptr);
  json["error"] = attempt.error;
  PutChecked(json, "details", attempt.details_json, ParseAttemptDetails(attempt.details_json));
  return json;
}

Json EventToJson(const Event& event) {
  Json json;
  json["seq"] = event.seq;
  json["id"] = event.id;
  json["ts_ms"] = event.ts_ms;
  json["ts"] = Timestamp(event.ts_ms);
  json["run"] = event.run_id;
  json["task"] = event.task_id;
  json["kind"] = event.kind;
  json["actor"] = event.actor;
  json["payload"] = ParseStoredJson(event.payload_json);
  json["hash"] = event.hash;
  return json;
}

}  // namespace factory::cli
