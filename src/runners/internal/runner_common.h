#pragma once
// Helpers shared by the script and cli runners. Not part of the runners' public interface.

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agents/agent.h"
#include "core/result.h"
#include "core/subprocess.h"
#include "runners/runner.h"

namespace factory::runners_internal {

// The last `max_bytes` of `text`, starting on a UTF-8 character boundary (never splits a
// multi-byte sequence at the front), so the tail is safe to put in JSON.
std::string Utf8Tail(std::string_view text, size_t max_bytes);
// The first `max_chars` bytes of `text` on one line (newlines become spaces), cut on a UTF-8
// boundary with "..." appended when shortened.
std::string OneLine(std::string_view text, size_t max_bytes = 200);

// Checks the context (sandbox, absolute worktree and attempt_dir, attempt_dir exists) and
// writes <attempt_dir>/task.json. Returns its path.
Result<std::string> WriteTaskFile(const RunnerContext& context);

// The environment every runner command gets: ctx.extra_env, then FACTORY_TASK_ID,
// FACTORY_TASK_FILE, FACTORY_WORKTREE, FACTORY_ATTEMPT, FACTORY_RUN_ID (these win).
std::map<std::string, std::string> RunnerEnv(const RunnerContext& context,
                                             const std::string& task_file);

// The task and prompt files named in a runner's environment (FACTORY_TASK_FILE,
// FACTORY_PROMPT_FILE) that exist: bound read-only in the sandbox, the only files of the
// attempt directory the agent sees.
std::vector<std::string> AttemptFiles(const std::map<std::string, std::string>& env);

// Fills exit_code, timed_out, cancelled, duration_ms, success (exit 0, no timeout, no
// cancellation, within the disk quota) and error ("exit N: <stderr tail>", "timed out after
// Ns", "cancelled", DiskQuotaMessage) from a finished process run under `context`.
// `error_detail` is the text quoted after "exit N: " (usually stderr's tail).
void FillOutcomeFromProcess(const SubprocessResult& process, const RunnerContext& context,
                            std::string_view error_detail, RunnerOutcome& outcome);

// stdout and stderr tails combined into at most `max_bytes` (each stream gets half when both
// have output), stderr marked.
std::string CombinedTail(std::string_view out, std::string_view err, size_t max_bytes);

// Whether `program` resolves on `path_value` (a PATH string) to an executable file; a name with
// a '/' is checked as is.
bool FoundOnPath(const std::string& program, const std::string& path_value);
// The PATH the runner's command will see: extra_env's PATH when set, else this process's.
std::string EffectivePath(const std::map<std::string, std::string>& extra_env);

// "agent 'x' (agents/x.md): preset 'claude' needs the `claude` binary, which is not on PATH".
std::string MissingBinaryMessage(const AgentSpec& agent, const std::string& binary);

std::unique_ptr<Runner> MakeScriptRunner(const AgentSpec& agent);
Result<std::unique_ptr<Runner>> MakeCliRunner(const AgentSpec& agent);

}  // namespace factory::runners_internal
