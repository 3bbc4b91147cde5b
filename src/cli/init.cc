#include "cli/init.h"

#include <fmt/core.h>

#include <cstring>
#include <iostream>
#include <system_error>

#include "agents/examples.h"
#include "cli/cli.h"
#include "llm/models_config.h"
#include "plan/config.h"

namespace factory::cli {
namespace {

Status EnsureDirectory(const std::filesystem::path& dir, InitReport& report) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return Ok();
  if (std::filesystem::exists(dir, ec)) {
    return FailedPrecondition(dir.string() + " exists and is not a directory");
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create directory " + dir.string() + ": " + ec.message());
  report.created.push_back(dir.string());
  return Ok();
}

}  // namespace

Result<InitReport> InitFactoryDir(const InitOptions& options) {
  InitReport report;
  FACTORY_RETURN_IF_ERROR(EnsureDirectory(options.factory_dir, report));
  FACTORY_RETURN_IF_ERROR(EnsureDirectory(options.factory_dir / "artifacts", report));

  std::error_code ec;
  const bool db_existed = std::filesystem::exists(options.db_path, ec);
  SqliteOptions sqlite;
  sqlite.path = options.db_path.string();
  sqlite.synchronous = options.sync;
  sqlite.create_if_missing = true;
  auto store = OpenSqliteStore(sqlite);
  if (!store) {
    Error error = store.error().Wrap("cannot open database " + options.db_path.string());
    if (error.code == ErrorCode::kInvalidArgument) error.code = ErrorCode::kUnavailable;
    return std::unexpected(std::move(error));
  }
  if (!db_existed) report.created.push_back(options.db_path.string());
  report.schema_version = (*store)->Info().schema_version;

  // Project files: never overwrite what the user may have edited.
  auto keep_existing = [&report](const std::filesystem::path& path, Status status) -> Status {
    if (status) {
      report.created.push_back(path.string());
      return Ok();
    }
    if (status.error().code == ErrorCode::kAlreadyExists) return Ok();
    return std::unexpected(status.error().Wrap("writing " + path.string()));
  };
  const auto config = options.factory_dir / "config.yaml";
  FACTORY_RETURN_IF_ERROR(keep_existing(config, WriteDefaultConfig(config)));
  const auto models = options.factory_dir / "models.yaml";
  FACTORY_RETURN_IF_ERROR(keep_existing(models, llm::WriteDefaultModelsConfig(models)));
  auto agents = WriteExampleAgents(options.factory_dir / "agents");
  if (!agents) return std::unexpected(agents.error().Wrap("writing example agents"));
  for (const auto& path : *agents) report.created.push_back(path.string());
  // The builder script lives at a repository-relative path; .factory/ sits at the root.
  const auto script = options.factory_dir.parent_path() / kExampleBuilderScriptPath;
  auto wrote_script = WriteExampleBuilderScript(script);
  if (!wrote_script)
    return std::unexpected(wrote_script.error().Wrap("writing " + script.string()));
  if (*wrote_script) report.created.push_back(script.string());
  return report;
}

void AddInitCommand(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand(
      "init",
      "Create .factory/ (or the directory of --db): the database, artifacts/, a commented "
      "config.yaml, models.yaml and example agents in agents/ (existing files are kept)");
  cmd->callback([&ctx] {
    ctx.action = [&ctx]() -> int {
      if (Status location = CheckDbLocation(ctx.global.db_path); !location) {
        return ReportError(location.error());
      }
      InitOptions options;
      options.db_path = ctx.DbPath();
      options.factory_dir = ctx.FactoryDir();
      options.sync = ctx.global.sync == "full" ? SqliteSync::kFull : SqliteSync::kNormal;
      auto report = InitFactoryDir(options);
      if (!report) return ReportError(report.error());
      for (const auto& path : report->created) std::cout << "  created " << path << "\n";
      if (report->created.empty()) {
        std::cout << "factory: already initialised in " << options.factory_dir.string()
                  << " (schema version " << report->schema_version << ")\n";
      } else {
        std::cout << "factory: initialised " << options.factory_dir.string() << " (schema version "
                  << report->schema_version << ")\n";
      }
      return kExitOk;
    };
  });
}

}  // namespace factory::cli
