// `factory audit verify`.

#include <iostream>
#include <memory>

#include "cli/cli.h"
#include "cli/json_format.h"
#include "events/audit.h"

namespace factory::cli {
namespace {

int RunVerify(const CliContext& ctx, bool json_output) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  // A chain whose hashes still match can sit in a file with damaged pages (an index, a freed
  // page): the file is checked first, and its damage is a failed verification (exit 1).
  if (Status intact = (*store)->CheckIntegrity(); !intact) {
    if (json_output) {
      Json json;
      json["ok"] = false;
      json["problem"] = intact.error().message;
      std::cout << DumpJson(json) << "\n";
    }
    return ReportError("audit: the database file is damaged: " + intact.error().message,
                       kExitFailed);
  }
  auto report = VerifyChain(**store);
  if (!report) return ReportError(report.error());
  if (json_output) {
    Json json;
    json["ok"] = report->ok;
    json["events_checked"] = report->events_checked;
    json["head_hash"] = report->head_hash;
    if (!report->ok) {
      json["broken_seq"] = report->broken_seq.value_or(0);
      json["broken_id"] = report->broken_id;
      json["problem"] = report->problem;
    }
    std::cout << DumpJson(json) << "\n";
  }
  if (!report->ok) {
    return ReportError("audit chain broken at event seq " +
                           std::to_string(report->broken_seq.value_or(0)) + " (id " +
                           report->broken_id + "): " + report->problem + "; " +
                           std::to_string(report->events_checked) + " event(s) before it verified",
                       kExitFailed);
  }
  if (!json_output) {
    std::cout << "audit: ok, " << report->events_checked << " events verified";
    if (!report->head_hash.empty()) std::cout << ", head " << report->head_hash.substr(0, 16);
    std::cout << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddAuditCommands(CLI::App& app, CliContext& ctx) {
  auto* audit = app.add_subcommand("audit", "The hash-chained event log");
  audit->require_subcommand(1);
  auto json = std::make_shared<bool>(false);
  auto* cmd = audit->add_subcommand(
      "verify",
      "Check the database file (SQLite integrity check) and recompute the hash chain; exit 1 "
      "naming the damage or the first broken event");
  cmd->add_flag("--json", *json, "Print the report as JSON");
  cmd->callback([&ctx, json] { ctx.action = [&ctx, json] { return RunVerify(ctx, *json); }; });
}

}  // namespace factory::cli
