// `factory` CLI through the real binary: outputs, JSON shapes, exit codes, bad input.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"

namespace factory::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kUnknownUlid[] = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { sandbox_.Ok({"init"}); }
  CliSandbox sandbox_;
};

TEST(CliBasicsTest, VersionAndHelpOnEveryCommand) {
  CliSandbox sandbox;
  auto version = sandbox.Run({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out, HasSubstr("factory "));
  const std::vector<std::vector<std::string>> commands = {{},
                                                          {"init"},
                                                          {"task"},
                                                          {"task", "add"},
                                                          {"task", "list"},
                                                          {"task", "show"},
                                                          {"task", "cancel"},
                                                          {"task", "retry"},
                                                          {"queue", "stats"},
                                                          {"audit", "verify"},
                                                          {"worker"}};
  for (auto args : commands) {
    args.push_back("--help");
    auto help = sandbox.Run(args);
    EXPECT_EQ(help.exit_code, 0) << CliSandbox::Join(args);
    EXPECT_THAT(help.out, HasSubstr("Usage")) << CliSandbox::Join(args);
  }
}

TEST(CliBasicsTest, InitCreatesFactoryDirAndIsIdempotent) {
  CliSandbox sandbox;
  auto first = sandbox.Ok({"init"});
  EXPECT_THAT(first.out, HasSubstr("initialised"));
  EXPECT_TRUE(std::filesystem::is_regular_file(sandbox.DbPath()));
  EXPECT_TRUE(std::filesystem::is_directory(sandbox.Path(".factory/artifacts")));
  auto second = sandbox.Ok({"init"});
  EXPECT_THAT(second.out, HasSubstr("already initialised"));
}

TEST(CliBasicsTest, MissingDatabaseIsNotFoundWithHint) {
  CliSandbox sandbox;
  auto list = sandbox.Run({"task", "list"});
  EXPECT_EQ(list.exit_code, 3);
  EXPECT_THAT(list.err, StartsWith("factory: error: "));
  EXPECT_THAT(list.err, HasSubstr("factory init"));
  EXPECT_FALSE(std::filesystem::exists(sandbox.Path(".factory")));
  // Adding without init: only init creates a database.
  auto add = sandbox.Run({"task", "add", "--title", "x"});
  EXPECT_EQ(add.exit_code, 3);
  EXPECT_THAT(add.err, HasSubstr("factory init"));
  EXPECT_FALSE(std::filesystem::exists(sandbox.Path(".factory")));
}

TEST(CliBasicsTest, DbFlagAndEnvironment) {
  CliSandbox sandbox;
  const std::string db = sandbox.Path("elsewhere.db").string();
  sandbox.Ok({"--db", db, "init"});
  auto id = sandbox.Ok({"task", "add", "--title", "via flag after subcommand", "--db", db}).Line();
  SpawnOptions env;
  env.env["FACTORY_DB"] = db;
  auto list = sandbox.Ok({"task", "list", "--json"}, env).Json();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);
  // --sync full is accepted (flag and env).
  sandbox.Ok({"--db", db, "--sync", "full", "task", "list"});
  env.env["FACTORY_SYNC"] = "full";
  sandbox.Ok({"task", "list"}, env);
  EXPECT_EQ(sandbox.Run({"--db", db, "--sync", "sometimes", "task", "list"}).exit_code, 2);
}

TEST(CliBasicsTest, DbTakesStoreUrls) {
  CliSandbox sandbox;
  const std::string db = sandbox.Path("by-url.db").string();
  sandbox.Ok({"--db", "sqlite://" + db, "init"});
  auto id = sandbox.Ok({"--db", "sqlite://" + db, "task", "add", "--title", "via url"}).Line();
  // The same file as a plain path.
  auto list = sandbox.Ok({"--db", db, "task", "list", "--json"}).Json();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);

  auto postgres =
      sandbox.Run({"--db", "postgresql://alice:pw-s3cret@db.example/f", "task", "list"});
  EXPECT_EQ(postgres.exit_code, 4) << postgres.err;
  EXPECT_THAT(postgres.err, HasSubstr("PostgreSQL support is not built yet"));
  EXPECT_THAT(postgres.err, ::testing::Not(HasSubstr("pw-s3cret")));
  auto unknown = sandbox.Run({"--db", "mysql://h/f", "task", "list"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("mysql://h/f"));
  EXPECT_FALSE(std::filesystem::exists(sandbox.Path("mysql:")));
}

