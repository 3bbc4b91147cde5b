#include "plan/backlog.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "agents/agent.h"
#include "agents/registry.h"
#include "agents/yaml_fields.h"
#include "core/text_file.h"
#include "plan/glob.h"
#include "plan/scope.h"
#include "queue/dag.h"

namespace factory {
namespace {

const std::set<std::string, std::less<>> kTopLevelKeys = {"tasks"};
const std::set<std::string, std::less<>> kTaskKeys = {
    "id",           "title", "description", "acceptance",   "depends_on",      "type",
    "capabilities", "agent", "priority",    "max_attempts", "allow_protected", "scope"};

// Report no more than this many cycles: past a handful, more names help nobody.
constexpr int kMaxCyclesReported = 10;

// A task as parsed, with the nodes later checks point at. The optional nodes are set only
// when the field is present: yaml-cpp's Node assignment rebinds (and throws on a missing key),
// so nodes here are only ever copy-constructed.
struct ParsedTask {
  explicit ParsedTask(const YAML::Node& task_node) : node(task_node) {}
  BacklogTask task;
  std::string path;  // "tasks[i]"
  YAML::Node node;
  std::optional<YAML::Node> id_node;
  std::optional<YAML::Node> agent_node;
  std::optional<YAML::Node> type_node;
  std::optional<YAML::Node> capabilities_node;
  std::optional<YAML::Node> depends_node;
  std::vector<YAML::Node> dep_nodes;  // parallel to task.depends_on

  // The field's node when present, else the task's own (for "missing field" messages).
  const YAML::Node& At(const std::optional<YAML::Node>& field) const {
    return field ? *field : node;
  }
};

class BacklogParser {
 public:
  BacklogParser(YamlFields& fields, const BacklogOptions& options, bool with_lines)
      : fields_(fields), options_(options), with_lines_(with_lines) {}

  std::optional<Backlog> Parse(const YAML::Node& root) {
    if (!root.IsMap()) {
      fields_.AddError(root, "", "a backlog must be a mapping with a 'tasks' list");
      return std::nullopt;
    }
    fields_.WarnUnknownKeys(root, "", kTopLevelKeys);
    const YAML::Node tasks = root["tasks"];
    if (!tasks.IsDefined() || tasks.IsNull()) {
      fields_.AddError(root, "tasks", "missing required field 'tasks'");
      return std::nullopt;
    }
    if (!tasks.IsSequence()) {
      fields_.AddError(tasks, "tasks", "must be a list of tasks");
      return std::nullopt;
    }
    if (tasks.size() == 0) {
      fields_.AddError(tasks, "tasks", "the backlog has no tasks");
      return std::nullopt;
    }
    std::vector<ParsedTask> parsed;
    for (size_t index = 0; index < tasks.size(); ++index) {
      if (auto task = ParseTask(tasks[index], IndexField("tasks", index))) {
        parsed.push_back(std::move(*task));
      }
    }
    std::map<std::string, const ParsedTask*> by_id = CheckIds(parsed);
    CheckDependencies(parsed, by_id);
    CheckAgents(parsed);
    if (fields_.diagnostics().has_errors()) return std::nullopt;

    DependencyGraph graph;
    for (const auto& item : parsed) graph[item.task.id] = item.task.depends_on;
    auto order = TopologicalOrder(graph);
    if (!order) {  // cannot happen after the checks above; never hide it if it does
      fields_.diagnostics().AddError(0, "tasks", order.error().message);
      return std::nullopt;
    }
    Backlog backlog;
    backlog.source = fields_.diagnostics().file();
    for (const auto& id : *order) backlog.tasks.push_back(by_id.at(id)->task);
    return backlog;
  }

 private:
  std::string Where(const ParsedTask& item) const {
    return with_lines_ ? "line " + std::to_string(fields_.Line(item.At(item.id_node))) : item.path;
  }

