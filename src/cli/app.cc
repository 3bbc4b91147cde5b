#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <system_error>

#include "cli/cli.h"
#include "core/log.h"
#include "core/redact.h"
#include "llm/models_config.h"
#include "store/open_store.h"

extern char** environ;

#ifndef FACTORY_VERSION
#define FACTORY_VERSION "0.0.0"
#endif

namespace factory::cli {

std::filesystem::path CliContext::DbPath() const {
  auto location = ParseStoreUrl(global.db_path);
  return std::filesystem::path(location && !location->path.empty() ? location->path
                                                                   : global.db_path);
}

std::filesystem::path CliContext::FactoryDir() const {
  std::error_code ec;
  auto absolute = std::filesystem::absolute(DbPath(), ec);
  if (ec) absolute = DbPath();
  return absolute.parent_path();
}

Status CheckDbLocation(const std::string& db) {
  if (db.empty()) return InvalidArgument("--db must not be empty");
  // A server URL taken as a file name would become a directory "postgresql:" beside the project.
  FACTORY_ASSIGN_OR_RETURN(StoreLocation location, ParseStoreUrl(db));
  if (location.backend != StoreBackend::kSqlite) {
    return FailedPrecondition("--db " + location.url + ": PostgreSQL support is not built yet");
  }
  return Ok();
}

Result<std::unique_ptr<Store>> CliContext::OpenStore(bool create_if_missing) const {
  FACTORY_RETURN_IF_ERROR(CheckDbLocation(global.db_path));
  const auto path = DbPath();
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  const bool empty = exists && std::filesystem::is_regular_file(path, ec) &&
                     std::filesystem::file_size(path, ec) == 0 && !ec;
  if (!exists || (empty && !create_if_missing)) {
    const auto dir = FactoryDir();
    if (!create_if_missing) {
      return NotFound(
          "no factory database at " + path.string() + (empty ? " (the file is empty)" : "") +
          (global.db_path == kDefaultDbPath ? ": run `factory init` (or pass --db PATH)"
                                            : ": run `factory --db " + path.string() + " init`"));
    }
    if (!std::filesystem::is_directory(dir, ec)) {
      return FailedPrecondition("directory " + dir.string() +
                                " does not exist (run `factory init` first, or pass --db PATH)");
    }
  } else if (std::filesystem::is_directory(path, ec)) {
    return InvalidArgument("database path " + path.string() + " is a directory");
  }

  StoreOpenOptions options;
  options.synchronous = global.sync == "full" ? SqliteSync::kFull : SqliteSync::kNormal;
  options.create_if_missing = create_if_missing;
  auto store = factory::OpenStore(global.db_path, options);
  if (!store) {
    Error error = store.error().Wrap("cannot open database " + path.string());
    // "Not a database" is not a usage error: the arguments were fine, the file is not.
    if (error.code == ErrorCode::kInvalidArgument) error.code = ErrorCode::kUnavailable;
    // SQLite in WAL mode needs to create files next to the database, even to read it.
    const auto dir = FactoryDir();
    if (access(dir.c_str(), W_OK) != 0) {
      error.message += " (directory " + dir.string() + " is not writable)";
    } else if (exists && access(path.c_str(), W_OK) != 0) {
      error.message += " (" + path.string() + " is not writable)";
    }
    return std::unexpected(std::move(error));
  }
  return std::move(*store);
}

int ExitCodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return kExitUsage;
    case ErrorCode::kNotFound:
      return kExitNotFound;
    case ErrorCode::kFailedPrecondition:
      return kExitPrecondition;
    default:
      return kExitFailed;
  }
}

int ReportError(std::string_view message, int exit_code) {
  std::fflush(stdout);
  std::cerr << "factory: error: " << ProcessRedactor().Redact(message) << std::endl;
  return exit_code;
}

int ReportError(const Error& error) { return ReportError(error.message, ExitCodeFor(error.code)); }

void RedactModelKeys(const llm::ModelsConfig& models) {
  for (const auto& provider : models.providers) {
    if (provider.api_key_env.empty()) continue;
    if (const char* value = std::getenv(provider.api_key_env.c_str())) {
      ProcessRedactor().Add(provider.api_key_env, value);
    }
  }
}

namespace {

// The secrets no command may store or print: secret-looking variables of our environment and
// the key variables of the project's models.yaml (core/redact.h says which and why). A
// models.yaml that does not load leaves the environment's rule alone to cover its keys; the
// command that needs the file reports the problem.
void FeedProcessRedactor(const CliContext& ctx) {
  ProcessRedactor().AddSecretEnvironment(environ);
  std::error_code ec;
  const auto models_path = ctx.FactoryDir() / "models.yaml";
  if (!std::filesystem::is_regular_file(models_path, ec)) return;
  if (auto models = llm::LoadModelsConfig(models_path)) RedactModelKeys(*models);
}

int ParseAndRun(int argc, char** argv) {
  CliContext ctx;
  CLI::App app{"Agent Factory: a durable task queue and orchestrator for LLM coding agents.",
               "factory"};
  // Global options are accepted before or after the subcommand.
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("factory ") + FACTORY_VERSION);
  app.add_option("--db", ctx.global.db_path, "Database path (env FACTORY_DB)")
      ->envname("FACTORY_DB")
      ->capture_default_str();
  app.add_option("--log-level", ctx.global.log_level,
                 "trace, debug, info, warn, error, critical or off (env FACTORY_LOG; default "
                 "warn)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--sync", ctx.global.sync,
                 "SQLite synchronous mode: normal (default; survives process crashes) or full "
                 "(fsync every commit; survives power loss) (env FACTORY_SYNC)")
      ->envname("FACTORY_SYNC")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();

  AddInitCommand(app, ctx);
  AddTaskCommands(app, ctx);
  AddQueueCommands(app, ctx);
  AddAuditCommands(app, ctx);
  AddWorkerCommand(app, ctx);
  AddProjectCommands(app, ctx);
  AddCostCommands(app, ctx);
  AddRunCommands(app, ctx);
  AddGatewayCommands(app, ctx);
  AddPromptCommands(app, ctx);
  AddStatsCommand(app, ctx);
  AddDoctorCommand(app, ctx);
  AddMcpCommand(app, ctx);
  AddServeCommand(app, ctx);
  AddTokenCommands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string where = "factory";
    for (const CLI::App* sub = &app; sub != nullptr;) {
      auto subs = sub->get_subcommands();
      if (subs.empty()) break;
      sub = subs.front();
      where += " " + sub->get_name();
    }
    ReportError(e.what(), kExitUsage);
    std::cerr << "Run '" << where << " --help' for usage." << std::endl;
    return kExitUsage;
  }

  if (auto logging = InitLogging(ctx.global.log_level); !logging) {
    return ReportError(logging.error().message, kExitUsage);
  }
  // Before the command runs, with the logger in place: nothing it logs, stores or writes may
  // hold a known secret.
  FeedProcessRedactor(ctx);
  if (!ctx.action) return ReportError("no command given", kExitUsage);
  return ctx.action();
}

}  // namespace

int RunCli(int argc, char** argv) {
  try {
    return ParseAndRun(argc, argv);
  } catch (const std::exception& e) {
    return ReportError(std::string("internal error: ") + e.what(), kExitFailed);
  } catch (...) {
    return ReportError("internal error: unknown exception", kExitFailed);
  }
}

}  // namespace factory::cli
