// The SQLite store and the queue under concurrency, bad files and tampering.

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/test_util.h"
#include "events/audit.h"
#include "queue/queue.h"
#include "store/sqlite/claim_sql.h"
#include "store/sqlite/migrations.h"

namespace factory {
namespace {

std::unique_ptr<Store> OpenOrDie(const std::string& path) {
  auto store = OpenSqliteStore(SqliteOptions{.path = path});
  if (!store) ADD_FAILURE() << store.error().message;
  return store ? std::move(*store) : nullptr;
}

// Runs SQL on the file directly, as a user with the sqlite3 CLI would.
void ExecRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
      << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

std::string QueryRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string out;
  sqlite3_exec(
      db, sql.c_str(),
      [](void* sink, int columns, char** values, char**) {
        auto* text = static_cast<std::string*>(sink);
        for (int i = 0; i < columns; ++i) {
          *text += values[i] ? values[i] : "NULL";
          *text += i + 1 < columns ? "|" : "\n";
        }
        return 0;
      },
      &out, nullptr);
  sqlite3_close(db);
  return out;
}

class StoreTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_ / "factory.db"; }
  testing::TempDir dir_;
};

TEST_F(StoreTest, OpensInWalModeWithTheLatestSchema) {
  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Info().schema_version, LatestSchemaVersion());
  EXPECT_EQ(QueryRaw(db_path(), "PRAGMA journal_mode"), "wal\n");
  EXPECT_EQ(QueryRaw(db_path(), "PRAGMA user_version"),
            std::to_string(LatestSchemaVersion()) + "\n");
  for (const char* table : {"runs", "tasks", "task_deps", "attempts", "events"}) {
    EXPECT_EQ(QueryRaw(db_path(), std::string("SELECT count(*) FROM sqlite_schema WHERE name='") +
                                      table + "'"),
              "1\n")
        << table;
  }
  // Reopening applies nothing and keeps data.
  Queue queue(*store);
  ASSERT_TRUE(queue.Enqueue(EnqueueRequest{.title = "kept"}).has_value());
  store.reset();
  auto reopened = OpenOrDie(db_path());
  Queue queue2(*reopened);
  EXPECT_EQ(queue2.ListTasks({})->size(), 1u);
}