  std::optional<ParsedTask> ParseTask(const YAML::Node& node, const std::string& path) {
    if (!node.IsMap()) {
      fields_.AddError(node, path, "a task must be a mapping with at least id and title");
      return std::nullopt;
    }
    ParsedTask item(node);
    item.path = path;
    item.task.line = fields_.Line(node);
    BacklogTask& task = item.task;

    // The id first: every later message about this task names it.
    const YAML::Node id_node = node["id"];
    if (!id_node.IsDefined() || id_node.IsNull()) {
      fields_.AddError(node, JoinField(path, "id"), "missing required field 'id'");
    } else if (auto id = fields_.String(id_node, JoinField(path, "id"))) {
      item.id_node.emplace(id_node);
      if (!IsValidName(*id)) {
        fields_.AddError(id_node, JoinField(path, "id"),
                         "'" + *id +
                             "' is not a valid task id (letters, digits, '.', '_', '-'; "
                             "starting with a letter or digit; at most 64 characters)");
      } else {
        task.id = *id;
      }
    }
    const std::string& label = task.id;
    fields_.WarnUnknownKeys(node, path, kTaskKeys, label);

    auto present = [&](const char* key) {
      const YAML::Node value = node[key];
      return value.IsDefined() && !value.IsNull();
    };
    auto field = [&](const char* key) { return JoinField(path, key); };

    if (!present("title")) {
      fields_.AddError(node, field("title"), "missing required field 'title'", label);
    } else if (auto title = fields_.String(node["title"], field("title"), label)) {
      if (title->empty()) {
        fields_.AddError(node["title"], field("title"), "must not be empty", label);
      }
      task.title = *title;
    }
    if (present("description")) {
      if (auto text = fields_.String(node["description"], field("description"), label)) {
        task.description = *text;
      }
    }
    if (present("acceptance")) {
      if (auto list = fields_.StringList(node["acceptance"], field("acceptance"), label)) {
        task.acceptance = *list;
      }
    }
    if (present("depends_on")) {
      const YAML::Node depends_node = node["depends_on"];
      item.depends_node.emplace(depends_node);
      if (auto list = fields_.StringList(depends_node, field("depends_on"), label)) {
        std::set<std::string> seen;
        for (size_t index = 0; index < list->size(); ++index) {
          const std::string& dep = (*list)[index];
          if (!seen.insert(dep).second) {
            fields_.AddWarning(depends_node[index], IndexField(field("depends_on"), index),
                               "'" + dep + "' is listed twice", label);
            continue;
          }
          task.depends_on.push_back(dep);
          item.dep_nodes.push_back(depends_node[index]);
        }
      }
    }
    if (present("type")) {
      item.type_node.emplace(node["type"]);
      if (auto type = fields_.String(*item.type_node, field("type"), label)) task.type = *type;
    }
    if (present("capabilities")) {
      item.capabilities_node.emplace(node["capabilities"]);
      if (auto list = fields_.StringList(*item.capabilities_node, field("capabilities"), label)) {
        task.capabilities = *list;
      }
    }
    if (present("agent")) {
      item.agent_node.emplace(node["agent"]);
      if (auto agent = fields_.String(*item.agent_node, field("agent"), label)) {
        if (agent->empty()) {
          fields_.AddError(*item.agent_node, field("agent"), "must name an agent", label);
        }
        task.agent = *agent;
      }
    }
    if (present("priority")) {
      if (auto priority =
              fields_.Int(node["priority"], field("priority"), -1000000, 1000000, label)) {
        task.priority = static_cast<int>(*priority);
      }
    }
    if (present("max_attempts")) {
      if (auto attempts = fields_.Int(node["max_attempts"], field("max_attempts"), 1, 100, label)) {
        task.max_attempts = static_cast<int>(*attempts);
      }
    }
    if (present("allow_protected")) {
      const YAML::Node globs_node = node["allow_protected"];
      if (auto globs = fields_.StringList(globs_node, field("allow_protected"), label)) {
        for (size_t index = 0; index < globs->size(); ++index) {
          if (std::string why = CheckGlob((*globs)[index]); !why.empty()) {
            fields_.AddError(globs_node[index], IndexField(field("allow_protected"), index), why,
                             label);
          }
        }
        task.allow_protected = *globs;
      }
    }
    if (node["scope"].IsDefined()) {
      // Present but null or empty is a mistake, not "the whole repository": that is leaving
      // the field out.
      const YAML::Node scope_node = node["scope"];
      if (scope_node.IsNull() || (scope_node.IsSequence() && scope_node.size() == 0)) {
        fields_.AddError(scope_node, field("scope"),
                         "must list at least one glob (leave `scope` out for the whole "
                         "repository)",
                         label);
      } else if (auto globs = fields_.StringList(scope_node, field("scope"), label)) {
        for (size_t index = 0; index < globs->size(); ++index) {
          if (std::string why = CheckScopeGlob((*globs)[index]); !why.empty()) {
            fields_.AddError(scope_node[index], IndexField(field("scope"), index), why, label);
          }
        }
        task.scope = *globs;
      }
    }
    return item;
  }

