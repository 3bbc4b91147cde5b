#include "agents/yaml_fields.h"

#include <charconv>
#include <cmath>
#include <map>

namespace factory {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string FormatNumber(double value) {
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  std::string text = std::to_string(value);
  while (!text.empty() && text.back() == '0') text.pop_back();
  return text;
}

}  // namespace

std::string JoinField(const std::string& prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  return prefix + "." + std::string(key);
}

std::string IndexField(const std::string& prefix, size_t index) {
  return prefix + "[" + std::to_string(index) + "]";
}

std::optional<int64_t> ParseInt64(std::string_view text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> ParseFiniteDouble(std::string_view text) {
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<YAML::Node> YamlFields::Parse(std::string_view text) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    // e.mark is 0-based and may be null (-1) for errors without a position.
    int line = e.mark.line >= 0 && with_lines_ ? e.mark.line + 1 + line_offset_ : 0;
    diagnostics_.AddError(line, "", "invalid YAML: " + e.msg);
    return std::nullopt;
  }
}

int YamlFields::Line(const YAML::Node& node) const {
  if (!with_lines_ || !node.IsDefined()) return 0;
  YAML::Mark mark = node.Mark();
  if (mark.line < 0) return 0;
  return mark.line + 1 + line_offset_;
}

void YamlFields::AddError(const YAML::Node& node, const std::string& field, std::string message,
                          const std::string& task) {
  diagnostics_.AddError(Line(node), field, std::move(message), task);
}

void YamlFields::AddWarning(const YAML::Node& node, const std::string& field, std::string message,
                            const std::string& task) {
  diagnostics_.AddWarning(Line(node), field, std::move(message), task);
}

void YamlFields::WarnUnknownKeys(const YAML::Node& map, const std::string& prefix,
                                 const std::set<std::string, std::less<>>& known,
                                 const std::string& task) {
  if (!map.IsMap()) return;
  std::map<std::string, int> seen;  // key -> line of its first occurrence
  for (const auto& entry : map) {
    if (!entry.first.IsScalar()) {
      AddError(entry.first, prefix, "keys must be plain names", task);
      continue;
    }
    const std::string& key = entry.first.Scalar();
    if (auto [it, inserted] = seen.emplace(key, Line(entry.first)); !inserted) {
      // yaml-cpp silently keeps the first of two equal keys; the author meant one of them.
      AddError(entry.first, JoinField(prefix, key),
               "duplicate key (first at line " + std::to_string(it->second) + ")", task);
      continue;
    }
    if (!known.contains(key)) {
      AddWarning(entry.first, JoinField(prefix, key), "unknown field (ignored)", task);
    }
  }
}

std::optional<std::string> YamlFields::String(const YAML::Node& node, const std::string& field,
                                              const std::string& task) {
  if (!node.IsScalar()) {
    AddError(node, field, "must be a string", task);
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<int64_t> YamlFields::Int(const YAML::Node& node, const std::string& field,
                                       int64_t min, int64_t max, const std::string& task) {
  std::string expectation = "must be an integer";
  if (max == INT64_MAX) {
    expectation += " >= " + std::to_string(min);
  } else {
    expectation += " between " + std::to_string(min) + " and " + std::to_string(max);
  }
  std::optional<int64_t> value;
  if (node.IsScalar()) value = ParseInt64(node.Scalar());
  if (!value || *value < min || *value > max) {
    std::string got = node.IsScalar() ? " (got '" + node.Scalar() + "')" : "";
    AddError(node, field, expectation + got, task);
    return std::nullopt;
  }
  return value;
}

std::optional<double> YamlFields::Number(const YAML::Node& node, const std::string& field,
                                         double min, double max, const std::string& task) {
  std::optional<double> value;
  if (node.IsScalar()) value = ParseFiniteDouble(node.Scalar());
  if (!value || *value < min || *value > max) {
    std::string got = node.IsScalar() ? " (got '" + node.Scalar() + "')" : "";
    AddError(node, field,
             "must be a number between " + FormatNumber(min) + " and " + FormatNumber(max) + got,
             task);
    return std::nullopt;
  }
  return value;
}

std::optional<bool> YamlFields::Bool(const YAML::Node& node, const std::string& field,
                                     const std::string& task) {
  if (node.IsScalar()) {
    std::string text = Lower(node.Scalar());
    if (text == "true" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "no" || text == "off") return false;
  }
  AddError(node, field, "must be true or false", task);
  return std::nullopt;
}

std::optional<std::vector<std::string>> YamlFields::StringList(const YAML::Node& node,
                                                               const std::string& field,
                                                               const std::string& task) {
  if (!node.IsSequence()) {
    AddError(node, field, "must be a list of strings", task);
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (size_t index = 0; index < node.size(); ++index) {
    const YAML::Node item = node[index];
    if (!item.IsScalar() || item.Scalar().empty()) {
      AddError(item, IndexField(field, index), "must be a non-empty string", task);
      ok = false;
      continue;
    }
    out.push_back(item.Scalar());
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<std::string>> YamlFields::EnvNameList(const YAML::Node& node,
                                                                const std::string& field,
                                                                const std::string& task) {
  auto names = StringList(node, field, task);
  if (!names) return std::nullopt;
  bool ok = true;
  for (size_t index = 0; index < names->size(); ++index) {
    const std::string& name = (*names)[index];
    bool valid = !(name[0] >= '0' && name[0] <= '9');
    for (char c : name) {
      valid = valid && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '_');
    }
    if (!valid) {
      AddError(node[index], IndexField(field, index),
               "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got '" + name + "'",
               task);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return names;
}

std::optional<std::vector<std::string>> YamlFields::AbsolutePathList(const YAML::Node& node,
                                                                     const std::string& field,
                                                                     const std::string& task) {
  auto paths = StringList(node, field, task);
  if (!paths) return std::nullopt;
  bool ok = true;
  for (size_t index = 0; index < paths->size(); ++index) {
    if ((*paths)[index].front() != '/') {
      AddError(node[index], IndexField(field, index),
               "must be an absolute path, got '" + (*paths)[index] + "'", task);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return paths;
}

}  // namespace factory
