#include "workspace/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

extern char** environ;
#include "core/redact.h"

namespace factory {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> FindInPath(const std::string& name, const std::string& path_value) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  std::string path = path_value.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_value;
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

std::string ProcessPath() {
  const char* path = std::getenv("PATH");
  return path != nullptr ? path : "";
}

// --- bubblewrap detection -------------------------------------------------------------------

struct BwrapProbe {
  bool usable = false;
  std::string path;
  std::string reason;  // why it is not usable
};

const BwrapProbe& ProbeBwrap() {
  static const BwrapProbe probe = [] {
    BwrapProbe result;
    auto path = FindInPath("bwrap", ProcessPath());
    if (!path) {
      result.reason = "bwrap is not installed";
      return result;
    }
    result.path = *path;
    // The flags the sandbox really uses: a bare `--ro-bind / / true` can pass where a pid or
    // network namespace is not allowed.
    SubprocessOptions options;
    options.argv = {
        *path,           "--ro-bind", "/",       "/",    "--dev",         "/dev",
        "--proc",        "/proc",     "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent",
        "--new-session", "true"};
    options.timeout_ms = 10'000;
    auto run = RunSubprocess(options);
    if (!run) {
      result.reason = "bwrap failed to start: " + run.error().message;
    } else if (run->exit_code != 0) {
      result.reason = "bwrap does not work here (exit " + std::to_string(run->exit_code) +
                      "): " + run->stderr_tail;
    } else {
      result.usable = true;
    }
    return result;
  }();
  return probe;
}

// --- pids cgroup ------------------------------------------------------------------------------

std::optional<std::string> DetectCgroupRoot(const std::string& configured) {
  std::vector<std::string> candidates;
  if (!configured.empty()) {
    candidates.push_back(configured);
  } else {
    candidates = {"/sys/fs/cgroup/pids", "/sys/fs/cgroup"};
  }
  for (const auto& root : candidates) {
    const std::string probe = root + "/factory-probe-" + std::to_string(::getpid());
    std::error_code error;
    if (!fs::create_directory(probe, error) && error) continue;
    const bool has_pids = fs::exists(probe + "/pids.max", error);
    fs::remove(probe, error);
    if (has_pids) return root;
  }
  return std::nullopt;
}

const std::optional<std::string>& CgroupRoot(const std::string& configured) {
  // Detected once per configured value; in practice one value per process.
  static std::mutex mutex;
  static std::map<std::string, std::optional<std::string>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(configured);
  if (it == cache.end()) it = cache.emplace(configured, DetectCgroupRoot(configured)).first;
  return it->second;
}

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  out.flush();
  return static_cast<bool>(out);
}

std::vector<int> ReadPids(const std::string& procs_path) {
  std::vector<int> pids;
  std::ifstream in(procs_path);
  for (int pid; in >> pid;) pids.push_back(pid);
  return pids;
}

