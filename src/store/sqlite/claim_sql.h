#pragma once
// The claim statements, shared by the store and the test that checks their query plans use the
// tasks_run_claim index (a claim must never scan the table).
//
// Claims within one run take the run's best ready tasks straight from tasks_run_claim
// (run_id, priority DESC, id; ready tasks only). A claim across runs first finds the runs that
// have ready tasks (kRunWithReadySql: one seek per run), picks the best candidates of each and
// then claims the best of those.

#include <string>

#include "store/store.h"

namespace factory::sqlite {

// The best claimable tasks of run ?1 due by ?2, at most ?3, whole rows (kTaskColumns order).
inline std::string ClaimSelectSql(const ClaimFilter& filter, const char* columns) {
  std::string sql = std::string("SELECT ") + columns +
                    " FROM tasks WHERE state = 'ready' AND run_id = ?1 AND not_before_ms <= ?2";
  if (filter.require_command) sql += " AND command <> ''";
  sql += " ORDER BY priority DESC, id LIMIT ?3";
  return sql;
}

// Claims one task picked by ClaimSelectSql. Parameters: ?1 id, ?2 owner, ?3 lease expiry,
// ?4 now, ?5 attempt id. Plain statements on purpose: an UPDATE ... WHERE id IN (SELECT ...)
// RETURNING builds two ephemeral tables per claim, which cost more than the claim itself.
inline constexpr char kClaimOneSql[] =
    "UPDATE tasks SET state = 'claimed', lease_owner = ?2, lease_expires_ms = ?3, "
    "attempts = attempts + 1, lease_epoch = lease_epoch + 1, updated_ms = ?4, attempt_id = ?5, "
    "attempt_started_ms = ?4 WHERE id = ?1 AND state = 'ready'";

// The first run after ?1 (in run id order) that has a ready task.
inline constexpr char kRunWithReadySql[] =
    "SELECT run_id FROM tasks WHERE state = 'ready' AND run_id > ?1 ORDER BY run_id LIMIT 1";

// The best claimable tasks of a run: ClaimSelectSql(filter, "priority, id").

}  // namespace factory::sqlite
