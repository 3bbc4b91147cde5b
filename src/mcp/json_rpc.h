#pragma once
// JSON-RPC 2.0 over one message at a time (the MCP stdio transport hands it a line): parses a
// request, routes it to its method and builds the response. No transport, no threads.

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace factory::mcp {

// The JSON-RPC error codes (and the one MCP adds) a caller maps its failures to.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;
inline constexpr int kResourceNotFound = -32002;  // MCP: resources/read of an unknown URI

struct RpcError {
  int code = kInternalError;
  std::string message;
  nlohmann::json data;  // null: none
};

using RpcResult = std::expected<nlohmann::json, RpcError>;
// A method: params is always an object (an absent params is {}).
using RpcMethod = std::function<RpcResult(const nlohmann::json& params)>;
using RpcNotification = std::function<void(const nlohmann::json& params)>;

class JsonRpcDispatcher {
 public:
  // REQUIRES: called before Handle (not thread-safe against it).
  void AddMethod(std::string name, RpcMethod method);
  void AddNotification(std::string name, RpcNotification notification);

  // Handles one message (a request, a notification, a batch, or a response to a request of
  // ours, which is ignored). Returns the response text (one line, no line break), or nullopt
  // when none is due. Malformed input gets the JSON-RPC error naming what is wrong; an
  // exception thrown by a method becomes an internal error. Never throws.
  std::optional<std::string> Handle(std::string_view message);

 private:
  std::optional<nlohmann::json> HandleOne(const nlohmann::json& message);

  std::map<std::string, RpcMethod, std::less<>> methods_;
  std::map<std::string, RpcNotification, std::less<>> notifications_;
};

// The response object for an error (id null when the request's id could not be read).
nlohmann::json ErrorResponse(const nlohmann::json& id, const RpcError& error);

}  // namespace factory::mcp
