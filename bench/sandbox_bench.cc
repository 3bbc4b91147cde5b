// Sandbox start: the least-privilege bubblewrap sandbox (workspace/sandbox.h) running `true` in
// a git worktree, against a bare `bwrap --ro-bind / / true` in the same run.
//
//   sandbox_bench [--runs N] [--dir DIR] [--no-cgroup]
//
// --no-cgroup: the sandbox without its pids cgroup (process limits through RLIMIT_NPROC only),
// to see what the cgroup costs a start.
//
// The sandbox figure is a whole Sandbox::Run as the runners and gates make it: the clean
// environment, the /etc masks (computed once per process, before the first measurement), the
// system binds, the private size-capped /tmp with HOME, the repository's git dirs, the
// worktree, the disk quota's first measurement and its watcher thread, a pids cgroup when the
// host has one, and the process's end. The baseline is RunSubprocess of the bare bwrap command
// (the same spawn code, no namespaces but the mount one it needs, no binds but /); a second
// baseline adds the sandbox's namespaces to it. The three are measured alternately so all see
// the same machine load. Prints p50 and p99 of each and the ratios.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/subprocess.h"
#include "workspace/sandbox.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(fraction * values.size()));
  return values[index];
}

bool Shell(const std::string& command) { return std::system(command.c_str()) == 0; }

int Main(int argc, char** argv) {
  int runs = 300;
  std::string dir;
  bool cgroup = true;
  for (int index = 1; index < argc; ++index) {
    const std::string arg = argv[index];
    if (arg == "--no-cgroup") {
      cgroup = false;
    } else if (arg == "--runs" && index + 1 < argc) {
      runs = std::max(10, std::atoi(argv[++index]));
    } else if (arg == "--dir" && index + 1 < argc) {
      dir = argv[++index];
    } else {
      std::fprintf(stderr, "usage: sandbox_bench [--runs N] [--dir DIR] [--no-cgroup]\n");
      return 2;
    }
  }
  if (!BubblewrapAvailable()) {
    std::fprintf(stderr, "sandbox_bench: bwrap is not usable here; nothing to measure\n");
    return 1;
  }
  if (dir.empty()) dir = (fs::temp_directory_path() / "factory-sandbox-bench").string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string repo = fs::canonical(dir).string() + "/repo";
  const std::string worktree = fs::canonical(dir).string() + "/worktree";
  if (!Shell("git init -q -b main '" + repo + "' && cd '" + repo +
             "' && seq 1 1000 > data.txt && git add -A && "
             "git -c user.name=b -c user.email=b@b commit -q -m init && "
             "git worktree add -q '" +
             worktree + "' -b bench")) {
    std::fprintf(stderr, "sandbox_bench: cannot set up a git worktree in %s\n", dir.c_str());
    return 1;
  }

  SandboxConfig config;
  config.use_pids_cgroup = cgroup;
  auto sandbox = MakeSandbox(config);
  SandboxedCommand command;
  command.argv = {"true"};
  command.worktree = worktree;
  SecretEtcPaths();  // once per process, as in the factory: not part of a start

  SubprocessOptions bare;
  bare.argv = {"bwrap", "--ro-bind", "/", "/", "true"};
  // Where the difference comes from: the same bare root with the sandbox's namespaces (a new
  // network namespace is most of a start's cost).
  SubprocessOptions bare_namespaces;
  bare_namespaces.argv = {
      "bwrap",         "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent",
      "--new-session", "true"};

  std::vector<double> sandbox_ms;
  std::vector<double> bare_ms;
  std::vector<double> namespaces_ms;
  for (int run = 0; run < runs + 10; ++run) {
    const auto sandbox_began = SteadyClock::now();
    auto result = sandbox->Run(command);
    const auto sandbox_ended = SteadyClock::now();
    if (!result || result->exit_code != 0) {
      std::fprintf(stderr, "sandbox_bench: the sandbox failed: %s\n",
                   result ? result->stderr_tail.c_str() : result.error().ToString().c_str());
      return 1;
    }
    const auto bare_began = SteadyClock::now();
    auto baseline = RunSubprocess(bare);
    const auto bare_ended = SteadyClock::now();
    if (!baseline || baseline->exit_code != 0) {
      std::fprintf(stderr, "sandbox_bench: the bare bwrap failed\n");
      return 1;
    }
    const auto namespaces_began = SteadyClock::now();
    auto with_namespaces = RunSubprocess(bare_namespaces);
    const auto namespaces_ended = SteadyClock::now();
    if (!with_namespaces || with_namespaces->exit_code != 0) {
      std::fprintf(stderr, "sandbox_bench: bwrap --unshare-all failed\n");
      return 1;
    }
    if (run < 10) continue;  // warm-up: page cache, binaries loaded
    namespaces_ms.push_back(
        std::chrono::duration<double, std::milli>(namespaces_ended - namespaces_began).count());
    sandbox_ms.push_back(
        std::chrono::duration<double, std::milli>(sandbox_ended - sandbox_began).count());
    bare_ms.push_back(std::chrono::duration<double, std::milli>(bare_ended - bare_began).count());
  }

  const double sandbox_p50 = Percentile(sandbox_ms, 0.50);
  const double sandbox_p99 = Percentile(sandbox_ms, 0.99);
  const double bare_p50 = Percentile(bare_ms, 0.50);
  const double bare_p99 = Percentile(bare_ms, 0.99);
  std::printf("sandbox start, %d runs each, alternating (ms)\n", runs);
  std::printf("| %-44s | %8s | %8s |\n", "", "p50", "p99");
  std::printf("|----------------------------------------------|----------|----------|\n");
  std::printf("| %-44s | %8.2f | %8.2f |\n", "least-privilege sandbox (Sandbox::Run true)",
              sandbox_p50, sandbox_p99);
  std::printf("| %-44s | %8.2f | %8.2f |\n", "bare bwrap --ro-bind / / true", bare_p50, bare_p99);
  std::printf("| %-44s | %8.2f | %8.2f |\n", "bare bwrap + --unshare-all (same namespaces)",
              Percentile(namespaces_ms, 0.50), Percentile(namespaces_ms, 0.99));
  std::printf("| %-44s | %7.2fx | %7.2fx |\n", "ratio sandbox / bare bwrap", sandbox_p50 / bare_p50,
              sandbox_p99 / bare_p99);
  std::printf("| %-44s | %7.2fx | %7.2fx |\n", "ratio sandbox / bare + --unshare-all",
              sandbox_p50 / Percentile(namespaces_ms, 0.50),
              sandbox_p99 / Percentile(namespaces_ms, 0.99));
  std::printf("sandbox: %s, %zu /etc paths masked\n", std::string(sandbox->name()).c_str(),
              SecretEtcPaths().size());
  Shell("git -C '" + repo + "' worktree remove --force '" + worktree + "' >/dev/null 2>&1");
  fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace factory

int main(int argc, char** argv) { return factory::Main(argc, argv); }
