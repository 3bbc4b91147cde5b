#include "toolloop/tools.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string_view>

namespace factory::toolloop {
namespace {

using nlohmann::json;

constexpr size_t kMaxGrepLineBytes = 300;    // a matching line is shown up to this length
constexpr size_t kMaxRegexLineBytes = 4096;  // longer lines are not regex-matched (std::regex
                                             // recursion can exhaust the stack)
// std::regex compiles a pattern by recursive descent: tens of thousands of nested groups from a
// model exhaust the stack and kill the factory. Real patterns are far shorter.
constexpr size_t kMaxRegexPatternBytes = 1024;

struct ToolDef {
  const char* name;
  const char* description;
  const char* schema;
};

constexpr ToolDef kTools[] = {
    {"read_file",
     "Read a text file of the worktree. Returns its content (up to 256 KB per call). Use offset "
     "(1-based first line) and limit (number of lines) to page through large files.",
     R"({"type":"object","properties":{"path":{"type":"string","description":"relative to the worktree root"},"offset":{"type":"integer","minimum":1},"limit":{"type":"integer","minimum":1}},"required":["path"]})"},
    {"write_file",
     "Create or replace a file of the worktree with the given content (parent directories are "
     "created).",
     R"({"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]})"},
    {"edit_file",
     "Replace one exact occurrence of `search` in a file with `replace`. Fails when `search` "
     "does not occur or occurs more than once (add surrounding lines to make it unique).",
     R"({"type":"object","properties":{"path":{"type":"string"},"search":{"type":"string"},"replace":{"type":"string"}},"required":["path","search","replace"]})"},
    {"list_dir", "List a directory of the worktree (default: the root), with file sizes.",
     R"({"type":"object","properties":{"path":{"type":"string"}}})"},
    {"grep",
     "Search files below `path` (default: the root) for `pattern`, a literal string unless "
     "regex is true (ECMAScript syntax). Returns path:line: text, at most 200 matches.",
     R"({"type":"object","properties":{"pattern":{"type":"string"},"path":{"type":"string"},"regex":{"type":"boolean"}},"required":["pattern"]})"},
    {"run_command",
     "Run a shell command (/bin/sh -c) in the worktree inside the sandbox. Returns the exit code "
     "and the tail of stdout and stderr.",
     R"({"type":"object","properties":{"command":{"type":"string"},"timeout_s":{"type":"integer","minimum":1,"description":"default 120"}},"required":["command"]})"},
    {"finish",
     "Call when the task is done, with a short summary of what you changed. Ends the session.",
     R"({"type":"object","properties":{"summary":{"type":"string"}},"required":["summary"]})"},
};

ToolResult Fail(std::string message) { return ToolResult{SanitizeUtf8(message), false, false, {}}; }
ToolResult Succeed(std::string output) { return ToolResult{SanitizeUtf8(output), true, false, {}}; }

// Argument accessors: an error text for the model when missing or ill-typed.
class Args {
 public:
  explicit Args(const json& object) : object_(object) {}

  std::optional<std::string> String(const char* name, bool required, std::string& error) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null()) {
      if (required) error = std::string("missing required argument '") + name + "' (string)";
      return std::nullopt;
    }
    if (!it->is_string()) {
      error = std::string("argument '") + name + "' must be a string";
      return std::nullopt;
    }
    return it->get<std::string>();
  }
  std::optional<int64_t> Integer(const char* name, std::string& error) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null()) return std::nullopt;
    if (it->is_number_integer() || it->is_number_unsigned()) return it->get<int64_t>();
    if (it->is_number_float()) {
      // Checked before the conversion, which is undefined outside int64_t's range (1e300).
      const double value = it->get<double>();
      if (value >= -9.2e18 && value <= 9.2e18 && value == std::trunc(value)) {
        return static_cast<int64_t>(value);
      }
    }
    error = std::string("argument '") + name + "' must be an integer";
    return std::nullopt;
  }
  std::optional<bool> Bool(const char* name, std::string& error) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) {
      error = std::string("argument '") + name + "' must be a boolean";
      return std::nullopt;
    }
    return it->get<bool>();
  }

 private:
  const json& object_;
};

