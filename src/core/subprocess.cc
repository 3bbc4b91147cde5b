#include "core/subprocess.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "core/redact.h"

extern char** environ;

namespace factory {
namespace {

using SteadyClock = std::chrono::steady_clock;

// After the leader has exited and its group was killed, how long we keep reading the pipes.
// Only a process that escaped the group (setsid) can hold them open longer; we stop waiting
// for it rather than hang.
constexpr int64_t kDrainAfterExitMs = 1000;
// How long we wait for SIGKILLed group members to disappear before returning anyway.
constexpr int64_t kGroupGoneWaitMs = 2000;
// Poll granularity while a cancel flag must be observed (no pidfd wake-up for that).
constexpr int kCancelPollMs = 20;

int64_t MillisSince(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

// Owns a file descriptor; closes it once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

Result<Pipe> MakePipe(int extra_flags = 0) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) {
    return Unavailable(std::string("pipe2: ") + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

// What the child reports through the exec-error pipe when it cannot get to exec.
enum class ChildStage : int { kCgroup = 1, kChdir, kRlimit, kExec, kSetup };
struct ChildFailure {
  int stage;
  int err;
};

std::string LookupEnv(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 &&
        entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return {};
}

std::vector<std::string> BuildEnv(const SubprocessOptions& options) {
  std::map<std::string, std::string> merged;
  if (options.clear_env) {
    const char* path = ::getenv("PATH");
    merged["PATH"] = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  } else {
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
      std::string_view kv(*entry);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos) continue;
      merged.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (const auto& [key, value] : options.env_set) merged[key] = value;
  std::vector<std::string> env;
  env.reserve(merged.size());
  for (const auto& [key, value] : merged) env.push_back(key + "=" + value);
  return env;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Resolves argv[0] in the parent (execvp's search is not guaranteed async-signal-safe) using the
// PATH the child will see. A name with a slash is taken as given.
Result<std::string> ResolveProgram(const std::string& program,
                                   const std::vector<std::string>& env) {
  if (program.find('/') != std::string::npos) return program;
  std::string path = LookupEnv(env, "PATH");
  if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + program;
    if (IsExecutableFile(candidate)) return candidate;
    begin = end + 1;
  }
  return NotFound("program not found in PATH: " + program);
}

// Bounded in-memory tail of a stream.
class Tail {
 public:
  explicit Tail(size_t cap) : cap_(cap) {}
  void Append(const char* data, size_t size) {
    if (cap_ == 0) return;
    if (size >= cap_) {
      buffer_.assign(data + size - cap_, cap_);
      return;
    }
    buffer_.append(data, size);
    // Trim lazily so appends stay amortised O(size).
    if (buffer_.size() > 2 * cap_) buffer_.erase(0, buffer_.size() - cap_);
  }
  std::string Take() {
    if (buffer_.size() > cap_) buffer_.erase(0, buffer_.size() - cap_);
    return std::move(buffer_);
  }

 private:
  size_t cap_;
  std::string buffer_;
};

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return;  // a full disk loses the file copy; the in-memory tail is still kept
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
}

// Creates (truncating) an output file; an empty path keeps the stream off disk.
Status OpenOutputFile(const std::string& path, Fd& out) {
  if (path.empty()) return Ok();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return FailedPrecondition("cannot open output file " + path + ": " + std::strerror(errno));
  }
  out = Fd(fd);
  return Ok();
}

// True while some process other than a zombie still belongs to process group `pgid`.
bool GroupHasLiveMembers(pid_t pgid) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return ::kill(-pgid, 0) == 0;
  bool live = false;
  while (struct dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::string stat_path = std::string("/proc/") + entry->d_name + "/stat";
    int fd = ::open(stat_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buf[512];
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    // Format: pid (comm) state ppid pgrp ...; comm may contain spaces, so parse after the last ')'.
    const char* rparen = std::strrchr(buf, ')');
    if (rparen == nullptr) continue;
    char state = 0;
    int ppid = 0;
    int pgrp = 0;
    if (std::sscanf(rparen + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') {
      live = true;
      break;
    }
  }
  ::closedir(proc);
  return live;
}

// Runs in the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void ChildMain(const SubprocessOptions& options, pid_t parent, int stdin_fd,
                            int stdout_fd, int stderr_fd, int error_fd, const char* program,
                            char* const* argv, char* const* envp) {
  auto fail = [error_fd](ChildStage stage) {
    ChildFailure failure{static_cast<int>(stage), errno};
    ssize_t ignored = ::write(error_fd, &failure, sizeof(failure));
    (void)ignored;
    ::_exit(127);
  };

  ::setpgid(0, 0);

  if (options.die_with_parent) {
    // Checked after the prctl: a parent that died before it would never send the signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
  }

  // Inherited state from the parent: ignored dispositions and blocked signals would survive
  // exec and change how the command behaves (e.g. SIGPIPE ignored). Every signal is blocked on
  // entry (see RunSubprocess), so no parent handler can run here, in the parent's memory, before
  // the dispositions are back to default; only then is the mask cleared.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::signal(sig, SIG_DFL);
  }
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  if (!options.cgroup_dir.empty()) {
    // The path string was built by the parent; c_str() does not allocate.
    int fd = ::open(options.cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(ChildStage::kCgroup);
    // `tasks` (cgroup v1) moves this one thread, which is the whole of a vfork child: no
    // thread group to keep stable, so the kernel skips the global threadgroup lock that a
    // write to cgroup.procs takes for writing, and its RCU grace period (milliseconds on a VM,
    // on every start). cgroup v2 has no `tasks` file.
    int procs = ::openat(fd, "tasks", O_WRONLY | O_CLOEXEC);
    if (procs < 0) procs = ::openat(fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (procs < 0) fail(ChildStage::kCgroup);
    if (::write(procs, "0", 1) != 1) fail(ChildStage::kCgroup);
    ::close(procs);
    ::close(fd);
  }

  if (::dup2(stdin_fd, STDIN_FILENO) < 0 || ::dup2(stdout_fd, STDOUT_FILENO) < 0 ||
      ::dup2(stderr_fd, STDERR_FILENO) < 0) {
    fail(ChildStage::kSetup);
  }
  // Descriptors another thread opened without O_CLOEXEC must not leak into the command.
  if (::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
    struct rlimit nofile {};
    int max_fd = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                     ? static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 65536))
                     : 65536;
    for (int fd = 3; fd < max_fd; ++fd) {
      if (fd != error_fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }
  for (int fd : options.inherit_fds) {
    if (::fcntl(fd, F_SETFD, 0) != 0) fail(ChildStage::kSetup);
  }

  if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) fail(ChildStage::kChdir);

  auto apply = [&](int resource, int64_t value, int64_t hard_extra) {
    if (value <= 0) return;
    struct rlimit limit {};
    limit.rlim_cur = static_cast<rlim_t>(value);
    limit.rlim_max = static_cast<rlim_t>(value + hard_extra);
    if (::setrlimit(resource, &limit) != 0) fail(ChildStage::kRlimit);
  };
  // CPU: the soft limit delivers SIGXCPU, the hard one a second later SIGKILL.
  apply(RLIMIT_CPU, options.limits.cpu_seconds, 1);
  apply(RLIMIT_AS, options.limits.memory_bytes, 0);
  apply(RLIMIT_FSIZE, options.limits.file_size_bytes, 0);
  apply(RLIMIT_NPROC, options.limits.max_processes, 0);

  ::execve(program, argv, envp);
  fail(ChildStage::kExec);
  ::_exit(127);  // not reached
}

// Blocks SIGPIPE in the calling thread for its lifetime and discards one raised meanwhile.
class ScopedBlockSigpipe {
 public:
  ScopedBlockSigpipe() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ScopedBlockSigpipe(const ScopedBlockSigpipe&) = delete;
  ScopedBlockSigpipe& operator=(const ScopedBlockSigpipe&) = delete;
  ~ScopedBlockSigpipe() {
    if (!sigismember(&old_, SIGPIPE)) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      struct timespec zero {};
      while (::sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
};

}  // namespace

// Everything Wait needs of a started child.
struct Subprocess::Running {
  pid_t pid = -1;
  SteadyClock::time_point start;
  int64_t started_us = 0;
  bool waited = false;
  Fd stdin_fd;  // write end; closed at once when there is nothing to feed
  Fd stdout_fd;
  Fd stderr_fd;
  Fd stdout_file;
  Fd stderr_file;
  std::string stdout_path;  // still to be created (create_output_files_on_wait)
  std::string stderr_path;
  Fd pidfd;  // wakes the poll loop the moment the leader exits (invalid: we poll periodically)
  std::string stdin_data;
  int64_t timeout_ms = 0;
  size_t tail_bytes = 0;
  const std::atomic<bool>* cancel = nullptr;
  int64_t kill_grace_ms = 0;
  const Redactor* redactor = nullptr;
};

Subprocess::Subprocess(std::unique_ptr<Running> running) : running_(std::move(running)) {}
Subprocess::Subprocess(Subprocess&& other) noexcept = default;
Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    KillIfNotWaited();
    running_ = std::move(other.running_);
  }
  return *this;
}

Subprocess::~Subprocess() { KillIfNotWaited(); }

void Subprocess::KillIfNotWaited() {
  if (running_ == nullptr || running_->waited) return;
  // Started and abandoned (the caller failed in between): nothing of it may outlive us.
  ::kill(-running_->pid, SIGKILL);
  while (::waitpid(running_->pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  running_->waited = true;
}

int Subprocess::pid() const { return running_->pid; }
int64_t Subprocess::started_us() const { return running_->started_us; }

Result<Subprocess> Subprocess::Start(const SubprocessOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return InvalidArgument("RunSubprocess: empty argv");
  }
  auto running = std::make_unique<Running>();
  running->start = SteadyClock::now();

  // Everything the child needs is prepared here: after fork it may not allocate.
  std::vector<std::string> env = BuildEnv(options);
  FACTORY_ASSIGN_OR_RETURN(std::string program, ResolveProgram(options.argv[0], env));
  std::vector<char*> argv_ptrs;
  argv_ptrs.reserve(options.argv.size() + 1);
  for (const auto& arg : options.argv) argv_ptrs.push_back(const_cast<char*>(arg.c_str()));
  argv_ptrs.push_back(nullptr);
  std::vector<char*> env_ptrs;
  env_ptrs.reserve(env.size() + 1);
  for (const auto& entry : env) env_ptrs.push_back(const_cast<char*>(entry.c_str()));
  env_ptrs.push_back(nullptr);

  if (options.create_output_files_on_wait) {
    running->stdout_path = options.stdout_path;
    running->stderr_path = options.stderr_path;
  } else {
    FACTORY_RETURN_IF_ERROR(OpenOutputFile(options.stdout_path, running->stdout_file));
    FACTORY_RETURN_IF_ERROR(OpenOutputFile(options.stderr_path, running->stderr_file));
  }

  FACTORY_ASSIGN_OR_RETURN(Pipe in_pipe, MakePipe());
  FACTORY_ASSIGN_OR_RETURN(Pipe out_pipe, MakePipe());
  FACTORY_ASSIGN_OR_RETURN(Pipe err_pipe, MakePipe());
  // Non-blocking: see the read after vfork below.
  FACTORY_ASSIGN_OR_RETURN(Pipe exec_pipe, MakePipe(O_NONBLOCK));

  // vfork, not fork: the child borrows the parent's memory until execve instead of copying its
  // page tables (a worker with dozens of threads and a large heap paid most of a short task's
  // cost in fork: copy_page_range, dup_mmap, copy-on-write faults; bench/HISTORY.md). ChildMain
  // only makes async-signal-safe calls on data prepared above and never returns. All signals
  // are blocked across the call so that no handler runs in the child.
  sigset_t all_signals;
  sigset_t previous_mask;
  sigfillset(&all_signals);
  ::pthread_sigmask(SIG_SETMASK, &all_signals, &previous_mask);
  const pid_t parent = ::getpid();
  const pid_t pid = ::vfork();
  if (pid == 0) {
    ChildMain(options, parent, in_pipe.read.get(), out_pipe.write.get(), err_pipe.write.get(),
              exec_pipe.write.get(), program.c_str(), argv_ptrs.data(), env_ptrs.data());
  }
  const int vfork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  if (pid < 0) return Unavailable(std::string("vfork: ") + std::strerror(vfork_errno));
  // Also set the group from the parent so a kill(-pid) right after fork cannot miss the child
  // (whichever of the two setpgid calls runs first wins; the other is a no-op or EACCES).
  ::setpgid(pid, pid);

  in_pipe.read.Reset();
  out_pipe.write.Reset();
  err_pipe.write.Reset();
  exec_pipe.write.Reset();

  // vfork returns once the child has exec'd or exited. A child that could not get to exec
  // wrote the reason to the pipe before exiting, so it is there now; an empty pipe (EAGAIN,
  // or EOF once the exec closed it) means the exec succeeded: the kernel had committed to the
  // new program when it released us. Waiting for the close as well would hold this thread for
  // the rest of the child's exec (close-on-exec, loading the program), which the other core
  // can do while we start the next one.
  ChildFailure failure{};
  ssize_t got;
  do {
    got = ::read(exec_pipe.read.get(), &failure, sizeof(failure));
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof(failure))) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const std::string reason = std::strerror(failure.err);
    switch (static_cast<ChildStage>(failure.stage)) {
      case ChildStage::kExec:
        if (failure.err == ENOENT) return NotFound("cannot execute " + program + ": " + reason);
        if (failure.err == EACCES)
          return PermissionDenied("cannot execute " + program + ": " + reason);
        return Unavailable("cannot execute " + program + ": " + reason);
      case ChildStage::kChdir:
        if (failure.err == ENOENT || failure.err == ENOTDIR) {
          return NotFound("working directory " + options.cwd + ": " + reason);
        }
        return Unavailable("cannot enter working directory " + options.cwd + ": " + reason);
      case ChildStage::kCgroup:
        return Unavailable("cannot join cgroup " + options.cgroup_dir + ": " + reason);
      case ChildStage::kRlimit:
        return Internal("setrlimit in child: " + reason);
      case ChildStage::kSetup:
        return Internal("child setup: " + reason);
    }
    return Internal("child failed before exec: " + reason);
  }

