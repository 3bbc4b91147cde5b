#include "runners/internal/runner_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/text_file.h"

namespace factory::runners_internal {
namespace {

namespace fs = std::filesystem;

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

std::string Utf8Tail(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t start = text.size() - max_bytes;
  // At most 3 continuation bytes belong to a character whose lead byte was cut off.
  for (int skipped = 0; skipped < 3 && start < text.size() && IsContinuationByte(text[start]);
       ++skipped) {
    ++start;
  }
  return std::string(text.substr(start));
}

std::string OneLine(std::string_view text, size_t max_bytes) {
  std::string line;
  line.reserve(std::min(text.size(), max_bytes));
  for (char c : text) {
    line += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  size_t first = line.find_first_not_of(' ');
  line.erase(0, first == std::string::npos ? line.size() : first);
  if (line.size() <= max_bytes) return line;
  size_t cut = max_bytes;
  while (cut > 0 && IsContinuationByte(line[cut])) --cut;
  line.resize(cut);
  return line + "...";
}

Result<std::string> WriteTaskFile(const RunnerContext& context) {
  if (context.sandbox == nullptr) return InvalidArgument("runner context without a sandbox");
  if (context.worktree.empty() || context.worktree.front() != '/') {
    return InvalidArgument("the worktree must be an absolute path: '" + context.worktree + "'");
  }
  if (context.attempt_dir.empty() || context.attempt_dir.front() != '/') {
    return InvalidArgument("the attempt directory must be an absolute path: '" +
                           context.attempt_dir + "'");
  }
  std::error_code error;
  if (!fs::is_directory(context.attempt_dir, error)) {
    return NotFound("attempt directory does not exist: " + context.attempt_dir);
  }
  const std::string path = context.attempt_dir + "/task.json";
  FACTORY_RETURN_IF_ERROR(WriteTextFile(path, TaskFileJson(context.input)));
  return path;
}

std::map<std::string, std::string> RunnerEnv(const RunnerContext& context,
                                             const std::string& task_file) {
  // Only what is set here reaches the agent, on top of the sandbox's clean environment.
  std::map<std::string, std::string> env = context.extra_env;
  env["FACTORY_TASK_ID"] = context.input.task_id;
  env["FACTORY_TASK_FILE"] = task_file;
  env["FACTORY_WORKTREE"] = context.worktree;
  env["FACTORY_ATTEMPT"] = std::to_string(context.input.attempt);
  env["FACTORY_RUN_ID"] = context.input.run_id;
  return env;
}

std::vector<std::string> AttemptFiles(const std::map<std::string, std::string>& env) {
  std::vector<std::string> files;
  for (const char* name : {"FACTORY_TASK_FILE", "FACTORY_PROMPT_FILE"}) {
    auto it = env.find(name);
    std::error_code error;
    if (it != env.end() && !it->second.empty() && it->second.front() == '/' &&
        fs::is_regular_file(it->second, error)) {
      files.push_back(it->second);
    }
  }
  return files;
}

void FillOutcomeFromProcess(const SubprocessResult& process, const RunnerContext& context,
                            std::string_view error_detail, RunnerOutcome& outcome) {
  const int64_t timeout_ms = context.timeout_ms;
  outcome.exit_code = process.exit_code;
  outcome.timed_out = process.timed_out;
  outcome.cancelled = process.cancelled;
  outcome.duration_ms = process.duration_ms;
  outcome.success =
      process.exit_code == 0 && !process.timed_out && !process.cancelled && !process.quota_exceeded;
  if (process.quota_exceeded) {
    outcome.error = DiskQuotaMessage(context.sandbox->disk_quota_mb());
  } else if (process.timed_out) {
    outcome.error = "timed out after " + std::to_string((timeout_ms + 999) / 1000) + "s";
  } else if (process.cancelled) {
    outcome.error = "cancelled";
  } else if (process.exit_code != 0) {
    outcome.error = "exit " + std::to_string(process.exit_code);
    if (process.signal) outcome.error += " (signal " + std::to_string(*process.signal) + ")";
    std::string detail = Utf8Tail(error_detail, 2048);
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    if (!detail.empty()) outcome.error += ": " + detail;
  }
}

std::string CombinedTail(std::string_view out, std::string_view err, size_t max_bytes) {
  if (err.empty()) return Utf8Tail(out, max_bytes);
  static constexpr std::string_view kMarker = "\n[stderr]\n";
  if (out.empty()) return Utf8Tail(err, max_bytes);
  const size_t budget = max_bytes > kMarker.size() ? max_bytes - kMarker.size() : 0;
  const size_t err_budget = std::max(budget / 2, budget - std::min(out.size(), budget / 2));
  std::string err_tail = Utf8Tail(err, err_budget);
  std::string out_tail = Utf8Tail(out, budget - err_tail.size());
  return out_tail + std::string(kMarker) + err_tail;
}

bool FoundOnPath(const std::string& program, const std::string& path_value) {
  auto executable = [](const std::string& candidate) {
    struct stat st {};
    return ::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(candidate.c_str(), X_OK) == 0;
  };
  if (program.empty()) return false;
  if (program.find('/') != std::string::npos) return executable(program);
  std::stringstream dirs(path_value.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_value);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) dir = ".";
    if (executable(dir + "/" + program)) return true;
  }
  return false;
}

std::string EffectivePath(const std::map<std::string, std::string>& extra_env) {
  auto it = extra_env.find("PATH");
  if (it != extra_env.end()) return it->second;
  const char* path = std::getenv("PATH");
  return path != nullptr ? path : "";
}

}  // namespace factory::runners_internal
