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
//     the factory holds it open from before the command starts until it has measured it after
//     the command's end, so the disk quota sees what was written there however quick the
//     command (bwrap waits on --block-fd until the factory has it);
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
// the whole group, output files plus an in-memory tail, and a disk quota (DiskQuota: per
// attempt when the caller gives one, else per command): one watcher thread per process
// measures every running command's quota every 250 ms (less often when a measurement is slow),
// again when the command has ended, and kills the command past it
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
#include <mutex>
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
  // The disk quota, in MiB (DiskQuota): what one attempt may add to its worktrees and hold in
  // its commands' /tmp; a command given no DiskQuota has one of its own. 0 = no quota.
  int64_t disk_mb = 2048;
  // Names of variables of this process's environment every command gets (`sandbox.env`).
  std::vector<std::string> env;
};

// The disk quota of one attempt (sandbox.disk_mb), shared by every command the attempt runs in
// the sandbox (its agent's, each `run_command` of the llm tool loop, its gates') and by the
// writes the factory makes for it on the host (the llm agent's write_file and edit_file tools).
// What it counts, measured again whenever it is checked: how much each directory it tracks
// (the attempt's worktree, a gate's checkout) holds beyond what it held when first tracked,
// plus what the running command's private /tmp (with HOME) holds. A command's /tmp is removed
// when the command ends, so only worktrees accumulate across commands. Past the quota the
// running command is killed, the quota stays exceeded, and the attempt fails with Message();
// the attempt's runner and gates report it, so nothing of the attempt is merged.
// Thread-safe.
class DiskQuota {
 public:
  // quota_mb <= 0: no quota (nothing is measured, never exceeded).
  explicit DiskQuota(int64_t quota_mb) : quota_mb_(quota_mb > 0 ? quota_mb : 0) {}
  DiskQuota(const DiskQuota&) = delete;
  DiskQuota& operator=(const DiskQuota&) = delete;

  int64_t quota_mb() const { return quota_mb_; }
  int64_t quota_bytes() const { return quota_mb_ * 1024 * 1024; }
  bool enabled() const { return quota_mb_ > 0; }
  // Starts counting what `dir` (absolute) gains from now on. A directory already tracked keeps
  // its first baseline, so calling it again is harmless.
  void Track(const std::string& dir);
  // Bytes the tracked directories hold beyond their baselines (never negative per directory;
  // a directory removed since counts 0). Walks them: as slow as DiskUsageBytes.
  int64_t WorktreeBytes() const;
  // Whether `more` bytes written on the host into a tracked directory still fit; when they do
  // not, the quota becomes exceeded and kResourceExhausted with Message() is returned.
  Status Reserve(int64_t more);
  void MarkExceeded() { exceeded_ = true; }
  bool exceeded() const { return exceeded_.load(); }
  // "the attempt wrote more than 2048 MiB (sandbox.disk_mb)" (DiskQuotaMessage).
  std::string Message() const;

 private:
  const int64_t quota_mb_;
  std::atomic<bool> exceeded_{false};
  mutable std::mutex mutex_;
  std::map<std::string, int64_t> baselines_;  // guarded by mutex_
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
  // The attempt's disk quota (not owned; must outlive Run). The worktree is tracked in it on
  // first use, so a caller that writes there itself tracks it first. Null: the command gets a
  // quota of its own of SandboxConfig::disk_mb, counting what it adds to its worktree.
  DiskQuota* disk_quota = nullptr;
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
  // SandboxConfig::disk_mb: the size of each attempt's DiskQuota (0 = no quota).
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
