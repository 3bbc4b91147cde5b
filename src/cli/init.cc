#include "cli/init.h"

#include <fmt/core.h>

#include <cstring>
#include <iostream>
#include <system_error>

#include "agents/examples.h"
#include "cli/cli.h"
#include "llm/models_config.h"
#include "plan/config.h"
#include "store/open_store.h"

namespace factory::cli {
namespace {

namespace fs = std::filesystem;

Status EnsureDirectory(const fs::path& dir, InitReport& report) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return Ok();
  if (fs::exists(dir, ec)) {
    return FailedPrecondition(dir.string() + " exists and is not a directory");
  }
  fs::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create directory " + dir.string() + ": " + ec.message());
  report.created.push_back(dir.string());
  return Ok();
}

// The agent files (*.md) directly in `dir`: what the registry would load.
std::vector<std::string> AgentFilesIn(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".md" && it->is_regular_file(ec)) {
      files.push_back(it->path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

ConfigScaffold ScaffoldFor(const InitReport& report) {
  ConfigScaffold scaffold;
  for (const setup::DetectedGate& gate : report.detected.gates) {
    scaffold.gates.push_back({gate.name, gate.command, "", "detected: " + gate.source});
  }
  if (!report.agent.review_model.empty()) {
    scaffold.gates.push_back(
        {"review", "", report.agent.review_model, "chosen: " + report.agent.review_reason});
  }
  scaffold.protected_paths = report.detected.protected_paths;
  scaffold.gate_network = report.detected.gates_need_network;
  scaffold.network_note = report.detected.network_reason;
  return scaffold;
}

// The chosen agent and reviewer need models.yaml to route their models to the provider that
// made them the choice; an existing models.yaml may not.
void CheckRouting(const fs::path& models_path, const setup::HostProbe& probe, InitReport& report) {
  if (report.agent.kind != setup::AgentKind::kLlm && report.agent.review_model.empty()) return;
  auto models = llm::LoadModelsConfig(
      models_path, [&probe](const std::string& name) { return probe.env(name); });
  if (!models) {
    report.warnings.push_back(models.error().message);
    return;
  }
  auto check = [&](const std::string& what, const std::string& target) {
    if (target.empty() || !report.agent_written) return;
    if (std::string problem = models->RouteProblem(target); !problem.empty()) {
      report.warnings.push_back(models_path.string() + ": " + what + ": " + problem);
    }
  };
  if (report.agent.kind == setup::AgentKind::kLlm)
    check("agent " + report.agent.name, report.agent.model);
  if (report.config_written) check("review gate", report.agent.review_model);
}

}  // namespace

Result<InitReport> InitFactoryDir(const InitOptions& options) {
  InitReport report;
  FACTORY_RETURN_IF_ERROR(EnsureDirectory(options.factory_dir, report));
  FACTORY_RETURN_IF_ERROR(EnsureDirectory(options.factory_dir / "artifacts", report));

  std::error_code ec;
  const bool db_existed = fs::exists(options.db_path, ec);
  auto store = factory::OpenStore(options.db_path.string(),
                                  {.synchronous = options.sync, .create_if_missing = true});
  if (!store) {
    Error error = store.error().Wrap("cannot open database " + options.db_path.string());
    if (error.code == ErrorCode::kInvalidArgument) error.code = ErrorCode::kUnavailable;
    return std::unexpected(std::move(error));
  }
  if (!db_existed) report.created.push_back(options.db_path.string());
  report.schema_version = (*store)->Info().schema_version;

  // .factory/ sits at the repository's root.
  report.detected = setup::DetectProject(options.factory_dir.parent_path());
  FACTORY_ASSIGN_OR_RETURN(report.agent,
                           setup::ChooseAgent(options.probe, options.agent_preference));

  // Project files: never overwrite what the user may have edited.
  auto keep_existing = [&report](const fs::path& path, Status status) -> Result<bool> {
    if (status) {
      report.created.push_back(path.string());
      return true;
    }
    if (status.error().code == ErrorCode::kAlreadyExists) {
      report.kept.push_back(path.string());
      return false;
    }
    return std::unexpected(status.error().Wrap("writing " + path.string()));
  };
  const auto config = options.factory_dir / "config.yaml";
  FACTORY_ASSIGN_OR_RETURN(report.config_written,
                           keep_existing(config, WriteDefaultConfig(config, ScaffoldFor(report))));
  const auto models = options.factory_dir / "models.yaml";
  FACTORY_ASSIGN_OR_RETURN(bool models_written,
                           keep_existing(models, llm::WriteDefaultModelsConfig(models)));
  (void)models_written;

  const auto agents_dir = options.factory_dir / "agents";
  FACTORY_RETURN_IF_ERROR(EnsureDirectory(agents_dir, report));
  // Agents the user has (or an earlier init wrote) decide alone: a second one added now would
  // change which agent takes tasks.
  report.existing_agents = AgentFilesIn(agents_dir);
  if (report.existing_agents.empty() && report.agent.kind != setup::AgentKind::kNone) {
    auto written = WriteAgentFiles(agents_dir, {{report.agent.file_name, report.agent.file_text}});
    if (!written) return std::unexpected(written.error().Wrap("writing the agent"));
    for (const auto& path : *written) report.created.push_back(path.string());
    report.agent_written = !written->empty();
  }
  auto examples = WriteAgentFiles(agents_dir / "examples", ExampleAgentFiles());
  if (!examples) return std::unexpected(examples.error().Wrap("writing example agents"));
  for (const auto& path : *examples) report.created.push_back(path.string());

  CheckRouting(models, options.probe, report);
  return report;
}

nlohmann::json InitReportToJson(const InitReport& report, const fs::path& factory_dir) {
  using nlohmann::json;
  json gates = json::array();
  for (const auto& gate : report.detected.gates) {
    gates.push_back({{"name", gate.name}, {"command", gate.command}, {"source", gate.source}});
  }
  json agent = {{"kind", setup::AgentKindName(report.agent.kind)},
                {"name", report.agent.name},
                {"provider", report.agent.provider},
                {"model", report.agent.model},
                {"reason", report.agent.reason},
                {"file", report.agent.file_name.empty()
                             ? ""
                             : (factory_dir / "agents" / report.agent.file_name).string()},
                {"written", report.agent_written},
                {"existing_agents", report.existing_agents}};
  json review = {{"model", report.agent.review_model},
                 {"reason", report.agent.review_reason},
                 {"written", report.config_written && !report.agent.review_model.empty()}};
  return {{"factory_dir", factory_dir.string()},
          {"schema_version", report.schema_version},
          {"created", report.created},
          {"kept", report.kept},
          {"detected",
           {{"gates", gates},
            {"protected", report.detected.protected_paths},
            {"gates_need_network", report.detected.gates_need_network},
            {"network_reason", report.detected.network_reason},
            {"written", report.config_written}}},
          {"agent", agent},
          {"review", review},
          {"warnings", report.warnings}};
}

namespace {

void PrintReport(const InitReport& report, const fs::path& factory_dir) {
  for (const auto& path : report.created) std::cout << "  created " << path << "\n";
  if (report.created.empty()) {
    std::cout << "factory: already initialised in " << factory_dir.string() << " (schema version "
              << report.schema_version << ")\n";
  } else {
    std::cout << "factory: initialised " << factory_dir.string() << " (schema version "
              << report.schema_version << ")\n";
  }
  const std::string config = (factory_dir / "config.yaml").string();
  std::cout << "detected"
            << (report.config_written ? " (written to " + config + ")"
                                      : " (not written: " + config + " exists and is kept)")
            << ":\n";
  if (report.detected.gates.empty()) {
    std::cout << "  no build or test command: add gates to " << config << " by hand\n";
  }
  for (const auto& gate : report.detected.gates) {
    std::cout << fmt::format("  gate {:<8} {:<44} ({})\n", gate.name, gate.command, gate.source);
  }
  for (const auto& glob : report.detected.protected_paths) {
    std::cout << "  protected " << glob << "\n";
  }
  if (report.detected.gates_need_network) {
    std::cout << "  gates get the network: " << report.detected.network_reason << "\n";
  }
  const setup::AgentChoice& agent = report.agent;
  if (!report.existing_agents.empty()) {
    std::cout << "agent: kept the " << report.existing_agents.size() << " agent file(s) in "
              << (factory_dir / "agents").string() << "\n";
  } else if (agent.kind == setup::AgentKind::kNone) {
    std::cout << "agent: none can run here: " << agent.reason << "\n"
              << "  `factory run` will say what to configure; examples are in "
              << (factory_dir / "agents" / "examples").string() << "\n";
  } else {
    std::cout << "agent: " << agent.name << " (" << setup::AgentKindName(agent.kind)
              << (agent.model.empty() ? "" : ", model " + agent.model) << "): " << agent.reason
              << "\n";
  }
  if (!agent.review_model.empty()) {
    std::cout << "review: " << (report.config_written ? "gate 'review'" : "a review gate could use")
              << " on model " << agent.review_model << ": " << agent.review_reason << "\n";
  } else if (agent.kind != setup::AgentKind::kNone) {
    std::cout << "review: none: " << agent.review_reason << "\n";
  }
  for (const auto& warning : report.warnings) {
    std::cerr << "factory: warning: " << warning << "\n";
  }
  std::cout << "next: factory doctor, then factory run FEATURE.md\n";
}

}  // namespace

void AddInitCommand(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand(
      "init",
      "Create .factory/ (or the directory of --db): the database, artifacts/, config.yaml with "
      "the repository's detected build and test commands as gates and its test folders "
      "protected, models.yaml, and the agent that can run here (existing files are kept)");
  static bool as_json = false;
  static std::string agent_preference;
  cmd->add_flag("--json", as_json, "Print what was detected, chosen and written as JSON");
  cmd->add_option("--agent", agent_preference,
                  "The agent to write instead of choosing: llm, claude, codex, opencode, gemini, "
                  "aider or none");
  cmd->callback([&ctx] {
    ctx.action = [&ctx]() -> int {
      if (Status location = CheckDbLocation(ctx.global.db_path); !location) {
        return ReportError(location.error());
      }
      InitOptions options;
      options.db_path = ctx.DbPath();
      options.factory_dir = ctx.FactoryDir();
      options.sync = ctx.global.sync == "full" ? SqliteSync::kFull : SqliteSync::kNormal;
      options.agent_preference = agent_preference;
      auto report = InitFactoryDir(options);
      if (!report) return ReportError(report.error());
      if (as_json) {
        std::cout << InitReportToJson(*report, options.factory_dir).dump(2) << "\n";
        return kExitOk;
      }
      PrintReport(*report, options.factory_dir);
      return kExitOk;
    };
  });
}

}  // namespace factory::cli
