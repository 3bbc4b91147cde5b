#pragma once
// The agent files `factory init` writes: the one agent it chose for this host (an `llm` agent on
// a model alias, or a `cli` agent on a coding CLI's preset; setup/agent_choice.h decides) in
// `.factory/agents/`, and examples of both kinds in `.factory/agents/examples/`, which the
// registry does not load (it reads `*.md` of the agents directory only): a user enables one by
// copying it up. Every file is a valid agent file (tested), so a fresh project loads.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace factory {

struct ExampleFile {
  std::string name;     // file name inside the directory
  std::string content;  // file text
};

// The built-in tool-loop agent `llm-coder` on `model` (an alias of models.yaml). `why` becomes
// a comment line at the top of its front matter ("" = none).
ExampleFile LlmAgentFile(std::string_view model, std::string_view why = "");

// A coding CLI through the `cli` runner: agent `<preset>-coder` on `preset` (one of
// kCliPresets), with the network and the API key variables its CLI reads. `why` as above.
// InvalidArgument for an unknown preset.
Result<ExampleFile> CliAgentFile(std::string_view preset, std::string_view why = "");

// The examples of `.factory/agents/examples/`, in a fixed order: an llm agent on cloud/mid and a
// Claude Code agent.
std::vector<ExampleFile> ExampleAgentFiles();

// Writes each file into `dir` (created when missing). Files that already exist are left
// untouched, so re-running `factory init` never clobbers edits. Returns the paths written.
Result<std::vector<std::filesystem::path>> WriteAgentFiles(const std::filesystem::path& dir,
                                                           const std::vector<ExampleFile>& files);

}  // namespace factory
