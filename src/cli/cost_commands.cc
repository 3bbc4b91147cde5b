// `factory costs` (the model-call ledger) and `factory agents resume` (lifting budget pauses).

#include <fmt/core.h>

#include <iostream>

#include "cli/cli.h"
#include "core/clock.h"
#include "ledger/budget.h"
#include "ledger/ledger.h"

namespace factory::cli {
namespace {

struct CostsOptions {
  std::string by = "agent";
  std::string since;
  bool json = false;
};

int ShowCosts(const CliContext& ctx, const CostsOptions& options) {
  auto group = ledger::ParseCostGroup(options.by);
  if (!group) return ReportError(group.error());
  int64_t since_ms = 0;
  if (!options.since.empty()) {
    auto parsed = ledger::ParseSince(options.since, SystemClock().NowMillis());
    if (!parsed) return ReportError(parsed.error().Wrap("--since"));
    since_ms = *parsed;
  }
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  ledger::Ledger ledger(**store);
  auto report = ledger.Costs(*group, since_ms);
  if (!report) return ReportError(report.error());
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
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  ledger::BudgetGuard guard(**store, ledger::BudgetEnvelope{});
  if (auto status = guard.Resume(name, "cli"); !status) return ReportError(status.error());
  std::cout << "factory: resumed " << name << "\n";
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
}

}  // namespace factory::cli
