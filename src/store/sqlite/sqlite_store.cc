// The SQLite Store: WAL, one writer connection (serialised by a mutex in-process and by
// BEGIN IMMEDIATE across processes) and a small pool of reader connections; every statement
// prepared once per connection and cached.

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "store/sqlite/claim_sql.h"
#include "store/sqlite/migrations.h"
#include "store/sqlite/sqlite_db.h"
#include "store/store.h"

namespace factory {
namespace {

using sqlite::Connection;
using sqlite::Statement;

constexpr char kTaskColumns[] =
    "id, run_id, title, spec, acceptance, type, capabilities, agent, command, priority, state, "
    "idempotency_key, attempts, max_attempts, not_before_ms, lease_owner, lease_expires_ms, "
    "lease_epoch, result, metadata, created_ms, updated_ms, attempt_id, attempt_started_ms, "
    "crashes, "
    "max_crashes";

Task ReadTask(const Statement& row) {
  Task task;
  task.id = row.ColumnText(0);
  task.run_id = row.ColumnText(1);
  task.title = row.ColumnText(2);
  task.spec = row.ColumnText(3);
  task.acceptance_json = row.ColumnText(4);
  task.type = row.ColumnText(5);
  task.capabilities_json = row.ColumnText(6);
  task.agent = row.ColumnText(7);
  task.command = row.ColumnText(8);
  task.priority = static_cast<int>(row.ColumnInt(9));
  task.state = ParseTaskState(row.ColumnText(10)).value_or(TaskState::kFailed);
  if (!row.ColumnIsNull(11)) task.idempotency_key = row.ColumnText(11);
  task.attempts = static_cast<int>(row.ColumnInt(12));
  task.max_attempts = static_cast<int>(row.ColumnInt(13));
  task.not_before_ms = row.ColumnInt(14);
  task.lease_owner = row.ColumnText(15);
  task.lease_expires_ms = row.ColumnInt(16);
  task.lease_epoch = row.ColumnInt(17);
  task.result_json = row.ColumnText(18);
  task.metadata_json = row.ColumnText(19);
  task.created_ms = row.ColumnInt(20);
  task.updated_ms = row.ColumnInt(21);
  task.attempt_id = row.ColumnText(22);
  task.attempt_started_ms = row.ColumnInt(23);
  task.crashes = static_cast<int>(row.ColumnInt(24));
  task.max_crashes = static_cast<int>(row.ColumnInt(25));
  return task;
}

constexpr char kAttemptColumns[] =
    "id, task_id, epoch, number, owner, status, started_ms, finished_ms, exit_code, error, details";

Attempt ReadAttempt(const Statement& row) {
  Attempt attempt;
  attempt.id = row.ColumnText(0);
  attempt.task_id = row.ColumnText(1);
  attempt.epoch = row.ColumnInt(2);
  attempt.number = static_cast<int>(row.ColumnInt(3));
  attempt.owner = row.ColumnText(4);
  attempt.status = ParseAttemptStatus(row.ColumnText(5)).value_or(AttemptStatus::kFailed);
  attempt.started_ms = row.ColumnInt(6);
  attempt.finished_ms = row.ColumnInt(7);
  if (!row.ColumnIsNull(8)) attempt.exit_code = static_cast<int>(row.ColumnInt(8));
  attempt.error = row.ColumnText(9);
  attempt.details_json = row.ColumnText(10);
  return attempt;
}

constexpr char kEventColumns[] =
    "seq, id, ts_ms, run_id, task_id, kind, actor, payload, prev_hash, hash";

Event ReadEvent(const Statement& row) {
  Event event;
  event.seq = row.ColumnInt(0);
  event.id = row.ColumnText(1);
  event.ts_ms = row.ColumnInt(2);
  event.run_id = row.ColumnText(3);
  event.task_id = row.ColumnText(4);
  event.kind = row.ColumnText(5);
  event.actor = row.ColumnText(6);
  event.payload_json = row.ColumnText(7);
  event.prev_hash = row.ColumnText(8);
  event.hash = row.ColumnText(9);
  return event;
}

// Statement binds text and integers only. A REAL column converts a bound decimal text to a
// double (column affinity), and printf('%!.17g', x) reads one back with every digit, so money
// survives the round trip.
std::string DoubleText(double value) {
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (ec != std::errc()) return "0";
  return std::string(buffer, end);
}

double ParseDouble(const std::string& text) {
  double value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

constexpr char kModelCallColumns[] =
    "id, ts_ms, run_id, task_id, attempt_id, agent, provider, model, alias, input_tokens, "
    "output_tokens, cached_tokens, printf('%!.17g', cost_usd), latency_ms, status, http_status, "
    "retries, cache_hit, error, purpose, printf('%!.17g', overrun_usd)";

ModelCallRow ReadModelCall(const Statement& row) {
  ModelCallRow call;
  call.id = row.ColumnInt(0);
  call.ts_ms = row.ColumnInt(1);
  call.run_id = row.ColumnText(2);
  call.task_id = row.ColumnText(3);
  call.attempt_id = row.ColumnText(4);
  call.agent = row.ColumnText(5);
  call.provider = row.ColumnText(6);
  call.model = row.ColumnText(7);
  call.alias = row.ColumnText(8);
  call.input_tokens = row.ColumnInt(9);
  call.output_tokens = row.ColumnInt(10);
  call.cached_tokens = row.ColumnInt(11);
  call.cost_usd = ParseDouble(row.ColumnText(12));
  call.latency_ms = row.ColumnInt(13);
  call.status = row.ColumnText(14);
  call.http_status = static_cast<int>(row.ColumnInt(15));
  call.retries = static_cast<int>(row.ColumnInt(16));
  call.cache_hit = row.ColumnInt(17) != 0;
  call.error = row.ColumnText(18);
  call.purpose = row.ColumnText(19);
  call.overrun_usd = ParseDouble(row.ColumnText(20));
  return call;
}

Run ReadRun(const Statement& row) {
  Run run;
  run.id = row.ColumnText(0);
  run.title = row.ColumnText(1);
  run.state = row.ColumnText(2);
  run.metadata_json = row.ColumnText(3);
  run.created_ms = row.ColumnInt(4);
  run.updated_ms = row.ColumnInt(5);
  return run;
}

class SqliteTxn final : public StoreTxn {
 public:
  SqliteTxn(Connection& conn, bool writable) : conn_(conn), writable_(writable) {}

  // --- runs
  Result<std::optional<Run>> GetRun(std::string_view id) override {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt,
                             conn_.Prepare("SELECT id, title, state, metadata, created_ms, "
                                           "updated_ms FROM runs WHERE id = ?1"));
    stmt->Bind(1, id);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<Run>();
    return std::optional<Run>(ReadRun(*stmt));
  }

  Status InsertRun(const Run& run) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("INSERT INTO runs (id, title, state, metadata, created_ms, updated_ms) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
    stmt->Bind(1, run.id).Bind(2, run.title).Bind(3, run.state).Bind(4, run.metadata_json);
    stmt->Bind(5, run.created_ms).Bind(6, run.updated_ms);
    return stmt->Run();
  }

  Status UpdateRun(const Run& run) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("UPDATE runs SET title = ?2, state = ?3, metadata = ?4, updated_ms = ?5 "
                      "WHERE id = ?1"));
    stmt->Bind(1, run.id).Bind(2, run.title).Bind(3, run.state).Bind(4, run.metadata_json);
    stmt->Bind(5, run.updated_ms);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (sqlite3_changes(conn_.handle()) == 0) return NotFound("run " + run.id);
    return Ok();
  }