// A version-3 database (before the claim indexes became partial and the per-task event index
// was dropped) keeps its tasks and every task's events, and its chain still verifies.
TEST_F(StoreTest, MigratesAVersionThreeDatabaseKeepingEachTasksEvents) {
  std::string v3;
  for (int i = 0; i < 3; ++i) v3 += std::string(sqlite::kMigrations[i]);
  v3 +=
      "INSERT INTO runs (id, state, created_ms, updated_ms) VALUES ('r', 'open', 1, 1);"
      "INSERT INTO tasks (id, run_id, title, state, created_ms, updated_ms) VALUES "
      "('t1', 'r', 'one', 'ready', 1, 1), ('t2', 'r', 'two', 'ready', 1, 1);";
  // A chain whose events interleave the two tasks, hashed as the store hashes them.
  std::string prev;
  int64_t seq = 0;
  for (const char* task : {"t1", "t2", "t1", "t2", "t1"}) {
    Event event{.seq = ++seq,
                .id = "e" + std::to_string(seq),
                .ts_ms = seq,
                .run_id = "r",
                .task_id = task,
                .kind = "task.note",
                .actor = "test",
                .payload_json = "{}",
                .prev_hash = prev};
    event.hash = ComputeEventHash(event);
    v3 +=
        "INSERT INTO events (seq, id, ts_ms, run_id, task_id, kind, actor, payload, prev_hash, "
        "hash) VALUES (" +
        std::to_string(event.seq) + ", '" + event.id + "', " + std::to_string(event.ts_ms) +
        ", 'r', '" + task + "', 'task.note', 'test', '{}', '" + event.prev_hash + "', '" +
        event.hash + "');";
    prev = event.hash;
  }
  v3 += "PRAGMA user_version = 3;";
  ExecRaw(db_path(), v3);

  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Info().schema_version, LatestSchemaVersion());
  Queue queue(*store);
  auto seqs_of = [&](const std::string& task) {
    std::vector<int64_t> seqs;
    auto events = queue.ListEvents(EventQuery{.task_id = task});
    EXPECT_TRUE(events) << events.error().ToString();
    if (events) {
      for (const auto& event : *events) seqs.push_back(event.seq);
    }
    return seqs;
  };
  EXPECT_EQ(seqs_of("t1"), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(seqs_of("t2"), (std::vector<int64_t>{2, 4}));
  auto report = VerifyChain(*store);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_TRUE(report->ok);

  // The migrated tasks are claimable and new events land on their lists.
  auto claimed = queue.Claim("w", 60'000, 2, ClaimFilter{.run_id = "r"});
  ASSERT_TRUE(claimed) << claimed.error().ToString();
  ASSERT_EQ(claimed->size(), 2u);
  ASSERT_TRUE(queue.Complete(claimed->front().lease));
  EXPECT_EQ(seqs_of("t1"), (std::vector<int64_t>{1, 3, 5, 6, 8}));
  EXPECT_EQ(seqs_of("t2"), (std::vector<int64_t>{2, 4, 7}));
}

// An attempt running when a version-4 database is upgraded kept its row from the claim; it is
// reported once while it runs and finishes into that same row.
TEST_F(StoreTest, MigratesAVersionFourDatabaseWithARunningAttempt) {
  std::string v4;
  for (int i = 0; i < 4; ++i) v4 += std::string(sqlite::kMigrations[i]);
  v4 +=
      "INSERT INTO runs (id, state, created_ms, updated_ms) VALUES ('r', 'open', 1, 1);"
      "INSERT INTO tasks (id, run_id, title, state, attempts, lease_owner, lease_expires_ms, "
      "lease_epoch, created_ms, updated_ms) VALUES ('t1', 'r', 'one', 'running', 1, 'w', "
      "9000000000000, 1, 1, 5);"
      "INSERT INTO attempts (id, task_id, epoch, number, owner, status, started_ms) VALUES "
      "('a1', 't1', 1, 1, 'w', 'running', 5);"
      "PRAGMA user_version = 4;";
  ExecRaw(db_path(), v4);

  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  Queue queue(*store);
  auto task = queue.GetTask("t1");
  ASSERT_TRUE(task) << task.error().ToString();
  EXPECT_EQ(task->attempt_id, "a1");
  EXPECT_EQ(task->attempt_started_ms, 5);
  auto attempts = queue.ListAttempts("t1");
  ASSERT_TRUE(attempts) << attempts.error().ToString();
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ(attempts->front().id, "a1");
  EXPECT_EQ(attempts->front().status, AttemptStatus::kRunning);

  Lease lease{"t1", "w", 1, "a1", 1, 9000000000000};
  ASSERT_TRUE(queue.Complete(lease, "{}", R"({"exit_code":0})"));
  attempts = queue.ListAttempts("t1");
  ASSERT_TRUE(attempts);
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ(attempts->front().id, "a1");
  EXPECT_EQ(attempts->front().status, AttemptStatus::kSucceeded);
  EXPECT_EQ(attempts->front().started_ms, 5);
  EXPECT_EQ(attempts->front().exit_code, 0);
}

// A running attempt has no row of its own (the task row holds it) but is listed like one, with
// the id the lease carries; when it ends its row is written once, with the same id and start.
TEST_F(StoreTest, ARunningAttemptIsListedFromItsTaskAndWrittenWhenItEnds) {
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  auto task = queue.Enqueue(EnqueueRequest{.run_id = "r", .title = "t", .max_attempts = 3});
  ASSERT_TRUE(task);
  auto claimed = queue.Claim("w", 60'000, 1, ClaimFilter{.run_id = "r"});
  ASSERT_TRUE(claimed && claimed->size() == 1u);
  const Lease first = claimed->front().lease;
  EXPECT_EQ(QueryRaw(db_path(), "SELECT count(*) FROM attempts"), "0\n");

  auto attempts = queue.ListAttempts(task->task.id);
  ASSERT_TRUE(attempts);
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ(attempts->front().id, first.attempt_id);
  EXPECT_EQ(attempts->front().status, AttemptStatus::kRunning);
  EXPECT_EQ(attempts->front().owner, "w");
  EXPECT_EQ(attempts->front().number, 1);
  const int64_t started_ms = attempts->front().started_ms;
  EXPECT_GT(started_ms, 0);

  ASSERT_TRUE(queue.Fail(first, "boom", R"({"exit_code":3})", /*retryable=*/false));
  ASSERT_TRUE(queue.Retry(task->task.id));  // `task retry`: back to ready at once
  claimed = queue.Claim("w2", 60'000, 1, ClaimFilter{.run_id = "r"});
  ASSERT_TRUE(claimed && claimed->size() == 1u);
  const Lease second = claimed->front().lease;
  EXPECT_NE(second.attempt_id, first.attempt_id);

  attempts = queue.ListAttempts(task->task.id);
  ASSERT_TRUE(attempts);
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[0].id, first.attempt_id);
  EXPECT_EQ((*attempts)[0].status, AttemptStatus::kFailed);
  EXPECT_EQ((*attempts)[0].started_ms, started_ms);
  EXPECT_EQ((*attempts)[0].exit_code, 3);
  EXPECT_EQ((*attempts)[0].error, "boom");
  EXPECT_EQ((*attempts)[1].id, second.attempt_id);
  EXPECT_EQ((*attempts)[1].status, AttemptStatus::kRunning);
  EXPECT_EQ((*attempts)[1].owner, "w2");
  auto one = store->Read([&](StoreTxn& txn) -> Status {
    auto running = txn.GetAttempt(task->task.id, second.epoch);
    if (!running) return std::unexpected(running.error());
    EXPECT_TRUE(running->has_value());
    if (running->has_value()) {
      EXPECT_EQ((*running)->id, second.attempt_id);
    }
    return Ok();
  });
  EXPECT_TRUE(one);

  ASSERT_TRUE(queue.Complete(second));
  EXPECT_EQ(QueryRaw(db_path(), "SELECT count(*) FROM attempts"), "2\n");
  attempts = queue.ListAttempts(task->task.id);
  ASSERT_TRUE(attempts);
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[1].status, AttemptStatus::kSucceeded);
}

// A claim across runs takes the best tasks of all runs: priority first, then the oldest.
TEST_F(StoreTest, AClaimAcrossRunsTakesTheBestOfAllRuns) {
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  auto add = [&](const std::string& run, const std::string& title, int priority) {
    auto created =
        queue.Enqueue(EnqueueRequest{.run_id = run, .title = title, .priority = priority});
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? created->task.id : std::string();
  };
  const std::string b_low = add("b", "b-low", 0);
  const std::string a_high = add("a", "a-high", 5);
  const std::string c_mid_old = add("c", "c-mid-old", 3);
  const std::string a_mid_new = add("a", "a-mid-new", 3);
  const std::string c_low = add("c", "c-low", 0);
  auto claimed = queue.Claim("w", 60'000, 3, ClaimFilter{});
  ASSERT_TRUE(claimed) << claimed.error().ToString();
  std::vector<std::string> ids;
  for (const auto& item : *claimed) ids.push_back(item.task.id);
  EXPECT_EQ(ids, (std::vector<std::string>{a_high, c_mid_old, a_mid_new}));
  claimed = queue.Claim("w", 60'000, 5, ClaimFilter{});
  ASSERT_TRUE(claimed);
  ids.clear();
  for (const auto& item : *claimed) ids.push_back(item.task.id);
  EXPECT_EQ(ids, (std::vector<std::string>{b_low, c_low}));
  claimed = queue.Claim("w", 60'000, 5, ClaimFilter{});
  ASSERT_TRUE(claimed);
  EXPECT_TRUE(claimed->empty());
}

// Commits past SQLite's checkpoint threshold are copied into the database file while the store
// is open (by the store's checkpointer thread: the committing connection's automatic
// checkpoint is off), and nothing written is lost.
TEST_F(StoreTest, CheckpointsTheWalInTheBackgroundWhileOpen) {
  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  Queue queue(*store);
  const auto file_size = [&] { return std::filesystem::file_size(db_path()); };
  const auto before = file_size();
  const std::string spec(2'000, 's');
  constexpr int kTasks = 3'000;  // ~6 MB of rows: past 1,000 WAL pages more than once
  for (int batch = 0; batch < kTasks / 10; ++batch) {
    std::vector<EnqueueRequest> requests;
    for (int idx = 0; idx < 10; ++idx) {
      requests.push_back(EnqueueRequest{.title = "t", .spec = spec, .command = "true"});
    }
    ASSERT_TRUE(queue.EnqueueMany(requests));
  }
  // The checkpointer runs asynchronously; give it time to finish (it is not a timing claim).
  for (int tries = 0; tries < 500 && file_size() < before + 4'000'000; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(file_size(), before + 4'000'000) << "the WAL was not checkpointed while open";
  store.reset();
  auto reopened = OpenOrDie(db_path());
  ASSERT_NE(reopened, nullptr);
  Queue again(*reopened);
  EXPECT_EQ((*again.Stats())["ready"], kTasks);
  EXPECT_TRUE(VerifyChain(*reopened)->ok);
}

// The dependents a completion makes ready: pending, with every dependency done; not one still
// waiting for another dependency, nor one no longer pending.
TEST_F(StoreTest, MakesReadyTheDependentsACompletionFrees) {
  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  Queue queue(*store);
  auto add = [&](const std::string& key, std::vector<std::string> deps) {
    auto created = queue.Enqueue(EnqueueRequest{.run_id = "run-" + key,
                                                .title = key,
                                                .command = "true",
                                                .depends_on = std::move(deps),
                                                .idempotency_key = key});
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? created->task.id : std::string();
  };
  const std::string first = add("first", {});
  const std::string second = add("second", {});
  const std::string needs_both = add("needs-both", {first, second});
  const std::string needs_first = add("needs-first", {first});
  const std::string cancelled = add("cancelled", {first});
  ASSERT_TRUE(queue.Cancel(cancelled, "test"));

  auto make_ready = [&](const std::string& id, int64_t now_ms) {
    std::vector<TaskKey> keys;
    EXPECT_TRUE(store->Write([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(keys, txn.MakePendingDependentsReady(id, now_ms));
      return Ok();
    }));
    return keys;
  };
  EXPECT_TRUE(make_ready(first, 1).empty());  // first is not done yet
  EXPECT_EQ(queue.GetTask(needs_first)->state, TaskState::kPending);

  ExecRaw(db_path(), "UPDATE tasks SET priority = 1 WHERE id = '" + first + "'");
  auto claimed = queue.ClaimAndStart("w", 60'000, 1, ClaimFilter{});
  ASSERT_TRUE(claimed) << claimed.error().ToString();
  ASSERT_EQ(claimed->size(), 1u);
  ASSERT_EQ(claimed->front().task.id, first);
  ASSERT_TRUE(queue.Complete(claimed->front().lease, "{}", "{}"));
  // needs-first became ready in first's completion, with its event; needs-both still waits
  // for second and the cancelled task stays cancelled.
  EXPECT_EQ(queue.GetTask(needs_first)->state, TaskState::kReady);
  EXPECT_EQ(queue.GetTask(needs_both)->state, TaskState::kPending);
  EXPECT_EQ(queue.GetTask(cancelled)->state, TaskState::kCancelled);
  auto events = queue.ListEvents(EventQuery{.task_id = needs_first});
  ASSERT_TRUE(events);
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(events->back().kind, "task.ready");
  EXPECT_EQ(events->back().run_id, "run-needs-first");
  EXPECT_EQ(nlohmann::json::parse(events->back().payload_json),
            (nlohmann::json{{"cause", first}, {"from", "pending"}, {"to", "ready"}}));
  EXPECT_TRUE(make_ready(first, 2).empty());  // nothing is pending behind first now

  // With second done too (set directly, so that no completion promotes anything), needs-both
  // is the one that second's completion would make ready: moved, with its run, once.
  ExecRaw(db_path(), "UPDATE tasks SET state = 'done' WHERE id = '" + second + "'");
  EXPECT_EQ(make_ready(second, 1234),
            (std::vector<TaskKey>{{.id = needs_both, .run_id = "run-needs-both"}}));
  const auto promoted = queue.GetTask(needs_both);
  ASSERT_TRUE(promoted);
  EXPECT_EQ(promoted->state, TaskState::kReady);
  EXPECT_EQ(promoted->updated_ms, 1234);
  EXPECT_TRUE(make_ready(second, 5).empty());
  EXPECT_TRUE(make_ready(first, 5).empty());
}

// Writes that queue behind a running transaction commit together (group commit), each in a
// savepoint: a write that fails or throws loses its own changes only, its caller gets its own
// outcome, and the event chain links across the writes that were kept.
TEST_F(StoreTest, WritesQueuedTogetherKeepTheirOwnOutcomes) {
  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  constexpr int kWriters = 24;
  std::atomic<int> entering{0};
  auto append = [&](StoreTxn& txn, const std::string& name) -> Status {
    FACTORY_RETURN_IF_ERROR(txn.InsertRun(factory::Run{.id = name, .title = name}));
    Event event{.id = "event-" + name,
                .ts_ms = 1,
                .run_id = name,
                .kind = "test.write",
                .actor = "test",
                .payload_json = "{}"};
    return txn.AppendEvent(event);
  };
  // The first write holds the transaction until every other writer is about to queue.
  std::thread first([&] {
    EXPECT_TRUE(store->Write([&](StoreTxn& txn) -> Status {
      while (entering.load() < kWriters) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let them queue
      return append(txn, "first");
    }));
  });
  std::vector<std::thread> writers;
  std::vector<Status> outcomes(kWriters, Ok());
  std::vector<char> threw(kWriters, 0);  // not vector<bool>: written from many threads
  for (int writer = 0; writer < kWriters; ++writer) {
    writers.emplace_back([&, writer] {
      const std::string name = "w" + std::to_string(writer);
      ++entering;
      try {
        outcomes[writer] = store->Write([&](StoreTxn& txn) -> Status {
          FACTORY_RETURN_IF_ERROR(append(txn, name));  // written, then undone below
          if (writer % 5 == 1) return FailedPrecondition("refused " + name);
          if (writer % 5 == 3) throw std::runtime_error("bug in " + name);
          return Ok();
        });
      } catch (const std::runtime_error& error) {
        threw[writer] = std::string(error.what()) == "bug in " + name;
      }
    });
  }
  first.join();
  for (auto& thread : writers) thread.join();

  int kept = 1;  // "first"
  for (int writer = 0; writer < kWriters; ++writer) {
    const std::string name = "w" + std::to_string(writer);
    bool stored = false;
    ASSERT_TRUE(store->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto run, txn.GetRun(name));
      stored = run.has_value();
      return Ok();
    }));
    if (writer % 5 == 1) {
      ASSERT_FALSE(outcomes[writer]) << name;
      EXPECT_EQ(outcomes[writer].error().message, "refused " + name);
      EXPECT_FALSE(stored) << name;
    } else if (writer % 5 == 3) {
      EXPECT_TRUE(threw[writer]) << name << ": the exception reaches its own caller";
      EXPECT_FALSE(stored) << name;
    } else {
      EXPECT_TRUE(outcomes[writer]) << name << ": " << outcomes[writer].error().ToString();
      EXPECT_TRUE(stored) << name;
      ++kept;
    }
  }
  std::vector<Event> events;
  ASSERT_TRUE(store->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(events, txn.ListEvents(EventQuery{}));
    return Ok();
  }));
  ASSERT_EQ(static_cast<int>(events.size()), kept);
  for (size_t idx = 0; idx < events.size(); ++idx) {
    EXPECT_EQ(events[idx].seq, static_cast<int64_t>(idx) + 1);  // no gap where a write was undone
  }
  auto report = VerifyChain(*store);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_TRUE(report->ok) << report->problem;
}

// Tasks created after many events of other tasks still list exactly their own events, and a
// task's list never includes events from before its creation.
TEST_F(StoreTest, ListsATasksEventsAmongOthers) {
  auto store = OpenOrDie(db_path());
  ASSERT_NE(store, nullptr);
  Queue queue(*store);
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto task = queue.Enqueue(EnqueueRequest{.run_id = "r", .title = "t" + std::to_string(i)});
    ASSERT_TRUE(task) << task.error().ToString();
    ids.push_back(task->task.id);
    ASSERT_TRUE(queue.events().Append(
        {.kind = events::EventKind::kAgentStep, .run_id = "r", .task_id = ids.back()}));
  }
  for (const auto& id : ids) {
    auto events = queue.ListEvents(EventQuery{.task_id = id});
    ASSERT_TRUE(events) << events.error().ToString();
    ASSERT_EQ(events->size(), 2u) << id;
    EXPECT_EQ((*events)[0].kind, "task.created");
    EXPECT_EQ((*events)[1].kind, "agent.step");
    for (const auto& event : *events) EXPECT_EQ(event.task_id, id);
  }
}

TEST_F(StoreTest, RefusesADatabaseFromANewerSchema) {
  { auto store = OpenOrDie(db_path()); }
  ExecRaw(db_path(), "PRAGMA user_version = 999");
  auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(store.error().message.find("schema version 999"), std::string::npos);
  EXPECT_NE(store.error().message.find("upgrade factory"), std::string::npos);
  EXPECT_EQ(QueryRaw(db_path(), "PRAGMA user_version"), "999\n");
}

TEST_F(StoreTest, RefusesAFileThatIsNotADatabaseAndLeavesItAlone) {
  std::string garbage = "this is a text file, not a database\n";
  for (int i = 0; i < 100; ++i) garbage += "line " + std::to_string(i) + "\n";
  testing::WriteFile(db_path(), garbage);
  auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(store.error().message.find("not an SQLite database"), std::string::npos);
  EXPECT_EQ(testing::ReadFile(db_path()), garbage);
  EXPECT_FALSE(std::filesystem::exists(db_path() + "-wal"));
}

TEST_F(StoreTest, ReadOnlyDirectoryGivesAClearError) {
  if (geteuid() == 0) {
    // root ignores directory permissions; use a path under a regular file instead, which no
    // user can create.
    testing::WriteFile(dir_ / "file", "x");
    auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "file/sub/factory.db"});
    ASSERT_FALSE(store.has_value());
    EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(store.error().message.find("cannot create directory"), std::string::npos);
    return;
  }
  std::filesystem::create_directory(dir_ / "ro");
  chmod((dir_ / "ro").c_str(), 0555);
  auto store = OpenSqliteStore(SqliteOptions{.path = dir_ / "ro/factory.db"});
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
}

