#include "mcp/server.h"

#include <algorithm>
#include <functional>
#include <istream>
#include <ostream>
#include <utility>

namespace factory::mcp {
namespace {

using json = nlohmann::json;

constexpr char kRunScheme[] = "factory://runs/";
constexpr char kTaskScheme[] = "factory://tasks/";
constexpr size_t kResourcePage = 100;

// A bad argument: the message names the field, for the client (or its model) to fix the call.
struct ArgError {
  std::string message;
};

// Typed reads of a tools/call "arguments" object against the tool's inputSchema.
class Args {
 public:
  explicit Args(const json& arguments) : arguments_(arguments) {}

  std::expected<std::string, ArgError> String(const std::string& name, bool required) const {
    const json* value = Find(name);
    if (value == nullptr) {
      if (required) return std::unexpected(ArgError{"missing required argument '" + name + "'"});
      return std::string();
    }
    if (!value->is_string()) return std::unexpected(Wrong(name, "a string"));
    return value->get<std::string>();
  }

  std::expected<std::optional<int64_t>, ArgError> Integer(const std::string& name) const {
    const json* value = Find(name);
    if (value == nullptr) return std::optional<int64_t>();
    if (!value->is_number_integer()) return std::unexpected(Wrong(name, "an integer"));
    return std::optional<int64_t>(value->get<int64_t>());
  }

  std::expected<std::vector<std::string>, ArgError> Strings(const std::string& name) const {
    const json* value = Find(name);
    std::vector<std::string> items;
    if (value == nullptr) return items;
    if (!value->is_array()) return std::unexpected(Wrong(name, "an array of strings"));
    for (const json& item : *value) {
      if (!item.is_string()) return std::unexpected(Wrong(name, "an array of strings"));
      items.push_back(item.get<std::string>());
    }
    return items;
  }

  const json* Find(const std::string& name) const {
    auto found = arguments_.find(name);
    if (found == arguments_.end() || found->is_null()) return nullptr;
    return &*found;
  }

