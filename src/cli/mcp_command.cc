// `factory mcp`: serves the Model Context Protocol on stdin/stdout for MCP clients.
#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "mcp/factory_backend.h"
#include "mcp/server.h"

#ifndef FACTORY_VERSION
#define FACTORY_VERSION "0.0.0"
#endif

namespace factory::cli {
namespace {

int ServeMcp(const CliContext& ctx) {
  // Opened before serving: a missing database is a start-up error the client's log shows,
  // not a session whose every call fails.
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  std::error_code ec;
  std::filesystem::path binary = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ReportError("cannot find the factory executable: " + ec.message(), kExitFailed);
  const std::filesystem::path factory_dir = std::filesystem::absolute(ctx.FactoryDir());
  auto backend = mcp::NewFactoryBackend(
      **store, mcp::FactoryBackendOptions{.db_path = std::filesystem::absolute(ctx.DbPath()),
                                          .factory_dir = factory_dir,
                                          .project_dir = factory_dir.parent_path(),
                                          .factory_binary = binary});
  mcp::McpServer server(*backend, mcp::ServerInfo{.name = "factory", .version = FACTORY_VERSION});
  std::ios::sync_with_stdio(false);
  server.Serve(std::cin, std::cout);
  return kExitOk;
}

}  // namespace

void AddMcpCommand(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand(
      "mcp",
      "Serve the Model Context Protocol on stdin/stdout (JSON-RPC 2.0, one message per line): "
      "tools to create and list tasks, start, follow and cancel runs, retry tasks, costs and "
      "stats; runs and tasks as factory:// resources. Add it to an MCP client as the command "
      "`factory mcp` run in the project (or with --db). See docs/mcp.md");
  cmd->callback([&ctx] { ctx.action = [&ctx] { return ServeMcp(ctx); }; });
}

}  // namespace factory::cli
