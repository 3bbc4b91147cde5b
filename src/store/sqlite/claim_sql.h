#pragma once
// The claim statement, shared by the store and the test that checks its query plan uses the
// tasks_claim index (a claim must never scan the table).

#include <string>

#include "store/store.h"

namespace factory::sqlite {

// Parameters: ?1 owner, ?2 lease expiry, ?3 now, ?4 limit, ?5 run id (when filtered).
inline std::string ClaimSelectSql(const ClaimFilter& filter) {
  std::string sql = "SELECT id FROM tasks WHERE state = 'ready' AND not_before_ms <= ?3";
  if (!filter.run_id.empty()) sql += " AND run_id = ?5";
  if (filter.require_command) sql += " AND command <> ''";
  sql += " ORDER BY priority DESC, id LIMIT ?4";
  return sql;
}

inline std::string ClaimSql(const ClaimFilter& filter) {
  return "UPDATE tasks SET state = 'claimed', lease_owner = ?1, lease_expires_ms = ?2, "
         "attempts = attempts + 1, lease_epoch = lease_epoch + 1, updated_ms = ?3 "
         "WHERE id IN (" +
         ClaimSelectSql(filter) +
         ") RETURNING id, run_id, title, spec, acceptance, type, capabilities, agent, command, "
         "priority, state, idempotency_key, attempts, max_attempts, not_before_ms, lease_owner, "
         "lease_expires_ms, lease_epoch, result, metadata, created_ms, updated_ms";
}

}  // namespace factory::sqlite