  Result<std::vector<Run>> ListRuns(int limit) override {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt,
                             conn_.Prepare("SELECT id, title, state, metadata, created_ms, "
                                           "updated_ms FROM runs ORDER BY created_ms DESC, id "
                                           "DESC LIMIT ?1"));
    stmt->Bind(1, static_cast<int64_t>(limit > 0 ? limit : -1));
    std::vector<Run> runs;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      runs.push_back(ReadRun(*stmt));
    }
    return runs;
  }

  // --- tasks
  Result<std::optional<Task>> GetTask(std::string_view id, bool with_dependencies) override {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(std::string("SELECT ") + kTaskColumns +
                                                             " FROM tasks WHERE id = ?1"));
    stmt->Bind(1, id);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<Task>();
    Task task = ReadTask(*stmt);
    stmt->Reset();
    if (with_dependencies) {
      FACTORY_ASSIGN_OR_RETURN(task.depends_on, ListDependencies(task.id));
    }
    return std::optional<Task>(std::move(task));
  }

  Result<std::optional<std::string>> FindTaskByIdempotencyKey(std::string_view run_id,
                                                              std::string_view key) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT id FROM tasks WHERE run_id = ?1 AND idempotency_key = ?2"));
    stmt->Bind(1, run_id).Bind(2, key);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<std::string>();
    return std::optional<std::string>(stmt->ColumnText(0));
  }

  Status InsertTask(const Task& task) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare(std::string("INSERT INTO tasks (") + kTaskColumns +
                      ", events_after_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                      "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, "
                      "?27)"));
    stmt->Bind(1, task.id).Bind(2, task.run_id).Bind(3, task.title).Bind(4, task.spec);
    stmt->Bind(5, task.acceptance_json).Bind(6, task.type).Bind(7, task.capabilities_json);
    stmt->Bind(8, task.agent).Bind(9, task.command).Bind(10, task.priority);
    stmt->Bind(11, TaskStateName(task.state)).BindOptional(12, task.idempotency_key);
    stmt->Bind(13, task.attempts).Bind(14, task.max_attempts).Bind(15, task.not_before_ms);
    stmt->Bind(16, task.lease_owner).Bind(17, task.lease_expires_ms).Bind(18, task.lease_epoch);
    stmt->Bind(19, task.result_json).Bind(20, task.metadata_json).Bind(21, task.created_ms);
    stmt->Bind(22, task.updated_ms).Bind(23, task.attempt_id).Bind(24, task.attempt_started_ms);
    stmt->Bind(25, task.crashes).Bind(26, task.max_crashes);
    // Every event of the task comes after the current chain head (see ListEvents).
    FACTORY_RETURN_IF_ERROR(LoadChainHead());
    stmt->Bind(27, head_seq_);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (task.depends_on.empty()) return Ok();
    FACTORY_ASSIGN_OR_RETURN(
        Statement * dep,
        conn_.Prepare("INSERT OR IGNORE INTO task_deps (task_id, depends_on) VALUES (?1, ?2)"));
    for (const auto& dependency : task.depends_on) {
      dep->Reset();
      dep->Bind(1, task.id).Bind(2, dependency);
      FACTORY_RETURN_IF_ERROR(dep->Run());
    }
    return Ok();
  }

  Status UpdateTask(const Task& task) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("UPDATE tasks SET title = ?2, spec = ?3, acceptance = ?4, type = ?5, "
                      "capabilities = ?6, agent = ?7, command = ?8, priority = ?9, state = ?10, "
                      "attempts = ?11, max_attempts = ?12, not_before_ms = ?13, "
                      "lease_owner = ?14, lease_expires_ms = ?15, lease_epoch = ?16, "
                      "result = ?17, metadata = ?18, updated_ms = ?19, attempt_id = ?20, "
                      "attempt_started_ms = ?21, crashes = ?22, max_crashes = ?23 WHERE id = ?1"));
    stmt->Bind(1, task.id).Bind(2, task.title).Bind(3, task.spec).Bind(4, task.acceptance_json);
    stmt->Bind(5, task.type).Bind(6, task.capabilities_json).Bind(7, task.agent);
    stmt->Bind(8, task.command).Bind(9, task.priority).Bind(10, TaskStateName(task.state));
    stmt->Bind(11, task.attempts).Bind(12, task.max_attempts).Bind(13, task.not_before_ms);
    stmt->Bind(14, task.lease_owner).Bind(15, task.lease_expires_ms).Bind(16, task.lease_epoch);
    stmt->Bind(17, task.result_json).Bind(18, task.metadata_json).Bind(19, task.updated_ms);
    stmt->Bind(20, task.attempt_id).Bind(21, task.attempt_started_ms);
    stmt->Bind(22, task.crashes).Bind(23, task.max_crashes);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (sqlite3_changes(conn_.handle()) == 0) return NotFound("task " + task.id);
    return Ok();
  }

  Result<std::vector<Task>> ClaimReady(
      const ClaimFilter& filter, int64_t now_ms, std::string_view owner, int64_t lease_expires_ms,
      int limit, const std::function<std::string()>& new_attempt_id) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    std::vector<Task> picked;
    if (!filter.run_id.empty()) {
      FACTORY_ASSIGN_OR_RETURN(Statement * select,
                               conn_.Prepare(sqlite::ClaimSelectSql(filter, kTaskColumns)));
      select->Bind(1, filter.run_id).Bind(2, now_ms).Bind(3, limit);
      FACTORY_ASSIGN_OR_RETURN(picked, CollectTasks(*select));
    } else {
      // Across runs: the best `limit` among each ready run's best `limit`.
      struct Candidate {
        int64_t priority;
        std::string id;
      };
      std::vector<Candidate> candidates;
      FACTORY_ASSIGN_OR_RETURN(Statement * next_run, conn_.Prepare(sqlite::kRunWithReadySql));
      FACTORY_ASSIGN_OR_RETURN(Statement * best,
                               conn_.Prepare(sqlite::ClaimSelectSql(filter, "priority, id")));
      std::string run_id;
      while (true) {
        next_run->Reset();
        next_run->Bind(1, run_id);
        FACTORY_ASSIGN_OR_RETURN(bool has_run, next_run->Step());
        if (!has_run) break;
        run_id = next_run->ColumnText(0);
        best->Reset();
        best->Bind(1, run_id).Bind(2, now_ms).Bind(3, limit);
        while (true) {
          FACTORY_ASSIGN_OR_RETURN(bool has_row, best->Step());
          if (!has_row) break;
          candidates.push_back({best->ColumnInt(0), best->ColumnText(1)});
        }
      }
      next_run->Reset();
      std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
        return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
      });
      if (candidates.size() > static_cast<size_t>(limit)) candidates.resize(limit);
      for (const Candidate& candidate : candidates) {
        FACTORY_ASSIGN_OR_RETURN(auto task, GetTask(candidate.id, false));
        if (task) picked.push_back(std::move(*task));
      }
    }
    FACTORY_ASSIGN_OR_RETURN(Statement * claim, conn_.Prepare(sqlite::kClaimOneSql));
    for (Task& task : picked) {
      task.state = TaskState::kClaimed;
      task.lease_owner = std::string(owner);
      task.lease_expires_ms = lease_expires_ms;
      task.attempts += 1;
      task.lease_epoch += 1;
      task.updated_ms = now_ms;
      task.attempt_id = new_attempt_id();
      task.attempt_started_ms = now_ms;
      claim->Reset();
      claim->Bind(1, task.id).Bind(2, owner).Bind(3, lease_expires_ms).Bind(4, now_ms);
      claim->Bind(5, task.attempt_id);
      FACTORY_RETURN_IF_ERROR(claim->Run());
      if (sqlite3_changes(conn_.handle()) != 1) {
        return Internal("claim of task " + task.id + " changed no row");
      }
    }
    return picked;  // best first, in the order selected
  }

  Result<std::vector<Task>> ListExpiredLeases(int64_t now_ms, int limit) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare(std::string("SELECT ") + kTaskColumns +
                      " FROM tasks WHERE lease_expires_ms > 0 AND lease_expires_ms < ?1 "
                      "AND state IN ('claimed', 'running', 'verifying', 'review') "
                      "ORDER BY lease_expires_ms LIMIT ?2"));
    stmt->Bind(1, now_ms).Bind(2, limit);
    return CollectTasks(*stmt);
  }

  Result<std::vector<Task>> ListTasks(const TaskQuery& query) override {
    std::string sql = std::string("SELECT ") + kTaskColumns + " FROM tasks WHERE 1";
    if (!query.run_id.empty()) sql += " AND run_id = ?1";
    if (query.state) sql += " AND state = ?2";
    if (!query.after_id.empty()) sql += " AND id > ?4";
    sql += " ORDER BY id LIMIT ?3";
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(sql));
    if (!query.run_id.empty()) stmt->Bind(1, query.run_id);
    if (query.state) stmt->Bind(2, TaskStateName(*query.state));
    stmt->Bind(3, static_cast<int64_t>(query.limit > 0 ? query.limit : -1));
    if (!query.after_id.empty()) stmt->Bind(4, query.after_id);
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, CollectTasks(*stmt));
    for (auto& task : tasks) {
      FACTORY_ASSIGN_OR_RETURN(task.depends_on, ListDependencies(task.id));
    }
    return tasks;
  }

  Result<std::vector<std::string>> ListDependents(std::string_view task_id) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT task_id FROM task_deps WHERE depends_on = ?1 ORDER BY task_id"));
    stmt->Bind(1, task_id);
    return CollectStrings(*stmt);
  }

  Result<int> CountUnfinishedDependencies(std::string_view task_id) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT count(*) FROM task_deps d JOIN tasks t ON t.id = d.depends_on "
                      "WHERE d.task_id = ?1 AND t.state <> 'done'"));
    stmt->Bind(1, task_id);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    int count = has_row ? static_cast<int>(stmt->ColumnInt(0)) : 0;
    stmt->Reset();
    return count;
  }

  Result<std::vector<TaskKey>> MakePendingDependentsReady(std::string_view task_id,
                                                          int64_t now_ms) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    // A SELECT, then a narrow UPDATE per row: one `UPDATE ... WHERE id IN (SELECT ...)` would
    // build an ephemeral table per call, which costs more than the whole of a completion that
    // frees one dependent or none (the common case; see ClaimReady).
    FACTORY_ASSIGN_OR_RETURN(
        Statement * select,
        conn_.Prepare("SELECT d.task_id, t.run_id FROM task_deps d JOIN tasks t ON t.id = "
                      "d.task_id WHERE d.depends_on = ?1 AND t.state = 'pending' AND NOT EXISTS ("
                      "SELECT 1 FROM task_deps other JOIN tasks dep ON dep.id = other.depends_on "
                      "WHERE other.task_id = d.task_id AND dep.state <> 'done') "
                      "ORDER BY d.task_id"));
    select->Bind(1, task_id);
    std::vector<TaskKey> promoted;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, select->Step());
      if (!has_row) break;
      promoted.push_back(TaskKey{select->ColumnText(0), select->ColumnText(1)});
    }
    FACTORY_ASSIGN_OR_RETURN(Statement * update,
                             conn_.Prepare("UPDATE tasks SET state = 'ready', updated_ms = ?2 "
                                           "WHERE id = ?1 AND state = 'pending'"));
    for (const auto& key : promoted) {
      update->Reset();
      update->Bind(1, key.id).Bind(2, now_ms);
      FACTORY_RETURN_IF_ERROR(update->Run());
    }
    return promoted;
  }

  Result<std::map<TaskState, int64_t>> CountTasksByState(std::string_view run_id) override {
    std::string sql = "SELECT state, count(*) FROM tasks";
    if (!run_id.empty()) sql += " WHERE run_id = ?1";
    sql += " GROUP BY state";
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(sql));
    if (!run_id.empty()) stmt->Bind(1, run_id);
    std::map<TaskState, int64_t> counts;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      if (auto state = ParseTaskState(stmt->ColumnText(0))) counts[*state] = stmt->ColumnInt(1);
    }
    return counts;
  }

  Result<std::optional<int64_t>> NextReadyAt(const ClaimFilter& filter) override {
    // INDEXED BY: without statistics the planner prefers tasks_run, which also holds the run's
    // finished tasks.
    std::string sql = filter.run_id.empty()
                          ? "SELECT min(not_before_ms) FROM tasks WHERE state = 'ready'"
                          : "SELECT min(not_before_ms) FROM tasks INDEXED BY tasks_run_claim "
                            "WHERE state = 'ready' AND run_id = ?1";
    if (filter.require_command) sql += " AND command <> ''";
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(sql));
    if (!filter.run_id.empty()) stmt->Bind(1, filter.run_id);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    std::optional<int64_t> next;
    if (has_row && !stmt->ColumnIsNull(0)) next = stmt->ColumnInt(0);
    stmt->Reset();
    return next;
  }

  // --- attempts
  Status InsertAttempt(const Attempt& attempt) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare(std::string("INSERT INTO attempts (") + kAttemptColumns +
                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
                      "ON CONFLICT (task_id, epoch) DO UPDATE SET status = excluded.status, "
                      "finished_ms = excluded.finished_ms, exit_code = excluded.exit_code, "
                      "error = excluded.error, details = excluded.details"));
    BindAttempt(*stmt, attempt);
    return stmt->Run();
  }

  Status UpdateAttempt(const Attempt& attempt) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("UPDATE attempts SET status = ?3, finished_ms = ?4, exit_code = ?5, "
                      "error = ?6, details = ?7 WHERE task_id = ?1 AND epoch = ?2"));
    stmt->Bind(1, attempt.task_id)
        .Bind(2, attempt.epoch)
        .Bind(3, AttemptStatusName(attempt.status));
    stmt->Bind(4, attempt.finished_ms);
    if (attempt.exit_code) {
      stmt->Bind(5, *attempt.exit_code);
    } else {
      stmt->BindNull(5);
    }
    stmt->Bind(6, attempt.error).Bind(7, attempt.details_json);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (sqlite3_changes(conn_.handle()) == 0) {
      return NotFound("attempt of task " + attempt.task_id);
    }
    return Ok();
  }

  Result<std::optional<Attempt>> GetAttempt(std::string_view task_id, int64_t epoch) override {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt,
                             conn_.Prepare(std::string("SELECT ") + kAttemptColumns +
                                           " FROM attempts WHERE task_id = ?1 AND epoch = ?2"));
    stmt->Bind(1, task_id).Bind(2, epoch);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) {
      FACTORY_ASSIGN_OR_RETURN(auto running, RunningAttempt(task_id));
      if (running && running->epoch == epoch) return running;
      return std::optional<Attempt>();
    }
    Attempt attempt = ReadAttempt(*stmt);
    stmt->Reset();
    return std::optional<Attempt>(std::move(attempt));
  }

  Result<std::vector<Attempt>> ListAttempts(std::string_view task_id) override {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt,
                             conn_.Prepare(std::string("SELECT ") + kAttemptColumns +
                                           " FROM attempts WHERE task_id = ?1 ORDER BY epoch"));
    stmt->Bind(1, task_id);
    std::vector<Attempt> attempts;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      attempts.push_back(ReadAttempt(*stmt));
    }
    FACTORY_ASSIGN_OR_RETURN(auto running, RunningAttempt(task_id));
    if (running) attempts.push_back(std::move(*running));
    return attempts;
  }

  // --- events
  Status AppendEvent(Event& event) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_RETURN_IF_ERROR(LoadChainHead());
    event.seq = head_seq_ + 1;
    event.prev_hash = head_hash_;
    event.hash = ComputeEventHash(event);
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt,
                             conn_.Prepare(std::string("INSERT INTO events (") + kEventColumns +
                                           ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"));
    stmt->Bind(1, event.seq).Bind(2, event.id).Bind(3, event.ts_ms).Bind(4, event.run_id);
    stmt->Bind(5, event.task_id).Bind(6, event.kind).Bind(7, event.actor);
    stmt->Bind(8, event.payload_json).Bind(9, event.prev_hash).Bind(10, event.hash);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    head_seq_ = event.seq;
    head_hash_ = event.hash;
    return Ok();
  }

  Result<int64_t> LastEventSeq() override {
    FACTORY_RETURN_IF_ERROR(LoadChainHead());
    return head_seq_;
  }

  Result<std::vector<Event>> ListEvents(const EventQuery& query) override {
    std::string sql = std::string("SELECT ") + kEventColumns + " FROM events WHERE ";
    if (query.task_id.empty()) {
      sql += "seq > ?1";
    } else {
      // No per-task index (its upkeep cost a page write per event): a task's events are a
      // range scan of the chain from the task's creation on. One bound, so that the scan
      // starts at the larger of the two.
      sql +=
          "seq > max(?1, coalesce((SELECT events_after_seq FROM tasks WHERE id = ?3), 0)) "
          "AND task_id = ?3";
    }
    if (!query.run_id.empty()) sql += " AND run_id = ?2";
    sql += " ORDER BY seq LIMIT ?4";
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(sql));
    stmt->Bind(1, query.after_seq);
    if (!query.run_id.empty()) stmt->Bind(2, query.run_id);
    if (!query.task_id.empty()) stmt->Bind(3, query.task_id);
    stmt->Bind(4, static_cast<int64_t>(query.limit > 0 ? query.limit : -1));
    std::vector<Event> events;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      events.push_back(ReadEvent(*stmt));
    }
    return events;
  }

  // --- model-call ledger
  Result<int64_t> InsertModelCall(const ModelCallRow& row) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("INSERT INTO model_calls (ts_ms, run_id, task_id, attempt_id, agent, "
                      "provider, model, alias, input_tokens, output_tokens, cached_tokens, "
                      "cost_usd, latency_ms, status, http_status, retries, cache_hit, error, "
                      "purpose, overrun_usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                      "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"));
    const std::string cost = DoubleText(row.cost_usd);
    const std::string overrun = DoubleText(row.overrun_usd);
    stmt->Bind(1, row.ts_ms).Bind(2, row.run_id).Bind(3, row.task_id).Bind(4, row.attempt_id);
    stmt->Bind(5, row.agent).Bind(6, row.provider).Bind(7, row.model).Bind(8, row.alias);
    stmt->Bind(9, row.input_tokens).Bind(10, row.output_tokens).Bind(11, row.cached_tokens);
    stmt->Bind(12, cost).Bind(13, row.latency_ms).Bind(14, row.status);
    stmt->Bind(15, row.http_status).Bind(16, row.retries).Bind(17, row.cache_hit ? 1 : 0);
    stmt->Bind(18, row.error).Bind(19, row.purpose).Bind(20, overrun);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    return static_cast<int64_t>(sqlite3_last_insert_rowid(conn_.handle()));
  }

  Result<std::vector<ModelCallRow>> ListModelCalls(const ModelCallQuery& query) override {
    std::string sql =
        std::string("SELECT ") + kModelCallColumns + " FROM model_calls WHERE ts_ms >= ?1";
    if (!query.run_id.empty()) sql += " AND run_id = ?2";
    if (!query.agent.empty()) sql += " AND agent = ?3";
    if (!query.task_id.empty()) sql += " AND task_id = ?5";
    sql += " ORDER BY ts_ms, id LIMIT ?4";
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(sql));
    stmt->Bind(1, query.since_ms);
    if (!query.run_id.empty()) stmt->Bind(2, query.run_id);
    if (!query.agent.empty()) stmt->Bind(3, query.agent);
    if (!query.task_id.empty()) stmt->Bind(5, query.task_id);
    stmt->Bind(4, static_cast<int64_t>(query.limit > 0 ? query.limit : -1));
    std::vector<ModelCallRow> calls;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      calls.push_back(ReadModelCall(*stmt));
    }
    return calls;
  }

  // --- budgets
  Result<double> SumSpend(const SpendQuery& query) override {
    std::string sql = query.settled_only
                          ? "SELECT printf('%!.17g', total(actual_usd)) FROM budget_reservations "
                            "WHERE settled = 1 AND ts_ms >= ?1"
                          : "SELECT printf('%!.17g', total(CASE WHEN settled THEN actual_usd "
                            "ELSE amount_usd END)) FROM budget_reservations WHERE ts_ms >= ?1";
    if (query.until_ms > 0) sql += " AND ts_ms < ?2";
    if (!query.run_id.empty()) sql += " AND run_id = ?3";
    if (!query.task_id.empty()) sql += " AND task_id = ?4";
    if (!query.agent.empty()) sql += " AND agent = ?5";
    if (!query.day.empty()) sql += " AND day = ?6";
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(sql));
    stmt->Bind(1, query.since_ms);
    if (query.until_ms > 0) stmt->Bind(2, query.until_ms);
    if (!query.run_id.empty()) stmt->Bind(3, query.run_id);
    if (!query.task_id.empty()) stmt->Bind(4, query.task_id);
    if (!query.agent.empty()) stmt->Bind(5, query.agent);
    if (!query.day.empty()) stmt->Bind(6, query.day);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    double sum = has_row ? ParseDouble(stmt->ColumnText(0)) : 0;
    stmt->Reset();
    return sum;
  }

  Result<int64_t> InsertReservation(const ReservationRow& row) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("INSERT INTO budget_reservations (ts_ms, run_id, task_id, agent, day, "
                      "amount_usd, settled, actual_usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    const std::string amount = DoubleText(row.amount_usd);
    const std::string actual = DoubleText(row.actual_usd);
    stmt->Bind(1, row.ts_ms).Bind(2, row.run_id).Bind(3, row.task_id).Bind(4, row.agent);
    stmt->Bind(5, row.day).Bind(6, amount).Bind(7, row.settled ? 1 : 0).Bind(8, actual);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    return static_cast<int64_t>(sqlite3_last_insert_rowid(conn_.handle()));
  }

  Result<std::optional<ReservationRow>> GetReservation(int64_t id) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT id, ts_ms, run_id, task_id, agent, day, printf('%!.17g', "
                      "amount_usd), settled, printf('%!.17g', actual_usd) FROM "
                      "budget_reservations WHERE id = ?1"));
    stmt->Bind(1, id);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<ReservationRow>();
    ReservationRow row;
    row.id = stmt->ColumnInt(0);
    row.ts_ms = stmt->ColumnInt(1);
    row.run_id = stmt->ColumnText(2);
    row.task_id = stmt->ColumnText(3);
    row.agent = stmt->ColumnText(4);
    row.day = stmt->ColumnText(5);
    row.amount_usd = ParseDouble(stmt->ColumnText(6));
    row.settled = stmt->ColumnInt(7) != 0;
    row.actual_usd = ParseDouble(stmt->ColumnText(8));
    stmt->Reset();
    return std::optional<ReservationRow>(std::move(row));
  }

  Status SettleReservation(int64_t id, double actual_usd) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("UPDATE budget_reservations SET settled = 1, actual_usd = ?2 WHERE id = ?1"));
    const std::string actual = DoubleText(actual_usd);
    stmt->Bind(1, id).Bind(2, actual);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (sqlite3_changes(conn_.handle()) == 0) {
      return NotFound("budget reservation " + std::to_string(id));
    }
    return Ok();
  }

  Status SetAgentPause(const AgentPause& pause) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("INSERT OR REPLACE INTO agent_pauses (agent, reason, since_ms, by) "
                      "VALUES (?1, ?2, ?3, ?4)"));
    stmt->Bind(1, pause.agent).Bind(2, pause.reason).Bind(3, pause.since_ms).Bind(4, pause.by);
    return stmt->Run();
  }

  Result<bool> ClearAgentPause(std::string_view agent) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt,
                             conn_.Prepare("DELETE FROM agent_pauses WHERE agent = ?1"));
    stmt->Bind(1, agent);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    return sqlite3_changes(conn_.handle()) > 0;
  }

  Result<std::vector<AgentPause>> ListAgentPauses() override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT agent, reason, since_ms, by FROM agent_pauses ORDER BY agent"));
    std::vector<AgentPause> pauses;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      pauses.push_back(AgentPause{.agent = stmt->ColumnText(0),
                                  .reason = stmt->ColumnText(1),
                                  .since_ms = stmt->ColumnInt(2),
                                  .by = stmt->ColumnText(3)});
    }
    return pauses;
  }

  // --- gateway virtual keys
  Status InsertVirtualKey(const VirtualKey& key) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("INSERT INTO virtual_keys (id, agent, key_hash, prefix, label, run_id, "
                      "task_id, attempt_id, created_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, "
                      "?6, ?7, ?8, ?9, ?10)"));
    stmt->Bind(1, key.id).Bind(2, key.agent).Bind(3, key.key_hash).Bind(4, key.prefix);
    stmt->Bind(5, key.label).Bind(6, key.run_id).Bind(7, key.task_id).Bind(8, key.attempt_id);
    stmt->Bind(9, key.created_ms).Bind(10, key.revoked_ms);
    return stmt->Run();
  }

  Result<std::optional<VirtualKey>> FindVirtualKeyByHash(std::string_view key_hash) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt, conn_.Prepare(std::string(kVirtualKeySelect) + " WHERE key_hash = ?1"));
    stmt->Bind(1, key_hash);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<VirtualKey>();
    VirtualKey key = ReadVirtualKey(*stmt);
    stmt->Reset();
    return std::optional<VirtualKey>(std::move(key));
  }

  Result<std::vector<VirtualKey>> ListVirtualKeys() override {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn_.Prepare(std::string(kVirtualKeySelect) +
                                                             " ORDER BY created_ms, id"));
    std::vector<VirtualKey> keys;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      keys.push_back(ReadVirtualKey(*stmt));
    }
    return keys;
  }

  Result<bool> RevokeVirtualKey(std::string_view id, int64_t now_ms) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("UPDATE virtual_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0"));
    stmt->Bind(1, id).Bind(2, now_ms);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (sqlite3_changes(conn_.handle()) > 0) return true;
    FACTORY_ASSIGN_OR_RETURN(Statement * exists,
                             conn_.Prepare("SELECT 1 FROM virtual_keys WHERE id = ?1"));
    exists->Bind(1, id);
    FACTORY_ASSIGN_OR_RETURN(bool found, exists->Step());
    exists->Reset();
    if (!found) return NotFound("no virtual key with id " + std::string(id));
    return false;
  }

  // --- API tokens
  Status InsertApiToken(const ApiToken& token) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("INSERT INTO api_tokens (id, name, scope, token_hash, prefix, created_ms, "
                      "expires_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    stmt->Bind(1, token.id).Bind(2, token.name).Bind(3, token.scope).Bind(4, token.token_hash);
    stmt->Bind(5, token.prefix).Bind(6, token.created_ms).Bind(7, token.expires_ms);
    stmt->Bind(8, token.revoked_ms);
    return stmt->Run();
  }

  Result<std::optional<ApiToken>> FindApiTokenByHash(std::string_view token_hash) override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt, conn_.Prepare(std::string(kApiTokenSelect) + " WHERE token_hash = ?1"));
    stmt->Bind(1, token_hash);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<ApiToken>();
    ApiToken token = ReadApiToken(*stmt);
    stmt->Reset();
    return std::optional<ApiToken>(std::move(token));
  }

  Result<std::vector<ApiToken>> ListApiTokens() override {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt, conn_.Prepare(std::string(kApiTokenSelect) + " ORDER BY created_ms, id"));
    std::vector<ApiToken> tokens;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
      if (!has_row) break;
      tokens.push_back(ReadApiToken(*stmt));
    }
    return tokens;
  }

  Result<bool> RevokeApiToken(std::string_view id_or_name, int64_t now_ms) override {
    FACTORY_RETURN_IF_ERROR(CheckWritable());
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("UPDATE api_tokens SET revoked_ms = ?2 WHERE (id = ?1 OR name = ?1) AND "
                      "revoked_ms = 0"));
    stmt->Bind(1, id_or_name).Bind(2, now_ms);
    FACTORY_RETURN_IF_ERROR(stmt->Run());
    if (sqlite3_changes(conn_.handle()) > 0) return true;
    FACTORY_ASSIGN_OR_RETURN(Statement * exists,
                             conn_.Prepare("SELECT 1 FROM api_tokens WHERE id = ?1 OR name = ?1"));
    exists->Bind(1, id_or_name);
    FACTORY_ASSIGN_OR_RETURN(bool found, exists->Step());
    exists->Reset();
    if (!found) return NotFound("no API token named or with id " + std::string(id_or_name));
    return false;
  }

 private:
  static constexpr char kVirtualKeySelect[] =
      "SELECT id, agent, key_hash, prefix, label, run_id, task_id, attempt_id, created_ms, "
      "revoked_ms FROM virtual_keys";

  static constexpr char kApiTokenSelect[] =
      "SELECT id, name, scope, token_hash, prefix, created_ms, expires_ms, revoked_ms FROM "
      "api_tokens";

  static ApiToken ReadApiToken(const Statement& row) {
    return ApiToken{.id = row.ColumnText(0),
                    .name = row.ColumnText(1),
                    .scope = row.ColumnText(2),
                    .token_hash = row.ColumnText(3),
                    .prefix = row.ColumnText(4),
                    .created_ms = row.ColumnInt(5),
                    .expires_ms = row.ColumnInt(6),
                    .revoked_ms = row.ColumnInt(7)};
  }

  static VirtualKey ReadVirtualKey(const Statement& row) {
    return VirtualKey{.id = row.ColumnText(0),
                      .agent = row.ColumnText(1),
                      .key_hash = row.ColumnText(2),
                      .prefix = row.ColumnText(3),
                      .label = row.ColumnText(4),
                      .run_id = row.ColumnText(5),
                      .task_id = row.ColumnText(6),
                      .attempt_id = row.ColumnText(7),
                      .created_ms = row.ColumnInt(8),
                      .revoked_ms = row.ColumnInt(9)};
  }

  // Reads the chain head once per transaction: the write lock is held, so no other writer can
  // append before we commit and the chain stays linear across processes.
  Status LoadChainHead() {
    if (chain_head_loaded_) return Ok();
    FACTORY_ASSIGN_OR_RETURN(
        Statement * head, conn_.Prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"));
    FACTORY_ASSIGN_OR_RETURN(bool has_row, head->Step());
    if (has_row) {
      head_seq_ = head->ColumnInt(0);
      head_hash_ = head->ColumnText(1);
    }
    head->Reset();
    chain_head_loaded_ = true;
    return Ok();
  }

  Status CheckWritable() const {
    if (!writable_) return Internal("write attempted inside a read transaction");
    return Ok();
  }

  static void BindAttempt(Statement& stmt, const Attempt& attempt) {
    stmt.Bind(1, attempt.id).Bind(2, attempt.task_id).Bind(3, attempt.epoch);
    stmt.Bind(4, attempt.number).Bind(5, attempt.owner).Bind(6, AttemptStatusName(attempt.status));
    stmt.Bind(7, attempt.started_ms).Bind(8, attempt.finished_ms);
    if (attempt.exit_code) {
      stmt.Bind(9, *attempt.exit_code);
    } else {
      stmt.BindNull(9);
    }
    stmt.Bind(10, attempt.error).Bind(11, attempt.details_json);
  }

  // The running attempt of a leased task, from its row (see StoreTxn::ListAttempts); nullopt
  // when the task is not leased or its attempt has a row of its own.
  Result<std::optional<Attempt>> RunningAttempt(std::string_view task_id) {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT state, attempt_id, lease_epoch, attempts, lease_owner, "
                      "attempt_started_ms FROM tasks WHERE id = ?1 AND attempt_id <> '' AND "
                      "lease_expires_ms > 0 AND NOT EXISTS (SELECT 1 FROM attempts WHERE "
                      "attempts.task_id = tasks.id AND attempts.epoch = tasks.lease_epoch)"));
    stmt->Bind(1, task_id);
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) return std::optional<Attempt>();
    std::optional<Attempt> running;
    auto state = ParseTaskState(stmt->ColumnText(0));
    if (state && IsLeasedState(*state)) {
      running = Attempt{.id = stmt->ColumnText(1),
                        .task_id = std::string(task_id),
                        .epoch = stmt->ColumnInt(2),
                        .number = static_cast<int>(stmt->ColumnInt(3)),
                        .owner = stmt->ColumnText(4),
                        .status = AttemptStatus::kRunning,
                        .started_ms = stmt->ColumnInt(5)};
    }
    stmt->Reset();
    return running;
  }

  Result<std::vector<std::string>> ListDependencies(const std::string& task_id) {
    FACTORY_ASSIGN_OR_RETURN(
        Statement * stmt,
        conn_.Prepare("SELECT depends_on FROM task_deps WHERE task_id = ?1 ORDER BY depends_on"));
    stmt->Bind(1, task_id);
    return CollectStrings(*stmt);
  }

  static Result<std::vector<Task>> CollectTasks(Statement& stmt) {
    std::vector<Task> tasks;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
      if (!has_row) break;
      tasks.push_back(ReadTask(stmt));
    }
    return tasks;
  }

  static Result<std::vector<std::string>> CollectStrings(Statement& stmt) {
    std::vector<std::string> values;
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
      if (!has_row) break;
      values.push_back(stmt.ColumnText(0));
    }
    return values;
  }

  Connection& conn_;
  bool writable_;
  bool chain_head_loaded_ = false;
  int64_t head_seq_ = 0;
  std::string head_hash_;
};

