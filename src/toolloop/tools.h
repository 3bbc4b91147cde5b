#pragma once
// The tools of the built-in tool loop and their JSON schemas:
//   read_file(path, offset?, limit?)   offset: 1-based first line; limit: number of lines
//   write_file(path, content)
//   edit_file(path, search, replace)   exact text; must occur exactly once
//   list_dir(path?)
//   grep(pattern, path?, regex?)       literal unless regex=true (ECMAScript); .git skipped
//   run_command(command, timeout_s?)   /bin/sh -c in the sandbox, worktree as cwd
//   finish(summary)
// Every path goes through WorkspaceFs (see workspace_fs.h for the confinement rules).
// A tool never fails the loop: bad arguments, refused paths and failing commands all come back
// as text for the model (ok = false), always valid UTF-8.

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/subprocess.h"
#include "llm/types.h"
#include "toolloop/workspace_fs.h"
#include "workspace/sandbox.h"

namespace factory::toolloop {

inline constexpr char kFinishTool[] = "finish";
inline constexpr size_t kMaxGrepMatches = 200;
inline constexpr size_t kMaxGrepFileBytes = 1024 * 1024;  // larger files are skipped
inline constexpr size_t kMaxListEntries = 1000;
inline constexpr int64_t kDefaultCommandTimeoutS = 120;
inline constexpr int64_t kMaxCommandTimeoutS = 1800;

// What the tools act on. All pointers are not owned and must outlive the calls.
struct ToolEnv {
  const WorkspaceFs* fs = nullptr;  // REQUIRES: non-null
  Sandbox* sandbox = nullptr;       // null: run_command answers that commands are unavailable
  // The attempt's disk quota: run_command's commands count against it, and write_file and
  // edit_file are refused once a write would pass it (the quota is then exceeded, which ends
  // the tool loop). Null: writes are not metered.
  DiskQuota* disk_quota = nullptr;
  bool network = false;  // the agent's network permission, for run_command
  ResourceLimits limits;
  size_t command_tail_bytes = 8192;  // of stdout and of stderr each
  // Upper bound for one command (the runner's remaining wall time); 0 = kMaxCommandTimeoutS.
  int64_t max_command_timeout_ms = 0;
  const std::atomic<bool>* cancel = nullptr;
  std::vector<std::string> allowed;  // tool names the agent may use; empty = all
  // The whole environment of run_command (besides PATH): commands never inherit the factory's
  // own environment, which holds the providers' API keys. See CommandEnvironment().
  std::map<std::string, std::string> command_env;
  // Variables of the factory's environment run_command passes through (the agent's `env:`).
  std::vector<std::string> pass_env;
};

// A neutral environment for commands: HOME, USER, LOGNAME, LANG, LC_ALL, TERM, TMPDIR, SHELL
// taken from this process when set, then `extra` on top.
std::map<std::string, std::string> CommandEnvironment(
    const std::map<std::string, std::string>& extra = {});

struct ToolResult {
  std::string output;  // for the model
  bool ok = false;
  bool finished = false;  // finish() was called with a valid summary
  std::string summary;    // finish()'s summary
};

// The specs of the tools allowed by `allowed` (empty = all). finish is always included.
std::vector<llm::ToolSpec> ToolSpecs(const std::vector<std::string>& allowed = {});

// Runs one tool call. Never throws.
ToolResult ExecuteTool(const ToolEnv& env, const llm::ToolCall& call);

}  // namespace factory::toolloop
