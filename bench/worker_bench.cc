// The task worker's dispatch latency and orchestration overhead, measured through
// the real `factory worker` binary, each beside a baseline measured in the same run.
//
//   worker_bench [--factory PATH] [--stamped-sleep PATH] [--dir DIR] [--only dispatch|overhead]
//                [--repeat N] [--overhead-tasks N] [--breakdown] [--keep]
//
// A "task" here is a command task (`factory task add --command ...`) run by `factory worker`:
// the Worker loop (claim, lease, heartbeat, complete) and the ShellExecutor (the command exec'd
// directly when it is plain words, else `/bin/sh -c`; its own process group, output to artifact
// files), with no worktree. The database is filled through
// the library (setting up is not measured); everything measured is done by the binary.
//
// Dispatch latency: the time from the moment a task could start (it is ready and the worker has
// a free slot) to the moment its runner process runs. `ready` is the queue's own `task.ready`
// event: every measured task depends on one root task `true`, so all become ready in the root's
// completion, inside a running worker (no process start-up counted). A free slot is the end of
// an earlier task's process: the j-th task to start (j >= concurrency) cannot start before the
// (j - concurrency)-th process end. The task's command is `exec stamped_sleep 0.2` (plain words:
// the worker execs the program directly): a small static program without a C library that
// prints its own start time, sleeps 0.2 s and prints its end time (to the attempt's stdout.log);
// `--stamped-sleep build/bench/stamped_sleep_libc` runs the same program on glibc, whose
// start-up costs ~0.3 ms of CPU per process on a KVM guest (see stamped_sleep.cc). The baseline:
// the same commands spawned the same way by a bare pool of threads (RunSubprocess, the spawn code
// the worker uses), with the same arithmetic.
//
// Orchestration overhead: wall time of `factory worker --until-idle --concurrency 2` over
// 2,000 ready tasks running `true` (process start to exit, every task done), against
// `xargs -P 2 -n 1 true` exec'ing `true` 2,000 times (the worker execs `true` directly too).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/simple_command.h"
#include "core/subprocess.h"
#include "queue/queue.h"
#include "store/store.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr int kDispatchConcurrency = 50;
constexpr int kOverheadConcurrency = 2;

struct Options {
  std::string factory = FACTORY_BINARY;
  std::string stamped_sleep = STAMPED_SLEEP_BINARY;
  std::string dir = "bench/out/worker";
  std::string only;  // "", "dispatch" or "overhead"
  int repeat = 3;
  int overhead_tasks = 2'000;
  bool breakdown = false;  // --breakdown: where the factory's dispatch time goes, from its events
  bool keep = false;       // --keep: leave the measurement folders (databases, artifacts)
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "worker_bench: %s\n", message.c_str());
  std::exit(1);
}

template <typename T>
T Check(Result<T> result, const std::string& what) {
  if (!result) Die(what + ": " + result.error().message);
  return std::move(*result);
}

// The command of a dispatch task.
// `exec PATH 0.2`: plain words, so the worker execs it directly (core/simple_command.h), as
// the bare pool below does; a path with characters the shell would read is quoted instead.
std::string StampedSleepCommand(const Options& options) {
  const std::string plain = "exec " + options.stamped_sleep + " 0.2";
  if (SimpleCommandArgv(plain)) return plain;
  return "exec '" + options.stamped_sleep + "' 0.2";
}

// How the shell executor starts a command: directly when it is plain words, else /bin/sh -c.
std::vector<std::string> ExecutorArgv(const std::string& command) {
  if (auto direct = SimpleCommandArgv(command)) return *direct;
  return {"/bin/sh", "-c", command};
}

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

int64_t RealtimeNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// CPU time the hypervisor gave to others while we were runnable, all CPUs (/proc/stat "steal",
// in clock ticks): on a VM, a stall of the whole guest shows here and not in our code.
int64_t StealMillis() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  int64_t user, nice, system, idle, iowait, irq, softirq, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return steal * 1000 / std::max<long>(1, ::sysconf(_SC_CLK_TCK));
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The "started" and "ended" stamps stamped_sleep printed to the attempt's stdout.log.
std::pair<int64_t, int64_t> ReadStamps(const fs::path& stdout_log) {
  std::istringstream lines(ReadText(stdout_log));
  std::map<std::string, int64_t> stamps;
  std::string name;
  int64_t nanos = 0;
  while (lines >> name >> nanos) stamps[name] = nanos;
  if (!stamps.contains("started") || !stamps.contains("ended")) {
    Die("no start/end stamps in " + stdout_log.string());
  }
  return {stamps["started"], stamps["ended"]};
}