bool LooksLikeSqliteFile(const std::string& path, std::string* reason) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return true;
  if (std::filesystem::is_directory(path, ec)) {
    *reason = path + " is a directory, not an SQLite database";
    return false;
  }
  auto size = std::filesystem::file_size(path, ec);
  if (ec || size == 0) return true;  // an empty file becomes a new database
  std::ifstream in(path, std::ios::binary);
  char header[16] = {};
  in.read(header, sizeof(header));
  if (in.gcount() < 16 ||
      std::string_view(header, 16) != std::string_view("SQLite format 3\0", 16)) {
    *reason = path + " is not an SQLite database (bad file header)";
    return false;
  }
  return true;
}

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const SqliteOptions& options) {
    if (options.path.empty()) return InvalidArgument("database path is empty");
    std::string reason;
    // Check the header ourselves before SQLite touches the file, so a file that is not a
    // database is refused without being modified.
    if (!LooksLikeSqliteFile(options.path, &reason)) return InvalidArgument(reason);
    std::error_code ec;
    bool exists = std::filesystem::exists(options.path, ec);
    // A 0-byte file is what a crash between create and first write, or a truncation, leaves:
    // only a caller allowed to create a database may make it one.
    const bool empty = exists && std::filesystem::file_size(options.path, ec) == 0 && !ec;
    if ((!exists || empty) && !options.create_if_missing) {
      return NotFound("no factory database at " + options.path +
                      (empty ? " (the file is empty)" : "") + ": run `factory init`");
    }
    auto parent = std::filesystem::path(options.path).parent_path();
    if (!exists && !parent.empty() && !std::filesystem::exists(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) {
        return Unavailable("cannot create directory " + parent.string() + ": " + ec.message());
      }
    }
    auto store = std::unique_ptr<SqliteStore>(new SqliteStore(options));
    FACTORY_RETURN_IF_ERROR(store->Init());
    return std::unique_ptr<Store>(std::move(store));
  }

  ~SqliteStore() override { StopCheckpointer(); }

  // Group commit: a writer that finds no transaction in progress runs every write queued
  // meanwhile in one transaction, each in a savepoint of its own (a write that fails rolls back
  // its own changes only, and each caller gets its own status). Fifty workers' completions
  // arriving together are then a few transactions instead of fifty handed the lock one by
  // one, each writing its pages to the WAL.
  Status Write(const std::function<Status(StoreTxn&)>& fn) override {
    QueuedWrite write{.fn = &fn};
    std::unique_lock lock(batch_mu_);
    queued_writes_.push_back(&write);
    while (!write.done) {
      if (batch_running_) {
        batch_cv_.wait(lock);
        continue;
      }
      batch_running_ = true;
      const size_t take = std::min(queued_writes_.size(), kMaxWritesPerTransaction);
      std::vector<QueuedWrite*> batch(queued_writes_.begin(), queued_writes_.begin() + take);
      queued_writes_.erase(queued_writes_.begin(), queued_writes_.begin() + take);
      lock.unlock();
      RunBatch(batch);
      lock.lock();
      for (QueuedWrite* done : batch) done->done = true;
      batch_running_ = false;
      batch_cv_.notify_all();
    }
    lock.unlock();
    if (write.exception) std::rethrow_exception(write.exception);
    return write.status;
  }

  Status Read(const std::function<Status(StoreTxn&)>& fn) override {
    std::unique_ptr<Connection> conn = AcquireReader();
    if (!conn) {
      auto opened = OpenConnection(/*writer=*/false);
      if (!opened) return std::unexpected(opened.error());
      conn = std::move(*opened);
    }
    Status status = conn->Exec("BEGIN");
    if (status) {
      SqliteTxn txn(*conn, /*writable=*/false);
      status = fn(txn);
      conn->ResetStatements();
      Status end = conn->Exec("COMMIT");
      if (status && !end) status = end;
      if (!end) (void)conn->Exec("ROLLBACK");
    }
    ReleaseReader(std::move(conn));
    return status;
  }

  StoreInfo Info() const override {
    return StoreInfo{"sqlite", options_.path, sqlite::kLatestVersion};
  }

  Status CheckIntegrity() override {
    std::unique_ptr<Connection> conn = AcquireReader();
    if (!conn) {
      auto opened = OpenConnection(/*writer=*/false);
      if (!opened) return std::unexpected(opened.error());
      conn = std::move(*opened);
    }
    std::vector<std::string> problems;
    Status status = [&]() -> Status {
      FACTORY_ASSIGN_OR_RETURN(Statement * stmt, conn->Prepare("PRAGMA integrity_check(20)"));
      while (true) {
        FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
        if (!has_row) break;
        std::string line = stmt->ColumnText(0);
        if (line != "ok") problems.push_back(std::move(line));
      }
      return Ok();
    }();
    conn->ResetStatements();
    ReleaseReader(std::move(conn));
    if (!status) {
      if (status.error().code == ErrorCode::kDataLoss) {
        return DataLoss(options_.path + " is corrupt: " + status.error().message);
      }
      return status;
    }
    if (problems.empty()) return Ok();
    std::string message = options_.path + " is corrupt (integrity check):";
    for (const auto& problem : problems) message += "\n  " + problem;
    return DataLoss(message);
  }

 private:
  explicit SqliteStore(SqliteOptions options) : options_(std::move(options)) {}

  Result<std::unique_ptr<Connection>> OpenConnection(bool writer) {
    int flags =
        SQLITE_OPEN_READWRITE | (writer && options_.create_if_missing ? SQLITE_OPEN_CREATE : 0);
    FACTORY_ASSIGN_OR_RETURN(auto conn, Connection::Open(options_.path, flags));
    FACTORY_RETURN_IF_ERROR(
        conn->Exec("PRAGMA busy_timeout = " + std::to_string(options_.busy_timeout_ms)));
    FACTORY_RETURN_IF_ERROR(conn->Exec("PRAGMA foreign_keys = ON"));
    // A 64 MiB page cache keeps large transactions (batched enqueues) from spilling pages to
    // the WAL before commit; temp B-trees stay in memory.
    FACTORY_RETURN_IF_ERROR(conn->Exec("PRAGMA cache_size = -65536"));
    FACTORY_RETURN_IF_ERROR(conn->Exec("PRAGMA temp_store = MEMORY"));
    FACTORY_RETURN_IF_ERROR(conn->Exec(options_.synchronous == SqliteSync::kFull
                                           ? "PRAGMA synchronous = FULL"
                                           : "PRAGMA synchronous = NORMAL"));
    return conn;
  }

  Status Init() {
    auto writer = OpenConnection(/*writer=*/true);
    if (!writer) return std::unexpected(writer.error().Wrap("opening " + options_.path));
    writer_ = std::move(*writer);
    // Reading the schema first makes SQLite validate the file before anything is written.
    if (auto status = writer_->Exec("SELECT count(*) FROM sqlite_schema"); !status) {
      return std::unexpected(status.error().Wrap(options_.path));
    }
    // Another process opening the same database at the same moment may hold the lock the WAL
    // switch needs, and SQLite does not wait for it there: retried up to the busy timeout.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.busy_timeout_ms);
    Status wal = Ok();
    for (int attempt = 1;; ++attempt) {
      wal = EnableWal();
      if (!IsBusy(wal) || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(attempt * 5, 100)));
    }
    if (!wal) return std::unexpected(wal.error().Wrap("enabling WAL on " + options_.path));
    FACTORY_RETURN_IF_ERROR(Migrate());
    StartCheckpointer();
    return Ok();
  }

  // Checkpoints run on a thread of their own instead of inside a commit. SQLite's automatic
  // checkpoint runs in the connection that committed past 1,000 WAL pages, fsyncs the database
  // there, and so holds the writer (and every writer waiting for it) for as long as the disk
  // takes, which on a slow disk stalls a worker's claims in the middle of its run.
  // A PASSIVE checkpoint from another connection never blocks the writer or readers. Our hook
  // replaces the automatic checkpoint (sqlite3_wal_hook); only when the WAL has grown far past
  // the threshold (the checkpointer cannot keep up) does a commit checkpoint inline again.
  static constexpr int kCheckpointPages = 1'000;
  static constexpr int kInlineCheckpointPages = 16 * kCheckpointPages;

  void StartCheckpointer() {
    sqlite3_wal_hook(writer_->handle(), &SqliteStore::OnWalCommit, this);
    checkpointer_ = std::thread([this] { CheckpointLoop(); });
  }

  static int OnWalCommit(void* self, sqlite3* db, const char* schema, int wal_pages) {
    if (wal_pages >= kInlineCheckpointPages) {
      sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (wal_pages >= kCheckpointPages) {
      static_cast<SqliteStore*>(self)->RequestCheckpoint();
    }
    return SQLITE_OK;
  }

  void RequestCheckpoint() {
    {
      std::lock_guard lock(checkpoint_mu_);
      checkpoint_wanted_ = true;
    }
    checkpoint_cv_.notify_one();
  }

  void CheckpointLoop() {
    std::unique_ptr<Connection> conn;
    while (true) {
      {
        std::unique_lock lock(checkpoint_mu_);
        checkpoint_cv_.wait(lock, [&] { return checkpoint_wanted_ || checkpointer_stop_; });
        if (checkpointer_stop_) return;
        checkpoint_wanted_ = false;
      }
      if (conn == nullptr) {
        auto opened = OpenConnection(/*writer=*/false);
        if (!opened) continue;  // the next commit past the threshold asks again
        conn = std::move(*opened);
      }
      // SQLITE_BUSY (another process checkpointing) is fine: a later request retries.
      sqlite3_wal_checkpoint_v2(conn->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                nullptr);
    }
  }

  void StopCheckpointer() {
    if (!checkpointer_.joinable()) return;
    {
      std::lock_guard lock(checkpoint_mu_);
      checkpointer_stop_ = true;
    }
    checkpoint_cv_.notify_one();
    checkpointer_.join();
    if (writer_ != nullptr) sqlite3_wal_hook(writer_->handle(), nullptr, nullptr);
  }

  // Switches the file to WAL unless it is already (the mode is stored in the file).
  Status EnableWal() {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, writer_->Prepare("PRAGMA journal_mode"));
    auto has_row = stmt->Step();
    const std::string mode = has_row && *has_row ? stmt->ColumnText(0) : "";
    writer_->ResetStatements();
    if (!has_row) return std::unexpected(has_row.error());
    if (mode == "wal") return Ok();
    return writer_->Exec("PRAGMA journal_mode = WAL");
  }

  Status Migrate() {
    // A current schema is read without a write transaction: an open (a read-only command's
    // above all) must not wait behind another process's writer, nor take the write lock.
    if (auto current = UserVersion(); current && *current == sqlite::kLatestVersion) {
      return Ok();
    }
    FACTORY_RETURN_IF_ERROR(BeginImmediate());
    auto version = UserVersion();
    if (!version) {
      (void)writer_->Exec("ROLLBACK");
      return std::unexpected(version.error());
    }
    if (*version > sqlite::kLatestVersion) {
      (void)writer_->Exec("ROLLBACK");
      return FailedPrecondition(options_.path + " has schema version " + std::to_string(*version) +
                                ", newer than this build of factory supports (" +
                                std::to_string(sqlite::kLatestVersion) +
                                "); upgrade factory to open it");
    }
    for (int next = *version; next < sqlite::kLatestVersion; ++next) {
      Status status = writer_->Exec(sqlite::kMigrations[next]);
      if (status) status = writer_->Exec("PRAGMA user_version = " + std::to_string(next + 1));
      if (!status) {
        (void)writer_->Exec("ROLLBACK");
        return std::unexpected(status.error().Wrap("migrating " + options_.path + " to version " +
                                                   std::to_string(next + 1)));
      }
    }
    Status commit = writer_->Exec("COMMIT");
    if (!commit) {
      (void)writer_->Exec("ROLLBACK");
      return std::unexpected(commit.error().Wrap("migrating " + options_.path));
    }
    return Ok();
  }

  Result<int> UserVersion() {
    FACTORY_ASSIGN_OR_RETURN(Statement * stmt, writer_->Prepare("PRAGMA user_version"));
    FACTORY_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    int version = has_row ? static_cast<int>(stmt->ColumnInt(0)) : 0;
    writer_->ResetStatements();
    return version;
  }

  Status BeginImmediate() { return writer_->Exec("BEGIN IMMEDIATE"); }

  // One queued Write: its function, and its outcome once `done`.
  struct QueuedWrite {
    const std::function<Status(StoreTxn&)>* fn = nullptr;
    Status status = Ok();
    std::exception_ptr exception;  // thrown by fn (a programmer error): rethrown to its caller
    bool done = false;             // guarded by batch_mu_
  };
  // Enough to take a burst of every worker's completions at once; bounded so that one
  // transaction (and the wait of the writes in it) stays short.
  static constexpr size_t kMaxWritesPerTransaction = 128;

  static bool IsBusy(const Status& status) {
    return !status && status.error().code == ErrorCode::kUnavailable &&
           status.error().message.find("database busy") != std::string::npos;
  }

  // Runs fn, turning an exception into the write's outcome (the batch must go on).
  static Status RunWriteFunction(QueuedWrite& write, StoreTxn& txn) {
    write.exception = nullptr;
    try {
      return (*write.fn)(txn);
    } catch (...) {
      write.exception = std::current_exception();
      return Internal("write function threw");
    }
  }

  void RunBatch(const std::vector<QueuedWrite*>& batch) {
    std::lock_guard lock(writer_mu_);
    if (batch.size() > 1) {
      Status status = WithRetries([&] { return WriteBatchOnce(batch); });
      if (status) {
        // A write that met lock contention in its own statements is retried alone, as a
        // single write would be.
        for (QueuedWrite* write : batch) {
          if (IsBusy(write->status)) {
            write->status = WithRetries([&] { return WriteOnce(*write); });
          }
        }
        return;
      }
      // The transaction as a whole failed (BEGIN or COMMIT): each write alone gets its own
      // outcome.
    }
    for (QueuedWrite* write : batch) {
      write->status = WithRetries([&] { return WriteOnce(*write); });
    }
  }

  // Transient lock contention (another process past busy_timeout) is retried with a pause.
  template <typename Attempt>
  static Status WithRetries(const Attempt& attempt_once) {
    constexpr int kMaxTries = 50;
    for (int attempt = 1;; ++attempt) {
      Status status = attempt_once();
      if (!IsBusy(status) || attempt >= kMaxTries) return status;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(attempt * 5, 100)));
    }
  }

  Status WriteOnce(QueuedWrite& write) {
    FACTORY_RETURN_IF_ERROR(BeginImmediate());
    SqliteTxn txn(*writer_, /*writable=*/true);
    Status status = RunWriteFunction(write, txn);
    writer_->ResetStatements();
    if (!status) {
      (void)writer_->Exec("ROLLBACK");
      return status;
    }
    Status commit = writer_->Exec("COMMIT");
    if (!commit) (void)writer_->Exec("ROLLBACK");
    return commit;
  }

  // Every write of the batch in one transaction, each in a savepoint; sets each write's status.
  // Fails only when the transaction itself does (then nothing of it is kept).
  Status WriteBatchOnce(const std::vector<QueuedWrite*>& batch) {
    FACTORY_RETURN_IF_ERROR(BeginImmediate());
    auto abandon = [&](Status status) {
      (void)writer_->Exec("ROLLBACK");
      return status;
    };
    for (QueuedWrite* write : batch) {
      if (Status begun = writer_->Exec("SAVEPOINT write"); !begun) return abandon(begun);
      // A transaction object per write: it caches the event chain's head, which a rolled back
      // write must not leave behind.
      SqliteTxn txn(*writer_, /*writable=*/true);
      write->status = RunWriteFunction(*write, txn);
      writer_->ResetStatements();
      if (!write->status) {
        if (Status undone = writer_->Exec("ROLLBACK TO write"); !undone) return abandon(undone);
      }
      if (Status released = writer_->Exec("RELEASE write"); !released) return abandon(released);
    }
    Status commit = writer_->Exec("COMMIT");
    if (!commit) return abandon(commit);
    return Ok();
  }

  std::unique_ptr<Connection> AcquireReader() {
    std::lock_guard lock(readers_mu_);
    if (readers_.empty()) return nullptr;
    auto conn = std::move(readers_.back());
    readers_.pop_back();
    return conn;
  }

  void ReleaseReader(std::unique_ptr<Connection> conn) {
    std::lock_guard lock(readers_mu_);
    if (static_cast<int>(readers_.size()) < options_.reader_connections) {
      readers_.push_back(std::move(conn));
    }
  }

  SqliteOptions options_;
  std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  std::vector<QueuedWrite*> queued_writes_;  // guarded by batch_mu_; waiting for a transaction
  bool batch_running_ = false;               // guarded by batch_mu_
  std::mutex writer_mu_;
  std::unique_ptr<Connection> writer_;  // guarded by writer_mu_ (after Init)
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> readers_;  // guarded by readers_mu_; idle readers
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;  // guarded by checkpoint_mu_
  bool checkpointer_stop_ = false;  // guarded by checkpoint_mu_
  std::thread checkpointer_;        // runs CheckpointLoop with a connection of its own
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  return SqliteStore::Open(options);
}

int LatestSchemaVersion() { return sqlite::kLatestVersion; }

}  // namespace factory
