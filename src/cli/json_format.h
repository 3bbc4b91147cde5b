#pragma once
// JSON shapes printed by `--json` (documented in docs/cli.md). Keys are stable: scripts rely on
// them. Timestamps appear twice: `*_ms` (Unix milliseconds) and `*_at` (RFC 3339 UTC).

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "store/model.h"

namespace factory::cli {

using Json = nlohmann::ordered_json;

// {id, run, state, title, spec, priority, depends_on, attempts, max_attempts, idempotency_key,
//  command, type, agent, not_before_ms, lease_owner, lease_expires_ms, result, metadata,
//  created_ms, created_at, updated_ms, updated_at}; metadata_error when the stored metadata
//  cannot be read (store/details.h), naming the field
Json TaskToJson(const Task& task);
// {id, number, epoch, owner, status, started_ms, started_at, finished_ms, finished_at,
//  exit_code, error, details}; details_error when the stored details cannot be read
Json AttemptToJson(const Attempt& attempt);
// {seq, id, ts_ms, ts, run, task, kind, actor, payload, hash}
Json EventToJson(const Event& event);

// Parses stored JSON text; text that is not valid JSON is returned as a JSON string.
Json ParseStoredJson(std::string_view text);
// Dumps with invalid UTF-8 replaced (never throws on child output).
std::string DumpJson(const Json& json, int indent = 2);

}  // namespace factory::cli
