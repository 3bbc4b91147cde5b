// `factory run --backlog` killed with SIGKILL while tasks are running (as if its host crashed),
// then `factory run resume RUN`: the run completes, every task is merged into the integration
// branch exactly once, and the event chain verifies.

#include <dirent.h>
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_test_util.h"

namespace factory::testing {
namespace {

// The output of a shell command run in dir (stderr included).
std::string ShellIn(const std::filesystem::path& dir, const std::string& command) {
  std::string out;
  Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

// Every live descendant of root (children, grandchildren...), read from /proc.
std::vector<pid_t> Descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;  // parent -> child
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return {};
  while (dirent* entry = readdir(proc)) {
    const std::string name = entry->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = ReadFile("/proc/" + name + "/stat");
    const auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    // After "pid (comm) ": the state, then the parent pid.
    std::istringstream fields(stat.substr(close_paren + 2));
    char state = 0;
    pid_t parent = 0;
    fields >> state >> parent;
    children.emplace(parent, static_cast<pid_t>(std::stol(name)));
  }
  closedir(proc);
  std::vector<pid_t> found;
  std::deque<pid_t> frontier{root};
  while (!frontier.empty()) {
    const pid_t current = frontier.front();
    frontier.pop_front();
    auto [begin, end] = children.equal_range(current);
    for (auto it = begin; it != end; ++it) {
      found.push_back(it->second);
      frontier.push_back(it->second);
    }
  }
  return found;
}

// Merge commits on the branch per task, from their `Factory-Task:` trailers.
std::map<std::string, int> MergesPerTask(const std::filesystem::path& repo,
                                         const std::string& branch) {
  std::map<std::string, int> merges;
  std::istringstream lines(
      ShellIn(repo, "git log --merges --format=%B " + branch + " | grep '^Factory-Task: '"));
  for (std::string line; std::getline(lines, line);)
    ++merges[line.substr(sizeof("Factory-Task: ") - 1)];
  return merges;
}

TEST(RunCrashTest, KilledRunResumesAndMergesEveryTaskExactlyOnce) {
  CliSandbox sandbox;
  TempDir control;  // outside the repository: the agents' markers and the crash flag
  const auto repo = sandbox.dir();
  ShellIn(repo,
          "git init -q -b main && git config user.email t@example.com && git config user.name t "
          "&& echo hello > README.md && git add README.md && git commit -qm init");
  sandbox.Ok({"init"});
  WriteFile(repo / ".factory/config.yaml",
            "concurrency: 2\nmax_attempts: 3\n"
            "gates:\n  - name: notes\n    command: ls note-*.txt\n"
            "protected:\n  - \".factory/**\"\n"
            "sandbox:\n  enabled: false\n");
  // Each task writes its note. Before the crash, a "slow" task's agent says it started, then
  // sleeps until it is killed; after it (the `crashed` flag exists) every agent is quick.
  const std::string agent_script = control / "agent.sh";
  WriteFile(agent_script,
            "echo \"$FACTORY_TASK_ID\" > \"note-$FACTORY_TASK_ID.txt\"\n"
            "case \"$FACTORY_TASK_ID\" in\n"
            "  slow*) [ -f '" +
                (control / "crashed") + "' ] || { touch '" + control.path().string() +
                "/started-'\"$FACTORY_TASK_ID\"; sleep 300; } ;;\n"
                "esac\n");
  WriteFile(repo / ".factory/agents/writer.md",
            "---\nname: writer\nrole: writes a note\nrunner: script\ncapabilities: [code]\n"
            "concurrency: 2\ncommand: sh " +
                agent_script + "\n---\nWrites a note.\n");
  WriteFile(repo / "backlog.yaml",
            "tasks:\n"
            "  - {id: quick1, title: Quick one, agent: writer}\n"
            "  - {id: quick2, title: Quick two, agent: writer}\n"
            "  - {id: slow1, title: Slow one, agent: writer, depends_on: [quick1]}\n"
            "  - {id: slow2, title: Slow two, agent: writer, depends_on: [quick2]}\n"
            "  - {id: final, title: Final, agent: writer, depends_on: [slow1, slow2]}\n");
  const std::vector<std::string> keys = {"quick1", "quick2", "slow1", "slow2", "final"};

  SpawnOptions options;
  options.cwd = repo;
  options.stdout_path = control / "run.out";
  options.stderr_path = control / "run.err";
  const pid_t run =
      SpawnFactory({"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--json"}, options);
  // Should an assertion end the test early, the run and its agents do not outlive it.
  struct KillOnExit {
    pid_t pid;
    ~KillOnExit() {
      if (!ProcessAlive(pid)) return;
      for (pid_t child : Descendants(pid)) kill(child, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } kill_on_exit{run};
  // The crash comes once both quick tasks are merged and both slow agents are running.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return std::filesystem::exists(control / "started-slow1") &&
               std::filesystem::exists(control / "started-slow2");
      },
      60'000))
      << ReadFile(control / "run.err");
  auto before = sandbox.Ok({"run", "show", "r1", "--json"}).Json();
  std::map<std::string, std::string> states;
  for (const auto& task : before["tasks"]) {
    states[task["key"].get<std::string>()] = task["state"].get<std::string>();
  }
  EXPECT_EQ(states["quick1"], "done") << before.dump(2);
  EXPECT_EQ(states["quick2"], "done") << before.dump(2);
  EXPECT_EQ(states["slow1"], "running") << before.dump(2);
  EXPECT_EQ(states["slow2"], "running") << before.dump(2);
  EXPECT_EQ(states["final"], "pending") << before.dump(2);

  // The crash: the run and every process it started die at once.
  const std::vector<pid_t> agents = Descendants(run);
  EXPECT_FALSE(agents.empty());
  ASSERT_EQ(kill(run, SIGKILL), 0);
  for (pid_t pid : agents) kill(pid, SIGKILL);
  ASSERT_EQ(WaitForExit(run, 5'000), 128 + SIGKILL);
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (pid_t pid : agents) {
          if (ProcessAlive(pid)) return false;
        }
        return true;
      },
      5'000));
  WriteFile(control / "crashed", "");

  // The dead run's leases (30 s) are expired at once by resume, not waited for.
  auto resumed = sandbox.Run({"run", "resume", "r1", "--json"}, {}, 60'000);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err << resumed.out;
  auto summary = resumed.Json();
  EXPECT_EQ(summary["done"], 5) << summary.dump(2);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["blocked"], 0);
  EXPECT_NE(resumed.err.find("expired 2 lease(s) held by dead processes"), std::string::npos)
      << resumed.err;

  // Every task merged exactly once into factory/r1, and nothing else merged there.
  const auto merges = MergesPerTask(repo, "factory/r1");
  EXPECT_EQ(merges.size(), keys.size()) << ShellIn(repo, "git log --format=%B factory/r1");
  for (const auto& key : keys) {
    EXPECT_EQ(merges.count(key) ? merges.at(key) : 0, 1) << key;
    EXPECT_EQ(ShellIn(repo, "git show factory/r1:note-" + key + ".txt"), key + "\n");
  }
  // An attempt ended by the crash is not the task's: every task used one attempt (the slow
  // ones' second run is their first attempt again); the quick ones were not run again.
  auto after = sandbox.Ok({"run", "show", "r1", "--json"}).Json();
  for (const auto& task : after["tasks"]) {
    const std::string key = task["key"].get<std::string>();
    EXPECT_EQ(task["state"], "done") << key;
    EXPECT_EQ(task["attempts"], 1) << after.dump(2);
  }
  // The base branch is untouched; the event chain is intact.
  EXPECT_EQ(ShellIn(repo, "git rev-list --count main"), "1\n");
  sandbox.Ok({"audit", "verify"});
}

}  // namespace
}  // namespace factory::testing
