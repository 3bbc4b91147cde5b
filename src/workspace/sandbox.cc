#include "workspace/sandbox.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

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

// --- common run path ------------------------------------------------------------------------

// If `worktree/.git` is a file ("gitdir: <common>/worktrees/<name>"), the repository's common
// git directory; empty otherwise.
std::string GitCommonDirOf(const std::string& worktree) {
  std::ifstream in(worktree + "/.git");
  std::string line;
  if (!std::getline(in, line) || line.rfind("gitdir: ", 0) != 0) return {};
  fs::path gitdir = line.substr(8);
  if (gitdir.is_relative()) gitdir = fs::path(worktree) / gitdir;
  fs::path common = gitdir.parent_path().parent_path();  // strip "worktrees/<name>"
  std::error_code error;
  if (!fs::is_directory(common, error)) return {};
  return fs::weakly_canonical(common, error).string();
}

class SandboxBase : public Sandbox {
 public:
  explicit SandboxBase(const SandboxConfig& config) : config_(config) {
    if (config_.use_pids_cgroup) cgroup_root_ = CgroupRoot(config_.cgroup_root);
  }

  bool EnforcesProcessLimit() const override {
    return cgroup_root_.has_value() || ::geteuid() != 0;
  }

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
    std::vector<std::string> inner = command.shell.empty()
                                         ? command.argv
                                         : std::vector<std::string>{"/bin/sh", "-c", command.shell};
    // Resolve here so a missing program is NotFound for both sandboxes (inside bwrap it would
    // only be an exit code).
    auto path_it = command.env.find("PATH");
    std::string path_value = path_it != command.env.end() ? path_it->second : ProcessPath();
    if (!FindInPath(inner[0], path_value)) {
      return NotFound("program not found: " + inner[0]);
    }

    SubprocessOptions options;
    options.argv = Wrap(command, inner);
    options.cwd = command.worktree;
    options.env_set = command.env;
    options.clear_env = command.clear_env;
    options.stdin_data = command.stdin_data;
    options.stdout_path = command.stdout_path;
    options.stderr_path = command.stderr_path;
    options.timeout_ms = command.timeout_ms;
    options.tail_bytes = command.tail_bytes;
    options.cancel = command.cancel;
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
    auto result = RunSubprocess(options);
    cgroup.reset();  // kills anything of the tree still alive, whatever group it moved to
    return result;
  }

 protected:
  virtual std::vector<std::string> Wrap(const SandboxedCommand& command,
                                        const std::vector<std::string>& inner) const = 0;

  SandboxConfig config_;
  std::optional<std::string> cgroup_root_;
};

class BubblewrapSandbox final : public SandboxBase {
 public:
  BubblewrapSandbox(const SandboxConfig& config, std::string bwrap)
      : SandboxBase(config), bwrap_(std::move(bwrap)) {}
  std::string_view name() const override { return "bubblewrap"; }

 protected:
  std::vector<std::string> Wrap(const SandboxedCommand& command,
                                const std::vector<std::string>& inner) const override {
    std::vector<std::string> argv = {bwrap_, "--ro-bind", "/",     "/",       "--dev",
                                     "/dev", "--proc",    "/proc", "--tmpfs", "/tmp"};
    // The private /tmp hides whatever the real /tmp holds, including a repository kept there.
    // The top directory below /tmp of each path we need is bound back read-only first (so the
    // rest of that tree stays read-only rather than becoming scratch tmpfs), then the
    // writable binds go on top.
    const std::string git_common = GitCommonDirOf(command.worktree);
    std::vector<std::string> needed = command.writable_paths;
    needed.push_back(command.worktree);
    if (!git_common.empty()) needed.push_back(git_common);
    std::vector<std::string> restored;
    for (const auto& path : needed) {
      fs::path normal = fs::path(path).lexically_normal();
      auto it = normal.begin();
      if (it == normal.end() || *it != "/" || ++it == normal.end() || *it != "tmp" ||
          ++it == normal.end()) {
        continue;
      }
      const std::string top = "/tmp/" + it->string();
      if (std::find(restored.begin(), restored.end(), top) == restored.end()) {
        restored.push_back(top);
        argv.insert(argv.end(), {"--ro-bind", top, top});
      }
    }
    if (!git_common.empty()) argv.insert(argv.end(), {"--ro-bind", git_common, git_common});
    argv.insert(argv.end(), {"--bind", command.worktree, command.worktree});
    for (const auto& path : command.writable_paths) {
      argv.insert(argv.end(), {"--bind", path, path});
    }
    argv.push_back("--unshare-all");
    if (command.network) argv.push_back("--share-net");
    argv.insert(argv.end(),
                {"--die-with-parent", "--new-session", "--chdir", command.worktree, "--"});
    argv.insert(argv.end(), inner.begin(), inner.end());
    return argv;
  }

 private:
  std::string bwrap_;
};

class RlimitSandbox final : public SandboxBase {
 public:
  RlimitSandbox(const SandboxConfig& config, const std::string& why) : SandboxBase(config) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
      spdlog::warn(
          "sandbox: running commands without filesystem or network isolation ({}); only "
          "rlimits and timeouts apply. Install bubblewrap (bwrap) for isolation.",
          why);
    });
  }
  std::string_view name() const override { return "rlimit"; }

 protected:
  std::vector<std::string> Wrap(const SandboxedCommand&,
                                const std::vector<std::string>& inner) const override {
    return inner;
  }
};

}  // namespace

bool BubblewrapAvailable() { return ProbeBwrap().usable; }

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
