// `factory costs` (the model-call ledger), `factory agents pause` and `factory agents resume`
// (budget, velocity and manual pauses).

#include <fmt/core.h>

#include <iostream>

#include "cli/cli.h"
#include "cli/service_glue.h"
#include "ledger/ledger.h"

namespace factory::cli {
namespace {

struct CostsOptions {
  std::string by = "agent";
  std::string since;
  bool json = false;
};

int ShowCosts(const CliContext& ctx, const CostsOptions& options) {
  auto opened = OpenService(ctx);
  if (!opened) return ReportError(opened.error());
  auto costs =
      opened->service->Costs(service::CostsRequest{.by = options.by, .since = options.since});
  if (!costs) return ReportServiceError(costs.error());
  const ledger::CostReport* report = &costs->report;
  const ledger::CostGroup* group = &costs->group;
  const int64_t since_ms = costs->since_ms;
  if (options.json) {
    std::cout << ledger::CostReportJson(*report, *group, since_ms) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<32} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12} {:>12}\n", options.by,
                           "CALLS", "FAILED", "INPUT TOK", "OUTPUT TOK", "CACHED TOK", "COST USD",
                           "OVERRUN USD");
  // OVERRUN USD: what calls cost above their budget reservations, included in COST USD.
  auto print = [](const ledger::CostRow& row) {
    std::cout << fmt::format("{:<32} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12.6f} {:>12.6f}\n",
                             row.key.empty() ? "(none)" : row.key, row.calls, row.failed_calls,
                             row.input_tokens, row.output_tokens, row.cached_tokens, row.cost_usd,
                             row.overrun_usd);
  };
  for (const auto& row : report->rows) print(row);
  print(report->total);
  return kExitOk;
}

int ResumeAgent(const CliContext& ctx, const std::string& name) {
  if (name.empty()) return ReportError("agent name is empty", kExitUsage);
  auto opened = OpenService(ctx);
  if (!opened) return ReportError(opened.error());
  if (auto status = opened->service->ResumeAgent(name); !status) {
    return ReportServiceError(status.error());
  }
  std::cout << "factory: resumed " << name << "\n";
  return kExitOk;
}

int PauseAgent(const CliContext& ctx, const std::string& name, const std::string& reason) {
  if (name.empty()) return ReportError("agent name is empty", kExitUsage);
  auto opened = OpenService(ctx);
  if (!opened) return ReportError(opened.error());
  if (auto status = opened->service->PauseAgent(name, reason); !status) {
    return ReportServiceError(status.error());
  }
  std::cout << "factory: paused " << name << "\n";
  return kExitOk;
}

}  // namespace

void AddCostCommands(CLI::App& app, CliContext& ctx) {
  static CostsOptions costs;
  auto* cmd = app.add_subcommand("costs", "Model-call costs from the ledger, grouped");
  cmd->add_option("--by", costs.by, "Group by agent, model, day or run")
      ->check(CLI::IsMember({"agent", "model", "day", "run"}))
      ->capture_default_str();
  cmd->add_option("--since", costs.since,
                  "Only calls since a date (2026-11-21), a time (…T10:00:00Z) or an age (90m, "
                  "24h, 7d)");
  cmd->add_flag("--json", costs.json, "Print JSON");
  cmd->callback([&ctx] { ctx.action = [&ctx] { return ShowCosts(ctx, costs); }; });

  // `factory agents resume NAME` hangs under the existing `agents` command.
  CLI::App* agents = app.get_subcommand_ptr("agents").get();
  static std::string resume_name;
  auto* resume = agents->add_subcommand("resume",
                                        "Lift a budget or velocity pause on an agent "
                                        "('*' lifts the global pause)");
  resume->add_option("NAME", resume_name, "Agent name")->required();
  resume->callback([&ctx] { ctx.action = [&ctx] { return ResumeAgent(ctx, resume_name); }; });

  static std::string pause_name;
  static std::string pause_reason;
  auto* pause = agents->add_subcommand(
      "pause",
      "Pause an agent ('*': every agent) in this and every other process on the database: it "
      "takes no new task until `factory agents resume NAME`");
  pause->add_option("NAME", pause_name, "Agent name")->required();
  pause->add_option("--reason", pause_reason, "Why (recorded as agent.paused)")->required();
  pause->callback(
      [&ctx] { ctx.action = [&ctx] { return PauseAgent(ctx, pause_name, pause_reason); }; });
}

}  // namespace factory::cli
