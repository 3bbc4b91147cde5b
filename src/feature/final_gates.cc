#include "feature/final_gates.h"

#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "core/clock.h"
#include "feature/internal/spec_files.h"
#include "verify/checkout.h"

namespace factory::feature {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr char kLogsFolder[] = "final-gates";

json GateJson(const GateResult& gate) {
  return {{"name", gate.name},
          {"passed", gate.passed},
          {"exit_code", gate.exit_code},
          {"timed_out", gate.timed_out},
          {"duration_ms", gate.duration_ms},
          {"log", gate.log_path}};
}

json OutcomeJson(const FinalGatesOutcome& outcome, int64_t started_ms) {
  json gates = json::array();
  for (const auto& gate : outcome.results) gates.push_back(GateJson(gate));
  json record = {{"status", outcome.status()},
                 {"branch", outcome.branch},
                 {"commit", outcome.commit},
                 {"started_at", internal::UtcTimestamp(started_ms)},
                 {"duration_ms", outcome.duration_ms},
                 {"logs", kLogsFolder},
                 {"gates", gates}};
  if (!outcome.error.empty()) record["error"] = outcome.error;
  if (const GateResult* failed = outcome.failed(); failed != nullptr) {
    record["failed_gate"] = failed->name;
    record["exit_code"] = failed->exit_code;
    record["timed_out"] = failed->timed_out;
    record["output_tail"] = failed->output_tail;
  }
  return record;
}

std::string FailureMessage(const FinalGatesOutcome& outcome, const fs::path& spec_dir) {
  if (!outcome.error.empty()) {
    return "the final gates could not run on " + outcome.branch + ": " + outcome.error;
  }
  const GateResult* failed = outcome.failed();
  if (failed == nullptr) return "";
  std::string message = "final gate '" + failed->name + "' ";
  if (failed->cancelled) {
    message += "was interrupted";
  } else if (failed->timed_out) {
    message += "timed out";
  } else {
    message += "failed (exit " + std::to_string(failed->exit_code) + ")";
  }
  message +=
      " on the integration branch " + outcome.branch + " at " + outcome.commit.substr(0, 12) +
      "; log: " + (failed->log_path.empty() ? (spec_dir / kLogsFolder).string() : failed->log_path);
  if (!failed->output_tail.empty()) {
    std::string tail = failed->output_tail;
    constexpr size_t kShown = 1200;
    if (tail.size() > kShown) {
      // Whole lines only, and never inside a UTF-8 sequence.
      size_t cut = tail.find('\n', tail.size() - kShown);
      if (cut == std::string::npos) cut = tail.size() - kShown;
      while (cut < tail.size() && (static_cast<unsigned char>(tail[cut]) & 0xC0) == 0x80) ++cut;
      tail = "..." + tail.substr(cut);
    }
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    message += "\n" + tail;
  }
  return message;
}

}  // namespace

bool FinalGatesOutcome::passed() const {
  if (!error.empty() || results.size() != gate_count) return false;
  for (const auto& gate : results) {
    if (!gate.passed) return false;
  }
  return true;
}

bool FinalGatesOutcome::cancelled() const {
  for (const auto& gate : results) {
    if (gate.cancelled) return true;
  }
  return false;
}

std::string FinalGatesOutcome::status() const {
  if (!error.empty()) return "error";
  if (cancelled()) return "cancelled";
  return passed() ? "passed" : "failed";
}

const GateResult* FinalGatesOutcome::failed() const {
  for (const auto& gate : results) {
    if (!gate.passed) return &gate;
  }
  return nullptr;
}

std::vector<GateConfig> FinalGateList(const ProjectConfig& config) {
  std::vector<GateConfig> gates;
  for (const auto& gate : config.gates) {
    if (gate.kind == GateKind::kCommand && !gate.command.empty()) gates.push_back(gate);
  }
  return gates;
}

