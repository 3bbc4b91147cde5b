// The SQLite store under contention and damage, through the real `factory` binary:
//  - commands opened together all succeed (the WAL switch and the schema check wait for
//    the lock instead of failing at once);
//  - read-only commands work while another process holds a write transaction;
//  - only `factory init` creates a database: a missing or empty file is "run factory init"
//    (exit 3) and stays as it was;
//  - a server URL as --db is refused, not taken as a file name;
//  - errors do not print SQL;
//  - `audit verify` fails on a file with damaged pages even when the hash chain is intact.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"

namespace factory::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Quote(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

TEST(StoreSecurityTest, CommandsStartedTogetherAllSucceed) {
  constexpr int kProcesses = 8;
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  std::vector<pid_t> pids;
  for (int idx = 0; idx < kProcesses; ++idx) {
    SpawnOptions options;
    options.cwd = sandbox.dir();
    options.stderr_path = sandbox.Path("err." + std::to_string(idx)).string();
    pids.push_back(SpawnFactory({"task", "add", "--title", "t" + std::to_string(idx)}, options));
  }
  for (int idx = 0; idx < kProcesses; ++idx) {
    EXPECT_EQ(WaitForExit(pids[idx], 60'000), 0)
        << ReadFile(sandbox.Path("err." + std::to_string(idx)));
  }
  EXPECT_EQ(sandbox.Ok({"task", "list", "--json"}).Json().size(), size_t{kProcesses});
}

// Holds a write transaction on the database (sqlite3's BEGIN IMMEDIATE) until destroyed.
class WriteLockHolder {
 public:
  explicit WriteLockHolder(const std::filesystem::path& db) {
    pid_ = fork();
    if (pid_ == 0) {
      setsid();
      const std::string script =
          "{ printf 'BEGIN IMMEDIATE;\\nSELECT 1;\\n'; sleep 120; } | sqlite3 " + Quote(db) +
          " >/dev/null";
      execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // Held once another writer is refused at once.
    held_ = WaitUntil(
        [&] {
          std::string out;
          return Shell("sqlite3 -cmd '.timeout 0' " + Quote(db) +
                           " 'BEGIN IMMEDIATE; ROLLBACK;' 2>&1",
                       &out) != 0 &&
                 out.find("locked") != std::string::npos;
        },
        10'000);
  }
  ~WriteLockHolder() {
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool held() const { return held_; }

 private:
  pid_t pid_ = -1;
  bool held_ = false;
};

TEST(StoreSecurityTest, ReadOnlyCommandsWorkWhileAnotherProcessWrites) {
  CliSandbox sandbox;
  ASSERT_EQ(Shell("git -C " + Quote(sandbox.dir()) + " init -q -b main && git -C " +
                  Quote(sandbox.dir()) +
                  " -c user.name=t -c user.email=t@t commit -q --allow-empty -m init"),
            0);
  sandbox.Ok({"init"});
  const std::string id = sandbox.AddTask({"--title", "t"});
  WriteLockHolder writer(sandbox.DbPath());
  ASSERT_TRUE(writer.held());
  const std::vector<std::vector<std::string>> readers = {
      {"task", "show", id},
      {"task", "list"},
      {"queue", "stats"},
      {"audit", "verify"},
      {"costs"},
      {"stats"},
      {"runs"},
  };
  for (const auto& args : readers) {
    // Each must answer from its read snapshot, not wait out the busy timeout and fail.
    const auto result = sandbox.Run(args);
    EXPECT_EQ(result.exit_code, 0) << CliSandbox::Join(args) << "\n" << result.err;
  }
}

TEST(StoreSecurityTest, OnlyInitCreatesADatabase) {
  CliSandbox sandbox;
  // No .factory at all.
  auto missing = sandbox.Run({"task", "add", "--title", "t"});
  EXPECT_EQ(missing.exit_code, 3) << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("no factory database at"));
  EXPECT_THAT(missing.err, HasSubstr("run `factory init`"));
  EXPECT_FALSE(std::filesystem::exists(sandbox.Path(".factory")));

  // The directory exists, the file does not: still not created by a command.
  std::filesystem::create_directories(sandbox.Path(".factory"));
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"task", "add", "--title", "t"}, {"task", "list"}, {"worker", "--until-idle"}}) {
    auto result = sandbox.Run(args);
    EXPECT_EQ(result.exit_code, 3) << CliSandbox::Join(args) << "\n" << result.err;
    EXPECT_FALSE(std::filesystem::exists(sandbox.DbPath())) << CliSandbox::Join(args);
  }

  // A 0-byte file (a truncated database) is not silently made a new one.
  sandbox.Ok({"init"});
  sandbox.AddTask({"--title", "t"});
  std::filesystem::resize_file(sandbox.DbPath(), 0);
  std::filesystem::remove(sandbox.DbPath().string() + "-wal");
  std::filesystem::remove(sandbox.DbPath().string() + "-shm");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"task", "add", "--title", "t"}, {"task", "list"}, {"audit", "verify"}}) {
    auto result = sandbox.Run(args);
    EXPECT_EQ(result.exit_code, 3) << CliSandbox::Join(args) << "\n" << result.err;
    EXPECT_THAT(result.err, HasSubstr("no factory database at"));
    EXPECT_THAT(result.err, HasSubstr("empty"));
    EXPECT_EQ(std::filesystem::file_size(sandbox.DbPath()), 0u) << CliSandbox::Join(args);
  }
}