TEST_F(StoreTest, ClaimUsesTheClaimIndexAndNeverScans) {
  auto store = OpenOrDie(db_path());
  std::vector<std::string> statements = {"EXPLAIN QUERY PLAN " +
                                         std::string(sqlite::kRunWithReadySql)};
  for (const ClaimFilter& filter : {ClaimFilter{}, ClaimFilter{.require_command = true}}) {
    statements.push_back("EXPLAIN QUERY PLAN " + sqlite::ClaimSelectSql(filter, "id"));
    statements.push_back("EXPLAIN QUERY PLAN " + sqlite::ClaimSelectSql(filter, "priority, id"));
  }
  for (const std::string& statement : statements) {
    std::string plan = QueryRaw(db_path(), statement);
    // tasks_run_claim holds ready tasks only, in claim order within a run: a claim walks it and
    // stops at the first task due; a walk of the table, or of tasks_run (which also holds the
    // run's finished tasks), is what must never happen.
    EXPECT_NE(plan.find("USING INDEX tasks_run_claim"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN tasks\n"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("tasks_run "), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << "no sort step: " << plan;
  }
}

TEST_F(StoreTest, TamperingWithAnEventIsDetected) {
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(queue.Enqueue(EnqueueRequest{.title = "t"}).has_value());
  auto report = VerifyChain(*store);
  ASSERT_TRUE(report->ok);
  EXPECT_EQ(report->events_checked, 6);

  std::string third_id = QueryRaw(db_path(), "SELECT id FROM events WHERE seq = 3");
  ExecRaw(db_path(), "UPDATE events SET payload = '{}' WHERE seq = 3");
  report = VerifyChain(*store);
  ASSERT_TRUE(report.has_value());
  EXPECT_FALSE(report->ok);
  EXPECT_EQ(report->broken_seq, 3);
  EXPECT_EQ(report->broken_id + "\n", third_id);
  EXPECT_NE(report->problem.find("hash mismatch"), std::string::npos);
}

TEST_F(StoreTest, RecomputedHashStillBreaksTheLinkAndDeletionIsDetected) {
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(queue.Enqueue(EnqueueRequest{.title = "t"}).has_value());
  // A forger who rewrites an event and its hash breaks the next event's link.
  ExecRaw(db_path(), "UPDATE events SET hash = 'forged' WHERE seq = 2");
  auto report = VerifyChain(*store);
  EXPECT_FALSE(report->ok);
  EXPECT_EQ(report->broken_seq, 2);
  ExecRaw(db_path(), "DELETE FROM events WHERE seq = 2");
  report = VerifyChain(*store);
  EXPECT_FALSE(report->ok);
  EXPECT_EQ(report->broken_seq, 3);
  EXPECT_NE(report->problem.find("missing"), std::string::npos);
}

class ConcurrencyTest : public StoreTest, public ::testing::WithParamInterface<int> {};

TEST_P(ConcurrencyTest, IdempotentEnqueueFromManyThreadsCreatesOneTask) {
  const int threads = GetParam();
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  std::vector<std::thread> pool;
  std::vector<std::string> ids(static_cast<size_t>(threads));
  std::atomic<int> created{0};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      // Each thread has its own connection to the file, as separate processes would.
      auto own = OpenOrDie(db_path());
      Queue own_queue(*own);
      for (int round = 0; round < 20; ++round) {
        auto result = own_queue.Enqueue(
            EnqueueRequest{.title = "same", .idempotency_key = "key-" + std::to_string(round)});
        ASSERT_TRUE(result.has_value()) << result.error().message;
        created += result->created;
        if (round == 0) ids[static_cast<size_t>(t)] = result->task.id;
      }
    });
  }
  for (auto& thread : pool) thread.join();
  EXPECT_EQ(created.load(), 20);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  EXPECT_EQ(queue.ListTasks({})->size(), 20u);
}