Result<FinalGatesOutcome> RunFinalGates(const FinalGatesDeps& deps, const std::string& run_id,
                                        const fs::path& spec_dir) {
  if (deps.workspace == nullptr || deps.sandbox == nullptr || deps.config == nullptr) {
    return Internal("RunFinalGates needs the workspace, the sandbox and the config");
  }
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", run_id));
  const std::vector<GateConfig> gates = FinalGateList(*deps.config);
  FinalGatesOutcome outcome;
  outcome.branch = WorkspaceManager::IntegrationBranch(run_id);
  outcome.gate_count = gates.size();
  const int64_t started_ms = SystemClock().NowMillis();
  Git repo = deps.workspace->git();
  if (auto tip = repo.RevParse("refs/heads/" + outcome.branch); tip) {
    outcome.commit = *tip;
  } else {
    outcome.error = tip.error().message;
  }

  const fs::path logs = spec_dir / kLogsFolder;
  std::error_code ignored;
  fs::remove_all(logs, ignored);  // the logs of an earlier try of this version
  if (outcome.error.empty() && !gates.empty()) {
    auto checkout = MakeCleanCheckout(repo, outcome.commit,
                                      deps.workspace->RunWorktreesDir(run_id) + "/_final");
    if (!checkout) {
      outcome.error = "cannot check out " + outcome.commit + ": " + checkout.error().message;
    } else {
      GateRunOptions options = GateOptionsFromPolicy(deps.config->sandbox, deps.sandbox);
      options.logs_dir = logs.string();
      options.cancel = deps.cancel;
      auto results = RunGates(gates, checkout->path(), options);
      (void)checkout->Remove();  // a leftover is removed by the next MakeCleanCheckout
      if (results) {
        outcome.results = std::move(*results);
      } else {
        outcome.error = "cannot run the gates: " + results.error().message;
      }
    }
  }
  outcome.duration_ms = SystemClock().NowMillis() - started_ms;

  if (deps.events != nullptr && !outcome.cancelled()) {
    json payload = {{"commit", outcome.commit}, {"branch", outcome.branch}};
    json names = json::array();
    for (const auto& gate : outcome.results) names.push_back(gate.name);
    payload["gates"] = names;
    if (const GateResult* failed = outcome.failed(); failed != nullptr) {
      payload["failed_gate"] = failed->name;
      payload["exit_code"] = failed->exit_code;
      payload["timed_out"] = failed->timed_out;
    }
    if (!outcome.error.empty()) payload["error"] = outcome.error;
    // The outcome is in metadata.json; a lost event must not fail the feature.
    deps.events->AppendOrWarn(
        {.kind = outcome.passed() ? events::EventKind::kFeatureFinalGatesPassed
                                  : events::EventKind::kFeatureFinalGatesFailed,
         .run_id = run_id,
         .actor = "orchestrator",
         .payload_json = payload.dump(-1, ' ', false, json::error_handler_t::replace)});
  }
  return outcome;
}

Result<FeatureBuildOutcome> FinishFeatureBuild(const FinalGatesDeps& deps, const fs::path& spec_dir,
                                               const RunSummary& summary) {
  FACTORY_ASSIGN_OR_RETURN(json metadata, internal::ReadMetadata(spec_dir));
  const json build = {
      {"run_id", summary.run_id},
      {"integration_branch", summary.integration_branch},
      {"done", summary.done},
      {"failed", summary.failed},
      {"blocked", summary.blocked},
      {"cancelled", summary.cancelled},
      {"total", summary.total},
      {"attempts", summary.attempts},
      // The build's own calls: the planning's are metadata.json's top-level cost_usd.
      {"cost_usd", summary.cost_usd - summary.planning_cost_usd}};
  FeatureBuildOutcome outcome;

  if (!summary.all_done()) {
    const bool stopped = summary.unfinished > 0;
    outcome.status = stopped ? "building" : "failed";
    outcome.message =
        stopped
            ? std::to_string(summary.unfinished) + " of " + std::to_string(summary.total) +
                  " tasks are not finished (resume with the same --run-id)"
            : std::to_string(summary.total - summary.done) + " of " +
                  std::to_string(summary.total) + " tasks did not complete (" +
                  std::to_string(summary.failed) + " failed, " + std::to_string(summary.blocked) +
                  " blocked, " + std::to_string(summary.cancelled) +
                  " cancelled); the final gates did not run";
    FACTORY_RETURN_IF_ERROR(internal::UpdateMetadata(spec_dir, [&](json& data) {
      data["status"] = outcome.status;
      data["build"] = build;
      data["final_gates"] = {{"status", "skipped"}, {"reason", "not every task is done"}};
    }));
    return outcome;
  }

  // Passed on this very tip before (a second `run` of a finished feature): nothing to redo.
  const std::string branch = summary.integration_branch.empty()
                                 ? WorkspaceManager::IntegrationBranch(summary.run_id)
                                 : summary.integration_branch;
  FACTORY_ASSIGN_OR_RETURN(std::string tip, deps.workspace->git().RevParse("refs/heads/" + branch));
  const json previous = metadata.value("final_gates", json::object());
  if (previous.is_object() && previous.value("status", "") == "passed" &&
      previous.value("commit", "") == tip) {
    outcome.status = "done";
    outcome.final_gates_reused = true;
    FACTORY_RETURN_IF_ERROR(internal::UpdateMetadata(spec_dir, [&](json& data) {
      data["status"] = "done";
      data["build"] = build;
    }));
    return outcome;
  }

  FACTORY_RETURN_IF_ERROR(internal::UpdateMetadata(spec_dir, [&](json& data) {
    data["status"] = "verifying";
    data["build"] = build;
    data.erase("final_gates");
  }));
  const int64_t started_ms = SystemClock().NowMillis();
  FACTORY_ASSIGN_OR_RETURN(FinalGatesOutcome gates, RunFinalGates(deps, summary.run_id, spec_dir));
  // Interrupted: stays `verifying`, so the next run of the feature runs them again.
  outcome.status = gates.cancelled() ? "verifying" : (gates.passed() ? "done" : "failed");
  outcome.message = FailureMessage(gates, spec_dir);
  FACTORY_RETURN_IF_ERROR(internal::UpdateMetadata(spec_dir, [&](json& data) {
    data["status"] = outcome.status;
    data["final_gates"] = OutcomeJson(gates, started_ms);
  }));
  outcome.final_gates = std::move(gates);
  return outcome;
}

}  // namespace factory::feature