// A fresh directory with an empty factory database at <dir>/.factory/factory.db, as
// `factory init` leaves it.
// A directory no earlier measurement of this invocation used. Measurements never reuse (and so
// never delete) an earlier one's files: on ext4, creating files right after thousands were
// deleted is slow (the inode allocator skips recently deleted inodes one by one), which would
// make every round slower than the one before (bench/HISTORY.md).
fs::path NewMeasurementDir(const Options& options, const std::string& name) {
  static int sequence = 0;
  return fs::path(options.dir) / (name + "-" + std::to_string(++sequence));
}

std::unique_ptr<Store> FreshDatabase(const fs::path& dir) {
  std::error_code error;
  fs::remove_all(dir, error);
  fs::create_directories(dir / ".factory");
  return Check(OpenSqliteStore(SqliteOptions{.path = (dir / ".factory" / "factory.db").string()}),
               "open " + dir.string());
}

// Writes back what the setup left dirty and commits the file system's journal before a
// measurement starts. Without it the setup's writes (the enqueued database, its WAL deleted on
// close) are flushed during the measurement: an ext4 journal commit (with online discard of the
// freed blocks) holds up every file and directory creation, and a burst of starts, which
// creates files and folders per task, stalls with it.
void SettleFileSystem() { ::sync(); }

// Runs `factory ARGS` in dir (its default database); returns the wall time in seconds.
double RunFactory(const Options& options, const fs::path& dir, std::vector<std::string> args) {
  SubprocessOptions spawn;
  spawn.argv = {options.factory};
  spawn.argv.insert(spawn.argv.end(), args.begin(), args.end());
  spawn.cwd = dir.string();
  spawn.stderr_path = (dir / "factory.err").string();
  spawn.stdout_path = (dir / "factory.out").string();
  SettleFileSystem();
  const auto start = SteadyClock::now();
  auto run = Check(RunSubprocess(spawn), "start " + options.factory);
  const double seconds = SecondsSince(start);
  if (run.exit_code != 0) {
    Die("factory exited with " + std::to_string(run.exit_code) + ": " + run.stderr_tail);
  }
  return seconds;
}

// ---- latency arithmetic shared by the factory figure and its baseline

struct TaskTimes {
  int64_t ready_ms = 0;    // ready, by the orchestrator's clock (milliseconds)
  int64_t exec_ns = 0;     // the spawner's view: the process had exec'd (SubprocessResult)
  int64_t started_ns = 0;  // the runner process's own stamps
  int64_t ended_ns = 0;
  // The queue's task.claimed and task.started events (factory runs only; 0 otherwise).
  int64_t claimed_ms = 0;
  int64_t running_ms = 0;
};

struct LatencyFigures {
  // Ready -> the runner process started (exec'd, as the spawner saw it).
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  // Ready -> the program's own first stamp (adds the shell's start-up and its exec).
  double stamp_p50_ms = 0;
  double stamp_p99_ms = 0;
  std::string breakdown;  // where the time went (factory runs)
};

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(values.size())));
  return values[std::max<size_t>(rank, 1) - 1];
}

