// `factory stats [--run RUN] [--tasks] [--json]`: tasks, attempts, first-attempt success,
// rebases, tokens, cost, task time and prompt sizes, in total and per agent and per model
// (definitions in src/stats/stats.h).

#include <iostream>

#include "cli/cli.h"
#include "cli/service_glue.h"
#include "stats/stats.h"

namespace factory::cli {
namespace {

int ShowStats(const CliContext& ctx, const std::string& run_id, bool with_tasks, bool as_json) {
  auto opened = OpenService(ctx);
  if (!opened) return ReportError(opened.error());
  auto report = opened->service->Stats(service::StatsRequest{.run = run_id});
  if (!report) return ReportServiceError(report.error());
  if (as_json) {
    std::cout << stats::StatsReportJson(*report) << "\n";
  } else {
    std::cout << stats::StatsReportText(*report, with_tasks);
  }
  return kExitOk;
}

}  // namespace

void AddStatsCommand(CLI::App& app, CliContext& ctx) {
  auto* stats = app.add_subcommand(
      "stats",
      "Tasks, attempts, first-attempt success, rebases, tokens, cost, task time and prompt sizes, "
      "in total and per agent and per model");
  // Option values live as long as the app (one CLI invocation per process).
  static std::string run_id;
  static bool with_tasks = false;
  static bool as_json = false;
  stats->add_option("--run", run_id, "Only this run (default: every run)");
  stats->add_flag("--tasks", with_tasks, "Also print one line per task");
  stats->add_flag("--json", as_json,
                  "Print JSON: {run, total, by_agent, by_model, tasks} (always with the tasks)");
  stats->callback(
      [&ctx] { ctx.action = [&ctx] { return ShowStats(ctx, run_id, with_tasks, as_json); }; });
}

}  // namespace factory::cli
