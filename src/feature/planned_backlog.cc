#include "feature/planned_backlog.h"

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "agents/registry.h"
#include "core/text_file.h"
#include "plan/scope.h"

namespace factory::feature {

namespace {

using json = nlohmann::json;

bool ParsesAsJson(std::string_view text) { return json::accept(text.begin(), text.end()); }

std::string Trimmed(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return std::string(text.substr(begin, end - begin));
}

// Whether `text` holds a character yaml-cpp's automatic style would write plain and a reader
// then changes or drops (a trailing carriage return vanished): a control character or a
// Unicode line break or byte order mark. `except` lists control characters to let pass.
bool HasFragileCharacter(std::string_view text, std::string_view except = {}) {
  for (size_t index = 0; index < text.size(); ++index) {
    const auto c = static_cast<unsigned char>(text[index]);
    if ((c < 0x20 || c == 0x7f) && except.find(text[index]) == std::string_view::npos) {
      return true;
    }
    for (const std::string_view special :
         {"\xC2\x85", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xEF\xBB\xBF"}) {
      if (text.substr(index, special.size()) == special) return true;
    }
  }
  return false;
}

// Whether yaml-cpp's literal block style (`|`, written without indentation or chomping
// indicators, so a reader keeps exactly one final line break) reads back as exactly `text`:
// one final line break, no white space starting the first line or ending the last, and no
// fragile character but tabs and line feeds. (Without a final line break the reader added
// one; trailing blank lines were dropped; an indented first line set the block's indentation
// and the next line ended it, so BACKLOG.yaml did not parse.)
bool LiteralReadsBackExactly(std::string_view text) {
  if (!text.ends_with('\n')) return false;
  const std::string_view body = text.substr(0, text.size() - 1);
  if (body.empty()) return false;
  for (const char edge : {body.front(), body.back()}) {
    if (edge == ' ' || edge == '\t' || edge == '\n') return false;
  }
  return !HasFragileCharacter(text, "\t\n");
}

// Writes `text` so that it reads back exactly: double-quoted, with escapes, when it holds a
// fragile character; else in yaml-cpp's automatic style.
void EmitText(YAML::Emitter& out, const std::string& text) {
  if (HasFragileCharacter(text)) out << YAML::DoubleQuoted;
  out << text;
}

void EmitFlowList(YAML::Emitter& out, const std::vector<std::string>& items) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& item : items) EmitText(out, item);
  out << YAML::EndSeq;
}

std::string ErrorLine(const std::string& label, const std::string& task, std::string field,
                      std::string message) {
  Diagnostic diagnostic;
  diagnostic.file = label;
  diagnostic.task = task;
  diagnostic.field = std::move(field);
  diagnostic.message = std::move(message);
  return diagnostic.ToString();
}

// The checks a planned backlog needs beyond plan/backlog.h's (see the header).
void CheckPlannedRules(const json& root, const PlannedBacklogOptions& options,
                       std::vector<std::string>& errors) {
  if (!root.is_object() || !root.contains("tasks") || !root["tasks"].is_array()) return;
  const json& tasks = root["tasks"];
  if (static_cast<int>(tasks.size()) > options.max_tasks) {
    errors.push_back(ErrorLine(options.label, "", "tasks",
                               "too many tasks: " + std::to_string(tasks.size()) + " (at most " +
                                   std::to_string(options.max_tasks) + ")"));
  }
  for (size_t index = 0; index < tasks.size(); ++index) {
    const json& task = tasks[index];
    if (!task.is_object()) continue;
    const std::string path = "tasks[" + std::to_string(index) + "]";
    const std::string id =
        task.contains("id") && task["id"].is_string() ? task["id"].get<std::string>() : "";
    if (!task.contains("acceptance") || task["acceptance"].is_null() ||
        (task["acceptance"].is_array() && task["acceptance"].empty())) {
      errors.push_back(ErrorLine(options.label, id, path + ".acceptance",
                                 "a planned task needs at least one acceptance criterion"));
    }
    // The paths the task may change: attempts outside them fail, so a planned task's reach is
    // what the plan says, never the whole repository.
    auto scope = task.find("scope");
    if (scope == task.end()) {  // a null or empty one is the backlog validator's error
      errors.push_back(ErrorLine(options.label, id, path + ".scope",
                                 "a planned task needs a scope: the globs of the paths it may "
                                 "change, e.g. [\"src/parser/**\", \"tests/parser/**\"]"));
    } else if (scope->is_array()) {
      for (size_t glob_index = 0; glob_index < scope->size(); ++glob_index) {
        const json& glob = (*scope)[glob_index];
        if (glob.is_string() && IsWholeRepositoryGlob(glob.get<std::string>())) {
          errors.push_back(ErrorLine(options.label, id,
                                     path + ".scope[" + std::to_string(glob_index) + "]",
                                     "'" + glob.get<std::string>() +
                                         "' matches the whole repository; name the folders and "
                                         "files this task changes"));
        }
      }
    }
    for (const char* key : {"allow_protected", "max_attempts"}) {
      if (task.contains(key)) {
        errors.push_back(ErrorLine(options.label, id, path + "." + key,
                                   "not allowed in a planned backlog (the project decides it)"));
      }
    }
  }
}

// CheckPlannedRules for a YAML file, with lines. Only what parses as the backlog's shape is
// checked (the backlog validator reports the rest).
void CheckPlannedRulesYaml(const YAML::Node& root, const PlannedBacklogOptions& options,
                           const std::string& file, std::vector<std::string>& errors) {
  if (!root.IsMap() || !root["tasks"] || !root["tasks"].IsSequence()) return;
  const YAML::Node tasks = root["tasks"];
  auto add = [&](const YAML::Node& at, const std::string& task, std::string field,
                 std::string message) {
    Diagnostic diagnostic;
    diagnostic.file = file;
    diagnostic.line = at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
    diagnostic.task = task;
    diagnostic.field = std::move(field);
    diagnostic.message = std::move(message);
    errors.push_back(diagnostic.ToString());
  };
  if (static_cast<int>(tasks.size()) > options.max_tasks) {
    add(tasks, "", "tasks",
        "too many tasks: " + std::to_string(tasks.size()) + " (at most " +
            std::to_string(options.max_tasks) + ")");
  }
  for (size_t index = 0; index < tasks.size(); ++index) {
    const YAML::Node task = tasks[index];
    if (!task.IsMap()) continue;
    const std::string path = "tasks[" + std::to_string(index) + "]";
    const std::string id =
        task["id"] && task["id"].IsScalar() ? task["id"].as<std::string>() : std::string();
    const YAML::Node acceptance = task["acceptance"];
    if (!acceptance || acceptance.IsNull() || (acceptance.IsSequence() && acceptance.size() == 0)) {
      add(acceptance && acceptance.IsDefined() ? acceptance : task, id, path + ".acceptance",
          "a planned task needs at least one acceptance criterion");
    }
    const YAML::Node scope = task["scope"];
    if (!scope) {
      add(task, id, path + ".scope",
          "a planned task needs a scope: the globs of the paths it may change, e.g. "
          "[\"src/parser/**\", \"tests/parser/**\"]");
    } else if (scope.IsSequence()) {
      for (size_t glob_index = 0; glob_index < scope.size(); ++glob_index) {
        const YAML::Node glob = scope[glob_index];
        if (glob.IsScalar() && IsWholeRepositoryGlob(glob.as<std::string>())) {
          add(glob, id, path + ".scope[" + std::to_string(glob_index) + "]",
              "'" + glob.as<std::string>() +
                  "' matches the whole repository; name the folders and files this task "
                  "changes");
        }
      }
    }
    for (const char* key : {"allow_protected", "max_attempts"}) {
      if (task[key]) {
        add(task[key], id, path + "." + key,
            "not allowed in a planned backlog (the project decides it)");
      }
    }
  }
}

}  // namespace

