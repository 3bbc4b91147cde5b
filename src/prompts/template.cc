#include "prompts/template.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <set>
#include <utility>

namespace factory::prompts {
namespace {

using Node = PromptTemplate::Node;

constexpr int kMaxSectionDepth = 16;

std::unexpected<Error> FileError(const std::string& file, int line, const std::string& message) {
  return InvalidArgument(file + ":" + std::to_string(line) + ": " + message);
}

std::string_view StripEol(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool IsFenceLine(std::string_view line) {
  line = StripEol(line);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  return line == "---";
}

// The 1-based line of the first invalid UTF-8 sequence, or 0 when the text is valid.
int FirstInvalidUtf8Line(std::string_view text) {
  int line = 1;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte == '\n') ++line;
    size_t length = 0;
    if (byte < 0x80) {
      length = 1;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
      length = 2;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      length = 3;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      length = 4;
    } else {
      return line;
    }
    if (pos + length > text.size()) return line;
    for (size_t i = 1; i < length; ++i) {
      if ((static_cast<unsigned char>(text[pos + i]) & 0xC0) != 0x80) return line;
    }
    const auto second = length > 1 ? static_cast<unsigned char>(text[pos + 1]) : 0;
    // Overlong forms, UTF-16 surrogates and code points above U+10FFFF.
    if ((byte == 0xE0 && second < 0xA0) || (byte == 0xED && second >= 0xA0) ||
        (byte == 0xF0 && second < 0x90) || (byte == 0xF4 && second >= 0x90)) {
      return line;
    }
    pos += length;
  }
  return 0;
}

// Parses the body into nodes, checking every placeholder against the declared variables.
class BodyParser {
 public:
  // `first_line`: the file line the body starts on.
  BodyParser(std::string_view body, int first_line, const std::string& file,
             const std::set<std::string>& declared)
      : body_(body), line_(first_line), file_(file), declared_(declared) {}

  Result<std::vector<Node>> Parse() {
    std::vector<Node> nodes;
    FACTORY_ASSIGN_OR_RETURN(bool closed, ParseUntil(nodes, nullptr, 0));
    (void)closed;  // at top level a close tag is reported by ParseUntil itself
    return nodes;
  }

 private:
  // Parses into `out` until the end of the body (returns false) or until the {{/NAME}} that
  // closes `open` (returns true; `open` is null at top level).
  Result<bool> ParseUntil(std::vector<Node>& out, const Node* open, int depth) {
    while (pos_ < body_.size()) {
      const size_t start = body_.find("{{", pos_);
      const size_t text_end = start == std::string_view::npos ? body_.size() : start;
      if (text_end > pos_) {
        Node text{.kind = Node::Kind::kText,
                  .text = std::string(body_.substr(pos_, text_end - pos_)),
                  .line = line_};
        line_ += static_cast<int>(std::count(text.text.begin(), text.text.end(), '\n'));
        out.push_back(std::move(text));
        pos_ = text_end;
      }
      if (start == std::string_view::npos) break;

      const int tag_line = line_;
      const size_t close = body_.find("}}", start + 2);
      const size_t newline = body_.find('\n', start + 2);
      if (close == std::string_view::npos || newline < close) {
        return FileError(file_, tag_line, "'{{' is not closed by '}}' on the same line");
      }
      const std::string_view raw = body_.substr(start + 2, close - start - 2);
      pos_ = close + 2;
      std::string_view inner = raw;
      char sigil = 0;
      if (!inner.empty() &&
          (inner.front() == '#' || inner.front() == '^' || inner.front() == '/')) {
        sigil = inner.front();
        inner.remove_prefix(1);
      }
      while (!inner.empty() && inner.front() == ' ') inner.remove_prefix(1);
      while (!inner.empty() && inner.back() == ' ') inner.remove_suffix(1);
      const std::string name(inner);
      if (!IsValidVariableName(name)) {
        return FileError(file_, tag_line,
                         "invalid placeholder '{{" + std::string(raw) +
                             "}}': variable names are UPPER_SNAKE_CASE ([A-Z][A-Z0-9_]*)");
      }
      if (!declared_.contains(name)) {
        return FileError(file_, tag_line,
                         "variable " + name +
                             " is used but not declared in the front matter (under required: "
                             "or optional:)");
      }
      if (sigil == '/') {
        if (open == nullptr) {
          return FileError(file_, tag_line, "'{{/" + name + "}}' closes no open section");
        }
        if (open->text != name) {
          return FileError(file_, tag_line,
                           "'{{/" + name + "}}' does not close the section " + open->text +
                               " opened on line " + std::to_string(open->line));
        }
        return true;
      }
      if (sigil == 0) {
        out.push_back(Node{.kind = Node::Kind::kVariable, .text = name, .line = tag_line});
        continue;
      }
      if (depth >= kMaxSectionDepth) {
        return FileError(file_, tag_line, "sections nested more than 16 deep");
      }
      Node section{.kind = sigil == '#' ? Node::Kind::kSection : Node::Kind::kInvertedSection,
                   .text = name,
                   .line = tag_line};
      FACTORY_ASSIGN_OR_RETURN(bool closed, ParseUntil(section.children, &section, depth + 1));
      if (!closed) {
        return FileError(file_, tag_line,
                         "section " + name + " is never closed (expected {{/" + name + "}})");
      }
      out.push_back(std::move(section));
    }
    return false;
  }