// Latency of each task from the moment it could start: ready, and (beyond the first
// `concurrency` starts) an earlier task's process has ended and freed a slot.
LatencyFigures DispatchLatency(std::vector<TaskTimes> tasks, int concurrency) {
  std::vector<int64_t> ends;
  for (const auto& task : tasks) ends.push_back(task.ended_ns);
  std::sort(ends.begin(), ends.end());
  std::sort(tasks.begin(), tasks.end(),
            [](const TaskTimes& a, const TaskTimes& b) { return a.started_ns < b.started_ns; });
  std::vector<double> latencies, to_stamp, to_claimed, to_running;
  for (size_t start_idx = 0; start_idx < tasks.size(); ++start_idx) {
    const TaskTimes& task = tasks[start_idx];
    int64_t could_start_ns = task.ready_ms * 1'000'000;
    if (start_idx >= static_cast<size_t>(concurrency)) {
      could_start_ns = std::max(could_start_ns, ends[start_idx - concurrency]);
    }
    latencies.push_back(static_cast<double>(task.exec_ns - could_start_ns) / 1e6);
    to_stamp.push_back(static_cast<double>(task.started_ns - could_start_ns) / 1e6);
    to_claimed.push_back(static_cast<double>(task.claimed_ms * 1'000'000 - could_start_ns) / 1e6);
    to_running.push_back(static_cast<double>(task.running_ms * 1'000'000 - could_start_ns) / 1e6);
  }
  LatencyFigures figures{Percentile(latencies, 0.50),
                         Percentile(latencies, 0.99),
                         *std::max_element(latencies.begin(), latencies.end()),
                         Percentile(to_stamp, 0.50),
                         Percentile(to_stamp, 0.99),
                         ""};
  if (tasks.front().claimed_ms > 0) {
    char text[400];
    int length =
        std::snprintf(text, sizeof(text),
                      "could start -> claimed p50 %.1f p99 %.1f; -> running p50 %.1f p99 %.1f; "
                      "-> exec'd p50 %.1f p99 %.1f; -> own stamp p50 %.1f p99 %.1f (ms)",
                      Percentile(to_claimed, 0.5), Percentile(to_claimed, 0.99),
                      Percentile(to_running, 0.5), Percentile(to_running, 0.99), figures.p50_ms,
                      figures.p99_ms, figures.stamp_p50_ms, figures.stamp_p99_ms);
    // The first burst (all ready at once, every slot free) apart from the later starts (each
    // into a slot an ended process freed): their delays have different causes.
    const auto burst = static_cast<std::ptrdiff_t>(std::min(tasks.size(), size_t(concurrency)));
    auto max_of = [](auto begin, auto end) { return *std::max_element(begin, end); };
    length += std::snprintf(text + length, sizeof(text) - static_cast<size_t>(length),
                            "\n|       |     | first %td: claimed max %.1f, exec'd max %.1f", burst,
                            max_of(to_claimed.begin(), to_claimed.begin() + burst),
                            max_of(latencies.begin(), latencies.begin() + burst));
    if (tasks.size() > static_cast<size_t>(concurrency)) {
      const std::vector<double> later_claimed(to_claimed.begin() + burst, to_claimed.end());
      const std::vector<double> later(latencies.begin() + burst, latencies.end());
      std::snprintf(text + length, sizeof(text) - static_cast<size_t>(length),
                    "; later %zu: claimed p99 %.1f max %.1f, exec'd p99 %.1f max %.1f",
                    later.size(), Percentile(later_claimed, 0.99),
                    max_of(later_claimed.begin(), later_claimed.end()), Percentile(later, 0.99),
                    max_of(later.begin(), later.end()));
    }
    figures.breakdown = text;
  }
  return figures;
}

// ---- dispatch latency

