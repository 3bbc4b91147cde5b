// `factory worker`: runs command tasks until stopped (or idle with --until-idle).

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cli/cli.h"
#include "cli/shell_executor.h"
#include "cli/signals.h"
#include "cli/validate.h"
#include "plan/config.h"
#include "queue/queue.h"
#include "queue/worker.h"

namespace factory::cli {
namespace {

struct WorkerArgs {
  int concurrency = 1;
  bool until_idle = false;
  double lease_seconds = 30;
  double timeout_seconds = 0;
  int poll_ms = 500;
  // Claiming every free slot's task in one transaction costs one commit instead of one per
  // task; a worker never claims more than it can start at once, so nothing waits on it.
  int batch = 256;
  double grace_seconds = 10;
  std::string run;
  std::string owner;
  bool quiet = false;
};

std::string Quoted(const std::string& title) {
  std::string shown = title.size() > 60 ? title.substr(0, 57) + "..." : title;
  return "\"" + shown + "\"";
}

int RunWorker(const CliContext& ctx, const WorkerArgs& args) {
  if (!args.run.empty()) {
    if (auto ok = ValidateRunId("--run", args.run); !ok) return ReportError(ok.error());
  }
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());

  WorkerOptions options;
  options.owner = args.owner.empty() ? DefaultWorkerOwner() : args.owner;
  options.concurrency = args.concurrency;
  options.lease_ms = std::max<int64_t>(1, std::llround(args.lease_seconds * 1000));
  options.poll_ms = args.poll_ms;
  options.until_idle = args.until_idle;
  options.batch = args.batch;
  options.filter.require_command = true;
  options.filter.run_id = args.run;
  options.reap_interval_ms = std::clamp<int64_t>(options.lease_ms / 2, 100, 5'000);
  options.shutdown_grace_ms = std::llround(args.grace_seconds * 1000);

  std::mutex print_mu;
  std::atomic<int64_t> final_failures{0};
  const bool quiet = args.quiet;
  options.on_event = [&](const WorkerEvent& event) {
    if (event.kind == WorkerEvent::Kind::kFailed && !event.will_retry) ++final_failures;
    if (quiet) return;
    std::string line;
    const std::string attempt =
        fmt::format("attempt {}/{}", event.attempt_number, event.max_attempts);
    switch (event.kind) {
      case WorkerEvent::Kind::kStarted:
        line = fmt::format("started   {} {} ({})", event.task_id, Quoted(event.title), attempt);
        break;
      case WorkerEvent::Kind::kSucceeded:
        line = fmt::format("done      {} {} in {:.2f}s", event.task_id, Quoted(event.title),
                           event.duration_ms / 1000.0);
        break;
      case WorkerEvent::Kind::kFailed:
        line = fmt::format("failed    {} {} ({}, {}): {}", event.task_id, Quoted(event.title),
                           attempt, event.will_retry ? "will retry" : "final", event.message);
        break;
      case WorkerEvent::Kind::kReleased:
        line =
            fmt::format("released  {} {} ({})", event.task_id, Quoted(event.title), event.message);
        break;
      case WorkerEvent::Kind::kLeaseLost:
        line =
            fmt::format("discarded {} {}: {}", event.task_id, Quoted(event.title), event.message);
        break;
      case WorkerEvent::Kind::kError:
        line =
            fmt::format("error     {} {}: {}", event.task_id, Quoted(event.title), event.message);
        break;
    }
    std::lock_guard lock(print_mu);
    std::cerr << "factory worker: " << line << std::endl;
  };

  ShellExecutorOptions exec_options;
  exec_options.artifacts_dir = ctx.FactoryDir() / "artifacts";
  exec_options.timeout_ms = std::llround(args.timeout_seconds * 1000);
  // The variables config.yaml lets commands see (`sandbox.env`); a broken config is reported
  // by the commands that need the rest of it, not here.
  if (const auto config_path = ctx.FactoryDir() / "config.yaml";
      std::filesystem::exists(config_path)) {
    if (auto loaded = LoadProjectConfig(config_path)) {
      exec_options.pass_env = loaded->value.sandbox.env;
    }
  }
  ShellExecutor executor(exec_options);

  QueueOptions queue_options;
  queue_options.actor = "worker:" + options.owner;
  Queue queue(**store, queue_options);
  Worker worker(queue, executor, options);

  if (!quiet) {
    std::cerr << "factory worker: " << options.owner << " started (concurrency "
              << options.concurrency << ", lease " << options.lease_ms << " ms"
              << (options.until_idle ? ", until idle" : "") << ")" << std::endl;
  }
  Status ran;
  {
    SignalWatcher signals(
        [&](int signo) {
          {
            std::lock_guard lock(print_mu);
            std::cerr << "factory worker: received " << (signo == SIGINT ? "SIGINT" : "SIGTERM")
                      << "; finishing running tasks (again to cancel them now)" << std::endl;
          }
          worker.RequestStop();
        },
        [&](int) {
          {
            std::lock_guard lock(print_mu);
            std::cerr << "factory worker: cancelling running tasks" << std::endl;
          }
          worker.RequestCancel();
        });
    ran = worker.Run();
  }
  const WorkerStats stats = worker.stats();
  if (!quiet) {
    std::cerr << fmt::format(
                     "factory worker: exiting: {} succeeded, {} failed attempt(s), {} released, "
                     "{} discarded, {} expired lease(s) reaped",
                     stats.succeeded, stats.failed, stats.released, stats.lease_lost, stats.reaped)
              << std::endl;
  }
  if (!ran) return ReportError(ran.error().message, kExitFailed);
  // The worker's count includes tasks its reaper failed (a lease that kept expiring), which
  // produce no progress event.
  const int64_t failed_finally = std::max(final_failures.load(), stats.failed_finally);
  if (args.until_idle && failed_finally > 0) {
    return ReportError(std::to_string(failed_finally) + " task(s) failed finally", kExitFailed);
  }
  return kExitOk;
}

}  // namespace

void AddWorkerCommand(CLI::App& app, CliContext& ctx) {
  auto args = std::make_shared<WorkerArgs>();
  auto* cmd = app.add_subcommand(
      "worker",
      "Run tasks that carry a --command; SIGINT/SIGTERM stop claiming and finish or "
      "release running tasks");
  cmd->add_option("--concurrency", args->concurrency, "Tasks run at once")
      ->check(NumberIn(1, 256))
      ->capture_default_str();
  cmd->add_flag("--until-idle", args->until_idle,
                "Exit when no task is ready, claimed, running or backing off (exit 1 if one "
                "failed finally)");
  cmd->add_option("--lease-seconds", args->lease_seconds,
                  "Lease length; heartbeats every third of it")
      ->check(NumberIn(0.1, 86400.0))
      ->capture_default_str();
  cmd->add_option("--timeout-seconds", args->timeout_seconds,
                  "Kill a task's process group after this long (0: no timeout)")
      ->check(NumberIn(0.0, 604800.0))
      ->capture_default_str();
  cmd->add_option("--poll-ms", args->poll_ms, "Longest sleep when nothing is claimable")
      ->check(NumberIn(10, 60'000))
      ->capture_default_str();
  cmd->add_option("--batch", args->batch,
                  "Most tasks claimed in one transaction (never more than the free slots)")
      ->check(NumberIn(1, 1000))
      ->capture_default_str();
  cmd->add_option("--grace-seconds", args->grace_seconds,
                  "On SIGINT/SIGTERM, how long running tasks may finish before they are "
                  "cancelled and released")
      ->check(NumberIn(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--run", args->run, "Only tasks of this run");
  cmd->add_option("--owner", args->owner, "Lease owner id (default host:pid:ulid)");
  cmd->add_flag("--quiet", args->quiet, "No progress lines on stderr");
  cmd->callback([&ctx, args] { ctx.action = [&ctx, args] { return RunWorker(ctx, *args); }; });
}

}  // namespace factory::cli