TEST_F(CliTest, MalformedArgumentsExitTwo) {
  const std::vector<std::vector<std::string>> bad = {
      {"frobnicate"},
      {"task"},
      {"task", "add"},
      {"task", "add", "--title", ""},
      {"task", "add", "--title", "   "},
      {"task", "add", "--title", "x", "--max-attempts", "0"},
      {"task", "add", "--title", "x", "--max-attempts", "-3"},
      {"task", "add", "--title", "x", "--priority", "high"},
      {"task", "add", "--title", "x", "--depends-on", "not-an-id"},
      {"task", "add", "--title", "x", "--spec", "a", "--spec-file", "b"},
      {"task", "add", "--title", "x", "--run", "bad run!"},
      {"task", "add", "--title", "x", "--command", ""},
      {"task", "add", "--title", "x", "--unknown-flag"},
      {"task", "list", "--state", "bogus"},
      {"task", "show"},
      {"worker", "--concurrency", "0"},
      {"worker", "--lease-seconds", "-1"},
      {"--log-level", "loud", "task", "list"},
  };
  for (const auto& args : bad) {
    auto result = sandbox_.Run(args);
    EXPECT_EQ(result.exit_code, 2) << CliSandbox::Join(args) << "\n" << result.err;
    EXPECT_THAT(result.err, StartsWith("factory: error: ")) << CliSandbox::Join(args);
    EXPECT_TRUE(result.out.empty()) << CliSandbox::Join(args) << ": " << result.out;
  }
  auto bad_dep = sandbox_.Run({"task", "add", "--title", "x", "--depends-on", "not-an-id"});
  EXPECT_THAT(bad_dep.err, HasSubstr("not-an-id"));
  // Nothing was stored by any of them.
  EXPECT_EQ(sandbox_.Ok({"task", "list", "--json"}).Json().size(), 0u);
}