LatencyFigures FactoryDispatch(const Options& options, int tasks) {
  const fs::path dir = NewMeasurementDir(options, "dispatch-" + std::to_string(tasks));
  std::vector<std::string> ids;
  {
    auto store = FreshDatabase(dir);
    Queue queue(*store, QueueOptions{.actor = "bench"});
    std::vector<EnqueueRequest> requests;
    requests.push_back(
        EnqueueRequest{.title = "root", .command = "true", .idempotency_key = "root"});
    for (int task_idx = 0; task_idx < tasks; ++task_idx) {
      requests.push_back(EnqueueRequest{.title = "sleep " + std::to_string(task_idx),
                                        .command = StampedSleepCommand(options),
                                        .depends_on_keys = {"root"}});
    }
    auto created = Check(queue.EnqueueMany(requests), "enqueue");
    for (size_t idx = 1; idx < created.size(); ++idx) ids.push_back(created[idx].task.id);
  }
  RunFactory(options, dir,
             {"worker", "--until-idle", "--concurrency", std::to_string(kDispatchConcurrency)});

  auto store = Check(OpenSqliteStore(SqliteOptions{.path = (dir / ".factory/factory.db").string()}),
                     "reopen");
  Queue queue(*store);
  std::map<std::string, int64_t> ready_ms, claimed_ms, running_ms;
  int64_t after_seq = 0;
  while (true) {
    auto events =
        Check(queue.ListEvents(EventQuery{.after_seq = after_seq, .limit = 5'000}), "list events");
    if (events.empty()) break;
    for (const auto& event : events) {
      if (event.kind == "task.ready") ready_ms[event.task_id] = event.ts_ms;
      if (event.kind == "task.claimed") claimed_ms[event.task_id] = event.ts_ms;
      if (event.kind == "task.started") running_ms[event.task_id] = event.ts_ms;
      after_seq = event.seq;
    }
  }
  std::vector<TaskTimes> times;
  for (const auto& id : ids) {
    auto task = Check(queue.GetTask(id), "get task");
    if (task.state != TaskState::kDone || task.attempts != 1) {
      Die("task " + id + " is " + std::string(TaskStateName(task.state)) + " after " +
          std::to_string(task.attempts) + " attempt(s); see " + (dir / "factory.err").string());
    }
    if (!ready_ms.contains(id)) Die("no task.ready event for " + id);
    auto attempts = Check(queue.ListAttempts(id), "list attempts");
    if (attempts.empty()) Die("no attempt of " + id);
    const auto details = nlohmann::json::parse(attempts.back().details_json, nullptr, false);
    const int64_t exec_us = details.is_object() ? details.value("started_us", int64_t{0}) : 0;
    if (exec_us <= 0) Die("attempt of " + id + " has no started_us in its details");
    const std::string stdout_path = details.value("stdout_path", std::string());
    if (stdout_path.empty()) Die("attempt of " + id + " has no stdout_path in its details");
    const auto [started_ns, ended_ns] = ReadStamps(stdout_path);
    times.push_back(
        {ready_ms[id], exec_us * 1'000, started_ns, ended_ns, claimed_ms[id], running_ms[id]});
  }
  return DispatchLatency(times, kDispatchConcurrency);
}

// The same commands spawned by a bare pool of `concurrency` threads: each thread takes the next
// task and runs it with RunSubprocess, output to files, as the shell executor does.
LatencyFigures BareDispatch(const Options& options, int tasks) {
  const fs::path dir = NewMeasurementDir(options, "bare-" + std::to_string(tasks));
  std::error_code error;
  fs::remove_all(dir, error);
  for (int task_idx = 0; task_idx < tasks; ++task_idx) {
    fs::create_directories(dir / std::to_string(task_idx));
  }
  // As the worker does before its first burst (core/subprocess.h): without it, the spawn that
  // first passes 256 open descriptors waits an RCU grace period for the table to grow.
  ReserveDescriptors(kDispatchConcurrency * kDescriptorsPerChild + 64);
  SettleFileSystem();
  std::atomic<int> next{0};
  std::vector<int64_t> exec_us(static_cast<size_t>(tasks), 0);
  const int64_t ready_ms = RealtimeNanos() / 1'000'000;  // truncated like the event timestamps
  auto pool_thread = [&] {
    while (true) {
      const int task_idx = next++;
      if (task_idx >= tasks) return;
      const fs::path artifacts = dir / std::to_string(task_idx);
      SubprocessOptions spawn;
      spawn.argv = ExecutorArgv(StampedSleepCommand(options));
      spawn.env_set["FACTORY_ARTIFACTS_DIR"] = artifacts.string();
      spawn.stdout_path = (artifacts / "stdout.log").string();
      spawn.stderr_path = (artifacts / "stderr.log").string();
      auto run = Check(RunSubprocess(spawn), "bare spawn");
      if (run.exit_code != 0) Die("bare task failed: " + run.stderr_tail);
      exec_us[static_cast<size_t>(task_idx)] = run.started_us;
    }
  };
  std::vector<std::thread> pool;
  for (int thread_idx = 0; thread_idx < kDispatchConcurrency; ++thread_idx) {
    pool.emplace_back(pool_thread);
  }
  for (auto& thread : pool) thread.join();
  std::vector<TaskTimes> times;
  for (int task_idx = 0; task_idx < tasks; ++task_idx) {
    const fs::path artifacts = dir / std::to_string(task_idx);
    const auto [started_ns, ended_ns] = ReadStamps(artifacts / "stdout.log");
    times.push_back(
        {ready_ms, exec_us[static_cast<size_t>(task_idx)] * 1'000, started_ns, ended_ns});
  }
  return DispatchLatency(times, kDispatchConcurrency);
}

void DispatchTable(const Options& options) {
  std::printf(
      "Dispatch latency: tasks `exec stamped_sleep 0.2`, concurrency %d, ready = the queue's "
      "task.ready event or a freed slot; runner start = the runner process exec'd (the spawner's "
      "clock right after exec); stamp = the program's own first stamp.\n\n",
      kDispatchConcurrency);
  std::printf(
      "| %-5s | %-3s | %8s | %8s | %8s | %-14s | %8s | %8s | %8s | %-11s | %10s | %10s | %14s "
      "| %-14s |\n",
      "tasks", "run", "p50 ms", "p99 ms", "max ms", "", "bare p50", "bare p99", "bare max",
      "p99 ratio", "stamp p50", "stamp p99", "bare stamp p99", "load avg");
  std::printf(
      "|-------|-----|----------|----------|----------|----------------|----------|"
      "----------|----------|-------------|------------|------------|----------------|"
      "----------------|\n");
  for (int tasks : {50, 500}) {
    for (int round = 1; round <= options.repeat; ++round) {
      const int64_t steal_before = StealMillis();
      const LatencyFigures bare = BareDispatch(options, tasks);
      const int64_t steal_between = StealMillis();
      const LatencyFigures factory = FactoryDispatch(options, tasks);
      const int64_t steal_after = StealMillis();
      std::printf(
          "| %5d | %3d | %8.1f | %8.1f | %8.1f | %-14s | %8.1f | %8.1f | %8.1f | %9.2fx | "
          "%10.1f | %10.1f | %14.1f | %-14s |\n",
          tasks, round, factory.p50_ms, factory.p99_ms, factory.max_ms,
          factory.p99_ms < 20 ? "p99 < 20: yes" : "p99 < 20: NO", bare.p50_ms, bare.p99_ms,
          bare.max_ms, factory.p99_ms / std::max(bare.p99_ms, 0.1), factory.stamp_p50_ms,
          factory.stamp_p99_ms, bare.stamp_p99_ms, LoadAverage().c_str());
      if (options.breakdown) {
        std::printf("|       |     | %s; steal (VM) bare %lld ms, factory %lld ms\n",
                    factory.breakdown.c_str(), static_cast<long long>(steal_between - steal_before),
                    static_cast<long long>(steal_after - steal_between));
      }
      std::fflush(stdout);
    }
  }
}

// ---- orchestration overhead

double FactoryOverhead(const Options& options) {
  const fs::path dir = NewMeasurementDir(options, "overhead");
  {
    auto store = FreshDatabase(dir);
    Queue queue(*store, QueueOptions{.actor = "bench"});
    std::vector<EnqueueRequest> requests(static_cast<size_t>(options.overhead_tasks),
                                         EnqueueRequest{.title = "true", .command = "true"});
    Check(queue.EnqueueMany(requests), "enqueue");
  }
  const double seconds =
      RunFactory(options, dir,
                 {"worker", "--until-idle", "--concurrency", std::to_string(kOverheadConcurrency)});
  auto store = Check(OpenSqliteStore(SqliteOptions{.path = (dir / ".factory/factory.db").string()}),
                     "reopen");
  Queue queue(*store);
  auto stats = Check(queue.Stats(), "stats");
  if (stats["done"] != options.overhead_tasks) {
    Die("only " + std::to_string(stats["done"]) + " of " + std::to_string(options.overhead_tasks) +
        " tasks done; see " + (dir / "factory.err").string());
  }
  return seconds;
}

double XargsBaseline(const Options& options) {
  SubprocessOptions spawn;
  // xargs cannot take a line as the command to exec without a shell, so it execs `true` with
  // one argument per process: as many exec's of the same program as the worker's tasks make
  // (the worker execs `true` directly, core/simple_command.h).
  spawn.argv = {"xargs", "-P", std::to_string(kOverheadConcurrency), "-n", "1", "true"};
  for (int task_idx = 0; task_idx < options.overhead_tasks; ++task_idx) {
    spawn.stdin_data += "x\n";
  }
  SettleFileSystem();
  const auto start = SteadyClock::now();
  auto run = Check(RunSubprocess(spawn), "start xargs");
  const double seconds = SecondsSince(start);
  if (run.exit_code != 0) Die("xargs exited with " + std::to_string(run.exit_code));
  return seconds;
}

void OverheadTable(const Options& options) {
  const int tasks = options.overhead_tasks;
  std::printf(
      "\nOrchestration overhead: %d tasks `true`, no worktree: `factory worker --until-idle "
      "--concurrency %d` (process start to exit) against `xargs -P %d -n 1 true` "
      "exec'ing `true` as many times (%d).\n\n",
      tasks, kOverheadConcurrency, kOverheadConcurrency, tasks);
  std::printf("| %-3s | %10s | %10s | %10s | %10s | %7s | %-14s | %-14s |\n", "run", "factory s",
              "tasks/s", "xargs s", "tasks/s", "ratio", "target <= 2x", "load avg");
  std::printf(
      "|-----|------------|------------|------------|------------|---------|"
      "----------------|----------------|\n");
  for (int round = 1; round <= options.repeat; ++round) {
    const double xargs = XargsBaseline(options);
    const double factory = FactoryOverhead(options);
    const double ratio = factory / xargs;
    std::printf("| %3d | %10.2f | %10.0f | %10.2f | %10.0f | %6.2fx | %-14s | %-14s |\n", round,
                factory, tasks / factory, xargs, tasks / xargs, ratio, ratio <= 2 ? "yes" : "NO",
                LoadAverage().c_str());
    std::fflush(stdout);
  }
}

int Main(int argc, char** argv) {
  Options options;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    const std::string arg = argv[arg_idx];
    auto next = [&]() -> std::string {
      if (arg_idx + 1 >= argc) Die("missing value for " + arg);
      return argv[++arg_idx];
    };
    if (arg == "--factory") {
      options.factory = next();
    } else if (arg == "--stamped-sleep") {
      options.stamped_sleep = next();
    } else if (arg == "--dir") {
      options.dir = next();
    } else if (arg == "--only") {
      options.only = next();
      if (options.only != "dispatch" && options.only != "overhead") {
        Die("--only must be dispatch or overhead");
      }
    } else if (arg == "--breakdown") {
      options.breakdown = true;
    } else if (arg == "--keep") {
      options.keep = true;
    } else if (arg == "--repeat") {
      options.repeat = std::stoi(next());
      if (options.repeat < 1) Die("--repeat must be at least 1");
    } else if (arg == "--overhead-tasks") {
      options.overhead_tasks = std::stoi(next());
      if (options.overhead_tasks < 1) Die("--overhead-tasks must be at least 1");
    } else if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: worker_bench [--factory PATH] [--stamped-sleep PATH] [--dir DIR] "
          "[--only dispatch|overhead] [--repeat N] [--overhead-tasks N] [--breakdown] "
          "[--keep]\n");
      return 0;
    } else {
      Die("unknown argument " + arg);
    }
  }
  // This invocation's own folder (see NewMeasurementDir), removed when it is done.
  const fs::path root = fs::absolute(options.dir);
  options.dir = (root / ("run-" + std::to_string(::getpid()))).string();
  options.factory = fs::absolute(options.factory).string();
  options.stamped_sleep = fs::absolute(options.stamped_sleep).string();
  if (!fs::exists(options.factory)) Die("no factory binary at " + options.factory);
  if (!fs::exists(options.stamped_sleep)) Die("no stamped_sleep at " + options.stamped_sleep);
  std::printf("worker_bench: %s, load average at start %s\n\n", options.factory.c_str(),
              LoadAverage().c_str());
  if (options.only.empty() || options.only == "dispatch") DispatchTable(options);
  if (options.only.empty() || options.only == "overhead") OverheadTable(options);
  if (options.keep) {
    std::printf("\nmeasurement folders kept in %s\n", options.dir.c_str());
  } else {
    std::error_code error;
    fs::remove_all(options.dir, error);
  }
  return 0;
}

}  // namespace
}  // namespace factory

int main(int argc, char** argv) { return factory::Main(argc, argv); }
