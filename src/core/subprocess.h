#pragma once
// Child processes: spawned in their own process group, output to files (tail kept in memory,
// capped), a wall-clock timeout that kills the whole group, optional rlimits. The sandbox
// (workspace/sandbox.h) wraps the argv; this layer only spawns and supervises.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace factory {

class Redactor;

struct ResourceLimits {
  int64_t cpu_seconds = 0;      // RLIMIT_CPU; 0 = unlimited
  int64_t memory_bytes = 0;     // RLIMIT_AS; 0 = unlimited
  int64_t file_size_bytes = 0;  // RLIMIT_FSIZE; 0 = unlimited
  // RLIMIT_NPROC; 0 = unlimited. The kernel counts every process of the real user, not just
  // this tree, and does not apply it to root: use cgroup_dir (the sandbox does) for a real limit.
  int64_t max_processes = 0;
};

struct SubprocessOptions {
  std::vector<std::string> argv;               // argv[0] looked up in PATH
  std::string cwd;                             // empty: inherit
  std::map<std::string, std::string> env_set;  // added/overridden on top of the inherited env
  bool clear_env = false;                      // start from an empty env (PATH kept)
  std::string stdin_data;                      // written to the child's stdin, then closed
  std::string stdout_path;                     // empty: not kept on disk
  std::string stderr_path;                     // empty: not kept on disk
  // Create stdout_path/stderr_path while waiting (at the stream's first output, or at the end
  // for a silent stream) instead of before the exec: a start then creates no file. A file that
  // cannot be created is reported in SubprocessResult::output_error, after the process ran,
  // instead of as a start error.
  bool create_output_files_on_wait = false;
  int64_t timeout_ms = 0;    // wall clock; 0 = none. Kills the whole group.
  size_t tail_bytes = 4096;  // how much of each stream's end to keep
  ResourceLimits limits;
  // Polled; when set to true the group is killed (SIGTERM, then SIGKILL after a grace period).
  const std::atomic<bool>* cancel = nullptr;
  int64_t kill_grace_ms = 2000;
  // When set, the child moves itself into this cgroup (writes "0" to <dir>/tasks on cgroup v1,
  // to <dir>/cgroup.procs where there is no `tasks` file) before exec, so a pids or memory limit
  // the caller configured there covers the whole process tree. RLIMIT_NPROC does not bind root; a
  // pids cgroup does. Failure to join is a start error.
  std::string cgroup_dir;
  // Descriptors of this process the child keeps, at the same numbers (everything else above 2
  // is closed on exec), e.g. a pipe end the wrapped program is told to wait on. The caller owns
  // them and closes its copies after Start.
  std::vector<int> inherit_fds;
  // When set, both streams go through it (core/redact.h StreamRedactor) before they reach the
  // output files and the tails: a secret split across two reads is still caught. Null keeps
  // the output as the child wrote it (host-side git, whose output is data). Must outlive Wait.
  const Redactor* redactor = nullptr;
  // The child is killed (SIGKILL) when the thread that started it ends, the process included
  // (PR_SET_PDEATHSIG): a crashed parent leaves no running child behind. Only the child itself:
  // processes it starts need a pid namespace (the sandbox's, or bwrap --unshare-pid) to die too.
  // REQUIRES: the starting thread outlives the child (RunSubprocess waits on it; a
  // Subprocess::Start caller starts from a thread that lives until Wait returned).
  bool die_with_parent = true;
};

