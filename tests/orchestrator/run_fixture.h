#pragma once
// End-to-end fixture for the orchestrator: a temporary directory holding a real git repository
// (a tiny shell project with a `check.sh` test suite), the SQLite store, and the script agents
// the tests write. Everything runs for real: git, the sandbox, the queue, the worker.

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "agents/registry.h"
#include "core/subprocess.h"
#include "orchestrator/run.h"
#include "plan/backlog.h"
#include "plan/config.h"
#include "queue/queue.h"
#include "store/store.h"
#include "workspace/merge_queue.h"
#include "workspace/sandbox.h"
#include "workspace/worktree.h"

namespace factory::testing {

inline std::string RunIn(const std::string& dir, std::vector<std::string> argv,
                         bool expect_success = true) {
  SubprocessOptions options;
  options.argv = std::move(argv);
  options.cwd = dir;
  options.tail_bytes = 1 << 20;
  options.timeout_ms = 60'000;
  auto result = RunSubprocess(options);
  if (!result.has_value()) {
    ADD_FAILURE() << "cannot run " << options.argv[0] << ": " << result.error().ToString();
    return "";
  }
  if (expect_success && result->exit_code != 0) {
    std::string joined;
    for (const auto& arg : options.argv) joined += arg + " ";
    ADD_FAILURE() << joined << "failed (" << result->exit_code << "): " << result->stderr_tail;
  }
  return result->stdout_tail;
}

inline std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void WriteText(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

// The project's test suite: every file under src/ must not contain "BUG"; src/answer.txt, when
// present, must say ANSWER=42 (the message tells how, so an agent can use the feedback).
inline constexpr char kCheckScript[] = R"SH(#!/bin/sh
status=0
for f in src/*.txt; do
  if grep -q BUG "$f"; then echo "check: $f contains BUG"; status=1; fi
done
if [ -f src/answer.txt ] && [ "$(cat src/answer.txt)" != "ANSWER=42" ]; then
  echo "check: wrong answer in src/answer.txt: expected ANSWER=42"
  status=1
fi
[ $status -eq 0 ] && echo "check: all good"
exit $status
)SH";

class RunFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under $TMPDIR like every test's temporary folder (tests/common/test_util.h).
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "factory-orch-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = std::filesystem::canonical(tmpl).string();
    repo_ = root_ + "/repo";
    std::filesystem::create_directories(repo_);
    RunGit({"init", "--quiet", "-b", "main"});
    RunGit({"config", "user.name", "Test User"});
    RunGit({"config", "user.email", "test@example.com"});
    RunGit({"config", "commit.gpgsign", "false"});
    WriteText(repo_ + "/README.md", "# project\n");
    WriteText(repo_ + "/check.sh", kCheckScript);
    WriteText(repo_ + "/src/main.txt", "main\n");
    WriteText(repo_ + "/shared.txt", "base\n");
    WriteText(repo_ + "/tests/suite.txt", "suite\n");
    RunGit({"add", "-A"});
    RunGit({"commit", "--quiet", "-m", "initial"});

    config_.concurrency = 2;
    config_.max_attempts = 3;
    GateConfig gate;
    gate.name = "check";
    gate.command = "sh check.sh";
    gate.timeout = std::chrono::seconds(60);
    config_.gates.push_back(gate);
    config_.protected_paths = {"check.sh", "tests/**"};
    config_.sandbox.cpu_seconds = 60;
    config_.sandbox.memory_mb = 2048;
  }

  void TearDown() override {
    runs_.reset();
    merges_.reset();
    workspace_.reset();
    queue_.reset();
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  // Opens everything; call after changing config_ and adding agents.
  void Open() {
    auto store = OpenSqliteStore(SqliteOptions{.path = root_ + "/factory.db"});
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    QueueOptions queue_options;
    queue_options.retry = RunRetryPolicy();
    queue_ = std::make_unique<Queue>(*store_, queue_options);
    WorkspaceOptions workspace_options;
    workspace_options.repo_path = repo_;
    workspace_options.base_branch = "main";
    auto workspace = WorkspaceManager::Open(workspace_options);
    ASSERT_TRUE(workspace.has_value()) << workspace.error().ToString();
    workspace_ = std::move(*workspace);
    merges_ = std::make_unique<MergeQueue>(*workspace_);
    // The agents' scripts live beside the repository, which the sandbox does not show.
    if (!sandbox_) sandbox_ = MakeSandbox({.read_paths = {root_ + "/agents"}});
    agents_.SetDefaultAgents(config_.default_agents);
    runs_ =
        std::make_unique<RunManager>(RunDeps{store_.get(), queue_.get(), workspace_.get(),
                                             merges_.get(), &agents_, sandbox_.get(), &config_});
  }

  // A script agent whose command is `sh <root>/agents/<name>.sh`.
  void AddScriptAgent(const std::string& name, const std::string& script,
                      std::vector<std::string> capabilities = {"code"}, int concurrency = 2,
                      int cost_tier = 1) {
    const std::string path = root_ + "/agents/" + name + ".sh";
    WriteText(path, script);
    AgentSpec spec;
    spec.name = name;
    spec.role = "test agent " + name;
    spec.runner = RunnerKind::kScript;
    spec.command = "sh " + path;
    spec.capabilities = std::move(capabilities);
    spec.concurrency = concurrency;
    spec.cost_tier = cost_tier;
    ASSERT_TRUE(agents_.Add(spec).has_value());
  }

  Backlog ParseBacklog(const std::string& yaml) {
    BacklogOptions options;
    options.agents = &agents_;
    auto parsed = ParseBacklogYaml(yaml, "backlog.yaml", options);
    EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error().ToString());
    if (!parsed) return Backlog{};
    return parsed->value;
  }

  std::string RunGit(std::vector<std::string> args, const std::string& dir = "") {
    args.insert(args.begin(), "git");
    return RunIn(dir.empty() ? repo_ : dir, std::move(args));
  }
  std::string Rev(const std::string& rev) { return Trim(RunGit({"rev-parse", rev})); }

  // The task of this run with backlog id `key`.
  Task TaskByKey(const std::string& run_id, const std::string& key) {
    auto tasks = queue_->ListTasks(TaskQuery{.run_id = run_id});
    EXPECT_TRUE(tasks.has_value());
    if (tasks) {
      for (auto& task : *tasks) {
        if (task.idempotency_key == key) return task;
      }
    }
    ADD_FAILURE() << "no task " << key << " in run " << run_id;
    return Task{};
  }
  std::vector<Attempt> AttemptsOf(const std::string& run_id, const std::string& key) {
    auto attempts = queue_->ListAttempts(TaskByKey(run_id, key).id);
    EXPECT_TRUE(attempts.has_value());
    if (!attempts) return {};
    std::sort(attempts->begin(), attempts->end(),
              [](const Attempt& a, const Attempt& b) { return a.epoch < b.epoch; });
    return *attempts;
  }
  // How many merge commits on `branch` carry `Factory-Task: key`.
  int MergeCount(const std::string& branch, const std::string& key) {
    std::string log =
        RunGit({"log", "--merges", "--format=%(trailers:key=Factory-Task,valueonly)%x1e", branch});
    int count = 0;
    size_t start = 0;
    while (start < log.size()) {
      size_t end = log.find('\x1e', start);
      if (end == std::string::npos) end = log.size();
      std::string value = log.substr(start, end - start);
      while (!value.empty() && (value.front() == '\n' || value.front() == ' ')) value.erase(0, 1);
      if (Trim(value) == key) ++count;
      start = end + 1;
    }
    return count;
  }

  std::string root_;
  std::string repo_;
  ProjectConfig config_;
  AgentRegistry agents_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<WorkspaceManager> workspace_;
  std::unique_ptr<MergeQueue> merges_;
  std::unique_ptr<RunManager> runs_;
};

}  // namespace factory::testing