// A cgroup holding one command's process tree. Its destructor kills whatever is still inside
// (including processes that left the process group or session) and removes it.
class PidsCgroup {
 public:
  static std::unique_ptr<PidsCgroup> Create(const std::string& root, int64_t max_processes) {
    static std::atomic<uint64_t> counter{0};
    std::string dir = root + "/factory-" + std::to_string(::getpid()) + "-" +
                      std::to_string(counter.fetch_add(1));
    std::error_code error;
    if (!fs::create_directory(dir, error)) return nullptr;
    auto cgroup = std::unique_ptr<PidsCgroup>(new PidsCgroup(std::move(dir)));
    if (max_processes > 0 &&
        !WriteFile(cgroup->dir_ + "/pids.max", std::to_string(max_processes))) {
      return nullptr;  // the destructor removes the directory
    }
    return cgroup;
  }
  PidsCgroup(const PidsCgroup&) = delete;
  PidsCgroup& operator=(const PidsCgroup&) = delete;
  ~PidsCgroup() {
    const std::string procs = dir_ + "/cgroup.procs";
    const bool has_kill = fs::exists(dir_ + "/cgroup.kill");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      std::vector<int> pids = ReadPids(procs);
      if (pids.empty()) break;
      if (has_kill) {
        WriteFile(dir_ + "/cgroup.kill", "1");
      } else {
        for (int pid : pids) ::kill(pid, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // rmdir fails while a process is still in it (only after the 10 s above); a leftover empty
    // cgroup is harmless.
    for (int tries = 0; tries < 100 && ::rmdir(dir_.c_str()) != 0 && errno == EBUSY; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const std::string& dir() const { return dir_; }

 private:
  explicit PidsCgroup(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// --- environment, disk usage, /etc -------------------------------------------------------

constexpr int64_t kMiB = 1024 * 1024;
constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
// Inside the bubblewrap sandbox: HOME lives in the private /tmp, so the /tmp cap covers it.
constexpr char kSandboxHome[] = "/tmp/home";

bool IsLocaleName(std::string_view name) {
  return name == "LANG" || name == "LANGUAGE" || name.rfind("LC_", 0) == 0;
}

int64_t UsageBelow(int dir_fd, dev_t device) {
  DIR* dir = ::fdopendir(dir_fd);
  if (dir == nullptr) {
    ::close(dir_fd);
    return 0;
  }
  int64_t total = 0;
  while (dirent* entry = ::readdir(dir)) {
    const char* name = entry->d_name;
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
    struct stat st {};
    if (::fstatat(::dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    total += static_cast<int64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode) && st.st_dev == device) {
      int child = ::openat(::dirfd(dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child >= 0) total += UsageBelow(child, device);
    }
  }
  ::closedir(dir);
  return total;
}

// Bytes used in the file system of the open directory `fd`; 0 when unknown.
int64_t UsedBytesAt(int fd) {
  struct statfs st {};
  if (fd < 0 || ::fstatfs(fd, &st) != 0) return 0;
  return static_cast<int64_t>(st.f_blocks - st.f_bfree) * static_cast<int64_t>(st.f_bsize);
}

// Whether the open directory `fd` is the root of a tmpfs of `size_bytes` other than this
// process's own /tmp: the sandbox's private /tmp once bwrap has mounted it.
bool IsPrivateTmpfs(int fd, int64_t size_bytes) {
  struct statfs fs_info {};
  if (::fstatfs(fd, &fs_info) != 0 || fs_info.f_type != TMPFS_MAGIC) return false;
  if (static_cast<int64_t>(fs_info.f_blocks) * static_cast<int64_t>(fs_info.f_bsize) !=
      size_bytes) {
    return false;
  }
  struct stat own {};
  struct stat seen {};
  if (::fstat(fd, &seen) != 0) return false;
  return ::stat("/tmp", &own) != 0 || own.st_dev != seen.st_dev;
}

// An owned descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::vector<std::string> ComputeSecretEtcPaths() {
  std::vector<std::string> paths;
  auto add = [&](const std::string& path) {
    if (std::find(paths.begin(), paths.end(), path) == paths.end()) paths.push_back(path);
  };
  std::error_code error;
  for (const char* name : {"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
                           "/etc/sudoers", "/etc/sudoers.d", "/etc/ssl/private"}) {
    if (fs::exists(fs::symlink_status(name, error))) add(name);
  }
  for (const auto& entry : fs::directory_iterator("/etc/ssh", error)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("ssh_host_", 0) == 0 && file.size() > 4 &&
        file.compare(file.size() - 4, 4, "_key") == 0) {
      add(entry.path().string());
    }
  }
  // Whatever the host keeps from other users is a secret too (a VPN's keys, a network's
  // passwords); a masked directory is not entered.
  fs::recursive_directory_iterator it("/etc", fs::directory_options::skip_permission_denied, error);
  for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || S_ISLNK(st.st_mode)) continue;
    const bool is_dir = S_ISDIR(st.st_mode);
    const bool readable =
        is_dir ? (st.st_mode & S_IROTH) && (st.st_mode & S_IXOTH) : (st.st_mode & S_IROTH) != 0;
    if (!readable && (is_dir || S_ISREG(st.st_mode))) {
      add(it->path().string());
      if (is_dir) it.disable_recursion_pending();
    } else if (is_dir &&
               std::find(paths.begin(), paths.end(), it->path().string()) != paths.end()) {
      it.disable_recursion_pending();
    }
  }
  // A file masked below an already masked directory would fail to bind (its mount point is
  // gone under the directory's empty tmpfs).
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> kept;
  for (const auto& path : paths) {
    const bool below = std::any_of(kept.begin(), kept.end(), [&](const std::string& parent) {
      return path.size() > parent.size() && path.compare(0, parent.size(), parent) == 0 &&
             path[parent.size()] == '/';
    });
    if (!below) kept.push_back(path);
  }
  return kept;
}

// --- git of the worktree ------------------------------------------------------------------------

std::string ReadFirstLine(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

struct GitPaths {
  std::string admin_dir;   // <common>/worktrees/<name>
  std::string common_dir;  // the repository's git dir
};

// The git dirs of a linked worktree, when its `.git` file ("gitdir: <admin dir>") names an
// admin dir outside the worktree whose `gitdir` file points back at this worktree's `.git`, in
// the layout `git worktree add` makes (<common>/worktrees/<name>). The `.git` file is the
// agent's to rewrite, and only the worktree is the agent's to write: without these checks it
// could have any host directory bound into its next command.
std::optional<GitPaths> GitPathsOf(const std::string& worktree) {
  const std::string line = ReadFirstLine(fs::path(worktree) / ".git");
  if (line.rfind("gitdir: ", 0) != 0) return std::nullopt;
  std::error_code error;
  const fs::path own_root = fs::weakly_canonical(worktree, error);
  if (error) return std::nullopt;
  fs::path admin = line.substr(8);
  if (admin.is_relative()) admin = own_root / admin;
  admin = fs::weakly_canonical(admin, error);
  if (error || !fs::is_directory(admin, error)) return std::nullopt;
  const auto [root_end, unused] =
      std::mismatch(own_root.begin(), own_root.end(), admin.begin(), admin.end());
  if (root_end == own_root.end()) return std::nullopt;  // inside the worktree
  const fs::path back = fs::weakly_canonical(ReadFirstLine(admin / "gitdir"), error);
  if (error || back != own_root / ".git") return std::nullopt;
  const fs::path common = admin.parent_path().parent_path();
  if (admin.parent_path().filename() != "worktrees" ||
      !fs::is_directory(common / "objects", error)) {
    return std::nullopt;
  }
  return GitPaths{admin.string(), common.string()};
}

// --- common run path ------------------------------------------------------------------------

// A private HOME and TMPDIR on the host for the rlimit sandbox, removed with the object.
class HostScratch {
 public:
  static std::unique_ptr<HostScratch> Create() {
    std::error_code error;
    std::string pattern = (fs::temp_directory_path(error) / "factory-sandbox-XXXXXX").string();
    if (error || ::mkdtemp(pattern.data()) == nullptr) return nullptr;
    auto scratch = std::unique_ptr<HostScratch>(new HostScratch(pattern));
    if (!fs::create_directory(scratch->home(), error) ||
        !fs::create_directory(scratch->tmp(), error)) {
      return nullptr;
    }
    return scratch;
  }
  HostScratch(const HostScratch&) = delete;
  HostScratch& operator=(const HostScratch&) = delete;
  ~HostScratch() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  const std::string& dir() const { return dir_; }
  std::string home() const { return dir_ + "/home"; }
  std::string tmp() const { return dir_ + "/tmp"; }

 private:
  explicit HostScratch(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// The sandbox's own part of one run, made before the start: the rlimit sandbox's host scratch
// directory, where HOME and TMPDIR point, and bubblewrap's private /tmp.
struct RunSetup {
  std::unique_ptr<HostScratch> scratch;
  std::string home;
  std::string tmpdir;
  // bwrap waits on `block_read` (--block-fd) with the sandbox set up, until `block_write` is
  // written: meanwhile the factory opens the private /tmp as `tmp`. Holding it keeps the tmpfs
  // alive after the command's end, until the last measurement; the tmpfs goes with the
  // descriptor.
  UniqueFd block_read;
  UniqueFd block_write;
  UniqueFd tmp;
};

// The first child of `pid` (bwrap's process inside the new namespaces), or 0.
int FirstChildOf(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  int child = 0;
  in >> child;
  return child;
}

// Whether `pid` has exited (a zombie not yet reaped, or gone).
bool HasExited(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return true;
  const char state = stat[paren + 2];
  return state == 'Z' || state == 'X';
}

// What one running command is watched for: its disk quota and its caller's cancel flag.
// Stopping it goes through `stop` (RunSubprocess's cancel flag) and, past the quota, the
// cgroup's cgroup.kill when there is one.
struct QuotaWatch {
  std::function<int64_t()> written;  // bytes the command added so far
  int64_t quota_bytes = 0;           // 0: no quota, only the cancel flag is forwarded
  const std::atomic<bool>* caller_cancel = nullptr;
  std::string cgroup_dir;  // empty: no cgroup.kill to write
  std::atomic<bool> stop{false};
  std::atomic<bool> exceeded{false};
};

// One thread for the whole process watches every running command: it measures each one's
// writes every kPeriod (less often when a measurement is slow, so it stays a small share of a
// core) and forwards caller cancel flags every kCancelPeriod. A command's start and end only
// add and remove an entry: a thread per command cost its creation, and at the end a wake-up
// and a join, which on a loaded machine waited milliseconds for a core.
// Thread-safety: every method may be called from any thread.
class QuotaMonitor {
 public:
  // The process's monitor; its thread starts on first use and lives as long as the process.
  static QuotaMonitor& Get() {
    static QuotaMonitor* const monitor = new QuotaMonitor();  // never destroyed: see Loop()
    return *monitor;
  }
  QuotaMonitor(const QuotaMonitor&) = delete;
  QuotaMonitor& operator=(const QuotaMonitor&) = delete;

  // Watches `watch` until Remove(watch); its first measurement is kPeriod from now.
  // REQUIRES: watch outlives the matching Remove().
  void Add(QuotaWatch& watch) {
    bool sooner = false;
    {
      std::lock_guard lock(mutex_);
      const Clock::time_point now = Clock::now();
      entries_.push_back(Entry{&watch, now + kPeriod, false});
      // Woken only when this entry is due before the thread would wake anyway: no wake-up
      // (a core to find, on a loaded machine) on the start of every command.
      const Clock::time_point first =
          watch.caller_cancel != nullptr ? now + kCancelPeriod : now + kPeriod;
      sooner = first < sleeping_until_;
    }
    if (sooner) wake_.notify_one();
  }
  // Stops watching `watch`; returns once the monitor does not touch it any more (waits for a
  // measurement of it that is under way).
  void Remove(QuotaWatch& watch) {
    std::unique_lock lock(mutex_);
    auto find = [&] {
      return std::find_if(entries_.begin(), entries_.end(),
                          [&](const Entry& entry) { return entry.watch == &watch; });
    };
    measured_.wait(lock, [&] { return find() == entries_.end() || !find()->measuring; });
    if (auto it = find(); it != entries_.end()) entries_.erase(it);
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kPeriod = std::chrono::milliseconds(250);
  static constexpr auto kCancelPeriod = std::chrono::milliseconds(20);

  struct Entry {
    QuotaWatch* watch;
    Clock::time_point next_measure;
    bool measuring;  // the monitor is measuring it without mutex_ held
  };

  QuotaMonitor() {
    // Detached: the monitor is never destroyed, and a thread blocked on its condition variable
    // does not keep the process from exiting.
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      const Clock::time_point now = Clock::now();
      Clock::time_point until = Clock::time_point::max();
      Entry* due = nullptr;
      for (Entry& entry : entries_) {
        QuotaWatch& watch = *entry.watch;
        if (watch.caller_cancel != nullptr) {
          if (watch.caller_cancel->load()) watch.stop = true;
          if (!watch.stop.load()) until = std::min(until, now + kCancelPeriod);
        }
        if (watch.quota_bytes <= 0 || watch.exceeded.load()) continue;
        if (entry.next_measure <= now && due == nullptr) {
          due = &entry;
        } else {
          until = std::min(until, entry.next_measure);
        }
      }
      if (due == nullptr) {
        sleeping_until_ = until;
        if (until == Clock::time_point::max()) {
          wake_.wait(lock);
        } else {
          wake_.wait_until(lock, until);
        }
        sleeping_until_ = Clock::time_point::min();  // awake: Add() need not wake it
        continue;
      }
      // Measured without the mutex (slow on a large worktree); Remove() waits for the end of
      // it. Add() may move the entry meanwhile, so it is looked up again afterwards.
      QuotaWatch& watch = *due->watch;
      due->measuring = true;
      lock.unlock();
      const Clock::time_point began = Clock::now();
      const int64_t written = watch.written();
      const Clock::duration took = Clock::now() - began;
      if (written > watch.quota_bytes) {
        watch.exceeded = true;
        watch.stop = true;
        // Stops the whole tree at once, wherever its processes moved; the flag alone would
        // give it RunSubprocess's SIGTERM grace period to write more.
        if (!watch.cgroup_dir.empty()) WriteFile(watch.cgroup_dir + "/cgroup.kill", "1");
      }
      lock.lock();
      for (Entry& entry : entries_) {
        if (entry.watch != &watch) continue;
        entry.measuring = false;
        entry.next_measure = Clock::now() + std::max<Clock::duration>(kPeriod, took * 10);
      }
      measured_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;      // Add(): a new deadline
  std::condition_variable measured_;  // a measurement ended
  std::vector<Entry> entries_;        // guarded by mutex_
  // When the thread wakes by itself; min() while it is awake. Guarded by mutex_.
  Clock::time_point sleeping_until_ = Clock::time_point::min();
};

class SandboxBase : public Sandbox {
 public:
  explicit SandboxBase(const SandboxConfig& config) : config_(config) {
    if (config_.use_pids_cgroup) cgroup_root_ = CgroupRoot(config_.cgroup_root);
    if (config_.disk_mb > 0) QuotaMonitor::Get();  // its thread starts here, not in a Run()
  }

  bool EnforcesProcessLimit() const override {
    return cgroup_root_.has_value() || ::geteuid() != 0;
  }
  int64_t disk_quota_mb() const override { return config_.disk_mb; }

  Result<SubprocessResult> Run(const SandboxedCommand& command) override {
    if (command.argv.empty() == command.shell.empty()) {
      return InvalidArgument("a sandboxed command needs exactly one of argv and shell");
    }
    if (command.worktree.empty() || command.worktree.front() != '/') {
      return InvalidArgument("the worktree must be an absolute path: '" + command.worktree + "'");
    }
    std::error_code error;
    if (!fs::is_directory(command.worktree, error)) {
      return NotFound("worktree does not exist: " + command.worktree);
    }
    for (const auto& path : command.writable_paths) {
      if (path.empty() || path.front() != '/') {
        return InvalidArgument("writable paths must be absolute: '" + path + "'");
      }
    }
    for (const auto& path : command.read_only_paths) {
      if (path.empty() || path.front() != '/') {
        return InvalidArgument("read-only paths must be absolute: '" + path + "'");
      }
      if (!fs::exists(path, error)) return NotFound("read-only path does not exist: " + path);
    }
    std::vector<std::string> inner = command.shell.empty()
                                         ? command.argv
                                         : std::vector<std::string>{"/bin/sh", "-c", command.shell};
    std::vector<std::string> pass = config_.env;
    pass.insert(pass.end(), command.pass_env.begin(), command.pass_env.end());
    std::map<std::string, std::string> env = CleanEnvironment(pass, command.env);
    // Resolve here so a missing program is NotFound for both sandboxes (inside bwrap it would
    // only be an exit code).
    if (!FindInPath(inner[0], env["PATH"])) {
      return NotFound("program not found: " + inner[0]);
    }
    // Without the attempt's quota the command has one of its own, as large.
    DiskQuota own_quota(command.disk_quota == nullptr ? config_.disk_mb : 0);
    DiskQuota& quota = command.disk_quota != nullptr ? *command.disk_quota : own_quota;
    const int64_t quota_bytes = quota.quota_bytes();
    FACTORY_ASSIGN_OR_RETURN(RunSetup setup, Prepare(/*measure_tmp=*/quota.enabled()));
    env["HOME"] = setup.home;
    env["TMPDIR"] = setup.tmpdir;

    SubprocessOptions options;
    options.argv = Wrap(command, inner, setup);
    if (setup.block_read.get() >= 0) options.inherit_fds = {setup.block_read.get()};
    options.cwd = command.worktree;
    options.env_set = std::move(env);
    options.clear_env = true;
    options.stdin_data = command.stdin_data;
    options.stdout_path = command.stdout_path;
    options.stderr_path = command.stderr_path;
    options.timeout_ms = command.timeout_ms;
    options.tail_bytes = command.tail_bytes;
    options.limits = command.limits;
    // Whatever an agent or a gate prints may hold a secret it found; its logs never do.
    options.redactor = &ProcessRedactor();

    std::unique_ptr<PidsCgroup> cgroup;
    if (cgroup_root_) {
      cgroup = PidsCgroup::Create(*cgroup_root_, command.limits.max_processes);
      if (!cgroup && command.limits.max_processes > 0 && ::geteuid() == 0) {
        // EnforcesProcessLimit() promised a limit; RLIMIT_NPROC would not bind root.
        return Unavailable("cannot create a pids cgroup under " + *cgroup_root_);
      }
      if (cgroup) {
        options.cgroup_dir = cgroup->dir();
        // The cgroup counts exactly this tree; RLIMIT_NPROC would count all of the user's
        // processes on the machine.
        options.limits.max_processes = 0;
      }
    }

    if (quota.enabled()) quota.Track(command.worktree);
    auto written = [&] { return quota.WorktreeBytes() + TmpUsedBytes(setup); };
    QuotaWatch watch;
    watch.written = written;
    watch.quota_bytes = quota_bytes;
    watch.caller_cancel = command.cancel;
    if (cgroup && fs::exists(cgroup->dir() + "/cgroup.kill", error)) {
      watch.cgroup_dir = cgroup->dir();
    }
    const bool watched = quota_bytes > 0 || command.cancel != nullptr;
    if (watched) options.cancel = &watch.stop;
    auto process = Subprocess::Start(options);
    if (!process) return std::unexpected(process.error());
    Started(setup, process->pid());
    if (watched) QuotaMonitor::Get().Add(watch);
    SubprocessResult result = process->Wait();
    if (watched) QuotaMonitor::Get().Remove(watch);
    cgroup.reset();  // kills anything of the tree still alive, whatever group it moved to
    if (watch.exceeded.load()) {
      result.quota_exceeded = true;
      result.cancelled = false;  // stopped through the cancel flag, but not by the caller
    } else if (quota_bytes > 0 && written() > quota_bytes) {
      // Written between the last measurement and the end (a command quicker than one period);
      // its /tmp is still held here, so what it wrote there counts too.
      result.quota_exceeded = true;
    }
    if (result.quota_exceeded) quota.MarkExceeded();
    return result;  // `setup` goes now: the private /tmp with it
  }

 protected:
  virtual std::vector<std::string> Wrap(const SandboxedCommand& command,
                                        const std::vector<std::string>& inner,
                                        const RunSetup& setup) const = 0;
  // HOME and TMPDIR of one run, and whatever must live as long as it; `measure_tmp`: the disk
  // quota will measure its /tmp.
  virtual Result<RunSetup> Prepare(bool measure_tmp) const = 0;
  // Right after the start of process `pid`, before it is watched.
  virtual void Started(RunSetup& setup, int pid) const = 0;
  // What the run holds in its /tmp now (until `setup` goes, also after the command's end).
  virtual int64_t TmpUsedBytes(const RunSetup& setup) const = 0;

  SandboxConfig config_;
  std::optional<std::string> cgroup_root_;
};

class BubblewrapSandbox final : public SandboxBase {
 public:
  BubblewrapSandbox(const SandboxConfig& config, std::string bwrap)
      : SandboxBase(config), bwrap_(std::move(bwrap)), system_binds_(SystemBinds()) {}
  std::string_view name() const override { return "bubblewrap"; }

 protected:
  std::vector<std::string> Wrap(const SandboxedCommand& command,
                                const std::vector<std::string>& inner,
                                const RunSetup& setup) const override {
    std::vector<std::string> argv = {bwrap_};
    argv.insert(argv.end(), system_binds_.begin(), system_binds_.end());
    // The private /tmp goes first: a worktree, a repository or a read path kept below the
    // host's /tmp is then bound on top of it.
    argv.insert(argv.end(),
                {"--size", std::to_string(TmpBytes()), "--tmpfs", "/tmp", "--dir", kSandboxHome});
    for (const auto& path : config_.read_paths) {
      argv.insert(argv.end(), {"--ro-bind-try", path, path});
    }
    for (const auto& path : command.read_only_paths) {
      argv.insert(argv.end(), {"--ro-bind", path, path});
    }
    if (command.network) {
      // DNS: /etc/resolv.conf often links into /run (systemd-resolved), which is not bound.
      std::error_code error;
      if (fs::is_symlink("/etc/resolv.conf", error)) {
        const fs::path target = fs::canonical("/etc/resolv.conf", error);
        if (!error) argv.insert(argv.end(), {"--ro-bind-try", target.string(), target.string()});
      }
    }
    if (auto git = GitPathsOf(command.worktree)) {
      // What git reads to work in a linked worktree; not hooks, logs or the other worktrees.
      for (const char* part :
           {"objects", "refs", "packed-refs", "HEAD", "config", "info", "shallow", "commondir"}) {
        const std::string path = git->common_dir + "/" + part;
        argv.insert(argv.end(), {"--ro-bind-try", path, path});
      }
      argv.insert(argv.end(), {"--ro-bind", git->admin_dir, git->admin_dir});
    }
    argv.insert(argv.end(), {"--bind", command.worktree, command.worktree});
    for (const auto& path : command.writable_paths) {
      argv.insert(argv.end(), {"--bind", path, path});
    }
    argv.push_back("--unshare-all");
    if (command.network) argv.push_back("--share-net");
    argv.insert(argv.end(), {"--die-with-parent", "--new-session"});
    if (setup.block_read.get() >= 0) {
      argv.insert(argv.end(), {"--block-fd", std::to_string(setup.block_read.get())});
    }
    argv.insert(argv.end(), {"--chdir", command.worktree, "--"});
    argv.insert(argv.end(), inner.begin(), inner.end());
    return argv;
  }

  Result<RunSetup> Prepare(bool measure_tmp) const override {
    RunSetup setup;
    setup.home = kSandboxHome;
    setup.tmpdir = "/tmp";
    if (!measure_tmp) return setup;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return Unavailable(std::string("cannot create a pipe for bwrap: ") + std::strerror(errno));
    }
    setup.block_read.reset(fds[0]);
    setup.block_write.reset(fds[1]);
    return setup;
  }

  void Started(RunSetup& setup, int pid) const override {
    if (setup.block_write.get() < 0) return;  // not measured: bwrap does not wait
    setup.block_read.reset();                 // the child has its own copy
    // bwrap's first child lives in the new mount namespace and waits on --block-fd once the
    // sandbox is set up: its /tmp is then the private tmpfs. Before that it is another file
    // system (the host's /tmp, bwrap's own staging tmpfs), told apart by its size and device.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (const int child = FirstChildOf(pid); child > 0) {
        const std::string tmp = "/proc/" + std::to_string(child) + "/root/tmp";
        UniqueFd fd(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (fd.get() >= 0 && IsPrivateTmpfs(fd.get(), TmpBytes())) {
          setup.tmp = std::move(fd);
          break;
        }
      } else if (HasExited(pid)) {
        break;  // bwrap failed before it got there; Wait() reports its exit
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (setup.tmp.get() < 0) {
      spdlog::warn(
          "sandbox: cannot open the private /tmp of process {}: its writes there are "
          "not counted in the disk quota",
          pid);
    }
    // A byte, or the end of the pipe, lets the command start.
    const char go = 'x';
    [[maybe_unused]] const ssize_t ignored = ::write(setup.block_write.get(), &go, 1);
    setup.block_write.reset();
  }

  int64_t TmpUsedBytes(const RunSetup& setup) const override {
    return UsedBytesAt(setup.tmp.get());
  }

 private:
  // The read-only system part of the root, the same for every command: /usr, the top-level
  // directories of binaries and libraries (symlinks into /usr on a merged-/usr system stay
  // symlinks), /etc with its secrets masked, fresh /dev and /proc.
  static std::vector<std::string> SystemBinds() {
    std::vector<std::string> args = {"--ro-bind", "/usr", "/usr"};
    for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
      std::error_code error;
      const auto status = fs::symlink_status(top, error);
      if (error || !fs::exists(status)) continue;
      if (fs::is_symlink(status)) {
        const fs::path target = fs::read_symlink(top, error);
        if (!error) args.insert(args.end(), {"--symlink", target.string(), top});
      } else if (fs::is_directory(status)) {
        args.insert(args.end(), {"--ro-bind", top, top});
      }
    }
    args.insert(args.end(), {"--ro-bind", "/etc", "/etc"});
    for (const auto& secret : SecretEtcPaths()) {
      std::error_code error;
      if (fs::is_directory(fs::symlink_status(secret, error))) {
        args.insert(args.end(), {"--tmpfs", secret});
      } else {
        args.insert(args.end(), {"--ro-bind", "/dev/null", secret});
      }
    }
    args.insert(args.end(), {"--dev", "/dev", "--proc", "/proc"});
    return args;
  }

  int64_t TmpBytes() const { return std::max<int64_t>(config_.tmp_mb, 1) * kMiB; }

  std::string bwrap_;
  const std::vector<std::string> system_binds_;
};

class RlimitSandbox final : public SandboxBase {
 public:
  RlimitSandbox(const SandboxConfig& config, const std::string& why) : SandboxBase(config) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
      spdlog::warn(
          "sandbox: running commands without bubblewrap ({}): they can read every file this "
          "user can (keys in ~/.ssh, other repositories), write wherever this user can, and "
          "use the network. Only a clean environment, a private HOME and TMPDIR, the disk "
          "quota, rlimits and timeouts apply. Install bubblewrap (bwrap) for isolation.",
          why);
    });
  }
  std::string_view name() const override { return "rlimit"; }

 protected:
  std::vector<std::string> Wrap(const SandboxedCommand&, const std::vector<std::string>& inner,
                                const RunSetup&) const override {
    return inner;
  }

  Result<RunSetup> Prepare(bool) const override {
    RunSetup setup;
    setup.scratch = HostScratch::Create();
    if (!setup.scratch) return Unavailable("cannot create a private HOME and TMPDIR for a command");
    setup.home = setup.scratch->home();
    setup.tmpdir = setup.scratch->tmp();
    return setup;
  }

  void Started(RunSetup&, int) const override {}

  int64_t TmpUsedBytes(const RunSetup& setup) const override {
    return DiskUsageBytes(setup.scratch->dir());
  }
};

}  // namespace

bool BubblewrapAvailable() { return ProbeBwrap().usable; }

void DiskQuota::Track(const std::string& dir) {
  if (!enabled()) return;
  {
    std::lock_guard lock(mutex_);
    if (baselines_.contains(dir)) return;
  }
  const int64_t usage = DiskUsageBytes(dir);
  std::lock_guard lock(mutex_);
  baselines_.emplace(dir, usage);  // a concurrent first Track won: its baseline stays
}

int64_t DiskQuota::WorktreeBytes() const {
  std::map<std::string, int64_t> baselines;
  {
    std::lock_guard lock(mutex_);
    baselines = baselines_;
  }
  int64_t total = 0;
  for (const auto& [dir, baseline] : baselines) {
    total += std::max<int64_t>(0, DiskUsageBytes(dir) - baseline);
  }
  return total;
}

Status DiskQuota::Reserve(int64_t more) {
  if (!enabled()) return Ok();
  if (!exceeded() && WorktreeBytes() + std::max<int64_t>(more, 0) <= quota_bytes()) return Ok();
  MarkExceeded();
  return ResourceExhausted(Message());
}

std::string DiskQuota::Message() const { return DiskQuotaMessage(quota_mb_); }

std::string DiskQuotaMessage(int64_t disk_mb) {
  return "the attempt wrote more than " + std::to_string(disk_mb) + " MiB (sandbox.disk_mb)";
}

std::map<std::string, std::string> CleanEnvironment(const std::vector<std::string>& pass,
                                                    const std::map<std::string, std::string>& set) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text = *entry;
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos || equals == 0) continue;
    const std::string_view name = text.substr(0, equals);
    const bool wanted = name == "PATH" || name == "TERM" || name == "TZ" || IsLocaleName(name) ||
                        std::find(pass.begin(), pass.end(), name) != pass.end();
    if (wanted) env.emplace(std::string(name), std::string(text.substr(equals + 1)));
  }
  if (env.find("PATH") == env.end()) env["PATH"] = kDefaultPath;
  for (const auto& [name, value] : set) env[name] = value;
  return env;
}

int64_t DiskUsageBytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return 0;
  }
  return static_cast<int64_t>(st.st_blocks) * 512 + UsageBelow(fd, st.st_dev);
}

const std::vector<std::string>& SecretEtcPaths() {
  static const std::vector<std::string> paths = ComputeSecretEtcPaths();
  return paths;
}

std::unique_ptr<Sandbox> MakeSandbox(const SandboxConfig& config) {
  if (!config.use_bubblewrap) {
    return std::make_unique<RlimitSandbox>(
        config, "bubblewrap turned off (config.yaml sandbox.enabled: false, or --no-sandbox)");
  }
  const BwrapProbe& probe = ProbeBwrap();
  if (probe.usable) return std::make_unique<BubblewrapSandbox>(config, probe.path);
  return std::make_unique<RlimitSandbox>(config, probe.reason);
}

}  // namespace factory