  // Duplicate ids; returns the first task of each id.
  std::map<std::string, const ParsedTask*> CheckIds(const std::vector<ParsedTask>& parsed) {
    std::map<std::string, const ParsedTask*> by_id;
    for (const auto& item : parsed) {
      if (item.task.id.empty()) continue;
      auto [it, inserted] = by_id.emplace(item.task.id, &item);
      if (!inserted) {
        fields_.AddError(
            item.At(item.id_node), JoinField(item.path, "id"),
            "duplicate task id '" + item.task.id + "' (also defined at " + Where(*it->second) + ")",
            item.task.id);
      }
    }
    return by_id;
  }

  void CheckDependencies(const std::vector<ParsedTask>& parsed,
                         const std::map<std::string, const ParsedTask*>& by_id) {
    DependencyGraph graph;
    for (const auto& item : parsed) {
      if (item.task.id.empty() || by_id.at(item.task.id) != &item) continue;
      std::vector<std::string>& edges = graph[item.task.id];
      for (size_t index = 0; index < item.task.depends_on.size(); ++index) {
        const std::string& dep = item.task.depends_on[index];
        if (!by_id.contains(dep)) {
          fields_.AddError(item.dep_nodes[index], DependencyField(item, dep),
                           "unknown dependency '" + dep + "'", item.task.id);
          continue;
        }
        edges.push_back(dep);
      }
    }
    // Report each cycle, then break it by dropping its closing edge, so independent cycles are
    // all named in one pass.
    for (int reported = 0; reported < kMaxCyclesReported; ++reported) {
      std::optional<std::vector<std::string>> cycle = FindCycle(graph);
      if (!cycle) break;
      const ParsedTask& first = *by_id.at(cycle->front());
      fields_.AddError(first.At(first.depends_node), JoinField(first.path, "depends_on"),
                       "dependency cycle: " + FormatCycle(*cycle), first.task.id);
      const std::string& from = (*cycle)[cycle->size() - 2];
      std::vector<std::string>& edges = graph[from];
      std::erase(edges, cycle->back());
    }
  }

  std::string DependencyField(const ParsedTask& item, const std::string& dep) const {
    if (!item.depends_node) return JoinField(item.path, "depends_on");
    const YAML::Node& list = *item.depends_node;
    for (size_t index = 0; list.IsSequence() && index < list.size(); ++index) {
      if (list[index].IsScalar() && list[index].Scalar() == dep) {
        return IndexField(JoinField(item.path, "depends_on"), index);
      }
    }
    return JoinField(item.path, "depends_on");
  }

