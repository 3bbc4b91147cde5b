// `factory agents` and `factory models`: what the project has configured under .factory/.

#include <fmt/core.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "agents/registry.h"
#include "cli/cli.h"
#include "ledger/budget.h"
#include "llm/models_config.h"
#include "llm/models_report.h"

namespace factory::cli {
namespace {

using nlohmann::json;

int ListAgents(const CliContext& ctx, const std::string& dir_flag, bool as_json) {
  std::filesystem::path dir =
      dir_flag.empty() ? ctx.FactoryDir() / "agents" : std::filesystem::path(dir_flag);
  auto loaded = AgentRegistry::LoadDirectory(dir);
  if (!loaded) return ReportError(loaded.error());
  for (const auto& warning : loaded->warnings) std::cerr << warning.ToString() << "\n";
  AgentRegistry& registry = *loaded->value;
  // Pauses recorded in the database (a budget cap, velocity, `*` for every agent) until
  // `factory agents resume`: a run would not give these agents a task. No database yet: none.
  std::map<std::string, AgentPause> pauses;
  if (auto store = ctx.OpenStore(/*create_if_missing=*/false); store) {
    Status read = (*store)->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto listed, txn.ListAgentPauses());
      for (auto& pause : listed) pauses[pause.agent] = std::move(pause);
      return Ok();
    });
    if (!read) {
      std::cerr << "factory: warning: cannot read agent pauses: " << read.error().ToString()
                << "\n";
    }
  }
  auto pause_of = [&pauses](const std::string& agent) -> const AgentPause* {
    if (auto it = pauses.find(agent); it != pauses.end()) return &it->second;
    if (auto it = pauses.find(ledger::kAllAgents); it != pauses.end()) return &it->second;
    return nullptr;
  };
  for (const AgentSpec* agent : registry.agents()) {
    if (const AgentPause* pause = pause_of(agent->name)) {
      (void)registry.Pause(agent->name, pause->reason);
    }
  }
  auto statuses = registry.Statuses();
  if (as_json) {
    json out = json::array();
    for (const AgentSpec* agent : registry.agents()) {
      json item{{"name", agent->name},
                {"role", agent->role},
                {"runner", RunnerKindName(agent->runner)},
                {"capabilities", agent->capabilities},
                {"cost_tier", agent->cost_tier},
                {"concurrency", agent->concurrency},
                {"network", agent->network},
                {"model", agent->model},
                {"fallbacks", agent->fallbacks},
                {"preset", agent->preset},
                {"command", agent->command},
                {"source", agent->source}};
      for (const auto& status : statuses) {
        if (status.name == agent->name) item["status"] = status.ToString();
      }
      if (const AgentPause* pause = pause_of(agent->name)) {
        item["paused"] = {{"agent", pause->agent},
                          {"reason", pause->reason},
                          {"since_ms", pause->since_ms},
                          {"by", pause->by}};
      } else {
        item["paused"] = nullptr;
      }
      out.push_back(std::move(item));
    }
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  if (registry.agents().empty()) {
    std::cout << "no agents in " << dir.string() << " (run `factory init` for examples)\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<16} {:<7} {:<5} {:<5} {:<12} {}\n", "NAME", "RUNNER", "COST",
                           "SLOTS", "STATUS", "CAPABILITIES");
  for (const AgentSpec* agent : registry.agents()) {
    std::string status = "idle";
    for (const auto& s : statuses) {
      if (s.name == agent->name) status = s.ToString();
    }
    std::string caps;
    for (const auto& cap : agent->capabilities) caps += (caps.empty() ? "" : ",") + cap;
    std::cout << fmt::format("{:<16} {:<7} {:<5} {:<5} {:<12} {}\n", agent->name,
                             RunnerKindName(agent->runner), agent->cost_tier, agent->concurrency,
                             status, caps);
  }
  return kExitOk;
}

int ListModels(const CliContext& ctx, const std::string& file_flag, bool as_json, bool check) {
  std::filesystem::path path =
      file_flag.empty() ? ctx.FactoryDir() / "models.yaml" : std::filesystem::path(file_flag);
  auto config = llm::LoadModelsConfig(path);
  if (!config) return ReportError(config.error());
  auto report = llm::DescribeModels(*config, check);
  report.path = path.string();
  if (as_json) {
    std::cout << llm::ModelsReportToJson(report).dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "providers (" << path.string() << "):\n";
  for (const auto& provider : report.providers) {
    std::string state =
        provider.available ? "available" : "unavailable: " + provider.unavailable_reason;
    if (provider.checked) {
      state += provider.reachable ? fmt::format(", reachable ({} ms)", provider.check_latency_ms)
                                  : ", unreachable: " + provider.check_error;
    }
    std::cout << fmt::format("  {:<12} {:<9} {:<40} {}\n", provider.name, provider.kind,
                             provider.base_url, state);
  }
  std::cout << "models:\n";
  for (const auto& model : report.models) {
    std::cout << fmt::format("  {:<20} {:<12} {:<28} in ${}/M out ${}/M ctx {}\n", model.name,
                             model.provider, model.model_id, model.input_per_mtok,
                             model.output_per_mtok, model.context_window);
  }
  std::cout << "aliases:\n";
  for (const auto& alias : report.aliases) {
    std::string chain;
    for (const auto& model : alias.models) chain += (chain.empty() ? "" : " -> ") + model;
    std::cout << fmt::format("  {:<16} {}\n", alias.name, chain);
  }
  return kExitOk;
}

}  // namespace

void AddProjectCommands(CLI::App& app, CliContext& ctx) {
  auto* agents = app.add_subcommand("agents", "List the project's agents (.factory/agents/*.md)");
  // Option values live as long as the app (one CLI invocation per process).
  static std::string agents_dir_value;
  static bool agents_json = false;
  agents->add_option("--dir", agents_dir_value, "Agents directory (default: <factory dir>/agents)");
  agents->add_flag("--json", agents_json, "Print a JSON array");
  agents->callback([&ctx, agents] {
    // `agents resume NAME` sets its own action; the parent's callback runs after it.
    if (!agents->get_subcommands().empty()) return;
    ctx.action = [&ctx] { return ListAgents(ctx, agents_dir_value, agents_json); };
  });

  auto* models =
      app.add_subcommand("models", "Show configured model providers, models and aliases");
  static std::string models_file;
  static bool models_json = false;
  static bool models_check = false;
  models->add_option("--file", models_file, "models.yaml (default: <factory dir>/models.yaml)");
  models->add_flag("--json", models_json, "Print JSON");
  models->add_flag("--check", models_check, "Probe every available provider (lists its models)");
  models->callback([&ctx] {
    ctx.action = [&ctx] { return ListModels(ctx, models_file, models_json, models_check); };
  });
}

}  // namespace factory::cli
