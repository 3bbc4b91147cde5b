// `factory queue stats`.

#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <string>

#include "cli/cli.h"
#include "cli/json_format.h"
#include "cli/validate.h"
#include "queue/queue.h"

namespace factory::cli {
namespace {

struct StatsArgs {
  std::string run;
  bool json = false;
};

int RunStats(const CliContext& ctx, const StatsArgs& args) {
  if (!args.run.empty()) {
    if (auto ok = ValidateRunId("--run", args.run); !ok) return ReportError(ok.error());
  }
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  QueueOptions options;
  options.actor = "cli";
  Queue queue(**store, options);
  auto stats = queue.Stats(args.run);
  if (!stats) return ReportError(stats.error());

  // Every state, in lifecycle order, zero when absent.
  Json json = Json::object();
  int64_t total = 0;
  for (TaskState state : kAllTaskStates) {
    const std::string name(TaskStateName(state));
    auto it = stats->find(name);
    const int64_t count = it == stats->end() ? 0 : it->second;
    json[name] = count;
    total += count;
  }
  if (args.json) {
    std::cout << DumpJson(json) << "\n";
    return kExitOk;
  }
  for (const auto& [name, count] : json.items()) {
    std::cout << fmt::format("{:<10} {:>8}\n", name, count.get<int64_t>());
  }
  std::cout << fmt::format("{:<10} {:>8}\n", "total", total);
  return kExitOk;
}

}  // namespace

void AddQueueCommands(CLI::App& app, CliContext& ctx) {
  auto* queue = app.add_subcommand("queue", "Queue-wide information");
  queue->require_subcommand(1);
  auto args = std::make_shared<StatsArgs>();
  auto* cmd = queue->add_subcommand("stats", "Count of tasks per state (every state listed)");
  cmd->add_option("--run", args->run, "Only tasks of this run");
  cmd->add_flag("--json", args->json, "Print a JSON object: state name -> count");
  cmd->callback([&ctx, args] { ctx.action = [&ctx, args] { return RunStats(ctx, *args); }; });
}

}  // namespace factory::cli