PlannedBacklogCheck CheckPlannedBacklogFile(const std::filesystem::path& path,
                                            const PlannedBacklogOptions& options) {
  PlannedBacklogCheck check;
  const std::string file = path.string();
  auto text = ReadTextFile(path, ReadTextOptions{});
  if (!text) {
    check.errors.push_back(text.error().message);
    return check;
  }
  BacklogOptions backlog_options;
  backlog_options.agents = options.agents;
  auto parsed = ParseBacklogYaml(*text, file, backlog_options);
  if (!parsed) {
    std::istringstream lines(parsed.error().message);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) check.errors.push_back(line);
    }
  }
  try {
    CheckPlannedRulesYaml(YAML::Load(*text), options, file, check.errors);
  } catch (const YAML::Exception&) {
    // Not YAML: the backlog validator has said so, with the line.
  }
  if (check.errors.empty() && parsed) check.backlog = std::move(*parsed);
  return check;
}

std::string ExtractJsonObject(std::string_view text) {
  const std::string trimmed = Trimmed(text);
  if (ParsesAsJson(trimmed)) return trimmed;
  // A Markdown fence, despite the instructions.
  if (size_t fence = trimmed.find("```"); fence != std::string::npos) {
    size_t body = trimmed.find('\n', fence);
    if (body != std::string::npos) {
      size_t close = trimmed.find("```", body + 1);
      if (close != std::string::npos) {
        std::string inside = Trimmed(std::string_view(trimmed).substr(body + 1, close - body - 1));
        if (ParsesAsJson(inside)) return inside;
      }
    }
  }
  // Prose around the object.
  const size_t open = trimmed.find('{');
  const size_t close = trimmed.rfind('}');
  if (open != std::string::npos && close != std::string::npos && close > open) {
    std::string inside = trimmed.substr(open, close - open + 1);
    if (ParsesAsJson(inside)) return inside;
  }
  return trimmed;
}