TEST_P(ConcurrencyTest, EveryTaskIsClaimedAndCompletedExactlyOnce) {
  const int workers = GetParam();
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  std::vector<EnqueueRequest> requests(200, EnqueueRequest{.title = "job"});
  ASSERT_TRUE(queue.EnqueueMany(requests).has_value());
  std::vector<std::thread> pool;
  std::mutex mu;
  std::multiset<std::string> completed;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      auto own = OpenOrDie(db_path());
      Queue own_queue(*own);
      std::string owner = "w" + std::to_string(w);
      while (true) {
        auto claimed = own_queue.Claim(owner, 60'000, 1 + w % 3);
        ASSERT_TRUE(claimed.has_value()) << claimed.error().message;
        if (claimed->empty()) break;
        for (const auto& item : *claimed) {
          ASSERT_TRUE(own_queue.Complete(item.lease).has_value());
          std::lock_guard lock(mu);
          completed.insert(item.task.id);
        }
      }
    });
  }
  for (auto& thread : pool) thread.join();
  EXPECT_EQ(completed.size(), 200u);
  EXPECT_EQ(std::set<std::string>(completed.begin(), completed.end()).size(), 200u);
  EXPECT_EQ((*queue.Stats())["done"], 200);
  EXPECT_TRUE(VerifyChain(*store)->ok);
}

