#include "agents/examples.h"

#include <fstream>
#include <system_error>

namespace factory {
namespace {

constexpr std::string_view kBuilderAgent = R"md(---
# A `script` agent: runs a command in the task's git worktree. No model, no API key.
# The factory sets FACTORY_TASK_ID, FACTORY_TASK_FILE (JSON: spec, acceptance criteria, attempt
# number, feedback from the previous attempt) and FACTORY_WORKTREE, and commits whatever the
# command changed. Point `command` at your own automation.
name: builder
role: Implements a task by running the project's builder script
runner: script
command: sh .factory/scripts/builder.sh
capabilities: [code, test, docs]
cost_tier: 0        # lower = cheaper; the cheapest capable agent is chosen
concurrency: 2      # tasks this agent may run at the same time
network: false      # no network inside the sandbox
---
The builder runs a script, so this body is not read by a model. It documents what the script
is expected to do: read the task from $FACTORY_TASK_FILE, change files in the worktree so the
acceptance criteria hold, and exit 0.
)md";

constexpr std::string_view kClaudeAgent = R"md(---
# Example: Claude Code as an agent, through the `cli` runner. Needs the `claude` CLI installed
# and logged in (or run behind `factory gateway`, which meters and caps its model calls).
# Its cost tier keeps it from being chosen over cheaper agents; a task can still ask for it
# with `agent: claude-coder`. Delete this file if you do not use Claude Code.
name: claude-coder
role: Implements and refactors code with Claude Code
runner: cli
preset: claude      # claude | codex | opencode | aider | gemini
capabilities: [code, test, refactor]
cost_tier: 3
concurrency: 1
network: true       # the CLI talks to its model API
max_turns: 30
budget:
  usd_per_task: 2.00
  usd_per_day: 20.00
---
You are a careful senior engineer working in a git worktree of this repository. Implement the
task you are given so that every acceptance criterion holds. Keep the change small and focused,
follow the code style around you, and run the tests before you finish. Do not touch files the
task does not need.
)md";

constexpr std::string_view kLlmAgent = R"md(---
# Example: the built-in tool-loop agent (`llm` runner) on a model alias from models.yaml.
# It edits files through tools confined to the worktree and runs commands in the sandbox.
# Needs a configured model provider (see .factory/models.yaml).
name: llm-coder
role: Implements code changes with the built-in tool-loop agent
runner: llm
model: cloud/mid
fallbacks: [cloud/frontier]
temperature: 0.2
max_turns: 40
capabilities: [code, test, docs, refactor]
cost_tier: 2
concurrency: 2
tools: [read_file, write_file, edit_file, list_dir, grep, run_command, finish]
network: false
budget:
  usd_per_task: 1.00
  usd_per_day: 10.00
  tokens_per_task: 400000
---
You are a senior software engineer working in a git worktree of this repository.

Read the task's spec and acceptance criteria, look at the code that matters for it, make the
smallest change that satisfies every criterion, and run the project's tests with run_command.
If feedback from a previous attempt is given, fix exactly what it reports first.
When the work is complete, call finish with a short summary of what you changed and why.
)md";

constexpr ExampleFile kExampleAgents[] = {
    {"builder.md", kBuilderAgent},
    {"claude-coder.md", kClaudeAgent},
    {"llm-coder.md", kLlmAgent},
};

Status WriteFile(const std::filesystem::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable("cannot write " + path.string());
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) return Unavailable("error writing " + path.string());
  return Ok();
}

}  // namespace

const std::string_view kExampleBuilderScript = R"sh(#!/bin/sh
# The example builder agent's script (.factory/agents/builder.md). Replace it with your own
# automation, or switch the agent to a `cli` or `llm` runner.
# Environment: FACTORY_TASK_ID, FACTORY_TASK_FILE (JSON: spec, acceptance, attempt, feedback),
# FACTORY_WORKTREE (the current directory). Exit 0 after changing files; the factory commits.
set -eu
echo "builder: task ${FACTORY_TASK_ID:-?}"
if [ -n "${FACTORY_TASK_FILE:-}" ] && [ -f "${FACTORY_TASK_FILE}" ]; then
  cat "${FACTORY_TASK_FILE}"
  echo
fi
echo "builder: .factory/scripts/builder.sh is the example placeholder and changes nothing." >&2
echo "builder: edit it, or switch the agent in .factory/agents/builder.md to a cli/llm runner." >&2
exit 1
)sh";

std::span<const ExampleFile> ExampleAgentFiles() { return kExampleAgents; }

Result<std::vector<std::filesystem::path>> WriteExampleAgents(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());
  std::vector<std::filesystem::path> written;
  for (const ExampleFile& file : kExampleAgents) {
    std::filesystem::path path = dir / file.name;
    if (std::filesystem::exists(path, ec)) continue;
    FACTORY_RETURN_IF_ERROR(WriteFile(path, file.content));
    written.push_back(path);
  }
  return written;
}

Result<bool> WriteExampleBuilderScript(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return false;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      return Unavailable("cannot create " + path.parent_path().string() + ": " + ec.message());
  }
  FACTORY_RETURN_IF_ERROR(WriteFile(path, kExampleBuilderScript));
  using std::filesystem::perms;
  std::filesystem::permissions(path,
                               perms::owner_all | perms::group_read | perms::group_exec |
                                   perms::others_read | perms::others_exec,
                               ec);
  if (ec) return Unavailable("cannot make " + path.string() + " executable: " + ec.message());
  return true;
}

}  // namespace factory
