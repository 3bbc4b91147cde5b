#pragma once
// Sandboxes for runner and gate commands.
//
// BubblewrapSandbox (when `bwrap` is installed and works here): the whole filesystem read-only
// (`--ro-bind / /`), the worktree and any extra writable paths bound read-write, a private
// /tmp, fresh /dev and /proc, every namespace unshared (so no network: only a loopback-less
// network namespace) unless the command allows network (`--share-net`), a new session, and
// `--die-with-parent`. The repository's git directory is bound read-only when the worktree's
// `.git` points into one under a hidden path (e.g. below /tmp), so `git status` works inside.
//
// RlimitSandbox (fallback): the same rlimits and timeouts, no filesystem or network isolation.
// It logs one warning per process the first time it is created.
//
// Both: own process group, rlimits (CPU seconds, address space, file size), a wall timeout that
// kills the whole group, output files plus an in-memory tail. A process limit is enforced with
// a pids cgroup when one can be created (cgroup v1 `pids` hierarchy or cgroup v2 with the pids
// controller), because RLIMIT_NPROC counts per user and does not bind root at all; everything
// left in that cgroup is killed before Run() returns. Without a usable cgroup the limit falls
// back to RLIMIT_NPROC (see EnforcesProcessLimit()).
//
// Thread-safety: Run() may be called concurrently from many threads.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/subprocess.h"

namespace factory {

struct SandboxConfig {
  bool use_bubblewrap = true;   // false: always the rlimit sandbox
  bool use_pids_cgroup = true;  // false: process limits only through RLIMIT_NPROC
  std::string cgroup_root;      // empty: auto-detect (/sys/fs/cgroup/pids, /sys/fs/cgroup)
};

struct SandboxedCommand {
  std::vector<std::string> argv;            // either argv ...
  std::string shell;                        // ... or a shell command line, run as /bin/sh -c
  std::string worktree;                     // absolute; writable, and the working directory
  std::vector<std::string> writable_paths;  // extra absolute paths bound read-write
  bool network = false;
  std::map<std::string, std::string> env;  // added to the inherited environment
  bool clear_env = false;                  // start from an empty environment (PATH kept)
  std::string stdin_data;
  int64_t timeout_ms = 0;  // 0 = none
  ResourceLimits limits;   // max_processes counts the sandbox's own helper processes too
  size_t tail_bytes = 4096;
  std::string stdout_path;  // empty: not kept on disk
  std::string stderr_path;
  const std::atomic<bool>* cancel = nullptr;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  // Runs the command and waits. Errors only when it could not be started (InvalidArgument for
  // a malformed command, NotFound for a missing program or worktree); a non-zero exit, a signal
  // or a timeout is a normal result (timed_out set).
  virtual Result<SubprocessResult> Run(const SandboxedCommand& command) = 0;
  // "bubblewrap" or "rlimit".
  virtual std::string_view name() const = 0;
  // True when limits.max_processes is really enforced for this process's user (a pids cgroup,
  // or RLIMIT_NPROC for a non-root user).
  virtual bool EnforcesProcessLimit() const = 0;
};

// The bubblewrap sandbox when config allows it and BubblewrapAvailable(), else the rlimit one.
std::unique_ptr<Sandbox> MakeSandbox(const SandboxConfig& config = {});

// Whether `bwrap` is on PATH and can actually create its namespaces here (tried once per
// process with the flags the sandbox uses; cached).
bool BubblewrapAvailable();

}  // namespace factory