  std::string_view body_;
  size_t pos_ = 0;
  int line_;
  const std::string& file_;
  const std::set<std::string>& declared_;
};

// Reads `required:` or `optional:` into variables.
Status ReadVariables(const YAML::Node& group, bool required, const std::string& file,
                     int line_offset, std::vector<PromptVariable>& variables) {
  const char* key = required ? "required" : "optional";
  if (!group.IsDefined() || group.IsNull()) return Ok();  // absent, or "required:" alone
  if (!group.IsMap()) {
    return FileError(file, group.Mark().line + 1 + line_offset,
                     std::string(key) + ": must be a mapping of VARIABLE: description");
  }
  for (const auto& entry : group) {
    const int line = entry.first.Mark().line + 1 + line_offset;
    const std::string name = entry.first.Scalar();
    if (!IsValidVariableName(name)) {
      return FileError(file, line,
                       std::string(key) + ": invalid variable name '" + name +
                           "' (UPPER_SNAKE_CASE: [A-Z][A-Z0-9_]*)");
    }
    for (const auto& existing : variables) {
      if (existing.name == name) {
        return FileError(file, line,
                         "variable " + name + " is declared twice (first on line " +
                             std::to_string(existing.line) + ")");
      }
    }
    if (!entry.second.IsScalar() || entry.second.Scalar().empty()) {
      return FileError(file, line,
                       std::string(key) + ": variable " + name +
                           " needs a one-line description of what the caller puts in it");
    }
    variables.push_back(PromptVariable{
        .name = name, .required = required, .description = entry.second.Scalar(), .line = line});
  }
  return Ok();
}

// A value without its trailing whitespace: the template decides the layout around it.
std::string_view ValueOf(const std::map<std::string, std::string>& values,
                         const std::string& name) {
  auto it = values.find(name);
  if (it == values.end()) return {};
  std::string_view value = it->second;
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' ' ||
                            value.back() == '\t')) {
    value.remove_suffix(1);
  }
  return value;
}

void RenderNodes(const std::vector<Node>& nodes, const std::map<std::string, std::string>& values,
                 std::string& out) {
  for (const Node& node : nodes) {
    switch (node.kind) {
      case Node::Kind::kText:
        out += node.text;
        break;
      case Node::Kind::kVariable:
        out += ValueOf(values, node.text);
        break;
      case Node::Kind::kSection:
      case Node::Kind::kInvertedSection: {
        const bool has_value = !ValueOf(values, node.text).empty();
        if (has_value == (node.kind == Node::Kind::kSection))
          RenderNodes(node.children, values, out);
        break;
      }
    }
  }
}

}  // namespace

bool IsValidVariableName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (name.front() < 'A' || name.front() > 'Z') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

