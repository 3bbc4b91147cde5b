#pragma once
// A throwaway git repository for workspace tests: mkdtemp, `git init -b main`, a local
// user.name/email, one commit. Commands run through the real git binary.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/subprocess.h"

namespace factory::testing {

// Runs argv in `dir`; fails the test (and returns "") on a start error or a non-zero exit.
inline std::string MustRun(const std::string& dir, std::vector<std::string> argv) {
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
  if (result->exit_code != 0) {
    std::string joined;
    for (const auto& arg : options.argv) joined += arg + " ";
    ADD_FAILURE() << joined << "failed (" << result->exit_code << "): " << result->stderr_tail;
  }
  return result->stdout_tail;
}

inline std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void WriteFileBytes(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

class TempRepo {
 public:
  TempRepo() {
    char tmpl[] = "/tmp/factory-ws-test-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
      return;
    }
    root_ = std::filesystem::canonical(tmpl).string();
    Git({"init", "--quiet", "-b", "main"});
    Git({"config", "user.name", "Test User"});
    Git({"config", "user.email", "test@example.com"});
    Git({"config", "commit.gpgsign", "false"});
    WriteFileBytes(root_ + "/README.md", "# project\nline two\nline three\n");
    WriteFileBytes(root_ + "/src/main.txt", "main\n");
    Git({"add", "-A"});
    Git({"commit", "--quiet", "-m", "initial"});
  }
  ~TempRepo() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  TempRepo(const TempRepo&) = delete;
  TempRepo& operator=(const TempRepo&) = delete;

  const std::string& root() const { return root_; }
  std::string Path(const std::string& relative) const { return root_ + "/" + relative; }

  std::string Git(std::vector<std::string> args, const std::string& dir = "") const {
    args.insert(args.begin(), "git");
    return MustRun(dir.empty() ? root_ : dir, std::move(args));
  }
  std::string Rev(const std::string& rev, const std::string& dir = "") const {
    return Trimmed(Git({"rev-parse", rev}, dir));
  }
  // Commits all changes in `dir` (a worktree) with `message`.
  void CommitAllIn(const std::string& dir, const std::string& message) const {
    Git({"add", "-A"}, dir);
    Git({"commit", "--quiet", "-m", message}, dir);
  }

 private:
  std::string root_;
};

}  // namespace factory::testing