TEST_F(CliTest, InvalidUtf8IsRejected) {
  auto result = sandbox_.Run({"task", "add", "--title", std::string("bad \xff\xfe title")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("UTF-8"));
}

TEST_F(CliTest, AddPrintsIdOrJson) {
  auto id = sandbox_.AddTask({"--title", "first"});
  EXPECT_EQ(id.size(), 26u) << id;
  auto json = sandbox_
                  .Ok({"task", "add", "--title", "second", "--spec", "do it", "--priority", "-5",
                       "--depends-on", id, "--idempotency-key", "k2", "--max-attempts", "7",
                       "--command", "true", "--json"})
                  .Json();
  EXPECT_EQ(json["title"], "second");
  EXPECT_EQ(json["spec"], "do it");
  EXPECT_EQ(json["priority"], -5);
  EXPECT_EQ(json["depends_on"], nlohmann::json::array({id}));
  EXPECT_EQ(json["idempotency_key"], "k2");
  EXPECT_EQ(json["max_attempts"], 7);
  EXPECT_EQ(json["attempts"], 0);
  EXPECT_EQ(json["command"], "true");
  EXPECT_EQ(json["state"], "pending");
  EXPECT_EQ(json["run"], "default");
  EXPECT_EQ(json["created"], true);
  EXPECT_EQ(json["id"].get<std::string>().size(), 26u);
  EXPECT_EQ(sandbox_.Show(id)["state"], "ready");
}

TEST_F(CliTest, IdempotencyKeyReturnsTheSameTask) {
  auto first = sandbox_.AddTask({"--title", "once", "--idempotency-key", "K"});
  auto second = sandbox_.AddTask({"--title", "once again", "--idempotency-key", "K"});
  EXPECT_EQ(first, second);
  auto json =
      sandbox_.Ok({"task", "add", "--title", "x", "--idempotency-key", "K", "--json"}).Json();
  EXPECT_EQ(json["id"], first);
  EXPECT_EQ(json["created"], false);
  EXPECT_EQ(json["title"], "once");  // the existing task, unchanged
  // Another run is another key space.
  auto other_run = sandbox_.AddTask({"--title", "once", "--idempotency-key", "K", "--run", "r2"});
  EXPECT_NE(other_run, first);
  EXPECT_EQ(sandbox_.Ok({"task", "list", "--json"}).Json().size(), 2u);
}

TEST_F(CliTest, ListTableJsonAndFilters) {
  EXPECT_THAT(sandbox_.Ok({"task", "list"}).out, HasSubstr("no tasks"));
  auto a = sandbox_.AddTask({"--title", "alpha"});
  auto b = sandbox_.AddTask({"--title", "beta", "--depends-on", a});
  auto c = sandbox_.AddTask({"--title", "gamma", "--run", "other"});
  auto table = sandbox_.Ok({"task", "list"}).out;
  EXPECT_THAT(table, HasSubstr("ID"));
  EXPECT_THAT(table, HasSubstr("STATE"));
  for (const auto& id : {a, b, c}) EXPECT_THAT(table, HasSubstr(id));
  EXPECT_THAT(table, HasSubstr("alpha"));

  auto all = sandbox_.Ok({"task", "list", "--json"}).Json();
  ASSERT_TRUE(all.is_array());
  EXPECT_EQ(all.size(), 3u);
  auto ready = sandbox_.Ok({"task", "list", "--state", "ready", "--json"}).Json();
  std::set<std::string> ready_ids;
  for (const auto& task : ready) ready_ids.insert(task["id"]);
  EXPECT_EQ(ready_ids, (std::set<std::string>{a, c}));
  auto pending = sandbox_.Ok({"task", "list", "--state", "pending", "--json"}).Json();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0]["id"], b);
  auto other = sandbox_.Ok({"task", "list", "--run", "other", "--json"}).Json();
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0]["id"], c);
}

TEST_F(CliTest, ShowJsonShape) {
  auto dep = sandbox_.AddTask({"--title", "dep"});
  auto id =
      sandbox_.AddTask({"--title", "shown", "--depends-on", dep, "--idempotency-key", "show-key"});
  auto json = sandbox_.Show(id);
  for (const char* key : {"id", "state", "title", "priority", "depends_on", "attempts",
                          "max_attempts", "idempotency_key", "attempt_history", "events"}) {
    EXPECT_TRUE(json.contains(key)) << key;
  }
  EXPECT_EQ(json["id"], id);
  EXPECT_EQ(json["state"], "pending");
  EXPECT_EQ(json["depends_on"], nlohmann::json::array({dep}));
  EXPECT_EQ(json["idempotency_key"], "show-key");
  EXPECT_TRUE(json["attempts"].is_number());
  EXPECT_TRUE(json["attempt_history"].is_array());
  ASSERT_TRUE(json["events"].is_array());
  ASSERT_FALSE(json["events"].empty());
  EXPECT_EQ(json["events"][0]["kind"], "task.created");
  EXPECT_EQ(json["events"][0]["actor"], "cli");
  // Human-readable form.
  auto text = sandbox_.Ok({"task", "show", id}).out;
  EXPECT_THAT(text, HasSubstr("shown"));
  EXPECT_THAT(text, HasSubstr("pending"));
  EXPECT_THAT(text, HasSubstr(dep));
}

TEST_F(CliTest, UnknownIdExitsThree) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"task", "show", kUnknownUlid},
           {"task", "cancel", kUnknownUlid},
           {"task", "retry", kUnknownUlid},
           {"task", "show", "nope"},
           {"task", "add", "--title", "x", "--depends-on", kUnknownUlid}}) {
    auto result = sandbox_.Run(args);
    EXPECT_EQ(result.exit_code, 3) << CliSandbox::Join(args);
    EXPECT_THAT(result.err, StartsWith("factory: error: "));
    EXPECT_THAT(result.err, HasSubstr(args[2] == "--title" ? std::string(kUnknownUlid) : args[2]));
  }
}