const PromptVariable* PromptTemplate::FindVariable(std::string_view name) const {
  for (const auto& variable : variables_) {
    if (variable.name == name) return &variable;
  }
  return nullptr;
}

Result<PromptTemplate> PromptTemplate::Parse(std::string_view text, std::string name,
                                             std::string file) {
  if (const int bad_line = FirstInvalidUtf8Line(text); bad_line != 0) {
    return FileError(file, bad_line, "invalid UTF-8");
  }
  // Front matter: "---\n<yaml>---\n<body>".
  const size_t first_end = text.find('\n');
  if (first_end == std::string_view::npos || !IsFenceLine(text.substr(0, first_end))) {
    return FileError(file, 1,
                     "a prompt template must start with a '---' line (YAML front matter with "
                     "description:, required:, optional:)");
  }
  size_t pos = first_end + 1;
  int line = 2;
  size_t yaml_end = std::string_view::npos;
  size_t body_offset = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    const std::string_view current =
        text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (IsFenceLine(current)) {
      yaml_end = pos;
      body_offset = end == std::string_view::npos ? text.size() : end + 1;
      break;
    }
    if (end == std::string_view::npos) break;
    pos = end + 1;
    ++line;
  }
  if (yaml_end == std::string_view::npos) {
    return FileError(file, 1, "the front matter is not closed by a '---' line");
  }
  const int body_line = line + 1;
  const std::string yaml(text.substr(first_end + 1, yaml_end - first_end - 1));
  const int line_offset = 1;  // the YAML starts on file line 2

  PromptTemplate prompt;
  prompt.name_ = std::move(name);
  prompt.file_ = std::move(file);
  prompt.text_ = std::string(text);
  prompt.body_offset_ = body_offset;
  const std::string& path = prompt.file_;

  try {
    const YAML::Node root = YAML::Load(yaml);
    if (!root.IsMap()) {
      return FileError(path, 2,
                       "the front matter must be a YAML mapping (description:, required:, "
                       "optional:)");
    }
    bool has_description = false;
    for (const auto& entry : root) {
      const std::string key = entry.first.Scalar();
      const int key_line = entry.first.Mark().line + 1 + line_offset;
      if (key == "description") {
        if (!entry.second.IsScalar() || entry.second.Scalar().empty()) {
          return FileError(path, key_line, "description: must be a non-empty string");
        }
        prompt.description_ = entry.second.Scalar();
        has_description = true;
      } else if (key != "required" && key != "optional") {
        return FileError(path, key_line,
                         "unknown field '" + key +
                             "' (a prompt's front matter has description:, required:, optional:)");
      }
    }
    if (!has_description) {
      return FileError(path, 2, "the front matter needs a description: of what the prompt is for");
    }
    FACTORY_RETURN_IF_ERROR(
        ReadVariables(root["required"], true, path, line_offset, prompt.variables_));
    FACTORY_RETURN_IF_ERROR(
        ReadVariables(root["optional"], false, path, line_offset, prompt.variables_));
  } catch (const YAML::Exception& e) {
    return FileError(path, e.mark.line + 1 + line_offset,
                     "invalid YAML in the front matter: " + e.msg);
  } catch (const std::exception& e) {
    return FileError(path, 2, std::string("cannot read the front matter: ") + e.what());
  }

  std::set<std::string> declared;
  for (const auto& variable : prompt.variables_) declared.insert(variable.name);
  BodyParser parser(prompt.body(), body_line, path, declared);
  FACTORY_ASSIGN_OR_RETURN(prompt.nodes_, parser.Parse());
  return prompt;
}

Result<std::string> PromptTemplate::Render(const std::map<std::string, std::string>& values) const {
  for (const auto& variable : variables_) {
    if (variable.required && !values.contains(variable.name)) {
      return FileError(
          file_, variable.line,
          "prompt " + name_ + ": required variable " + variable.name + " was not provided");
    }
  }
  std::string out;
  out.reserve(body().size());
  RenderNodes(nodes_, values, out);
  return out;
}

}  // namespace factory::prompts