 private:
  static ArgError Wrong(const std::string& name, const std::string& expected) {
    return ArgError{"argument '" + name + "' must be " + expected};
  }
  const json& arguments_;
};

json StringProp(const std::string& description) {
  return {{"type", "string"}, {"description", description}};
}

struct ToolDef {
  std::string name;
  std::string title;
  std::string description;
  json properties;
  std::vector<std::string> required;
  bool read_only = false;
};

std::vector<ToolDef> ToolDefs() {
  const json run_arg = StringProp("Run id");
  return {
      {"create_task",
       "Create a task",
       "Adds a task to the queue (as `factory task add`). With an idempotency_key, a second call "
       "with the same key in the same run returns the existing task (created: false).",
       {{"title", StringProp("Short title of the task")},
        {"command", StringProp("Shell command a worker runs for it")},
        {"spec", StringProp("What to do, for an agent (markdown)")},
        {"depends_on",
         {{"type", "array"},
          {"items", {{"type", "string"}}},
          {"description", "Ids of tasks that must be done first"}}},
        {"priority", {{"type", "integer"}, {"description", "Higher runs first (default 0)"}}},
        {"idempotency_key", StringProp("Makes retries of this call safe")},
        {"run", StringProp("Run id (default: the default run)")}},
       {"title"}},
      {"list_tasks",
       "List tasks",
       "Tasks in id order, optionally of one run and/or in one state, a page at a time "
       "(next_cursor).",
       {{"run", run_arg},
        {"state",
         {{"type", "string"},
          {"enum",
           {"pending", "ready", "claimed", "running", "verifying", "review", "done", "failed",
            "blocked", "cancelled"}}}},
        {"limit",
         {{"type", "integer"},
          {"minimum", 1},
          {"maximum", 1000},
          {"description", "At most this many (default 100)"}}},
        {"cursor", StringProp("next_cursor of the previous page, for the next one")}},
       {},
       true},
      {"get_task",
       "Get a task",
       "One task with its attempts.",
       {{"id", StringProp("Task id")}},
       {"id"},
       true},
      {"start_run",
       "Start a run",
       "Starts a run in the background and returns its id at once: either `feature` (a feature "
       "request in markdown: planned into tasks, built, verified) or `backlog` ({\"tasks\": [...]}"
       ", as BACKLOG.yaml: built without planning). Follow it with run_status.",
       {{"run_id", StringProp("Run id (default: a new one)")},
        {"feature", StringProp("The feature request (markdown)")},
        {"backlog",
         {{"type", "object"},
          {"description",
           "A backlog: {\"tasks\": [{\"id\", \"title\", \"description\", "
           "\"depends_on\", ...}]}"}}}},
       {}},
      {"run_status",
       "Run status",
       "A run's state and its tasks' states.",
       {{"run", run_arg}},
       {"run"},
       true},
      {"cancel_run",
       "Cancel a run",
       "Cancels every unfinished task of a run; workers holding one stop at their next step.",
       {{"run", run_arg}},
       {"run"}},
      {"retry_task",
       "Retry a task",
       "Puts a failed or blocked task back in the queue with its attempts reset.",
       {{"id", StringProp("Task id")}},
       {"id"}},
      {"costs",
       "Costs",
       "Model-call spend from the ledger, grouped.",
       {{"by", {{"type", "string"}, {"enum", {"agent", "model", "day", "run"}}}},
        {"since", StringProp("A date (2026-11-21), a time (2026-11-21T10:00:00Z) or an age "
                             "(90m, 12h, 7d)")}},
       {},
       true},
      {"stats",
       "Statistics",
       "Attempts, success rates, durations, tokens and cost, overall or of one run.",
       {{"run", run_arg}},
       {},
       true},
  };
}

json ToolError(const std::string& message) {
  return {{"content", json::array({{{"type", "text"}, {"text", message}}})}, {"isError", true}};
}

json ToolResult(json value) {
  json result = {{"content", json::array({{{"type", "text"}, {"text", value.dump(2)}}})}};
  result["structuredContent"] = std::move(value);
  return result;
}

json ToolFailure(const Error& error) { return ToolError(error.message); }

}  // namespace

McpServer::McpServer(Backend& backend, ServerInfo info)
    : backend_(backend), info_(std::move(info)) {
  dispatcher_.AddMethod("initialize", [this](const json& params) { return Initialize(params); });
  dispatcher_.AddMethod("ping", [](const json&) -> RpcResult { return json::object(); });
  dispatcher_.AddNotification("notifications/initialized", [](const json&) {});
  dispatcher_.AddNotification("notifications/cancelled", [](const json&) {});
  auto after_initialize = [this](RpcMethod method) -> RpcMethod {
    return [this, method = std::move(method)](const json& params) -> RpcResult {
      if (!initialized_) {
        return std::unexpected(RpcError{kInvalidRequest,
                                        "Invalid Request: the session is not initialized (send "
                                        "initialize first)"});
      }
      return method(params);
    };
  };
  dispatcher_.AddMethod("tools/list", after_initialize([this](const json&) -> RpcResult {
                          return json{{"tools", ToolList()}};
                        }));
  dispatcher_.AddMethod("tools/call",
                        after_initialize([this](const json& params) { return CallTool(params); }));
  dispatcher_.AddMethod("resources/list", after_initialize([this](const json& params) {
                          return ListResources(params);
                        }));
  dispatcher_.AddMethod("resources/templates/list", after_initialize([](const json&) -> RpcResult {
                          return json{{"resourceTemplates",
                                       json::array({{{"uriTemplate", "factory://runs/{run_id}"},
                                                     {"name", "run"},
                                                     {"title", "A run"},
                                                     {"description", "A run's state and its tasks"},
                                                     {"mimeType", "application/json"}},
                                                    {{"uriTemplate", "factory://tasks/{task_id}"},
                                                     {"name", "task"},
                                                     {"title", "A task"},
                                                     {"description", "A task with its attempts"},
                                                     {"mimeType", "application/json"}}})}};
                        }));
  dispatcher_.AddMethod("resources/read", after_initialize([this](const json& params) {
                          return ReadResource(params);
                        }));
}

std::optional<std::string> McpServer::Handle(std::string_view message) {
  return dispatcher_.Handle(message);
}

void McpServer::Serve(std::istream& in, std::ostream& out) {
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (auto response = Handle(line)) {
      out << *response << '\n';
      out.flush();
    }
  }
}

RpcResult McpServer::Initialize(const json& params) {
  auto version = params.find("protocolVersion");
  if (version == params.end() || !version->is_string()) {
    return std::unexpected(
        RpcError{kInvalidParams, "Invalid params: \"protocolVersion\" must be a string"});
  }
  const std::string requested = version->get<std::string>();
  std::string chosen(kProtocolVersions[0]);
  for (std::string_view known : kProtocolVersions) {
    if (known == requested) chosen = requested;
  }
  initialized_ = true;
  return json{
      {"protocolVersion", chosen},
      {"capabilities",
       {{"tools", {{"listChanged", false}}},
        {"resources", {{"subscribe", false}, {"listChanged", false}}}}},
      {"serverInfo", {{"name", info_.name}, {"version", info_.version}}},
      {"instructions",
       "Agent Factory: create tasks, start runs (a feature request or a backlog), follow them "
       "with run_status, and read runs and tasks as factory:// resources."}};
}

