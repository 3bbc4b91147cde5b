#pragma once
// The example agents `factory init` writes into `.factory/agents/`: a `script` builder (works
// with no model or key), and commented `cli` (Claude Code) and `llm` (built-in tool loop on
// `cloud/mid`) examples. Every example is a valid agent file (tested), so a fresh project loads.

#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace factory {

struct ExampleFile {
  std::string_view name;     // file name inside the agents directory
  std::string_view content;  // file text
};

// The example agent files, in a fixed order.
std::span<const ExampleFile> ExampleAgentFiles();

// Path of the builder's script, relative to the repository root (the builder's `command`).
inline constexpr std::string_view kExampleBuilderScriptPath = ".factory/scripts/builder.sh";
// A placeholder builder script: shows the task it was given and fails with a message saying
// how to make it do real work, so an unconfigured project fails loudly, never silently.
extern const std::string_view kExampleBuilderScript;

// Writes the example agents into `dir` (created when missing). Files that already exist are
// left untouched, so re-running `factory init` never clobbers edits. Returns the paths written.
Result<std::vector<std::filesystem::path>> WriteExampleAgents(const std::filesystem::path& dir);

// Writes kExampleBuilderScript to `path` (parents created, mode 0755) unless it exists.
// Returns whether it was written.
Result<bool> WriteExampleBuilderScript(const std::filesystem::path& path);

}  // namespace factory
