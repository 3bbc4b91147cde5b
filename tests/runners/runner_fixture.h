#pragma once
// A real git repository laid out like the factory's: the worktree is the repository itself,
// the attempt directory and a bin/ directory for fake agent CLIs live under its .factory/
// (excluded from git), so inside bubblewrap they are readable and the worktree is writable.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "common/test_repo.h"
#include "runners/runner.h"
#include "workspace/sandbox.h"

namespace factory::testing {

class RunnerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    sandbox_ = MakeSandbox();
    attempt_dir_ = repo_.Path(".factory/attempts/r1/t1-2");
    bin_dir_ = repo_.Path(".factory/bin");
    std::filesystem::create_directories(attempt_dir_);
    std::filesystem::create_directories(bin_dir_);
    WriteFileBytes(repo_.Path(".git/info/exclude"), ".factory/\n");
  }

  RunnerContext Context() {
    RunnerContext context;
    context.input.run_id = "r1";
    context.input.task_id = "t1";
    context.input.title = "Add a greeting";
    context.input.spec = "Append a line to README.md.";
    context.input.acceptance = {"README.md ends with the greeting"};
    context.input.type = "code";
    context.input.attempt = 2;
    context.input.max_attempts = 3;
    context.input.feedback = "Gate 'test' failed with exit code 1.\nexpected greeting";
    context.worktree = repo_.root();
    context.attempt_dir = attempt_dir_;
    context.sandbox = sandbox_.get();
    context.timeout_ms = 20'000;
    return context;
  }

  // Writes an executable script into the fake bin directory.
  void WriteTool(const std::string& name, const std::string& script) {
    const std::string path = bin_dir_ + "/" + name;
    WriteFileBytes(path, script);
    ::chmod(path.c_str(), 0755);
  }

  std::string PathWithBin() const {
    const char* path = std::getenv("PATH");
    return bin_dir_ + ":" + (path != nullptr ? path : "/usr/bin:/bin");
  }

  // Worktree changes as `git status --porcelain` lines.
  std::string GitStatus() const { return repo_.Git({"status", "--porcelain"}); }

  TempRepo repo_;
  std::unique_ptr<Sandbox> sandbox_;
  std::string attempt_dir_;
  std::string bin_dir_;
};

}  // namespace factory::testing