TEST_F(CliTest, CancelCascadesAndRetryUnblocks) {
  auto a = sandbox_.AddTask({"--title", "a"});
  auto b = sandbox_.AddTask({"--title", "b", "--depends-on", a});
  auto c = sandbox_.AddTask({"--title", "c", "--depends-on", b});
  auto cancelled = sandbox_.Ok({"task", "cancel", a, "--reason", "not needed"});
  EXPECT_THAT(cancelled.out, HasSubstr(a));
  EXPECT_EQ(sandbox_.Show(a)["state"], "cancelled");
  EXPECT_EQ(sandbox_.Show(b)["state"], "blocked");
  EXPECT_EQ(sandbox_.Show(c)["state"], "blocked");
  // Cancelling twice is an illegal transition; retrying b is impossible while a is cancelled.
  EXPECT_EQ(sandbox_.Run({"task", "cancel", a}).exit_code, 4);
  auto retry_blocked = sandbox_.Run({"task", "retry", b});
  EXPECT_EQ(retry_blocked.exit_code, 4);
  EXPECT_THAT(retry_blocked.err, StartsWith("factory: error: "));
  // Retrying a task that is not failed/blocked is a precondition error too.
  auto d = sandbox_.AddTask({"--title", "d"});
  EXPECT_EQ(sandbox_.Run({"task", "retry", d}).exit_code, 4);
}

TEST_F(CliTest, FailedTaskRetryUnblocksDependents) {
  auto flaky = sandbox_.AddTask({"--title", "fails", "--command", "exit 7", "--max-attempts", "1"});
  auto after = sandbox_.AddTask({"--title", "after", "--depends-on", flaky});
  auto worker = sandbox_.Run({"worker", "--until-idle", "--poll-ms", "50", "--quiet"});
  EXPECT_EQ(worker.exit_code, 1) << worker.err;
  auto failed = sandbox_.Show(flaky);
  EXPECT_EQ(failed["state"], "failed");
  ASSERT_EQ(failed["attempt_history"].size(), 1u);
  EXPECT_THAT(failed["attempt_history"][0]["error"].get<std::string>(), HasSubstr("exit code 7"));
  EXPECT_EQ(sandbox_.Show(after)["state"], "blocked");
  auto retried = sandbox_.Ok({"task", "retry", flaky});
  EXPECT_THAT(retried.out, HasSubstr(flaky));
  auto again = sandbox_.Show(flaky);
  EXPECT_EQ(again["state"], "ready");
  EXPECT_EQ(again["attempts"], 0);
  EXPECT_EQ(sandbox_.Show(after)["state"], "pending");
}

TEST_F(CliTest, QueueStatsListsEveryState) {
  auto a = sandbox_.AddTask({"--title", "a"});
  sandbox_.AddTask({"--title", "b", "--depends-on", a});
  sandbox_.AddTask({"--title", "c", "--run", "other"});
  auto json = sandbox_.Ok({"queue", "stats", "--json"}).Json();
  const std::vector<std::string> states = {"pending", "ready", "claimed", "running", "verifying",
                                           "review",  "done",  "failed",  "blocked", "cancelled"};
  EXPECT_EQ(json.size(), states.size());
  for (const auto& state : states) EXPECT_TRUE(json.contains(state)) << state;
  EXPECT_EQ(json["ready"], 2);
  EXPECT_EQ(json["pending"], 1);
  EXPECT_EQ(json["done"], 0);
  auto run = sandbox_.Ok({"queue", "stats", "--run", "other", "--json"}).Json();
  EXPECT_EQ(run["ready"], 1);
  EXPECT_EQ(run["pending"], 0);
  auto table = sandbox_.Ok({"queue", "stats"}).out;
  for (const auto& state : states) EXPECT_THAT(table, HasSubstr(state));
}

