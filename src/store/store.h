#pragma once
// The Store: durable records behind an interface. Backends (SQLite now, PostgreSQL later)
// implement typed primitives inside transactions; the queue's semantics are written once, above,
// in terms of these primitives. Nothing above store/ knows SQL.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "store/model.h"

namespace factory {

struct ClaimFilter {
  std::string run_id;            // empty: any run
  bool require_command = false;  // only tasks that carry a shell command
};

struct TaskQuery {
  std::string run_id;              // empty: any run
  std::optional<TaskState> state;  // empty: any state
  int limit = 0;                   // 0: no limit
  std::string after_id;            // only tasks with a greater id (pagination); "": from the first
};

struct EventQuery {
  int64_t after_seq = 0;  // events with seq > after_seq, in chain order
  std::string run_id;     // empty: any
  std::string task_id;    // empty: any
  int limit = 1000;
};

struct ModelCallQuery {
  int64_t since_ms = 0;  // calls with ts_ms >= since_ms
  std::string run_id;    // empty: any
  std::string task_id;   // empty: any
  std::string agent;     // empty: any
  int limit = 0;         // 0: no limit
};

// Which spend to add up. Every non-empty key must match; since_ms/until_ms bound ts_ms
// (until_ms 0 = no upper bound).
struct SpendQuery {
  std::string run_id;
  std::string task_id;
  std::string agent;
  std::string day;
  int64_t since_ms = 0;
  int64_t until_ms = 0;
  // false: settled actual cost + unsettled reserved amounts (what a new reservation must fit
  // beside); true: settled actual cost only (what was really spent).
  bool settled_only = false;
};

// The operations available inside one transaction. Obtained only from Store::Write/Read; never
// outlives the callback. Not thread-safe (a transaction belongs to one thread).
class StoreTxn {
 public:
  virtual ~StoreTxn() = default;

  // --- runs
  virtual Result<std::optional<Run>> GetRun(std::string_view id) = 0;
  virtual Status InsertRun(const Run& run) = 0;
  virtual Status UpdateRun(const Run& run) = 0;
  virtual Result<std::vector<Run>> ListRuns(int limit) = 0;

  // --- tasks
  // The task with its depends_on filled in (unless with_dependencies is false: the hot paths
  // that only check a lease skip that query), or nullopt.
  virtual Result<std::optional<Task>> GetTask(std::string_view id,
                                              bool with_dependencies = true) = 0;
  virtual Result<std::optional<std::string>> FindTaskByIdempotencyKey(std::string_view run_id,
                                                                      std::string_view key) = 0;
  // Inserts the task row and its dependency edges. AlreadyExists on a duplicate id or
  // (run_id, idempotency_key).
  virtual Status InsertTask(const Task& task) = 0;
  // Writes every mutable field of the task row (not depends_on, which never changes).
  virtual Status UpdateTask(const Task& task) = 0;
  // Atomically moves up to `limit` of the best ready tasks (priority DESC, id ASC) whose
  // not_before has passed to `claimed`: lease owner and expiry set, attempts and lease_epoch
  // incremented, attempt_id = new_attempt_id() (called once per claimed task, in the
  // transaction), attempt_started_ms = updated_ms = now. Returns them as updated, best first
  // (depends_on not filled).
  virtual Result<std::vector<Task>> ClaimReady(
      const ClaimFilter& filter, int64_t now_ms, std::string_view owner, int64_t lease_expires_ms,
      int limit, const std::function<std::string()>& new_attempt_id) = 0;
  // Leased tasks whose lease expired before now_ms.
  virtual Result<std::vector<Task>> ListExpiredLeases(int64_t now_ms, int limit) = 0;
  // Tasks in id order, each with depends_on filled in.
  virtual Result<std::vector<Task>> ListTasks(const TaskQuery& query) = 0;
  // Ids of tasks that depend directly on task_id.
  virtual Result<std::vector<std::string>> ListDependents(std::string_view task_id) = 0;
  // How many of task_id's dependencies are not done.
  virtual Result<int> CountUnfinishedDependencies(std::string_view task_id) = 0;
  // Moves task_id's dependents that are pending with every dependency done (the ones its
  // completion makes ready) to `ready`, updated_ms = now_ms, and returns them in id order: one
  // query, then a write of the state alone per dependent (a read and a full-row write each
  // would hold up the first claim after a large fan-out). The caller records the events.
  virtual Result<std::vector<TaskKey>> MakePendingDependentsReady(std::string_view task_id,
                                                                  int64_t now_ms) = 0;
  // Count of tasks per state (states with no task are absent).
  virtual Result<std::map<TaskState, int64_t>> CountTasksByState(std::string_view run_id) = 0;
  // The earliest not_before among ready tasks matching filter, if any (for worker sleeps).
  virtual Result<std::optional<int64_t>> NextReadyAt(const ClaimFilter& filter) = 0;

  // --- attempts
  // A running attempt has no row: the task row holds it (Task::attempt_id) until it ends, when
  // the queue writes its row with InsertAttempt. GetAttempt and ListAttempts report the running
  // attempt of a leased task from its task row.
  //
  // Writes the attempt's row; when a row (task_id, epoch) exists already (an attempt started
  // before schema v5 wrote its row at the claim), updates its status, finished_ms, exit_code,
  // error and details_json instead.
  virtual Status InsertAttempt(const Attempt& attempt) = 0;
  // Updates status, finished_ms, exit_code, error, details_json of the attempt (task_id, epoch).
  // NotFound when it has no row (it is still running, or does not exist).
  virtual Status UpdateAttempt(const Attempt& attempt) = 0;
  virtual Result<std::optional<Attempt>> GetAttempt(std::string_view task_id, int64_t epoch) = 0;
  // By epoch, the running one (if any) last.
  virtual Result<std::vector<Attempt>> ListAttempts(std::string_view task_id) = 0;