size_t CountOccurrences(std::string_view text, std::string_view needle) {
  size_t count = 0;
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

bool LooksBinary(std::string_view content) {
  return content.substr(0, 8192).find('\0') != std::string_view::npos;
}

ToolResult ReadFileTool(const ToolEnv& env, const Args& args) {
  std::string error;
  auto path = args.String("path", true, error);
  auto offset = args.Integer("offset", error);
  auto limit = args.Integer("limit", error);
  if (!error.empty()) return Fail(error);
  if (offset && *offset < 1) return Fail("offset must be >= 1 (a 1-based line number)");
  if (limit && *limit < 1) return Fail("limit must be >= 1");
  auto content = env.fs->ReadFile(*path);
  if (!content) return Fail(content.error().message);
  if (LooksBinary(*content)) {
    return Fail("'" + *path + "' is a binary file (" + std::to_string(content->size()) +
                " bytes); not shown");
  }
  // Select lines [first, first + limit).
  const int64_t first = offset.value_or(1);
  size_t start = 0;
  for (int64_t line = 1; line < first && start < content->size(); ++line) {
    const size_t newline = content->find('\n', start);
    start = newline == std::string::npos ? content->size() : newline + 1;
  }
  if (start >= content->size() && !content->empty() && first > 1) {
    return Fail("offset " + std::to_string(first) + " is past the end of '" + *path + "'");
  }
  size_t end = content->size();
  int64_t last_line = first - 1;
  {
    size_t pos = start;
    int64_t taken = 0;
    while (pos < content->size() && (!limit || taken < *limit)) {
      const size_t newline = content->find('\n', pos);
      pos = newline == std::string::npos ? content->size() : newline + 1;
      ++taken;
    }
    end = pos;
    last_line = first - 1 + taken;
  }
  bool truncated = false;
  if (end - start > kMaxReadBytes) {
    // Cut at the last line boundary inside the cap.
    size_t cut = content->rfind('\n', start + kMaxReadBytes - 1);
    end = (cut == std::string::npos || cut < start) ? start + kMaxReadBytes : cut + 1;
    last_line = first - 1 +
                static_cast<int64_t>(
                    CountOccurrences(std::string_view(*content).substr(start, end - start), "\n"));
    truncated = true;
  }
  std::string out = content->substr(start, end - start);
  const bool whole = start == 0 && end == content->size();
  if (!whole) {
    out += "\n[showing lines " + std::to_string(first) + "-" + std::to_string(last_line) + " of '" +
           *path + "' (" + std::to_string(content->size()) + " bytes)";
    if (truncated) {
      out += "; truncated at 256 KB, call read_file with offset=" + std::to_string(last_line + 1) +
             " to continue";
    }
    out += "]";
  }
  return Succeed(std::move(out));
}

// A file is replaced through a new file beside it: until the rename both exist, so the whole
// new size must fit in the attempt's disk quota.
Status ReserveDisk(const ToolEnv& env, size_t bytes) {
  if (env.disk_quota == nullptr) return Ok();
  if (auto fits = env.disk_quota->Reserve(static_cast<int64_t>(bytes)); !fits) {
    return ResourceExhausted("not written: " + fits.error().message);
  }
  return Ok();
}

ToolResult WriteFileTool(const ToolEnv& env, const Args& args) {
  std::string error;
  auto path = args.String("path", true, error);
  auto content = error.empty() ? args.String("content", true, error) : std::nullopt;
  if (!error.empty()) return Fail(error);
  if (auto fits = ReserveDisk(env, content->size()); !fits) return Fail(fits.error().message);
  if (auto written = env.fs->WriteFile(*path, *content); !written) {
    return Fail(written.error().message);
  }
  return Succeed("wrote " + std::to_string(content->size()) + " bytes to '" + *path + "'");
}

ToolResult EditFileTool(const ToolEnv& env, const Args& args) {
  std::string error;
  auto path = args.String("path", true, error);
  auto search = error.empty() ? args.String("search", true, error) : std::nullopt;
  auto replace = error.empty() ? args.String("replace", true, error) : std::nullopt;
  if (!error.empty()) return Fail(error);
  if (search->empty()) return Fail("'search' must not be empty");
  auto content = env.fs->ReadFile(*path);
  if (!content) return Fail(content.error().message);
  const size_t count = CountOccurrences(*content, *search);
  if (count == 0) {
    return Fail("the search text was not found in '" + *path +
                "' (it must match exactly, including whitespace); read the file first");
  }
  if (count > 1) {
    return Fail("the search text occurs " + std::to_string(count) + " times in '" + *path +
                "'; include more surrounding text so that it occurs exactly once");
  }
  std::string updated = *content;
  updated.replace(updated.find(*search), search->size(), *replace);
  if (auto fits = ReserveDisk(env, updated.size()); !fits) return Fail(fits.error().message);
  if (auto written = env.fs->WriteFile(*path, updated); !written) {
    return Fail(written.error().message);
  }
  return Succeed("edited '" + *path + "': replaced 1 occurrence (" +
                 std::to_string(search->size()) + " -> " + std::to_string(replace->size()) +
                 " bytes)");
}

ToolResult ListDirTool(const ToolEnv& env, const Args& args) {
  std::string error;
  auto path = args.String("path", false, error);
  if (!error.empty()) return Fail(error);
  const std::string dir = path.value_or("");
  auto entries = env.fs->ListDir(dir);
  if (!entries) return Fail(entries.error().message);
  std::string out;
  size_t shown = 0;
  for (const auto& entry : *entries) {
    if (shown++ == kMaxListEntries) {
      out += "[" + std::to_string(entries->size() - kMaxListEntries) + " more entries not shown]\n";
      break;
    }
    switch (entry.type) {
      case DirEntry::Type::kDirectory:
        out += entry.name + "/\n";
        break;
      case DirEntry::Type::kFile:
        out += entry.name + "  (" + std::to_string(entry.size) + " bytes)\n";
        break;
      case DirEntry::Type::kSymlink:
        out += entry.name + "  (symlink, not followed)\n";
        break;
      case DirEntry::Type::kOther:
        out += entry.name + "  (special file)\n";
        break;
    }
  }
  if (entries->empty()) out = "(empty directory)\n";
  return Succeed(std::move(out));
}

ToolResult GrepTool(const ToolEnv& env, const Args& args) {
  std::string error;
  auto pattern = args.String("pattern", true, error);
  auto path = error.empty() ? args.String("path", false, error) : std::nullopt;
  auto use_regex = args.Bool("regex", error);
  if (!error.empty()) return Fail(error);
  if (pattern->empty()) return Fail("'pattern' must not be empty");
  std::optional<std::regex> regex;
  if (use_regex.value_or(false)) {
    if (pattern->size() > kMaxRegexPatternBytes) {
      return Fail("the regular expression is longer than " + std::to_string(kMaxRegexPatternBytes) +
                  " bytes; use a shorter one");
    }
    try {
      regex.emplace(*pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return Fail(std::string("invalid regular expression: ") + e.what());
    }
  }
  const std::string start = path.value_or("");
  std::vector<std::string> files;
  // A single file is searched as itself.
  if (auto normalized = NormalizePath(start); !normalized) {
    return Fail(normalized.error().message);
  }
  auto listed = env.fs->ListDir(start);
  if (!listed) {
    if (listed.error().code == ErrorCode::kPermissionDenied) {
      // ENOTDIR: maybe a regular file (or a refused symlink: ReadFile below tells which).
      files.push_back(start);
    } else {
      return Fail(listed.error().message);
    }
  } else {
    auto walked = env.fs->Walk(start, [&](const DirEntry& entry) {
      if (entry.type == DirEntry::Type::kFile && entry.size <= int64_t{kMaxGrepFileBytes}) {
        files.push_back(entry.name);
      }
      return files.size() < 100'000;
    });
    if (!walked) return Fail(walked.error().message);
  }
  std::string out;
  size_t matches = 0;
  bool capped = false;
  for (const auto& file : files) {
    auto content = env.fs->ReadFile(file, kMaxGrepFileBytes);
    if (!content) {
      if (files.size() == 1) return Fail(content.error().message);
      continue;
    }
    if (LooksBinary(*content)) continue;
    size_t line_start = 0;
    for (int64_t line_number = 1; line_start < content->size() && !capped; ++line_number) {
      size_t newline = content->find('\n', line_start);
      if (newline == std::string::npos) newline = content->size();
      const std::string_view line =
          std::string_view(*content).substr(line_start, newline - line_start);
      line_start = newline + 1;
      bool hit = false;
      if (regex) {
        if (line.size() <= kMaxRegexLineBytes) {
          try {
            hit = std::regex_search(line.begin(), line.end(), *regex);
          } catch (const std::exception&) {
            hit = false;  // regex_error (complexity) on a pathological line: treat as no match
          }
        }
      } else {
        hit = line.find(*pattern) != std::string_view::npos;
      }
      if (!hit) continue;
      if (matches == kMaxGrepMatches) {
        capped = true;
        break;
      }
      ++matches;
      out += file + ":" + std::to_string(line_number) + ": ";
      out += line.size() > kMaxGrepLineBytes
                 ? std::string(line.substr(0, kMaxGrepLineBytes)) + "..."
                 : std::string(line);
      out += '\n';
    }
    if (capped) break;
  }
  if (matches == 0) return Succeed("no matches");
  if (capped) out += "[stopped at " + std::to_string(kMaxGrepMatches) + " matches]\n";
  return Succeed(std::move(out));
}

ToolResult RunCommandTool(const ToolEnv& env, const Args& args) {
  std::string error;
  auto command = args.String("command", true, error);
  auto timeout_s = args.Integer("timeout_s", error);
  if (!error.empty()) return Fail(error);
  if (command->empty()) return Fail("'command' must not be empty");
  if (env.sandbox == nullptr) return Fail("run_command is not available here");
  int64_t timeout_ms =
      std::clamp<int64_t>(timeout_s.value_or(kDefaultCommandTimeoutS), 1, kMaxCommandTimeoutS) *
      1000;
  if (env.max_command_timeout_ms > 0) timeout_ms = std::min(timeout_ms, env.max_command_timeout_ms);
  SandboxedCommand sandboxed;
  sandboxed.shell = *command;
  sandboxed.worktree = env.fs->root();
  sandboxed.network = env.network;
  sandboxed.env = env.command_env;
  sandboxed.pass_env = env.pass_env;
  sandboxed.timeout_ms = timeout_ms;
  sandboxed.limits = env.limits;
  sandboxed.tail_bytes = env.command_tail_bytes;
  sandboxed.cancel = env.cancel;
  sandboxed.disk_quota = env.disk_quota;
  auto result = env.sandbox->Run(sandboxed);
  if (!result) return Fail("the command could not be started: " + result.error().message);
  std::string out = "exit code " + std::to_string(result->exit_code);
  if (result->timed_out) out += " (timed out after " + std::to_string(timeout_ms / 1000) + " s)";
  if (result->cancelled) out += " (cancelled)";
  if (result->quota_exceeded) {
    out += " (killed: " + DiskQuotaMessage(env.sandbox->disk_quota_mb()) + ")";
  }
  out += "\n";
  const auto section = [&](const char* name, const std::string& tail, int64_t total) {
    out += std::string("--- ") + name;
    if (total > static_cast<int64_t>(tail.size())) {
      out += " (last " + std::to_string(tail.size()) + " of " + std::to_string(total) + " bytes)";
    }
    out += " ---\n" + tail;
    if (!tail.empty() && tail.back() != '\n') out += '\n';
  };
  section("stdout", result->stdout_tail, result->stdout_bytes);
  section("stderr", result->stderr_tail, result->stderr_bytes);
  ToolResult tool = Succeed(std::move(out));
  tool.ok = result->exit_code == 0 && !result->timed_out;
  return tool;
}

ToolResult FinishTool(const Args& args) {
  std::string error;
  auto summary = args.String("summary", true, error);
  if (!error.empty()) return Fail(error);
  ToolResult result = Succeed("finished");
  result.finished = true;
  result.summary = SanitizeUtf8(*summary);
  return result;
}

bool Allowed(const std::vector<std::string>& allowed, std::string_view name) {
  return name == kFinishTool || allowed.empty() ||
         std::find(allowed.begin(), allowed.end(), name) != allowed.end();
}

}  // namespace

std::map<std::string, std::string> CommandEnvironment(
    const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (const char* name :
       {"HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM", "TMPDIR", "SHELL"}) {
    if (const char* value = std::getenv(name); value != nullptr) env[name] = value;
  }
  for (const auto& [name, value] : extra) env[name] = value;
  return env;
}

std::vector<llm::ToolSpec> ToolSpecs(const std::vector<std::string>& allowed) {
  std::vector<llm::ToolSpec> specs;
  for (const auto& tool : kTools) {
    if (Allowed(allowed, tool.name)) specs.push_back({tool.name, tool.description, tool.schema});
  }
  return specs;
}

ToolResult ExecuteTool(const ToolEnv& env, const llm::ToolCall& call) {
  try {
    const auto known = std::find_if(std::begin(kTools), std::end(kTools),
                                    [&](const ToolDef& tool) { return call.name == tool.name; });
    if (known == std::end(kTools)) {
      std::string names;
      for (const auto& spec : ToolSpecs(env.allowed))
        names += (names.empty() ? "" : ", ") + spec.name;
      return Fail("unknown tool '" + call.name + "'; available: " + names);
    }
    if (!Allowed(env.allowed, call.name)) {
      return Fail("tool '" + call.name + "' is not allowed for this agent");
    }
    json arguments = json::parse(call.arguments_json.empty() ? "{}" : call.arguments_json, nullptr,
                                 /*allow_exceptions=*/false);
    if (arguments.is_discarded() || !arguments.is_object()) {
      return Fail("the arguments of '" + call.name + "' are not a JSON object");
    }
    const Args args(arguments);
    if (call.name == "read_file") return ReadFileTool(env, args);
    if (call.name == "write_file") return WriteFileTool(env, args);
    if (call.name == "edit_file") return EditFileTool(env, args);
    if (call.name == "list_dir") return ListDirTool(env, args);
    if (call.name == "grep") return GrepTool(env, args);
    if (call.name == "run_command") return RunCommandTool(env, args);
    return FinishTool(args);
  } catch (const std::exception& e) {
    return Fail(std::string("internal error in tool '") + call.name + "': " + e.what());
  }
}

}  // namespace factory::toolloop