INSTANTIATE_TEST_SUITE_P(Workers, ConcurrencyTest, ::testing::Values(1, 2, 8));

TEST_F(StoreTest, IdempotentEnqueueFromTwoProcessesCreatesOneTask) {
  { auto store = OpenOrDie(db_path()); }
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Child: 4 threads each enqueue the same keys; exit status reports success.
      bool ok = true;
      std::vector<std::thread> pool;
      std::atomic<bool> all_ok{true};
      for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&] {
          auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
          if (!store) {
            fprintf(stderr, "child open: %s\n", store.error().message.c_str());
            all_ok = false;
            return;
          }
          Queue queue(**store);
          for (int round = 0; round < 25; ++round) {
            auto result = queue.Enqueue(
                EnqueueRequest{.title = "x", .idempotency_key = "k" + std::to_string(round)});
            if (!result) {
              fprintf(stderr, "child enqueue: %s\n", result.error().message.c_str());
              all_ok = false;
            }
          }
        });
      }
      for (auto& thread : pool) thread.join();
      ok = all_ok.load();
      _exit(ok ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto store = OpenOrDie(db_path());
  Queue queue(*store);
  EXPECT_EQ(queue.ListTasks({})->size(), 25u);
  EXPECT_EQ(QueryRaw(db_path(), "SELECT count(*) FROM events WHERE kind = 'task.created'"), "25\n");
  EXPECT_TRUE(VerifyChain(*store)->ok);
  EXPECT_EQ(QueryRaw(db_path(), "PRAGMA integrity_check"), "ok\n");
}

}  // namespace
}  // namespace factory
