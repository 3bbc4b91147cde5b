#pragma once
// Sandboxes for runner and gate commands.
//
// BubblewrapSandbox (when `bwrap` is installed and works here): least privilege. The command
// sees a new root holding only
//   - the system directories read-only: /usr, /bin, /sbin, /lib* (kept as the host's symlinks
//     where they are ones), and /etc with its secrets masked (SecretEtcPaths());
//   - its worktree read-write, and of the main repository only what git needs, read-only: the
//     common git dir's objects, refs, HEAD, config and info, and the worktree's own admin dir
//     (the main checkout's files stay invisible). The worktree's `.git` file is agent-written:
//     it is followed only when that admin dir points back at this worktree;
//   - a private tmpfs /tmp of SandboxConfig::tmp_mb, whose /tmp/home is HOME (TMPDIR=/tmp);
//   - fresh /dev and /proc; SandboxConfig::read_paths and SandboxedCommand::read_only_paths
//     read-only, SandboxedCommand::writable_paths read-write;
// with every namespace unshared (so no network: only a loopback-less network namespace) unless
// the command allows network (`--share-net`), a new session, and `--die-with-parent`.
//
// RlimitSandbox (fallback): no filesystem or network isolation (the command can read and write
// whatever this user can); the clean environment, a private HOME and TMPDIR (a host directory
// removed afterwards, counted in the disk quota), the disk quota, rlimits and timeouts still
// apply. It logs one warning per process the first time it is created.
//
// Both: a clean environment (CleanEnvironment: nothing of this process's environment but PATH,
// locale, TERM, TZ and the variables named in SandboxConfig::env or SandboxedCommand::pass_env),
// own process group, rlimits (CPU seconds, address space, file size), a wall timeout that kills
// the whole group, output files plus an in-memory tail, and a disk quota: one watcher thread
// per process measures what each running command added to its worktree and its /tmp every
// 250 ms (less often when a measurement is slow) and kills it past SandboxConfig::disk_mb
// (SubprocessResult::quota_exceeded). A process limit is enforced with a pids cgroup when one can
// be created (cgroup v1 `pids` hierarchy or cgroup v2 with the pids controller), because
// RLIMIT_NPROC counts per user and does not bind root at all; everything left in that cgroup is
// killed before Run() returns. Without a usable cgroup the limit falls back to RLIMIT_NPROC (see
// EnforcesProcessLimit()).
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
  // Absolute host paths every command may read (config.yaml `sandbox.read_paths`: a toolchain
  // under /opt, a package cache). A path missing on the host is skipped.
  std::vector<std::string> read_paths;
  // Size of the private /tmp (which holds HOME), in MiB; writes past it fail with ENOSPC.
  int64_t tmp_mb = 512;
  // The most a command may add to its worktree and /tmp together, in MiB; past it the command
  // is killed and its result says quota_exceeded. 0 = no quota.
  int64_t disk_mb = 2048;
  // Names of variables of this process's environment every command gets (`sandbox.env`).
  std::vector<std::string> env;
};

struct SandboxedCommand {
  std::vector<std::string> argv;            // either argv ...
  std::string shell;                        // ... or a shell command line, run as /bin/sh -c
  std::string worktree;                     // absolute; writable, and the working directory
  std::vector<std::string> writable_paths;  // extra absolute paths bound read-write
  // Extra absolute paths (files or directories) bound read-only, e.g. the task and prompt files
  // a runner hands its agent. Each must exist.
  std::vector<std::string> read_only_paths;
  bool network = false;
  // Set for the command on top of its clean environment (FACTORY_* variables, a gateway's
  // base URL and key); these win over passed variables. HOME and TMPDIR are the sandbox's.
  std::map<std::string, std::string> env;
  // Names of variables of this process's environment passed through as they are (an agent
  // file's `env:`), besides SandboxConfig::env. A name not set here is simply absent.
  std::vector<std::string> pass_env;
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
  // SandboxConfig::disk_mb: what a command may add to its worktree and /tmp (0 = no quota).
  virtual int64_t disk_quota_mb() const = 0;
};

// Why a command with SubprocessResult::quota_exceeded failed: "the attempt wrote more than
// 2048 MiB (sandbox.disk_mb)".
std::string DiskQuotaMessage(int64_t disk_mb);

// The environment of a command that must not see this process's secrets: PATH (default
// /usr/local/bin:/usr/bin:/bin), LANG, LANGUAGE, LC_*, TERM and TZ from this process's
// environment, the variables it has of those named in `pass`, then `set` (which wins). Nothing
// else: a provider key reaches a command only when its name is in `pass`.
std::map<std::string, std::string> CleanEnvironment(
    const std::vector<std::string>& pass, const std::map<std::string, std::string>& set = {});

// Bytes allocated on disk (st_blocks) below `path`, symlinks not followed, other file systems
// not entered; unreadable parts count as 0. What the disk quota measures.
int64_t DiskUsageBytes(const std::string& path);

// What the bubblewrap sandbox hides of /etc (bound over with an empty file, or an empty tmpfs
// for a directory): /etc/shadow, /etc/gshadow (and their `-` backups), /etc/sudoers and
// /etc/sudoers.d, /etc/ssh's host private keys, /etc/ssl/private, and every file or directory
// below /etc that is not world-readable. Computed once per process.
const std::vector<std::string>& SecretEtcPaths();

// The bubblewrap sandbox when config allows it and BubblewrapAvailable(), else the rlimit one.
std::unique_ptr<Sandbox> MakeSandbox(const SandboxConfig& config = {});

// Whether `bwrap` is on PATH and can actually create its namespaces here (tried once per
// process with the flags the sandbox uses; cached).
bool BubblewrapAvailable();

}  // namespace factory
