#include "verify/gates.h"

#include <chrono>
#include <filesystem>
#include <string>

namespace factory {
namespace {

namespace fs = std::filesystem;

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// The last `max_bytes` of `text`, starting on a UTF-8 character boundary.
std::string Utf8Tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t start = text.size() - max_bytes;
  for (int skipped = 0; skipped < 3 && start < text.size() && IsContinuationByte(text[start]);
       ++skipped) {
    ++start;
  }
  return text.substr(start);
}

std::string LogFileName(size_t index, const std::string& name) {
  std::string safe;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    safe += ok ? c : '_';
  }
  if (safe.empty() || safe.front() == '.') safe.insert(0, "gate");
  return std::to_string(index + 1) + "-" + safe + ".log";
}

std::string Seconds(int64_t ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms / 1000) + "." + std::to_string((ms % 1000) / 100) + "s";
}

}  // namespace

Result<GateResult> RunCommandGate(const GateConfig& gate, size_t index, const std::string& checkout,
                                  const GateRunOptions& options) {
  if (options.sandbox == nullptr) return InvalidArgument("RunGates needs a sandbox");
  if (!options.logs_dir.empty()) {
    std::error_code error;
    fs::create_directories(options.logs_dir, error);
    if (error) return Internal("cannot create gate logs directory " + options.logs_dir);
  }
  GateResult result;
  result.name = gate.name;
  result.command = gate.command;
  result.timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(gate.timeout).count();

  SandboxedCommand command;
  // stderr joins stdout so the tail reads as the user would see it in a terminal.
  command.shell = "exec 2>&1\n" + gate.command;
  command.worktree = checkout;
  command.network = options.network;
  command.limits = options.limits;
  command.timeout_ms = result.timeout_ms;
  command.tail_bytes = options.tail_bytes;
  command.cancel = options.cancel;
  command.disk_quota = options.disk_quota;
  if (!options.logs_dir.empty()) {
    result.log_path = (fs::path(options.logs_dir) / LogFileName(index, gate.name)).string();
    command.stdout_path = result.log_path;
  }
  auto process = options.sandbox->Run(command);
  if (!process) return std::unexpected(process.error().Wrap("gate '" + gate.name + "'"));

  result.exit_code = process->exit_code;
  result.timed_out = process->timed_out;
  result.cancelled = process->cancelled;
  result.quota_exceeded = process->quota_exceeded;
  if (result.quota_exceeded) {
    result.quota_message = DiskQuotaMessage(options.sandbox->disk_quota_mb());
  }
  result.duration_ms = process->duration_ms;
  std::string output = process->stdout_tail;
  if (!process->stderr_tail.empty()) output += process->stderr_tail;  // the shell's own errors
  result.output_tail = Utf8Tail(output, options.tail_bytes);
  result.passed = process->exit_code == 0 && !process->timed_out && !process->cancelled &&
                  !process->quota_exceeded;
  return result;
}

Result<std::vector<GateResult>> RunGates(const std::vector<GateConfig>& gates,
                                         const std::string& checkout,
                                         const GateRunOptions& options) {
  if (options.sandbox == nullptr) return InvalidArgument("RunGates needs a sandbox");
  std::vector<GateResult> results;
  for (size_t index = 0; index < gates.size(); ++index) {
    if (options.cancel != nullptr && options.cancel->load()) break;
    FACTORY_ASSIGN_OR_RETURN(GateResult result,
                             RunCommandGate(gates[index], index, checkout, options));
    const bool stop = !result.passed;
    results.push_back(std::move(result));
    if (stop) break;
  }
  return results;
}

std::vector<std::string> ProtectedViolations(const ProjectConfig& config,
                                             const std::vector<std::string>& changed,
                                             const std::vector<std::string>& allow_protected) {
  std::vector<std::string> violations;
  for (const auto& path : changed) {
    if (config.ProtectedMatch(path, allow_protected)) violations.push_back(path);
  }
  return violations;
}

std::string GateFeedback(const GateResult& failed) {
  std::string text = "Gate '" + failed.name + "'";
  if (!failed.command.empty()) text += " (`" + failed.command + "`)";
  if (failed.quota_exceeded) {
    text += " was killed: " + failed.quota_message + ".";
  } else if (failed.timed_out) {
    text += " timed out after " +
            Seconds(failed.timeout_ms > 0 ? failed.timeout_ms : failed.duration_ms) +
            " and was killed.";
  } else if (failed.cancelled) {
    text += " was cancelled.";
  } else {
    text += " failed with exit code " + std::to_string(failed.exit_code) + ".";
  }
  if (failed.output_tail.empty()) {
    text += "\nIt printed nothing.\n";
  } else {
    text += "\nThe end of its output:\n\n" + failed.output_tail;
    if (text.back() != '\n') text += '\n';
  }
  return text;
}

GateRunOptions GateOptionsFromPolicy(const SandboxPolicy& policy, Sandbox* sandbox) {
  constexpr int64_t kMiB = 1024 * 1024;
  GateRunOptions options;
  options.sandbox = sandbox;
  options.network = policy.network;
  options.limits.cpu_seconds = policy.cpu_seconds;
  options.limits.memory_bytes = policy.memory_mb * kMiB;
  options.limits.file_size_bytes = policy.file_size_mb * kMiB;
  options.limits.max_processes = policy.max_processes;
  return options;
}

}  // namespace factory
