#include "mcp/json_rpc.h"

#include <exception>
#include <utility>

namespace factory::mcp {
namespace {

using json = nlohmann::json;

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool IsValidId(const json& id) { return id.is_string() || id.is_number_integer(); }

}  // namespace

json ErrorResponse(const json& id, const RpcError& error) {
  json body = {{"code", error.code}, {"message", error.message}};
  if (!error.data.is_null()) body["data"] = error.data;
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(body)}};
}

void JsonRpcDispatcher::AddMethod(std::string name, RpcMethod method) {
  methods_[std::move(name)] = std::move(method);
}

void JsonRpcDispatcher::AddNotification(std::string name, RpcNotification notification) {
  notifications_[std::move(name)] = std::move(notification);
}

std::optional<std::string> JsonRpcDispatcher::Handle(std::string_view message) {
  json parsed = json::parse(message, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Dump(
        ErrorResponse(nullptr, {kParseError, "Parse error: the message is not valid JSON"}));
  }
  if (parsed.is_array()) {
    if (parsed.empty()) {
      return Dump(ErrorResponse(nullptr, {kInvalidRequest, "Invalid Request: empty batch"}));
    }
    json responses = json::array();
    for (const json& item : parsed) {
      if (auto response = HandleOne(item)) responses.push_back(std::move(*response));
    }
    if (responses.empty()) return std::nullopt;
    return Dump(responses);
  }
  std::optional<json> response = HandleOne(parsed);
  if (!response) return std::nullopt;
  return Dump(*response);
}

std::optional<json> JsonRpcDispatcher::HandleOne(const json& message) {
  if (!message.is_object()) {
    return ErrorResponse(nullptr,
                         {kInvalidRequest, "Invalid Request: a message must be a JSON object"});
  }
  const bool has_id = message.contains("id");
  const json id = has_id ? message["id"] : json(nullptr);
  const json reply_id = IsValidId(id) ? id : json(nullptr);
  auto invalid = [&](const std::string& what) {
    return ErrorResponse(reply_id, {kInvalidRequest, "Invalid Request: " + what});
  };
  if (message.value("jsonrpc", json()) != "2.0") return invalid("\"jsonrpc\" must be \"2.0\"");
  if (!message.contains("method")) {
    // A response to a request of ours: this server sends none, so there is nothing to match.
    if (message.contains("result") || message.contains("error")) return std::nullopt;
    return invalid("\"method\" is missing");
  }
  if (!message["method"].is_string()) return invalid("\"method\" must be a string");
  if (has_id && !IsValidId(id)) return invalid("\"id\" must be a string or an integer");
  const std::string& name = message["method"].get_ref<const std::string&>();
  json params = message.value("params", json::object());
  if (!params.is_object()) {
    if (!has_id) return std::nullopt;
    return ErrorResponse(reply_id,
                         {kInvalidParams, "Invalid params: \"params\" must be an object"});
  }

  if (!has_id) {
    if (auto found = notifications_.find(name); found != notifications_.end()) {
      try {
        found->second(params);
      } catch (...) {
        // A notification has no reply to carry the failure.
      }
    }
    return std::nullopt;
  }
  auto found = methods_.find(name);
  if (found == methods_.end()) {
    return ErrorResponse(reply_id, {kMethodNotFound, "Method not found: " + name});
  }
  RpcResult result;
  try {
    result = found->second(params);
  } catch (const std::exception& error) {
    result =
        std::unexpected(RpcError{kInternalError, std::string("Internal error: ") + error.what()});
  } catch (...) {
    result = std::unexpected(RpcError{kInternalError, "Internal error"});
  }
  if (!result) return ErrorResponse(reply_id, result.error());
  return json{{"jsonrpc", "2.0"}, {"id", reply_id}, {"result", std::move(*result)}};
}

}  // namespace factory::mcp