PlannedBacklogCheck CheckPlannedBacklog(std::string_view model_output,
                                        const PlannedBacklogOptions& options) {
  PlannedBacklogCheck check;
  check.json_text = ExtractJsonObject(model_output);
  if (check.json_text.empty()) {
    check.errors.push_back(ErrorLine(options.label, "", "", "the answer is empty"));
    return check;
  }
  BacklogOptions backlog_options;
  backlog_options.agents = options.agents;
  auto parsed = ParseBacklogJson(check.json_text, options.label, backlog_options);
  if (!parsed) {
    std::istringstream lines(parsed.error().message);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) check.errors.push_back(line);
    }
  }
  const json root = json::parse(check.json_text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_discarded()) CheckPlannedRules(root, options, check.errors);
  if (check.errors.empty() && parsed) check.backlog = std::move(*parsed);
  return check;
}

std::string BacklogToYaml(const Backlog& backlog, std::string_view header_comment) {
  YAML::Emitter out;
  if (!header_comment.empty()) out << YAML::Comment(std::string(header_comment)) << YAML::Newline;
  out << YAML::BeginMap << YAML::Key << "tasks" << YAML::Value << YAML::BeginSeq;
  for (const BacklogTask& task : backlog.tasks) {
    out << YAML::BeginMap;
    out << YAML::Key << "id" << YAML::Value;
    EmitText(out, task.id);
    out << YAML::Key << "title" << YAML::Value;
    EmitText(out, task.title);
    if (!task.description.empty()) {
      out << YAML::Key << "description" << YAML::Value;
      if (LiteralReadsBackExactly(task.description)) {
        out << YAML::Literal << task.description;
      } else if (task.description.find('\n') != std::string::npos) {
        out << YAML::DoubleQuoted << task.description;
      } else {
        EmitText(out, task.description);
      }
    }
    if (!task.acceptance.empty()) {
      out << YAML::Key << "acceptance" << YAML::Value << YAML::BeginSeq;
      for (const auto& item : task.acceptance) EmitText(out, item);
      out << YAML::EndSeq;
    }
    if (!task.depends_on.empty()) {
      out << YAML::Key << "depends_on" << YAML::Value;
      EmitFlowList(out, task.depends_on);
    }
    if (!task.type.empty()) {
      out << YAML::Key << "type" << YAML::Value;
      EmitText(out, task.type);
    }
    if (!task.capabilities.empty()) {
      out << YAML::Key << "capabilities" << YAML::Value;
      EmitFlowList(out, task.capabilities);
    }
    if (!task.agent.empty()) {
      out << YAML::Key << "agent" << YAML::Value;
      EmitText(out, task.agent);
    }
    if (task.priority != 0) out << YAML::Key << "priority" << YAML::Value << task.priority;
    if (task.max_attempts) {
      out << YAML::Key << "max_attempts" << YAML::Value << *task.max_attempts;
    }
    if (!task.allow_protected.empty()) {
      out << YAML::Key << "allow_protected" << YAML::Value;
      EmitFlowList(out, task.allow_protected);
    }
    if (!task.scope.empty()) {
      out << YAML::Key << "scope" << YAML::Value;
      EmitFlowList(out, task.scope);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace factory::feature
