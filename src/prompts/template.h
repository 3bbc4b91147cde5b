#pragma once
// One prompt template: a Markdown file with YAML front matter that documents its variables,
// and a body with `{{VAR}}` placeholders.
//
//   ---
//   description: One implementation attempt of one task.
//   required:                       # the caller must provide these
//     TASK_TITLE: the task's title
//   optional:                       # empty when the caller does not provide them
//     FEEDBACK: why the previous attempt failed
//   ---
//   # Task: {{TASK_TITLE}}
//   {{#FEEDBACK}}## Previous attempt
//   {{FEEDBACK}}{{/FEEDBACK}}
//
// Body syntax (a small subset of Mustache, no HTML escaping):
//   {{NAME}}              the value of NAME (UPPER_SNAKE_CASE; spaces inside the braces allowed)
//   {{#NAME}}...{{/NAME}} the enclosed text only when NAME's value is not empty
//   {{^NAME}}...{{/NAME}} the enclosed text only when NAME's value is empty
// Every variable the body uses must be declared under `required:` or `optional:`; a template
// that uses an undeclared one, or has a malformed or unclosed placeholder, fails to parse with
// an error naming the file and line. Values are inserted verbatim without their trailing
// whitespace (the template decides the line breaks around them) and never rescanned, so a value
// may itself contain "{{". A value that is only whitespace counts as empty for sections.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace factory::prompts {

struct PromptVariable {
  std::string name;
  bool required = false;
  std::string description;
  int line = 0;  // file line of its declaration in the front matter
};

class PromptTemplate {
 public:
  // Parses a template. `file` names it in errors ("prompts/implement.md"); `name` is what the
  // library calls it (the file's stem). InvalidArgument "FILE:LINE: message" on any problem.
  static Result<PromptTemplate> Parse(std::string_view text, std::string name, std::string file);

  const std::string& name() const { return name_; }
  const std::string& file() const { return file_; }
  const std::string& description() const { return description_; }
  // Declared variables: required ones first, each group in the order written.
  const std::vector<PromptVariable>& variables() const { return variables_; }
  // nullptr when `name` is not declared.
  const PromptVariable* FindVariable(std::string_view name) const;
  // The whole file as written (front matter included).
  const std::string& text() const { return text_; }
  // The body (after the front matter), unrendered.
  std::string_view body() const { return std::string_view(text_).substr(body_offset_); }

  // Renders the body. Every required variable must be in `values` (InvalidArgument naming the
  // variable and FILE:LINE of its declaration otherwise); optional variables that are absent
  // render as empty. Values for names the template does not declare are ignored: callers pass
  // everything they have and a template (a project override in particular) uses what it needs.
  Result<std::string> Render(const std::map<std::string, std::string>& values) const;

  // One parsed piece of the body. Public so the implementation's helpers can build it.
  struct Node {
    enum class Kind { kText, kVariable, kSection, kInvertedSection };
    Kind kind = Kind::kText;
    std::string text;  // kText: the text; otherwise the variable's name
    int line = 0;
    std::vector<Node> children;  // sections only
  };

 private:
  std::string name_;
  std::string file_;
  std::string description_;
  std::vector<PromptVariable> variables_;
  std::string text_;
  size_t body_offset_ = 0;
  std::vector<Node> nodes_;
};

// True for UPPER_SNAKE_CASE names: [A-Z][A-Z0-9_]*.
bool IsValidVariableName(std::string_view name);

}  // namespace factory::prompts