TEST(StoreSecurityTest, AServerUrlIsNotAFileName) {
  CliSandbox sandbox;
  for (const auto& command : std::vector<std::vector<std::string>>{{"init"}, {"task", "list"}}) {
    std::vector<std::string> args = {"--db", "postgresql://factory:hunter2@db.example/factory"};
    args.insert(args.end(), command.begin(), command.end());
    auto result = sandbox.Run(args);
    // A PostgreSQL URL is understood (not taken for a file name) but not served by this build.
    EXPECT_EQ(result.exit_code, 4) << CliSandbox::Join(args) << "\n" << result.err;
    EXPECT_THAT(result.err, HasSubstr("postgresql://"));
    EXPECT_THAT(result.err, HasSubstr("not built yet"));
    EXPECT_THAT(result.err, Not(HasSubstr("hunter2")));
    EXPECT_FALSE(std::filesystem::exists(sandbox.Path("postgresql:")));
  }
}

TEST(StoreSecurityTest, ErrorsDoNotPrintSql) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  sandbox.AddTask({"--title", "t"});
  // A schema that no longer matches its version: every task query fails.
  ASSERT_EQ(Shell("sqlite3 " + Quote(sandbox.DbPath()) +
                  " 'ALTER TABLE tasks RENAME COLUMN spec TO spec_renamed'"),
            0);
  auto result = sandbox.Run({"task", "list"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("no such column"));
  for (const char* sql : {"SELECT", "FROM tasks", "WHERE"}) {
    EXPECT_THAT(result.err, Not(HasSubstr(sql))) << result.err;
  }
  // The statement is in the debug log, for whoever investigates.
  auto debug = sandbox.Run({"--log-level", "debug", "task", "list"});
  EXPECT_THAT(debug.err, HasSubstr("SELECT"));
}

TEST(StoreSecurityTest, AuditVerifyFailsOnDamagedPages) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  for (int idx = 0; idx < 40; ++idx) {
    sandbox.AddTask({"--title", "task " + std::to_string(idx), "--spec", std::string(500, 'x')});
  }
  sandbox.Ok({"audit", "verify"});
  const std::string db = Quote(sandbox.DbPath());
  ASSERT_EQ(Shell("sqlite3 " + db + " 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null"), 0);
  // Damage a page of an index the hash chain never reads.
  std::string page_size;
  std::string root_page;
  ASSERT_EQ(Shell("sqlite3 " + db + " 'PRAGMA page_size'", &page_size), 0);
  ASSERT_EQ(Shell("sqlite3 " + db +
                      " \"SELECT rootpage FROM sqlite_schema WHERE name = "
                      "'tasks_run'\"",
                  &root_page),
            0);
  ASSERT_GT(std::stoi(root_page), 1);
  {
    std::fstream file(sandbox.DbPath(), std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(std::stoi(root_page) - 1) * std::stoi(page_size) + 16);
    const std::string garbage(200, '\x5a');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto result = sandbox.Run({"audit", "verify"});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.err, HasSubstr("damaged"));
  EXPECT_THAT(result.out, Not(HasSubstr("audit: ok")));
  auto json = sandbox.Run({"audit", "verify", "--json"});
  EXPECT_EQ(json.exit_code, 1);
  EXPECT_EQ(json.Json()["ok"], false);
}

}  // namespace
}  // namespace factory::testing
