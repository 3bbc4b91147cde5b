#pragma once
// Gates: checks on an attempt's result that agents cannot game.
//  - Protected paths: an attempt whose diff touches a `protected:` glob fails, unless its task
//    allows that path explicitly.
//  - Command gates: run in order on a clean checkout of the attempt's commit (untracked
//    leftovers of the agent do not count), each in the sandbox with a timeout; the first failure
//    stops the sequence and its output tail becomes the next attempt's feedback.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "plan/config.h"
#include "workspace/sandbox.h"

namespace factory {

struct GateResult {
  std::string name;
  bool passed = false;
  int exit_code = -1;
  bool timed_out = false;
  int64_t duration_ms = 0;
  std::string output_tail;  // last ~4 KB of stdout+stderr, interleaved as written; starts on a
                            // UTF-8 character boundary
  std::string command;      // the gate's command, as configured
  int64_t timeout_ms = 0;   // the limit it ran under
  bool cancelled = false;   // stopped by GateRunOptions::cancel (not passed)
  // Killed for writing more than the sandbox's disk quota (not passed); `quota_message` says
  // so ("the attempt wrote more than 2048 MiB (sandbox.disk_mb)").
  bool quota_exceeded = false;
  std::string quota_message;
  std::string log_path;  // the full output, when GateRunOptions::logs_dir was set
};

struct GateRunOptions {
  Sandbox* sandbox = nullptr;  // REQUIRES: non-null
  bool network = false;
  ResourceLimits limits;
  size_t tail_bytes = 4096;
  // Where the full output goes, one file per gate: <logs_dir>/<n>-<name>.log with n 1-based
  // and the name reduced to [A-Za-z0-9._-]; created when missing. "" = not kept.
  std::string logs_dir;
  const std::atomic<bool>* cancel = nullptr;
  // The attempt's disk quota the gates count against (workspace/sandbox.h); null: each gate
  // has one of its own.
  DiskQuota* disk_quota = nullptr;
};

// The options the project's sandbox policy gives its gates: the sandbox, the gates' network
// setting and the resource limits (the caller adds logs_dir and cancel).
GateRunOptions GateOptionsFromPolicy(const SandboxPolicy& policy, Sandbox* sandbox);

// Runs gates in order in `checkout` (a clean checkout of the commit under test) until one
// fails (or `cancel` is set). Each gate runs as `/bin/sh -c` with stderr merged into stdout, in
// the checkout as the sandbox's writable worktree, under gate.timeout (which kills its whole
// process group). Returns the results of the gates that ran; all passed when every result's
// `passed` is set and there is one per gate. An error only when a gate could not be started
// (InvalidArgument without a sandbox; the sandbox's error, naming the gate).
Result<std::vector<GateResult>> RunGates(const std::vector<GateConfig>& gates,
                                         const std::string& checkout,
                                         const GateRunOptions& options);

// Runs one command gate, as RunGates does; `index` (0-based) names its log file.
Result<GateResult> RunCommandGate(const GateConfig& gate, size_t index, const std::string& checkout,
                                  const GateRunOptions& options);

// The protected paths among `changed` (repository-relative), honouring the task's
// `allow_protected` globs. Empty when the change is acceptable.
std::vector<std::string> ProtectedViolations(const ProjectConfig& config,
                                             const std::vector<std::string>& changed,
                                             const std::vector<std::string>& allow_protected);

// The feedback text for the next attempt after a gate failed: gate name, exit code or timeout,
// and the output tail.
std::string GateFeedback(const GateResult& failed);

}  // namespace factory