  void CheckAgents(const std::vector<ParsedTask>& parsed) {
    if (options_.agents == nullptr) return;
    for (const auto& item : parsed) {
      const BacklogTask& task = item.task;
      AgentRequest request{task.type, task.capabilities, task.agent};
      auto chosen = options_.agents->Resolve(request);
      if (chosen) continue;
      if (!task.agent.empty()) {
        fields_.AddError(item.At(item.agent_node), JoinField(item.path, "agent"),
                         "unknown agent '" + task.agent + "'", task.id);
      } else if (chosen.error().code == ErrorCode::kNotFound) {
        // The config's default agent for this type does not exist.
        fields_.AddError(item.At(item.type_node), JoinField(item.path, "type"),
                         chosen.error().message, task.id);
      } else {
        fields_.AddError(item.At(item.capabilities_node), JoinField(item.path, "capabilities"),
                         "no agent can take this task: " + chosen.error().message, task.id);
      }
    }
  }

  YamlFields& fields_;
  const BacklogOptions& options_;
  bool with_lines_;
};

// JSON values as a YAML document without marks, so one validator serves both formats.
YAML::Node JsonToYaml(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return YAML::Node(YAML::NodeType::Null);
    case nlohmann::json::value_t::object: {
      YAML::Node map(YAML::NodeType::Map);
      for (const auto& [key, child] : value.items()) map[key] = JsonToYaml(child);
      return map;
    }
    case nlohmann::json::value_t::array: {
      YAML::Node seq(YAML::NodeType::Sequence);
      for (const auto& child : value) seq.push_back(JsonToYaml(child));
      return seq;
    }
    case nlohmann::json::value_t::string:
      return YAML::Node(value.get<std::string>());
    default:  // numbers and booleans keep their JSON spelling
      return YAML::Node(value.dump());
  }
}

// Parses and validates `root`. Every access is checked first; catching here is the last line of
// defence so that no yaml-cpp exception ever leaves the module.
Result<Loaded<Backlog>> Validate(const YAML::Node& root, YamlFields& fields,
                                 const BacklogOptions& options, bool with_lines) {
  Diagnostics& diagnostics = fields.diagnostics();
  try {
    BacklogParser parser(fields, options, with_lines);
    std::optional<Backlog> backlog = parser.Parse(root);
    if (!backlog || diagnostics.has_errors()) return std::unexpected(diagnostics.ToError());
    return Loaded<Backlog>{std::move(*backlog), diagnostics.warnings()};
  } catch (const YAML::Exception& e) {
    return InvalidArgument(diagnostics.file() + ": cannot read backlog: " + e.what());
  }
}

}  // namespace

const BacklogTask* Backlog::Find(std::string_view id) const {
  for (const auto& task : tasks) {
    if (task.id == id) return &task;
  }
  return nullptr;
}

Result<Loaded<Backlog>> ParseBacklogYaml(std::string_view text, const std::string& file,
                                         const BacklogOptions& options) {
  Diagnostics diagnostics(file);
  YamlFields fields(diagnostics);
  std::optional<YAML::Node> root = fields.Parse(text);
  if (!root) return std::unexpected(diagnostics.ToError());
  return Validate(*root, fields, options, /*with_lines=*/true);
}

Result<Loaded<Backlog>> ParseBacklogJson(std::string_view text, const std::string& label,
                                         const BacklogOptions& options) {
  Diagnostics diagnostics(label);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // The parse error's text carries the line and column of the problem.
    diagnostics.AddError(0, "", std::string("invalid JSON: ") + e.what());
    return std::unexpected(diagnostics.ToError());
  }
  YamlFields fields(diagnostics, 0, /*with_lines=*/false);
  return Validate(JsonToYaml(json), fields, options, /*with_lines=*/false);
}

Result<Loaded<Backlog>> LoadBacklog(const std::filesystem::path& path,
                                    const BacklogOptions& options) {
  auto text = ReadTextFile(path);
  if (!text && text.error().code == ErrorCode::kNotFound) {
    return NotFound("cannot read backlog " + path.string());
  }
  if (!text) return std::unexpected(text.error());
  if (path.extension() == ".json") return ParseBacklogJson(*text, path.string(), options);
  return ParseBacklogYaml(*text, path.string(), options);
}

}  // namespace factory
