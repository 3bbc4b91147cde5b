#pragma once
// Running the real `factory` binary from tests: each call forks and execs FACTORY_BINARY in a
// given directory with a clean FACTORY_* environment, capturing stdout/stderr through files.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"

namespace factory::testing {

struct CliResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
  nlohmann::json Json() const { return nlohmann::json::parse(out); }
  std::string Line() const {  // stdout without its trailing newline
    std::string text = out;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
  }
};

struct SpawnOptions {
  std::filesystem::path cwd;
  std::map<std::string, std::string> env;  // set in the child (FACTORY_* and provider keys are
                                           // unset otherwise)
  std::vector<std::string> prefix;         // e.g. {"setpriv", "--reuid=65534", ...}
  std::string stdout_path;                 // empty: /dev/null
  std::string stderr_path;
};

inline pid_t SpawnFactory(const std::vector<std::string>& args, const SpawnOptions& options) {
  std::vector<std::string> argv = options.prefix;
  argv.push_back(FACTORY_BINARY);
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // Child.
  if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) _exit(120);
  const int in = open("/dev/null", O_RDONLY);
  const int out = options.stdout_path.empty()
                      ? open("/dev/null", O_WRONLY)
                      : open(options.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int err = options.stderr_path.empty()
                      ? open("/dev/null", O_WRONLY)
                      : open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || out < 0 || err < 0) _exit(121);
  dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  // The factory's own settings, and the model providers `factory init` would choose an agent
  // for: a test gets only those it sets.
  for (const char* name :
       {"FACTORY_DB", "FACTORY_LOG", "FACTORY_SYNC", "FACTORY_LLM_BASE_URL", "FACTORY_LLM_MODEL",
        "FACTORY_LLM_REVIEW_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"}) {
    unsetenv(name);
  }
  for (const auto& [name, value] : options.env) setenv(name.c_str(), value.c_str(), 1);
  std::vector<char*> cargv;
  for (auto& arg : argv) cargv.push_back(arg.data());
  cargv.push_back(nullptr);
  execvp(cargv[0], cargv.data());
  _exit(127);
}

// Waits for pid; -1 when it did not exit within timeout_ms (it is then left running).
inline int WaitForExit(pid_t pid, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A test's scratch directory: cwd of the commands, so the default .factory/factory.db is used.
class CliSandbox {
 public:
  const std::filesystem::path& dir() const { return temp_.path(); }
  std::filesystem::path Path(const std::string& name) const { return temp_.path() / name; }
  std::filesystem::path DbPath() const { return temp_.path() / ".factory" / "factory.db"; }

  CliResult Run(const std::vector<std::string>& args, SpawnOptions options = {},
                int64_t timeout_ms = 60'000) {
    const int call = ++calls_;
    if (options.cwd.empty()) options.cwd = dir();
    options.stdout_path = (io_.path() / ("out." + std::to_string(call))).string();
    options.stderr_path = (io_.path() / ("err." + std::to_string(call))).string();
    const pid_t pid = SpawnFactory(args, options);
    CliResult result;
    result.exit_code = WaitForExit(pid, timeout_ms);
    if (result.exit_code == -1) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      ADD_FAILURE() << "factory did not exit within " << timeout_ms << " ms";
    }
    result.out = ReadFile(options.stdout_path);
    result.err = ReadFile(options.stderr_path);
    return result;
  }

  // Runs and expects exit 0 (reporting stderr otherwise).
  CliResult Ok(const std::vector<std::string>& args, SpawnOptions options = {}) {
    CliResult result = Run(args, std::move(options));
    EXPECT_EQ(result.exit_code, 0) << "factory " << Join(args) << "\nstderr: " << result.err;
    return result;
  }

  std::string AddTask(const std::vector<std::string>& args) {
    std::vector<std::string> full = {"task", "add"};
    full.insert(full.end(), args.begin(), args.end());
    return Ok(full).Line();
  }

  nlohmann::json Show(const std::string& id) { return Ok({"task", "show", id, "--json"}).Json(); }

  static std::string Join(const std::vector<std::string>& args) {
    std::string text;
    for (const auto& arg : args) text += (text.empty() ? "" : " ") + arg;
    return text;
  }

 private:
  TempDir temp_;
  TempDir io_;  // captured output, outside the working dir
  std::atomic<int> calls_{0};
};

// Runs a shell command (for sqlite3 and friends); returns its exit code, output in *out.
inline int Shell(const std::string& command, std::string* out = nullptr) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char buffer[4096];
  size_t read_bytes = 0;
  while ((read_bytes = fread(buffer, 1, sizeof(buffer), pipe)) > 0) text.append(buffer, read_bytes);
  const int status = pclose(pipe);
  if (out != nullptr) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Polls cond every 20 ms for up to timeout_ms.
template <typename Cond>
bool WaitUntil(Cond cond, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

inline bool ProcessAlive(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  // A zombie nobody reaped yet is dead for our purposes.
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const auto close_paren = stat.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= stat.size() ||
         stat[close_paren + 2] != 'Z';
}

}  // namespace factory::testing