  running->pid = pid;
  running->started_us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  running->pidfd = Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  running->stdin_fd = std::move(in_pipe.write);
  if (options.stdin_data.empty()) {
    running->stdin_fd.Reset();
  } else {
    ::fcntl(running->stdin_fd.get(), F_SETFL,
            ::fcntl(running->stdin_fd.get(), F_GETFL) | O_NONBLOCK);
    running->stdin_data = options.stdin_data;
  }
  running->stdout_fd = std::move(out_pipe.read);
  running->stderr_fd = std::move(err_pipe.read);
  running->timeout_ms = options.timeout_ms;
  running->tail_bytes = options.tail_bytes;
  running->cancel = options.cancel;
  running->kill_grace_ms = options.kill_grace_ms;
  running->redactor = options.redactor;
  return Subprocess(std::move(running));
}

SubprocessResult Subprocess::Wait() {
  Running& run = *running_;
  if (run.waited) throw std::logic_error("Subprocess::Wait called twice");
  run.waited = true;
  ScopedBlockSigpipe block_sigpipe;  // a child that closes its stdin early must not kill us

  const pid_t pid = run.pid;
  const pid_t pgid = pid;
  const auto& start = run.start;
  SubprocessResult result;
  result.pid = pid;
  result.started_us = run.started_us;

  size_t stdin_offset = 0;
  Tail stdout_tail(run.tail_bytes);
  Tail stderr_tail(run.tail_bytes);

  bool leader_exited = false;
  int wait_status = 0;
  int64_t exited_at_ms = 0;
  int64_t sigkill_at_ms = -1;  // pending escalation after a cancel's SIGTERM
  std::vector<char> buffer(64 * 1024);

  // A file still to be created (create_output_files_on_wait) is created now; a failure is
  // reported once and the output still goes to the tail.
  auto create_file = [&](std::string& path, Fd& file) {
    if (path.empty()) return;
    Status opened = OpenOutputFile(path, file);
    if (!opened && result.output_error.empty()) result.output_error = opened.error().message;
    path.clear();
  };
  // Redacted streams: what a read returns is held back in part until the next read or the end.
  std::optional<StreamRedactor> stdout_redactor;
  std::optional<StreamRedactor> stderr_redactor;
  if (run.redactor != nullptr) {
    stdout_redactor.emplace(*run.redactor);
    stderr_redactor.emplace(*run.redactor);
  }
  int64_t stdout_total = 0;
  int64_t stderr_total = 0;
  auto emit = [](Fd& file, Tail& tail, std::string_view text) {
    if (text.empty()) return;
    if (file.valid()) WriteAll(file.get(), text.data(), text.size());
    tail.Append(text.data(), text.size());
  };
  auto drain = [&](Fd& fd, Fd& file, std::string& path, Tail& tail,
                   std::optional<StreamRedactor>& redactor, int64_t& total) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n > 0) {
      create_file(path, file);
      total += n;
      const std::string_view piece(buffer.data(), static_cast<size_t>(n));
      if (redactor) {
        emit(file, tail, redactor->Feed(piece));
      } else {
        emit(file, tail, piece);
      }
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      fd.Reset();
    }
  };

  // Detects the leader's exit without reaping it: while the zombie is unreaped its pid cannot be
  // reused, so killing -pgid cannot hit an unrelated process group.
  auto check_leader = [&]() {
    if (leader_exited) return;
    siginfo_t info{};
    const int waited = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    // ECHILD: someone else reaped it (SIGCHLD ignored, or a stray waitpid(-1)); it is gone.
    const bool gone = (waited == 0 && info.si_pid == pid) || (waited < 0 && errno == ECHILD);
    if (gone) {
      leader_exited = true;
      exited_at_ms = MillisSince(start);
      // Whatever the leader left behind in its group (`cmd &`) dies with it.
      ::kill(-pgid, SIGKILL);
    }
  };

  while (true) {
    check_leader();
    const int64_t now_ms = MillisSince(start);
    if (!leader_exited) {
      if (run.timeout_ms > 0 && now_ms >= run.timeout_ms && !result.timed_out) {
        result.timed_out = true;
        ::kill(-pgid, SIGKILL);
      }
      if (run.cancel != nullptr && run.cancel->load() && !result.cancelled && !result.timed_out) {
        result.cancelled = true;
        ::kill(-pgid, SIGTERM);
        sigkill_at_ms = now_ms + std::max<int64_t>(0, run.kill_grace_ms);
      }
      if (sigkill_at_ms >= 0 && now_ms >= sigkill_at_ms) {
        ::kill(-pgid, SIGKILL);
        sigkill_at_ms = -1;
      }
    }
    const bool pipes_open = run.stdout_fd.valid() || run.stderr_fd.valid();
    if (leader_exited && (!pipes_open || now_ms - exited_at_ms >= kDrainAfterExitMs)) break;

    // Sleep until output, the leader's exit, or the next deadline we must act on.
    int64_t wait_ms = -1;
    auto bound = [&](int64_t ms) { wait_ms = wait_ms < 0 ? ms : std::min(wait_ms, ms); };
    if (leader_exited) {
      bound(kDrainAfterExitMs - (now_ms - exited_at_ms));
    } else {
      if (run.timeout_ms > 0 && !result.timed_out) bound(run.timeout_ms - now_ms);
      if (sigkill_at_ms >= 0) bound(sigkill_at_ms - now_ms);
      if (run.cancel != nullptr && !result.cancelled) bound(kCancelPollMs);
      if (!run.pidfd.valid()) bound(10);
    }
    if (wait_ms >= 0) wait_ms = std::max<int64_t>(wait_ms, 1);

    struct pollfd fds[4];
    int count = 0;
    int out_idx = -1, err_idx = -1, in_idx = -1;
    if (run.stdout_fd.valid()) {
      out_idx = count;
      fds[count++] = {run.stdout_fd.get(), POLLIN, 0};
    }
    if (run.stderr_fd.valid()) {
      err_idx = count;
      fds[count++] = {run.stderr_fd.get(), POLLIN, 0};
    }
    if (run.stdin_fd.valid()) {
      in_idx = count;
      fds[count++] = {run.stdin_fd.get(), POLLOUT, 0};
    }
    // The pidfd only wakes us; check_leader() does the work.
    if (run.pidfd.valid() && !leader_exited) fds[count++] = {run.pidfd.get(), POLLIN, 0};
    int ready = ::poll(fds, static_cast<nfds_t>(count), static_cast<int>(wait_ms));
    if (ready < 0) {
      if (errno == EINTR) continue;
      ::kill(-pgid, SIGKILL);
      break;
    }
    if (out_idx >= 0 && fds[out_idx].revents != 0) {
      drain(run.stdout_fd, run.stdout_file, run.stdout_path, stdout_tail, stdout_redactor,
            stdout_total);
    }
    if (err_idx >= 0 && fds[err_idx].revents != 0) {
      drain(run.stderr_fd, run.stderr_file, run.stderr_path, stderr_tail, stderr_redactor,
            stderr_total);
    }
    if (in_idx >= 0 && fds[in_idx].revents != 0) {
      if (fds[in_idx].revents & (POLLERR | POLLHUP)) {
        run.stdin_fd.Reset();  // the child closed its stdin; the rest of the data is unwanted
      } else {
        ssize_t n = ::write(run.stdin_fd.get(), run.stdin_data.data() + stdin_offset,
                            run.stdin_data.size() - stdin_offset);
        if (n > 0) stdin_offset += static_cast<size_t>(n);
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || stdin_offset == run.stdin_data.size()) {
          run.stdin_fd.Reset();
        }
      }
    }
  }

  // What the redactors still hold back is the end of each stream.
  if (stdout_redactor) emit(run.stdout_file, stdout_tail, stdout_redactor->Finish());
  if (stderr_redactor) emit(run.stderr_file, stderr_tail, stderr_redactor->Finish());
  // A stream that stayed silent still gets its (empty) file.
  create_file(run.stdout_path, run.stdout_file);
  create_file(run.stderr_path, run.stderr_file);
  run.stdin_fd.Reset();
  run.stdout_fd.Reset();
  run.stderr_fd.Reset();
  run.stdout_file.Reset();
  run.stderr_file.Reset();
  run.pidfd.Reset();

  // Reap the leader (it exited, or we killed the group after a poll failure).
  if (!leader_exited) ::kill(-pgid, SIGKILL);
  bool reaped = false;
  while (true) {
    if (::waitpid(pid, &wait_status, 0) >= 0) {
      reaped = true;
      break;
    }
    if (errno != EINTR) break;  // ECHILD: reaped elsewhere, the status is lost
  }
  // Members SIGKILLed a moment ago may still be on their way out; wait (bounded) until none is
  // alive so callers can rely on "nothing of it remains" once we return.
  if (::kill(-pgid, 0) == 0) {
    const auto wait_start = SteadyClock::now();
    while (GroupHasLiveMembers(pgid) && MillisSince(wait_start) < kGroupGoneWaitMs) {
      ::usleep(2000);
    }
  }

  if (!reaped) {
    result.exit_code = -1;
  } else if (WIFEXITED(wait_status)) {
    result.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    result.signal = WTERMSIG(wait_status);
    result.exit_code = 128 + *result.signal;
  }
  result.duration_ms = MillisSince(start);
  result.stdout_bytes = stdout_total;
  result.stderr_bytes = stderr_total;
  result.stdout_tail = stdout_tail.Take();
  result.stderr_tail = stderr_tail.Take();
  return result;
}

int ReserveDescriptors(int count) {
  struct rlimit nofile {};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0) return 0;
  const rlim_t wanted = static_cast<rlim_t>(std::max(count, 0));
  if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < wanted) {
    struct rlimit raised = nofile;
    raised.rlim_cur = nofile.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, nofile.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
  }
  const int allowed = nofile.rlim_cur == RLIM_INFINITY
                          ? count
                          : static_cast<int>(std::min<rlim_t>(wanted, nofile.rlim_cur));
  if (allowed <= 3) return allowed;
  // Occupying the highest slot grows the table to hold it (tables never shrink).
  const int highest = allowed - 1;
  if (::fcntl(highest, F_GETFD) == -1 && errno == EBADF) {
    if (::dup2(STDERR_FILENO, highest) == highest) ::close(highest);
  }
  return allowed;
}

Result<SubprocessResult> RunSubprocess(const SubprocessOptions& options) {
  FACTORY_ASSIGN_OR_RETURN(Subprocess child, Subprocess::Start(options));
  return child.Wait();
}

}  // namespace factory
