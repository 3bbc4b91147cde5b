// Queue throughput against the bare-SQL limits of the same SQLite file and settings.
//
//   queue_bench [--tasks N] [--dir DIR] [--sync normal|full]
//               [--only enqueue-batched|single-claim]
//
// Every figure is printed beside its bare-SQL counterpart measured in the same run, as a ratio.

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "queue/queue.h"

namespace factory {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Options {
  int tasks = 100'000;
  std::string dir = "bench/out";
  SqliteSync sync = SqliteSync::kNormal;
  // --only enqueue-batched|single-claim: one figure alone, with no baseline, for profiling.
  std::string only;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "queue_bench: %s\n", message.c_str());
  std::exit(1);
}

template <typename T>
T Check(Result<T> result, const char* what) {
  if (!result) Die(std::string(what) + ": " + result.error().message);
  return std::move(*result);
}
void Check(Status status, const char* what) {
  if (!status) Die(std::string(what) + ": " + status.error().message);
}

// ---- bare SQL on the same file and pragmas: the physical limit of this SQLite set-up.
class Bare {
 public:
  Bare(const std::string& path, SqliteSync sync) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) Die("bare open");
    Exec("PRAGMA journal_mode = WAL");
    Exec(sync == SqliteSync::kFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    Exec("PRAGMA busy_timeout = 10000");
    Exec("DROP TABLE IF EXISTS bare_jobs");
    Exec(
        "CREATE TABLE bare_jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, "
        "priority INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '', payload TEXT NOT NULL)");
    Exec("CREATE INDEX bare_jobs_claim ON bare_jobs(state, priority DESC, id)");
  }
  ~Bare() { sqlite3_close(db_); }

  void Exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      Die(std::string("bare: ") + sql + ": " + (error ? error : ""));
    }
  }
  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK) Die(sqlite3_errmsg(db_));
    return stmt;
  }

  // Single-row INSERT transactions.
  double InsertPerTxn(int rows) {
    sqlite3_stmt* insert =
        Prepare("INSERT INTO bare_jobs (state, priority, payload) VALUES ('ready', 0, 'noop')");
    auto start = Clock::now();
    for (int i = 0; i < rows; ++i) {
      Exec("BEGIN IMMEDIATE");
      if (sqlite3_step(insert) != SQLITE_DONE) Die("bare insert");
      sqlite3_reset(insert);
      Exec("COMMIT");
    }
    double elapsed = Seconds(start);
    sqlite3_finalize(insert);
    return rows / elapsed;
  }

  // 1,000-row INSERT transactions: rows per second.
  double InsertBatched(int rows) {
    Exec("DELETE FROM bare_jobs");
    sqlite3_stmt* insert =
        Prepare("INSERT INTO bare_jobs (state, priority, payload) VALUES ('ready', 0, 'noop')");
    auto start = Clock::now();
    for (int i = 0; i < rows; i += 1000) {
      Exec("BEGIN IMMEDIATE");
      for (int j = i; j < std::min(rows, i + 1000); ++j) {
        if (sqlite3_step(insert) != SQLITE_DONE) Die("bare insert");
        sqlite3_reset(insert);
      }
      Exec("COMMIT");
    }
    double elapsed = Seconds(start);
    sqlite3_finalize(insert);
    return rows / elapsed;
  }

  // A bare claim (UPDATE ... RETURNING on the best ready row) and a complete, as two plain
  // transactions with no events: jobs per second.
  double ClaimComplete(int jobs) {
    sqlite3_stmt* claim = Prepare(
        "UPDATE bare_jobs SET state = 'claimed', owner = 'w' WHERE id = (SELECT id FROM "
        "bare_jobs WHERE state = 'ready' ORDER BY priority DESC, id LIMIT 1) RETURNING id");
    sqlite3_stmt* complete = Prepare("UPDATE bare_jobs SET state = 'done' WHERE id = ?1");
    auto start = Clock::now();
    int done = 0;
    while (done < jobs) {
      Exec("BEGIN IMMEDIATE");
      if (sqlite3_step(claim) != SQLITE_ROW) Die("bare claim found nothing");
      int64_t id = sqlite3_column_int64(claim, 0);
      while (sqlite3_step(claim) == SQLITE_ROW) {
      }
      sqlite3_reset(claim);
      Exec("COMMIT");
      Exec("BEGIN IMMEDIATE");
      sqlite3_bind_int64(complete, 1, id);
      if (sqlite3_step(complete) != SQLITE_DONE) Die("bare complete");
      sqlite3_reset(complete);
      Exec("COMMIT");
      ++done;
    }
    double elapsed = Seconds(start);
    sqlite3_finalize(claim);
    sqlite3_finalize(complete);
    return done / elapsed;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::vector<EnqueueRequest> NoopRequests(int count, const std::string& run) {
  std::vector<EnqueueRequest> requests(static_cast<size_t>(count));
  for (auto& request : requests) {
    request.run_id = run;
    request.title = "noop";
  }
  return requests;
}

double EnqueueOneByOne(Queue& queue, int tasks, const std::string& run) {
  EnqueueRequest request{.run_id = run, .title = "noop"};
  auto start = Clock::now();
  for (int i = 0; i < tasks; ++i) Check(queue.Enqueue(request), "enqueue");
  return tasks / Seconds(start);
}

double EnqueueBatched(Queue& queue, int tasks, const std::string& run, int batch) {
  auto requests = NoopRequests(batch, run);
  auto start = Clock::now();
  for (int done = 0; done < tasks; done += batch) {
    if (tasks - done < batch) requests.resize(static_cast<size_t>(tasks - done));
    Check(queue.EnqueueMany(requests), "enqueue_many");
  }
  return tasks / Seconds(start);
}

// Worker threads share one Store (one writer connection), as `factory worker --concurrency N`
// does. Each claims `batch` tasks per transaction and completes them (one transaction per task
// when batch is 1, one for the whole batch otherwise).
double ClaimComplete(Queue& queue, int tasks, const std::string& run, int threads, int batch) {
  ClaimFilter filter{.run_id = run};
  std::atomic<int> completed{0};
  auto work = [&](int worker) {
    std::string owner = "bench-" + std::to_string(worker);
    while (true) {
      auto claimed = Check(queue.Claim(owner, 60'000, batch, filter), "claim");
      if (claimed.empty()) return;
      if (batch == 1) {
        Check(queue.Complete(claimed.front().lease), "complete");
      } else {
        std::vector<Lease> leases;
        leases.reserve(claimed.size());
        for (const auto& item : claimed) leases.push_back(item.lease);
        Check(queue.CompleteMany(leases), "complete_many");
      }
      completed += static_cast<int>(claimed.size());
    }
  };
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
  for (auto& thread : pool) thread.join();
  double elapsed = Seconds(start);
  if (completed != tasks)
    Die("completed " + std::to_string(completed) + " of " + std::to_string(tasks));
  return tasks / elapsed;
}

void Row(const char* name, double value, const char* unit, const char* baseline_name,
         double baseline) {
  std::printf("| %-46s | %10.0f %-8s | %-34s | %10.0f | %5.2fx |\n", name, value, unit,
              baseline_name, baseline, value / baseline);
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--tasks") {
      options.tasks = std::stoi(next());
    } else if (arg == "--dir") {
      options.dir = next();
    } else if (arg == "--sync") {
      std::string value = next();
      if (value == "full") {
        options.sync = SqliteSync::kFull;
      } else if (value != "normal") {
        Die("--sync must be normal or full");
      }
    } else if (arg == "--only") {
      options.only = next();
      if (options.only != "enqueue-batched" && options.only != "single-claim") {
        Die("--only must be enqueue-batched or single-claim");
      }
    } else if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: queue_bench [--tasks N] [--dir DIR] [--sync normal|full] "
          "[--only enqueue-batched|single-claim]\n");
      return 0;
    } else {
      Die("unknown argument " + arg);
    }
  }
  if (options.tasks < 1000) Die("--tasks must be at least 1000");
  std::filesystem::create_directories(options.dir);
  std::string path = options.dir + "/queue_bench.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);

  auto store =
      Check(OpenSqliteStore(SqliteOptions{.path = path, .synchronous = options.sync}), "open");
  Queue queue(*store, QueueOptions{.actor = "bench"});
  const int n = options.tasks;
  if (options.only == "enqueue-batched") {
    std::printf("enqueue_many, 1,000 tasks per transaction: %.0f tasks/s\n",
                EnqueueBatched(queue, n, "batched", 1000));
    return 0;
  }
  if (options.only == "single-claim") {
    EnqueueBatched(queue, n, "one", 1000);
    std::printf("claim+complete, 1 thread, 1 per claim: %.0f tasks/s\n",
                ClaimComplete(queue, n, "one", 1, 1));
    return 0;
  }
  std::printf("queue_bench: %d no-op tasks per figure, SQLite WAL, synchronous=%s, file %s\n\n", n,
              options.sync == SqliteSync::kFull ? "FULL" : "NORMAL", path.c_str());

  double bare_insert, bare_rows, bare_claim;
  {
    Bare bare(path, options.sync);
    bare_insert = bare.InsertPerTxn(n);
    bare_rows = bare.InsertBatched(n);
    bare.Exec("DELETE FROM bare_jobs");
    bare.InsertBatched(n);
    bare_claim = bare.ClaimComplete(n);
    bare.Exec("DROP TABLE bare_jobs");
  }

  std::printf("| %-46s | %19s | %-34s | %10s | %6s |\n", "factory queue", "figure",
              "bare-SQL baseline (same run)", "baseline", "ratio");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(48, '-').c_str(), std::string(21, '-').c_str(),
              std::string(36, '-').c_str(), std::string(12, '-').c_str(),
              std::string(8, '-').c_str());
  Row("enqueue, 1 task per transaction", EnqueueOneByOne(queue, n, "one"), "tasks/s",
      "single-row INSERT transactions", bare_insert);
  double batched = EnqueueBatched(queue, n, "batched", 1000);
  Row("enqueue_many, 1,000 tasks per transaction", batched, "tasks/s",
      "1,000-row INSERT transactions", bare_rows);
  Row("claim+complete, 1 thread, 1 per claim", ClaimComplete(queue, n, "one", 1, 1), "tasks/s",
      "bare claim + complete (2 txns)", bare_claim);
  Check(queue.EnqueueMany(NoopRequests(0, "two")), "noop");
  EnqueueBatched(queue, n, "two", 1000);
  Row("claim+complete, 2 threads, 1 per claim", ClaimComplete(queue, n, "two", 2, 1), "tasks/s",
      "bare claim + complete (2 txns)", bare_claim);
  Row("claim+complete, 1 thread, batches of 100", ClaimComplete(queue, n, "batched", 1, 100),
      "tasks/s", "bare claim + complete (2 txns)", bare_claim);
  EnqueueBatched(queue, n, "batched2", 1000);
  Row("claim+complete, 2 threads, batches of 100", ClaimComplete(queue, n, "batched2", 2, 100),
      "tasks/s", "bare claim + complete (2 txns)", bare_claim);
  std::printf(
      "\nEvery queue figure includes its hash-chained events (created, claimed, completed) "
      "and attempt rows; the baselines write one bare row per operation.\n");
  return 0;
}

}  // namespace
}  // namespace factory

int main(int argc, char** argv) { return factory::Main(argc, argv); }
