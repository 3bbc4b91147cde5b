#pragma once
// Shared plumbing of the `factory` subcommands: global options, exit codes, error printing and
// opening the store. Each command group lives in its own file and registers itself on the CLI11
// app through an Add*Commands function; the selected command runs after parsing succeeded.

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/store.h"

namespace factory::llm {
struct ModelsConfig;
}

namespace factory::cli {

// Process exit codes (documented in docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;        // the operation ran and failed (audit broken...)
inline constexpr int kExitUsage = 2;         // malformed arguments or invalid input values
inline constexpr int kExitNotFound = 3;      // an unknown task id or a missing database
inline constexpr int kExitPrecondition = 4;  // illegal transition, newer schema, not initialised

inline constexpr char kDefaultDbPath[] = ".factory/factory.db";

struct GlobalOptions {
  std::string db_path = kDefaultDbPath;  // --db / FACTORY_DB
  std::string log_level;                 // --log-level / FACTORY_LOG (empty: default)
  std::string sync = "normal";           // --sync / FACTORY_SYNC: normal | full
};

class CliContext {
 public:
  GlobalOptions global;
  // Set by the parsed subcommand's callback; run by RunCli after parsing.
  std::function<int()> action;

  // The database path as given (relative paths resolve against the cwd).
  std::filesystem::path DbPath() const;
  // The directory holding the database (".factory" by default): artifacts live under it.
  std::filesystem::path FactoryDir() const;

  // Opens the store. Only `factory init` creates a database: every command passes
  // create_if_missing = false, and a missing or empty (0-byte) file is NotFound "no factory
  // database at PATH: run `factory init`". Errors name the path.
  Result<std::unique_ptr<Store>> OpenStore(bool create_if_missing) const;
};

// InvalidArgument when --db is not something this build can open (empty, or a server URL
// such as postgresql://...).
Status CheckDbLocation(const std::string& db);

// The exit code for an error from a store/queue operation.
int ExitCodeFor(ErrorCode code);
// Prints "factory: error: <message>" on stderr and returns ExitCodeFor(error.code).
int ReportError(const Error& error);
// Prints "factory: error: <message>" on stderr and returns exit_code.
int ReportError(std::string_view message, int exit_code);

// Adds to ProcessRedactor() (core/redact.h) the values of the key variables `models` names
// (each provider's api_key_env), whatever their names. Start-up does it for
// <factory dir>/models.yaml; a command reading another models file does it for that one.
void RedactModelKeys(const llm::ModelsConfig& models);

// Registration of each command group (one file each).
void AddInitCommand(CLI::App& app, CliContext& ctx);
void AddTaskCommands(CLI::App& app, CliContext& ctx);
void AddQueueCommands(CLI::App& app, CliContext& ctx);
void AddAuditCommands(CLI::App& app, CliContext& ctx);
void AddWorkerCommand(CLI::App& app, CliContext& ctx);
void AddProjectCommands(CLI::App& app, CliContext& ctx);  // agents, models
// costs, agents resume. REQUIRES: AddProjectCommands ran first (it creates `agents`).
void AddCostCommands(CLI::App& app, CliContext& ctx);
// run, run resume/show/merge, runs, regenerate
void AddRunCommands(CLI::App& app, CliContext& ctx);
// run push, run pr (src/cli/pr_commands.cc); `run` is the `run` subcommand.
void AddPushCommands(CLI::App& run, CliContext& ctx);
void AddGatewayCommands(CLI::App& app, CliContext& ctx);  // gateway, keys create/list/revoke
void AddPromptCommands(CLI::App& app, CliContext& ctx);   // prompts, prompts show
void AddStatsCommand(CLI::App& app, CliContext& ctx);     // stats
void AddDoctorCommand(CLI::App& app, CliContext& ctx);    // doctor
void AddMcpCommand(CLI::App& app, CliContext& ctx);       // mcp
void AddServeCommand(CLI::App& app, CliContext& ctx);     // serve
void AddTokenCommands(CLI::App& app, CliContext& ctx);    // tokens create/list/revoke

// Parses argv, runs the selected command, returns the process exit code. Never throws.
int RunCli(int argc, char** argv);

}  // namespace factory::cli