TEST_F(CliTest, SpecFile) {
  auto missing = sandbox_.Run({"task", "add", "--title", "x", "--spec-file", "no/such/spec.md"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("no/such/spec.md"));
  auto directory = sandbox_.Run({"task", "add", "--title", "x", "--spec-file", "."});
  EXPECT_EQ(directory.exit_code, 2);
  WriteFile(sandbox_.Path("spec.md"), "# Spec\nline two\n");
  auto json =
      sandbox_.Ok({"task", "add", "--title", "x", "--spec-file", "spec.md", "--json"}).Json();
  EXPECT_EQ(json["spec"], "# Spec\nline two\n");
}

TEST(CliBadInputTest, NotAnSqliteDatabaseIsRefusedAndUnchanged) {
  CliSandbox sandbox;
  const auto db = sandbox.Path("garbage.db");
  std::string garbage;
  for (int idx = 0; idx < 8192; ++idx) garbage.push_back(static_cast<char>((idx * 131 + 7) % 251));
  WriteFile(db, garbage);
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--db", db.string(), "task", "list"},
                                             {"--db", db.string(), "task", "add", "--title", "x"},
                                             {"--db", db.string(), "init"},
                                             {"--db", db.string(), "audit", "verify"},
                                             {"--db", db.string(), "worker", "--until-idle"}}) {
    auto result = sandbox.Run(args);
    EXPECT_NE(result.exit_code, 0) << CliSandbox::Join(args);
    EXPECT_LT(result.exit_code, 128) << "crashed: " << CliSandbox::Join(args);
    EXPECT_THAT(result.err, StartsWith("factory: error: ")) << CliSandbox::Join(args);
    EXPECT_THAT(result.err, HasSubstr(db.string())) << CliSandbox::Join(args);
  }
  EXPECT_EQ(ReadFile(db), garbage);
  EXPECT_FALSE(std::filesystem::exists(db.string() + "-wal"));
}

// A read-only directory. Root ignores permissions, so as root the commands run as `nobody`.
TEST(CliBadInputTest, ReadOnlyDirectory) {
  CliSandbox sandbox;
  SpawnOptions as_user;
  if (geteuid() == 0) {
    if (Shell("command -v setpriv >/dev/null") != 0)
      GTEST_SKIP() << "running as root without setpriv (util-linux): root ignores "
                      "permissions, so the read-only directory needs another user to run as";
    as_user.prefix = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
    if (sandbox.Run({"--version"}, as_user).exit_code != 0) {
      GTEST_SKIP() << "user nobody cannot run " << FACTORY_BINARY << " (a private directory?)";
    }
    std::filesystem::permissions(sandbox.dir(), std::filesystem::perms::owner_all |
                                                    std::filesystem::perms::group_read |
                                                    std::filesystem::perms::group_exec |
                                                    std::filesystem::perms::others_read |
                                                    std::filesystem::perms::others_exec);
  }
  // 1. init in a directory we may not write.
  const auto ro = sandbox.Path("ro");
  std::filesystem::create_directory(ro);
  std::filesystem::permissions(
      ro, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec |
              std::filesystem::perms::group_read | std::filesystem::perms::group_exec |
              std::filesystem::perms::others_read | std::filesystem::perms::others_exec);
  auto init = sandbox.Run({"--db", (ro / "sub" / "factory.db").string(), "init"}, as_user);
  EXPECT_NE(init.exit_code, 0);
  EXPECT_LT(init.exit_code, 128);
  EXPECT_THAT(init.err, StartsWith("factory: error: "));
  EXPECT_THAT(init.err, HasSubstr(ro.string()));
  EXPECT_TRUE(std::filesystem::is_empty(ro));

  // 2. An existing database whose directory became read-only: writes fail cleanly, nothing
  // changes.
  const auto data = sandbox.Path("data");
  std::filesystem::create_directory(data);
  const auto db = data / "factory.db";
  sandbox.Ok({"--db", db.string(), "init"});
  auto id = sandbox.Ok({"--db", db.string(), "task", "add", "--title", "kept"}).Line();
  std::filesystem::permissions(db, std::filesystem::perms::owner_read |
                                       std::filesystem::perms::group_read |
                                       std::filesystem::perms::others_read);
  std::filesystem::permissions(
      data, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec |
                std::filesystem::perms::group_read | std::filesystem::perms::group_exec |
                std::filesystem::perms::others_read | std::filesystem::perms::others_exec);
  const std::string before = ReadFile(db);
  auto add = sandbox.Run({"--db", db.string(), "task", "add", "--title", "new"}, as_user);
  EXPECT_NE(add.exit_code, 0);
  EXPECT_LT(add.exit_code, 128);
  EXPECT_THAT(add.err, StartsWith("factory: error: "));
  EXPECT_THAT(add.err, HasSubstr(db.string()));
  EXPECT_EQ(ReadFile(db), before);
  std::filesystem::permissions(data, std::filesystem::perms::owner_all);
  std::filesystem::permissions(
      db, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto list = sandbox.Ok({"--db", db.string(), "task", "list", "--json"}).Json();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);
}

