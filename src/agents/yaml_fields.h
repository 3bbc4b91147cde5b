#pragma once
// Typed reads of fields from a parsed YAML document, reporting every type or range problem as a
// diagnostic at the file line of the offending node. Shared by the agent, config and backlog
// loaders so their messages read alike. Never throws: yaml-cpp exceptions are caught here.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agents/diagnostics.h"

namespace factory {

class YamlFields {
 public:
  // `line_offset` is the number of file lines before the YAML text (1 for front matter after
  // an opening '---'). With `with_lines` false (documents built from JSON, which carry no
  // marks) diagnostics have line 0 and are located by their field path alone.
  // `diagnostics` must outlive this object.
  explicit YamlFields(Diagnostics& diagnostics, int line_offset = 0, bool with_lines = true)
      : diagnostics_(diagnostics), line_offset_(line_offset), with_lines_(with_lines) {}

  // Parses `text`; a syntax error becomes a diagnostic at its line and nullopt is returned.
  std::optional<YAML::Node> Parse(std::string_view text);

  // 1-based file line of `node`, or 0 when unknown.
  [[nodiscard]] int Line(const YAML::Node& node) const;

  Diagnostics& diagnostics() { return diagnostics_; }

  // Every key of `map` not in `known` gives a warning "unknown field". Non-scalar keys and
  // keys given twice are errors. `prefix` is the field path of the map ("" for the root, "gates[1]"
  // ...).
  void WarnUnknownKeys(const YAML::Node& map, const std::string& prefix,
                       const std::set<std::string, std::less<>>& known,
                       const std::string& task = "");

  // Each reader returns nullopt and records an error when the node has the wrong type or is out
  // of range. A null node (`key:` with no value) counts as a wrong type: callers decide about
  // absent keys before calling.
  std::optional<std::string> String(const YAML::Node& node, const std::string& field,
                                    const std::string& task = "");
  std::optional<int64_t> Int(const YAML::Node& node, const std::string& field, int64_t min,
                             int64_t max, const std::string& task = "");
  std::optional<double> Number(const YAML::Node& node, const std::string& field, double min,
                               double max, const std::string& task = "");
  std::optional<bool> Bool(const YAML::Node& node, const std::string& field,
                           const std::string& task = "");
  // A list of non-empty strings; a single scalar is not accepted (it is a common mistake that
  // would otherwise silently become a one-element list).
  std::optional<std::vector<std::string>> StringList(const YAML::Node& node,
                                                     const std::string& field,
                                                     const std::string& task = "");

  // A list of environment variable names ([A-Za-z_][A-Za-z0-9_]*): `env:` of agents and of
  // config.yaml's sandbox.
  std::optional<std::vector<std::string>> EnvNameList(const YAML::Node& node,
                                                      const std::string& field,
                                                      const std::string& task = "");
  // A list of absolute paths (`sandbox.read_paths`).
  std::optional<std::vector<std::string>> AbsolutePathList(const YAML::Node& node,
                                                           const std::string& field,
                                                           const std::string& task = "");

  void AddError(const YAML::Node& node, const std::string& field, std::string message,
                const std::string& task = "");
  void AddWarning(const YAML::Node& node, const std::string& field, std::string message,
                  const std::string& task = "");

 private:
  Diagnostics& diagnostics_;
  int line_offset_;
  bool with_lines_;
};

// "prefix.key", or "key" when prefix is empty.
std::string JoinField(const std::string& prefix, std::string_view key);
// "prefix[index]".
std::string IndexField(const std::string& prefix, size_t index);

// Strict scalar conversions (the whole text must be the value); shared with duration parsing.
std::optional<int64_t> ParseInt64(std::string_view text);
std::optional<double> ParseFiniteDouble(std::string_view text);

}  // namespace factory
