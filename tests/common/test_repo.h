#pragma once
// Throwaway git repositories for tests, through the real git binary, in a TempDir (so under
// $TMPDIR): InitGitRepo makes any directory a repository on branch `main` with a local
// identity and one commit; TempRepo is a fresh one that removes itself.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.h"
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

// `git <args>` in dir: its stdout; fails the test when git fails.
inline std::string GitIn(const std::filesystem::path& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "git");
  return MustRun(dir.string(), std::move(args));
}

// Makes `dir` (created when missing) a git repository on branch `main`, with a local identity,
// no signing, and one commit "initial" holding `files` (path relative to dir -> content).
inline void InitGitRepo(const std::filesystem::path& dir,
                        const std::map<std::string, std::string>& files) {
  std::filesystem::create_directories(dir);
  GitIn(dir, {"init", "--quiet", "-b", "main"});
  GitIn(dir, {"config", "user.name", "Test User"});
  GitIn(dir, {"config", "user.email", "test@example.com"});
  GitIn(dir, {"config", "commit.gpgsign", "false"});
  for (const auto& [path, content] : files) WriteFileBytes((dir / path).string(), content);
  GitIn(dir, {"add", "-A"});
  GitIn(dir, {"commit", "--quiet", "--allow-empty", "-m", "initial"});
}

// A fresh repository (InitGitRepo with a README.md and src/main.txt) in its own TempDir.
class TempRepo {
 public:
  explicit TempRepo(const std::map<std::string, std::string>& files =
                        {{"README.md", "# project\nline two\nline three\n"},
                         {"src/main.txt", "main\n"}})
      : dir_("factory-repo"), root_(dir_.path().string()) {
    InitGitRepo(dir_.path(), files);
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
  TempDir dir_;
  std::string root_;
};

}  // namespace factory::testing