TEST_F(CliTest, AuditVerifyDetectsTampering) {
  auto fresh = sandbox_.Ok({"audit", "verify"});
  EXPECT_THAT(fresh.out, HasSubstr("ok"));
  for (int idx = 0; idx < 4; ++idx) sandbox_.AddTask({"--title", "t" + std::to_string(idx)});
  auto ok = sandbox_.Ok({"audit", "verify", "--json"}).Json();
  EXPECT_EQ(ok["ok"], true);
  EXPECT_GE(ok["events_checked"].get<int>(), 4);

  ASSERT_EQ(Shell("sqlite3 '" + sandbox_.DbPath().string() +
                  "' \"UPDATE events SET payload='{}' WHERE seq=3\""),
            0);
  auto broken = sandbox_.Run({"audit", "verify"});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_THAT(broken.err, StartsWith("factory: error: "));
  EXPECT_THAT(broken.err, HasSubstr("seq 3"));
  auto broken_json = sandbox_.Run({"audit", "verify", "--json"});
  EXPECT_EQ(broken_json.exit_code, 1);
  auto report = broken_json.Json();
  EXPECT_EQ(report["ok"], false);
  EXPECT_EQ(report["broken_seq"], 3);
  EXPECT_EQ(report["events_checked"], 2);
}

TEST_F(CliTest, AuditVerifyDetectsDeletedEvent) {
  for (int idx = 0; idx < 4; ++idx) sandbox_.AddTask({"--title", "t" + std::to_string(idx)});
  ASSERT_EQ(
      Shell("sqlite3 '" + sandbox_.DbPath().string() + "' \"DELETE FROM events WHERE seq=2\""), 0);
  auto broken = sandbox_.Run({"audit", "verify"});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_THAT(broken.err, HasSubstr("seq 3"));
}

// 2 processes x N concurrent `task add` with one key: one task.
TEST_F(CliTest, ConcurrentProcessesShareIdempotencyKey) {
  constexpr int kProcesses = 8;
  std::vector<pid_t> pids;
  for (int idx = 0; idx < kProcesses; ++idx) {
    SpawnOptions options;
    options.cwd = sandbox_.dir();
    options.stdout_path = sandbox_.Path("idem." + std::to_string(idx)).string();
    options.stderr_path = sandbox_.Path("idem.err." + std::to_string(idx)).string();
    pids.push_back(SpawnFactory(
        {"task", "add", "--title", "racy", "--idempotency-key", "same", "--run", "race"}, options));
  }
  std::set<std::string> ids;
  for (int idx = 0; idx < kProcesses; ++idx) {
    EXPECT_EQ(WaitForExit(pids[idx], 30'000), 0)
        << ReadFile(sandbox_.Path("idem.err." + std::to_string(idx)));
    std::string id = ReadFile(sandbox_.Path("idem." + std::to_string(idx)));
    while (!id.empty() && id.back() == '\n') id.pop_back();
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(sandbox_.Ok({"task", "list", "--run", "race", "--json"}).Json().size(), 1u);
}

}  // namespace
}  // namespace factory::testing