json McpServer::ToolList() const {
  json tools = json::array();
  for (const ToolDef& def : ToolDefs()) {
    json schema = {
        {"type", "object"}, {"properties", def.properties}, {"additionalProperties", false}};
    if (!def.required.empty()) schema["required"] = def.required;
    tools.push_back({{"name", def.name},
                     {"title", def.title},
                     {"description", def.description},
                     {"inputSchema", std::move(schema)},
                     {"annotations", {{"readOnlyHint", def.read_only}}}});
  }
  return tools;
}

RpcResult McpServer::CallTool(const json& params) {
  auto name_field = params.find("name");
  if (name_field == params.end() || !name_field->is_string()) {
    return std::unexpected(RpcError{kInvalidParams, "Invalid params: \"name\" must be a string"});
  }
  const std::string name = name_field->get<std::string>();
  const std::vector<ToolDef> defs = ToolDefs();
  auto def = std::find_if(defs.begin(), defs.end(),
                          [&](const ToolDef& tool) { return tool.name == name; });
  if (def == defs.end()) {
    return std::unexpected(RpcError{kInvalidParams, "Unknown tool: " + name});
  }
  const json arguments = params.value("arguments", json::object());
  if (!arguments.is_object()) return ToolError("arguments must be an object");
  for (const auto& [key, value] : arguments.items()) {
    if (!def->properties.contains(key)) {
      return ToolError("unknown argument '" + key + "' for tool " + name);
    }
  }
  for (const std::string& required : def->required) {
    if (!arguments.contains(required) || arguments[required].is_null()) {
      return ToolError("missing required argument '" + required + "'");
    }
  }
  const Args args(arguments);
  auto answer = [](Result<json> result) -> json {
    if (!result) return ToolFailure(result.error());
    return ToolResult(std::move(*result));
  };
#define FACTORY_MCP_ARG(lhs, expr)                               \
  auto lhs##_read = (expr);                                      \
  if (!lhs##_read) return ToolError(lhs##_read.error().message); \
  auto lhs = std::move(*lhs##_read)

  if (name == "create_task") {
    FACTORY_MCP_ARG(title, args.String("title", true));
    if (title.empty()) return ToolError("argument 'title' must not be empty");
    FACTORY_MCP_ARG(command, args.String("command", false));
    FACTORY_MCP_ARG(spec, args.String("spec", false));
    FACTORY_MCP_ARG(depends_on, args.Strings("depends_on"));
    FACTORY_MCP_ARG(priority, args.Integer("priority"));
    FACTORY_MCP_ARG(run, args.String("run", false));
    CreateTaskArgs create{.title = title,
                          .command = command,
                          .spec = spec,
                          .depends_on = depends_on,
                          .priority = priority.value_or(0),
                          .run = run};
    if (args.Find("idempotency_key") != nullptr) {
      FACTORY_MCP_ARG(key, args.String("idempotency_key", false));
      if (key.empty()) return ToolError("argument 'idempotency_key' must not be empty");
      create.idempotency_key = key;
    }
    return answer(backend_.CreateTask(create));
  }
  if (name == "list_tasks") {
    FACTORY_MCP_ARG(run, args.String("run", false));
    FACTORY_MCP_ARG(state, args.String("state", false));
    FACTORY_MCP_ARG(limit, args.Integer("limit"));
    FACTORY_MCP_ARG(cursor, args.String("cursor", false));
    const auto& states = def->properties["state"]["enum"];
    if (!state.empty() && std::find(states.begin(), states.end(), state) == states.end()) {
      return ToolError("argument 'state' must be one of " + states.dump());
    }
    if (limit && (*limit < 1 || *limit > 1000)) {
      return ToolError("argument 'limit' must be between 1 and 1000");
    }
    return answer(backend_.ListTasks({.run = run,
                                      .state = state,
                                      .limit = static_cast<int>(limit.value_or(100)),
                                      .cursor = cursor}));
  }
  if (name == "get_task" || name == "retry_task") {
    FACTORY_MCP_ARG(id, args.String("id", true));
    if (id.empty()) return ToolError("argument 'id' must not be empty");
    return answer(name == "get_task" ? backend_.GetTask(id) : backend_.RetryTask(id));
  }
  if (name == "start_run") {
    FACTORY_MCP_ARG(run_id, args.String("run_id", false));
    FACTORY_MCP_ARG(feature, args.String("feature", false));
    const json* backlog = args.Find("backlog");
    if (backlog != nullptr && !backlog->is_object()) {
      return ToolError("argument 'backlog' must be an object {\"tasks\": [...]}");
    }
    if (feature.empty() == (backlog == nullptr)) {
      return ToolError("give exactly one of the arguments 'feature' and 'backlog'");
    }
    if (backlog != nullptr && !(backlog->contains("tasks") && (*backlog)["tasks"].is_array())) {
      return ToolError("argument 'backlog' must have an array 'tasks'");
    }
    return answer(backend_.StartRun(StartRunArgs{
        .run_id = run_id, .feature = feature, .backlog = backlog ? *backlog : json()}));
  }
  if (name == "run_status" || name == "cancel_run") {
    FACTORY_MCP_ARG(run, args.String("run", true));
    if (run.empty()) return ToolError("argument 'run' must not be empty");
    return answer(name == "run_status" ? backend_.RunStatus(run) : backend_.CancelRun(run));
  }
  if (name == "costs") {
    FACTORY_MCP_ARG(by, args.String("by", false));
    FACTORY_MCP_ARG(since, args.String("since", false));
    const auto& groups = def->properties["by"]["enum"];
    if (!by.empty() && std::find(groups.begin(), groups.end(), by) == groups.end()) {
      return ToolError("argument 'by' must be one of " + groups.dump());
    }
    return answer(backend_.Costs({.by = by.empty() ? "agent" : by, .since = since}));
  }
  if (name == "stats") {
    FACTORY_MCP_ARG(run, args.String("run", false));
    return answer(backend_.Stats(run));
  }
#undef FACTORY_MCP_ARG
  return std::unexpected(RpcError{kInternalError, "tool " + name + " has no handler"});
}

RpcResult McpServer::ListResources(const json& params) {
  size_t offset = 0;
  if (auto cursor = params.find("cursor"); cursor != params.end() && !cursor->is_null()) {
    const std::string text = cursor->is_string() ? cursor->get<std::string>() : "";
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 9) {
      return std::unexpected(RpcError{kInvalidParams, "Invalid params: unknown \"cursor\""});
    }
    offset = std::stoul(text);
  }
  const int want = static_cast<int>(offset + kResourcePage + 1);
  auto runs = backend_.RunIds(want);
  if (!runs) return std::unexpected(RpcError{kInternalError, runs.error().message});
  auto tasks = backend_.TaskIds(want);
  if (!tasks) return std::unexpected(RpcError{kInternalError, tasks.error().message});
  json all = json::array();
  for (const std::string& id : *runs) {
    all.push_back(
        {{"uri", kRunScheme + id}, {"name", "run " + id}, {"mimeType", "application/json"}});
  }
  for (const std::string& id : *tasks) {
    all.push_back(
        {{"uri", kTaskScheme + id}, {"name", "task " + id}, {"mimeType", "application/json"}});
  }
  json page = json::array();
  for (size_t index = offset; index < all.size() && page.size() < kResourcePage; ++index) {
    page.push_back(all[index]);
  }
  json result = {{"resources", std::move(page)}};
  if (all.size() > offset + kResourcePage) {
    result["nextCursor"] = std::to_string(offset + kResourcePage);
  }
  return result;
}

RpcResult McpServer::ReadResource(const json& params) {
  auto uri_field = params.find("uri");
  if (uri_field == params.end() || !uri_field->is_string()) {
    return std::unexpected(RpcError{kInvalidParams, "Invalid params: \"uri\" must be a string"});
  }
  const std::string uri = uri_field->get<std::string>();
  Result<json> read = std::unexpected(Error{ErrorCode::kNotFound, ""});
  std::string_view rest;
  if (uri.starts_with(kRunScheme)) {
    rest = std::string_view(uri).substr(sizeof(kRunScheme) - 1);
    if (!rest.empty() && rest.find('/') == std::string_view::npos) {
      read = backend_.RunStatus(std::string(rest));
    }
  } else if (uri.starts_with(kTaskScheme)) {
    rest = std::string_view(uri).substr(sizeof(kTaskScheme) - 1);
    if (!rest.empty() && rest.find('/') == std::string_view::npos) {
      read = backend_.GetTask(std::string(rest));
    }
  } else {
    return std::unexpected(
        RpcError{kInvalidParams, "Invalid params: unknown resource URI " + uri +
                                     " (factory://runs/{run_id} or factory://tasks/{task_id})"});
  }
  if (!read) {
    if (read.error().code == ErrorCode::kNotFound) {
      return std::unexpected(RpcError{kResourceNotFound, "Resource not found", json{{"uri", uri}}});
    }
    return std::unexpected(RpcError{kInternalError, read.error().message});
  }
  return json{
      {"contents",
       json::array({{{"uri", uri}, {"mimeType", "application/json"}, {"text", read->dump(2)}}})}};
}

}  // namespace factory::mcp