struct SubprocessResult {
  int exit_code = -1;         // exit status, or 128 + signal when killed by a signal
  std::optional<int> signal;  // set when terminated by a signal
  bool timed_out = false;
  bool cancelled = false;
  // Killed by the sandbox for writing more than its disk quota (workspace/sandbox.h); never
  // set by RunSubprocess itself.
  bool quota_exceeded = false;
  int64_t duration_ms = 0;
  std::string stdout_tail;  // last tail_bytes of stdout (redacted with options.redactor)
  std::string stderr_tail;
  int64_t stdout_bytes = 0;  // total bytes the child wrote (before redaction)
  int64_t stderr_bytes = 0;
  // An output file that could not be created or written (create_output_files_on_wait); the
  // tails above still hold the end of the output.
  std::string output_error;
  int pid = 0;
  // Wall clock (system_clock, microseconds since the epoch) when the child's exec of the
  // program had succeeded (the kernel committed to the new program; it may still be loading
  // it): the moment the caller learned the process runs (0 when it never started).
  int64_t started_us = 0;
};

// Spawns and waits. Errors only when the process could not be started (InvalidArgument for an
// empty argv, NotFound for a missing program or working directory, Unavailable/Internal for
// other start failures); a non-zero exit, a timeout or a signal is a normal result.
//
// The child runs in its own process group (setpgid), with every inherited descriptor other than
// 0/1/2 closed on exec, the signal mask and ignored signals reset, and `limits` applied. When the
// group leader exits, the rest of its group is killed (SIGKILL) so a backgrounded grandchild
// cannot outlive the call; a timeout kills the group at once; `cancel` sends SIGTERM to the group
// and SIGKILL after `kill_grace_ms`. On return no member of the group is alive, except a process
// that left the group on purpose (setsid/setpgid); the sandbox's namespaces and cgroup cover that.
// Such a process may keep the output pipes open; after the leader's exit they are read for at
// most one more second, so it cannot make the call hang.
//
// Thread-safe: fork/exec with only async-signal-safe calls in the child; all pipes are
// close-on-exec so concurrent spawns from other threads do not leak them. SIGPIPE is blocked in
// the calling thread while it runs so a child that closes stdin early cannot kill the process.
// REQUIRES: nothing else in the process reaps children indiscriminately (waitpid(-1), SIGCHLD
// set to SIG_IGN); the child would still be supervised but its exit status would be lost
// (exit_code -1).
Result<SubprocessResult> RunSubprocess(const SubprocessOptions& options);

// Descriptors the parent holds per running child (stdout and stderr pipes, their two files,
// the pidfd; the stdin pipe too while there is input to feed).
inline constexpr int kDescriptorsPerChild = 6;

// Makes room for `count` open descriptors ahead of a burst of spawns: raises the soft
// RLIMIT_NOFILE up to the hard limit when it is lower, and grows the kernel's descriptor table
// now. The kernel grows the table on demand, each time the highest descriptor passes 64, 128,
// 256, ...; in a multithreaded process every growth waits for an RCU grace period
// (synchronize_rcu in expand_fdtable, milliseconds each), and it happens in the middle
// of the burst that crosses the line, stalling the spawn that opened the descriptor. Returns the
// count the limit allows (<= count).
int ReserveDescriptors(int count);

// RunSubprocess in two steps, for a caller that starts processes on one thread and waits for
// them on others (the task worker starts a burst of claimed tasks from its dispatching thread:
// fifty threads each creating files and spawning at once contend in the kernel for the same
// directory and journal locks, and the burst starts slower than from one thread).
class Subprocess {
 public:
  // Spawns the child (as RunSubprocess does, with the same start errors) and returns once it
  // has exec'd. The output files are created here; `options.cancel` must stay valid until Wait
  // returns.
  static Result<Subprocess> Start(const SubprocessOptions& options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  // A child never waited for is killed with its group and reaped.
  ~Subprocess();

  int pid() const;
  // When the child had exec'd (SubprocessResult::started_us).
  int64_t started_us() const;

  // Feeds stdin, copies the output, enforces the timeout and the cancel flag, and reaps the
  // group (RunSubprocess's contract). Call once, from any one thread.
  SubprocessResult Wait();

 private:
  struct Running;
  explicit Subprocess(std::unique_ptr<Running> running);
  void KillIfNotWaited();
  std::unique_ptr<Running> running_;
};

}  // namespace factory
