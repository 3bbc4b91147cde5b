#pragma once
// Diagnostics for user-written files (agent files, config, backlogs): every problem found is
// collected with its file, line and field, so one run of the validator reports all of them.
// Shared by agents/ and plan/ (plan depends on agents); a candidate for core/ once another
// module needs it.

#include <string>
#include <utility>
#include <vector>

#include "core/result.h"

namespace factory {

enum class Severity { kError, kWarning };

struct Diagnostic {
  Severity severity = Severity::kError;
  std::string file;   // as given by the caller (a path or a label such as "backlog (JSON)")
  int line = 0;       // 1-based file line; 0 when unknown (JSON input has no lines)
  std::string task;   // backlog task id, or "" when the problem is not about one task
  std::string field;  // full field path, e.g. "gates[1].timeout", "tasks[2].depends_on[0]"
  std::string message;

  // "file:LINE: task 'id': field 'path': message"; the parts that are empty are left out.
  [[nodiscard]] std::string ToString() const;
};

// Collects diagnostics for one input.
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void AddError(int line, std::string field, std::string message, std::string task = "");
  void AddWarning(int line, std::string field, std::string message, std::string task = "");
  void Add(Diagnostic diagnostic) { all_.push_back(std::move(diagnostic)); }

  [[nodiscard]] bool has_errors() const;
  [[nodiscard]] const std::string& file() const { return file_; }
  [[nodiscard]] const std::vector<Diagnostic>& all() const { return all_; }
  [[nodiscard]] std::vector<Diagnostic> errors() const;
  [[nodiscard]] std::vector<Diagnostic> warnings() const;

  // InvalidArgument whose message is every error, one per line, in the order found.
  // REQUIRES: has_errors()
  [[nodiscard]] Error ToError() const;

 private:
  std::string file_;
  std::vector<Diagnostic> all_;
};

// A successfully loaded value and the warnings (unknown fields...) found on the way. Loaders
// return Result<Loaded<T>>: errors make the whole load fail, warnings never do.
template <typename T>
struct Loaded {
  T value;
  std::vector<Diagnostic> warnings;
};

// Joins diagnostics one per line (for CLI output and error messages).
std::string FormatDiagnostics(const std::vector<Diagnostic>& diagnostics);

}  // namespace factory