  // --- events
  // Appends to the chain: fills seq, prev_hash and hash (id, ts_ms must be set by the caller).
  virtual Status AppendEvent(Event& event) = 0;
  virtual Result<std::vector<Event>> ListEvents(const EventQuery& query) = 0;
  // The seq of the chain's last event (0 when there is none).
  virtual Result<int64_t> LastEventSeq() = 0;

  // --- model-call ledger (schema v2)
  // Appends a call; returns its id.
  virtual Result<int64_t> InsertModelCall(const ModelCallRow& row) = 0;
  // Calls matching query, oldest first.
  virtual Result<std::vector<ModelCallRow>> ListModelCalls(const ModelCallQuery& query) = 0;

  // --- budgets (schema v2)
  // Sum of spend in the scope (see SpendQuery). 0 when nothing matches.
  virtual Result<double> SumSpend(const SpendQuery& query) = 0;
  // Inserts an unsettled reservation; returns its id.
  virtual Result<int64_t> InsertReservation(const ReservationRow& row) = 0;
  virtual Result<std::optional<ReservationRow>> GetReservation(int64_t id) = 0;
  // Marks the reservation settled at actual_usd. NotFound when absent; settling twice
  // overwrites the actual cost.
  virtual Status SettleReservation(int64_t id, double actual_usd) = 0;
  // Inserts or replaces the pause of pause.agent.
  virtual Status SetAgentPause(const AgentPause& pause) = 0;
  // Removes the pause of agent; true when there was one.
  virtual Result<bool> ClearAgentPause(std::string_view agent) = 0;
  virtual Result<std::vector<AgentPause>> ListAgentPauses() = 0;

  // --- gateway virtual keys (schema v3)
  // AlreadyExists on a duplicate id or key_hash.
  virtual Status InsertVirtualKey(const VirtualKey& key) = 0;
  // The key (active or revoked) with this hash, or nullopt.
  virtual Result<std::optional<VirtualKey>> FindVirtualKeyByHash(std::string_view key_hash) = 0;
  // Every key, revoked ones included, oldest first.
  virtual Result<std::vector<VirtualKey>> ListVirtualKeys() = 0;
  // Marks an active key revoked at now_ms. True when it was active; false when it was already
  // revoked; NotFound when no key has this id.
  virtual Result<bool> RevokeVirtualKey(std::string_view id, int64_t now_ms) = 0;

  // --- API tokens (schema v8)
  // AlreadyExists on a duplicate id, name or token_hash.
  virtual Status InsertApiToken(const ApiToken& token) = 0;
  // The token (active, expired or revoked) with this hash, or nullopt.
  virtual Result<std::optional<ApiToken>> FindApiTokenByHash(std::string_view token_hash) = 0;
  // Every token, revoked ones included, oldest first.
  virtual Result<std::vector<ApiToken>> ListApiTokens() = 0;
  // Revokes the token whose id or name is `id_or_name`. True when it was active, false when it
  // was revoked already; NotFound when there is no such token.
  virtual Result<bool> RevokeApiToken(std::string_view id_or_name, int64_t now_ms) = 0;
};

struct StoreInfo {
  std::string backend;   // "sqlite" or "postgres"
  std::string location;  // file path or redacted URL
  int schema_version = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs fn in a write transaction and commits when fn succeeds; rolls back when it fails and
  // returns its error. Serialised against every other writer, in this process and others.
  // Transient lock contention is retried internally; fn may therefore run more than once and
  // must not have side effects outside the transaction. Thread-safe.
  virtual Status Write(const std::function<Status(StoreTxn&)>& fn) = 0;

  // Runs fn on a consistent read snapshot; write primitives fail inside. Thread-safe.
  virtual Status Read(const std::function<Status(StoreTxn&)>& fn) = 0;

  virtual StoreInfo Info() const = 0;

  // Checks the storage itself (pages, indexes), not the records' meaning. DataLoss naming
  // the first problems when it is damaged; other codes when the check could not run. Thread-safe.
  virtual Status CheckIntegrity() { return Ok(); }
};

enum class SqliteSync { kNormal, kFull };

struct SqliteOptions {
  std::string path;
  // NORMAL (default): in WAL mode a commit survives a process crash; the last commits may be
  // lost on power loss. FULL: fsync at every commit, for power-loss durability.
  SqliteSync synchronous = SqliteSync::kNormal;
  int busy_timeout_ms = 10'000;
  int reader_connections = 4;
  // false: a missing or empty (0-byte) file is NotFound "no factory database at PATH: run
  // `factory init`" instead of a new database.
  bool create_if_missing = true;
};

// Opens (creating if allowed) the SQLite store and applies pending migrations. Fails with
// FailedPrecondition when the file's schema is newer than this build knows, InvalidArgument when
// the file is not an SQLite database, Unavailable when it cannot be opened or written.
Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

// The newest schema version this build knows.
int LatestSchemaVersion();

}  // namespace factory
