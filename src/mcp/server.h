#pragma once
// `factory mcp`: a Model Context Protocol server (JSON-RPC 2.0 on stdio, one message per line)
// exposing the factory's tasks and runs as tools and resources, so an MCP client (Claude Code,
// an IDE, another agent) can drive the factory.

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mcp/backend.h"
#include "mcp/json_rpc.h"

namespace factory::mcp {

// The protocol versions this server speaks, newest first. initialize answers with the
// client's version when it is one of these, else with the newest.
inline constexpr std::string_view kProtocolVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                         "2024-11-05"};

struct ServerInfo {
  std::string name = "factory";
  std::string version;
};

class McpServer {
 public:
  // REQUIRES: backend outlives the server.
  McpServer(Backend& backend, ServerInfo info);

  // One incoming message (a line without its break); the response line or nullopt.
  std::optional<std::string> Handle(std::string_view message);

  // Reads messages from in, one per line, and writes each response on its own line to out,
  // flushed, until in ends. Blank lines are skipped.
  void Serve(std::istream& in, std::ostream& out);

  // The tool definitions as tools/list returns them.
  nlohmann::json ToolList() const;

 private:
  RpcResult Initialize(const nlohmann::json& params);
  RpcResult CallTool(const nlohmann::json& params);
  RpcResult ListResources(const nlohmann::json& params);
  RpcResult ReadResource(const nlohmann::json& params);

  Backend& backend_;
  ServerInfo info_;
  JsonRpcDispatcher dispatcher_;
  bool initialized_ = false;
};

}  // namespace factory::mcp
