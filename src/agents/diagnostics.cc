#include "agents/diagnostics.h"

namespace factory {

std::string Diagnostic::ToString() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (severity == Severity::kWarning) out += "warning: ";
  if (!task.empty()) out += "task '" + task + "': ";
  if (!field.empty()) out += "field '" + field + "': ";
  out += message;
  return out;
}

void Diagnostics::AddError(int line, std::string field, std::string message, std::string task) {
  all_.push_back(Diagnostic{Severity::kError, file_, line, std::move(task), std::move(field),
                            std::move(message)});
}

void Diagnostics::AddWarning(int line, std::string field, std::string message, std::string task) {
  all_.push_back(Diagnostic{Severity::kWarning, file_, line, std::move(task), std::move(field),
                            std::move(message)});
}

bool Diagnostics::has_errors() const {
  for (const auto& diagnostic : all_) {
    if (diagnostic.severity == Severity::kError) return true;
  }
  return false;
}

std::vector<Diagnostic> Diagnostics::errors() const {
  std::vector<Diagnostic> out;
  for (const auto& diagnostic : all_) {
    if (diagnostic.severity == Severity::kError) out.push_back(diagnostic);
  }
  return out;
}

std::vector<Diagnostic> Diagnostics::warnings() const {
  std::vector<Diagnostic> out;
  for (const auto& diagnostic : all_) {
    if (diagnostic.severity == Severity::kWarning) out.push_back(diagnostic);
  }
  return out;
}

Error Diagnostics::ToError() const {
  return Error{ErrorCode::kInvalidArgument, FormatDiagnostics(errors())};
}

std::string FormatDiagnostics(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const auto& diagnostic : diagnostics) {
    if (!out.empty()) out += "\n";
    out += diagnostic.ToString();
  }
  return out;
}

}  // namespace factory
