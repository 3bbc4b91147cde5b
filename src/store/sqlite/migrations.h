#pragma once
// Versioned schema migrations for the SQLite backend. Version N is reached by applying
// kMigrations[0..N-1] in order; the version lives in PRAGMA user_version.

#include <iterator>
#include <string_view>

namespace factory::sqlite {

inline constexpr std::string_view kMigrations[] = {
    // 1: the queue.
    R"sql(
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  metadata TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL REFERENCES runs(id),
  title TEXT NOT NULL,
  spec TEXT NOT NULL DEFAULT '',
  acceptance TEXT NOT NULL DEFAULT '[]',
  type TEXT NOT NULL DEFAULT '',
  capabilities TEXT NOT NULL DEFAULT '[]',
  agent TEXT NOT NULL DEFAULT '',
  command TEXT NOT NULL DEFAULT '',
  priority INTEGER NOT NULL DEFAULT 0,
  -- No CHECK on the state names: SQLite builds a temporary table for an IN-list CHECK on every
  -- insert and update (half the cost of an enqueue); the state machine in queue/ guards them.
  state TEXT NOT NULL,
  idempotency_key TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
  not_before_ms INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires_ms INTEGER NOT NULL DEFAULT 0,
  lease_epoch INTEGER NOT NULL DEFAULT 0,
  result TEXT NOT NULL DEFAULT '',
  metadata TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX tasks_idempotency ON tasks(run_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- The claim path: the best ready task is the first entry of this index. The reaper also finds
-- leased tasks through it (by state), so no separate lease index is kept up to date.
-- Every index here costs a page write per state change; keep them few.
CREATE INDEX tasks_claim ON tasks(state, priority DESC, id);
-- Claims and listings filtered by run.
CREATE INDEX tasks_run_claim ON tasks(run_id, state, priority DESC, id);
CREATE TABLE task_deps (
  task_id TEXT NOT NULL REFERENCES tasks(id),
  depends_on TEXT NOT NULL REFERENCES tasks(id),
  PRIMARY KEY (task_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX task_deps_reverse ON task_deps(depends_on, task_id);
CREATE TABLE attempts (
  id TEXT NOT NULL,
  task_id TEXT NOT NULL REFERENCES tasks(id),
  epoch INTEGER NOT NULL,
  number INTEGER NOT NULL,
  owner TEXT NOT NULL,
  status TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER,
  error TEXT NOT NULL DEFAULT '',
  details TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (task_id, epoch)
) WITHOUT ROWID;
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  run_id TEXT NOT NULL DEFAULT '',
  task_id TEXT NOT NULL DEFAULT '',
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT '{}',
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX events_task ON events(task_id, seq) WHERE task_id <> '';
)sql",
    // 2: the model-call ledger, budget reservations and agent pauses.
    R"sql(
CREATE TABLE model_calls (
  id INTEGER PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  run_id TEXT NOT NULL DEFAULT '',
  task_id TEXT NOT NULL DEFAULT '',
  attempt_id TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '',
  provider TEXT NOT NULL DEFAULT '',
  model TEXT NOT NULL DEFAULT '',
  alias TEXT NOT NULL DEFAULT '',
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  cached_tokens INTEGER NOT NULL DEFAULT 0,
  cost_usd REAL NOT NULL DEFAULT 0,
  latency_ms INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL,
  http_status INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0,
  cache_hit INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  purpose TEXT NOT NULL DEFAULT ''
);
-- `factory costs --since`, by day; by agent; by run.
CREATE INDEX model_calls_ts ON model_calls(ts_ms);
CREATE INDEX model_calls_agent ON model_calls(agent, ts_ms);
CREATE INDEX model_calls_run ON model_calls(run_id, ts_ms) WHERE run_id <> '';
-- The per-task token cap.
CREATE INDEX model_calls_task ON model_calls(task_id) WHERE task_id <> '';
CREATE TABLE budget_reservations (
  id INTEGER PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  run_id TEXT NOT NULL DEFAULT '',
  task_id TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '',
  day TEXT NOT NULL,
  amount_usd REAL NOT NULL,
  settled INTEGER NOT NULL DEFAULT 0,
  actual_usd REAL NOT NULL DEFAULT 0
);
-- One index per budget scope that Reserve sums over.
CREATE INDEX budget_reservations_day ON budget_reservations(day);
CREATE INDEX budget_reservations_agent ON budget_reservations(agent, ts_ms);
CREATE INDEX budget_reservations_run ON budget_reservations(run_id) WHERE run_id <> '';
CREATE INDEX budget_reservations_task ON budget_reservations(task_id) WHERE task_id <> '';
CREATE TABLE agent_pauses (
  agent TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  since_ms INTEGER NOT NULL,
  by TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
)sql",
    // 3: virtual keys of the gateway (only a hash of each key). IF NOT EXISTS: a database
    // rolled back to an older user_version by hand (tests do) still migrates.
    R"sql(
CREATE TABLE IF NOT EXISTS virtual_keys (
  id TEXT PRIMARY KEY,
  agent TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL DEFAULT '',
  label TEXT NOT NULL DEFAULT '',
  run_id TEXT NOT NULL DEFAULT '',
  task_id TEXT NOT NULL DEFAULT '',
  attempt_id TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
)sql",
    // 4: indexes that a state change touches only when it changes their membership, and no
    // per-task event index. Pages written per commit are what a queue transaction costs
    // (bench/HISTORY.md, queue throughput), so:
    //  - the claim indexes hold ready tasks only, and leased tasks have their own index (the
    //    reaper's): a claim leaves the first and enters the second, a completion leaves the
    //    second, and finished tasks are in no such index at all. (The old (state, ...) indexes
    //    moved an entry in both claim indexes on every claim and every completion.)
    //  - `lease_expires_ms > 0` rather than `state IN (...)` marks leased tasks: SQLite builds a
    //    temporary table for an IN list on every write that evaluates it.
    //  - listings by run get a plain (run_id, id) index, which no state change touches.
    //  - events_task is replaced by a lower bound on the task row: every event of a task has
    //    seq > tasks.events_after_seq, so a task's events are a range scan of the chain from its
    //    creation on. The index cost a page write (often a page split: its entries land in the
    //    middle) on every event.
    R"sql(
ALTER TABLE tasks ADD COLUMN events_after_seq INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET events_after_seq =
  coalesce((SELECT min(seq) - 1 FROM events WHERE events.task_id = tasks.id), 0);
DROP INDEX events_task;
DROP INDEX tasks_claim;
DROP INDEX tasks_run_claim;
CREATE INDEX tasks_claim ON tasks(priority DESC, id) WHERE state = 'ready';
CREATE INDEX tasks_run_claim ON tasks(run_id, priority DESC, id) WHERE state = 'ready';
CREATE INDEX tasks_lease ON tasks(lease_expires_ms) WHERE lease_expires_ms > 0;
CREATE INDEX tasks_run ON tasks(run_id, id);
)sql",
    // 5: fewer pages written per claim (bench/HISTORY.md, "Schema v5"):
    //  - the running attempt lives on its task row (attempt_id, attempt_started_ms, set by the
    //    claim, which rewrites that row anyway); its `attempts` row is written once, when it
    //    ends. A claim no longer writes an attempts page, and ListAttempts shows the running
    //    attempt from the task row. Attempts running at the upgrade keep their rows (the
    //    closing write is an upsert).
    //  - one claim index: tasks_run_claim (run_id, priority DESC, id) over ready tasks. The
    //    global tasks_claim cost an index entry on every enqueue and every claim; a claim across
    //    runs now visits each run that has ready tasks (a seek each, on tasks_run_claim) and
    //    takes the best of their best.
    R"sql(
ALTER TABLE tasks ADD COLUMN attempt_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN attempt_started_ms INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET attempt_id = attempts.id, attempt_started_ms = attempts.started_ms
  FROM attempts WHERE attempts.task_id = tasks.id AND attempts.epoch = tasks.lease_epoch;
DROP INDEX tasks_claim;
)sql",
    // 6: attempts ended by the death of their worker (an expired or dead owner's lease) are
    // counted apart from max_attempts: a crash is not the task's failure, but a task that
    // kills its worker every time still stops after max_crashes.
    R"sql(
ALTER TABLE tasks ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN max_crashes INTEGER NOT NULL DEFAULT 5 CHECK (max_crashes >= 1);
)sql",
    // 7: what a call cost above its budget reservation (an underestimated worst case), on the
    // call's own ledger row, so `factory costs` can sum it by agent, model, day or run.
    R"sql(
ALTER TABLE model_calls ADD COLUMN overrun_usd REAL NOT NULL DEFAULT 0;
)sql",
    // 8: API tokens of `factory serve` (`factory tokens`): only the token's SHA-256 is kept.
    R"sql(
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  scope TEXT NOT NULL CHECK (scope IN ('read', 'operator', 'admin')),
  token_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL DEFAULT 0,
  revoked_ms INTEGER NOT NULL DEFAULT 0
);
)sql",
};

inline constexpr int kLatestVersion = static_cast<int>(std::size(kMigrations));

}  // namespace factory::sqlite
