// Secrets printed by agents, gates and worker commands are never stored or printed: with
// OPENAI_API_KEY in the factory's environment, a script agent, a gate and a worker command that
// print its value (read from a file of the repository, as a hostile agent that found it would)
// leave it in none of the database (main file and WAL), the artifacts and gate logs, `task
// show`, `run show`, the console or the next attempt's prompt.md; the event chain still verifies.

#include "core/redact.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "events/audit.h"
#include "queue/queue.h"

namespace factory {
namespace {

using testing::CliResult;
using testing::CliSandbox;
using testing::SpawnOptions;

namespace fs = std::filesystem;

constexpr char kMarker[] = "[REDACTED:OPENAI_API_KEY]";

std::string RandomKey() {
  std::random_device device;
  std::mt19937_64 random(device());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "sk-test-";
  for (int i = 0; i < 40; ++i) key += kHex[random() % 16];
  return key;
}

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  EXPECT_EQ(testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out), 0)
      << command << "\n"
      << out;
  return out;
}

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// Every regular file below `root` (except below `skip`) whose bytes hold `needle`.
std::vector<std::string> FilesHolding(const fs::path& root, const std::string& needle,
                                      const fs::path& skip = {}) {
  std::vector<std::string> found;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    if (!skip.empty() && it->path() == skip) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    if (Contains(testing::ReadFile(it->path()), needle)) found.push_back(it->path().string());
  }
  return found;
}

class RedactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = RandomKey();
    env_ = {{"OPENAI_API_KEY", key_}};
    const fs::path repo = sandbox_.dir();
    Sh(repo,
       "git init -q -b main && git config user.email t@example.com && git config user.name t");
    // The key sits in a file of the repository: whatever the agents' environment holds, they
    // can read it and print it.
    testing::WriteFile(repo / "secret.txt", key_ + "\n");
    testing::WriteFile(repo / "README.md", "hello\n");
    // The agent prints the key on both streams and changes a file, so it has something to
    // commit.
    testing::WriteFile(repo / "tools/agent.sh",
                       "key=$(cat secret.txt)\n"
                       "echo \"agent stdout: $key\"\n"
                       "echo \"agent stderr: $key\" >&2\n"
                       "echo attempt >> note.txt\n");
    // The gate prints the key in two writes with a pause between them, so the factory reads
    // the halves separately, then fails: its output becomes the next attempt's feedback.
    testing::WriteFile(repo / "tools/gate.sh",
                       "key=$(cat secret.txt)\n"
                       "printf 'gate output: %s' \"$(printf %s \"$key\" | cut -c1-12)\"\n"
                       "sleep 0.3\n"
                       "printf '%s\\n' \"$(printf %s \"$key\" | cut -c13-)\"\n"
                       "exit 1\n");
    Sh(repo, "git add -A && git commit -qm init");
    sandbox_.Ok({"init"}, Env());
  }

  SpawnOptions Env() const {
    SpawnOptions options;
    options.env = env_;
    return options;
  }

  CliResult Factory(const std::vector<std::string>& args) { return sandbox_.Run(args, Env()); }

  // The key in none of the factory's files (database, WAL, artifacts, logs; the worktrees hold
  // the repository's own secret.txt and are left out).
  void ExpectNoFileHoldsTheKey() {
    const fs::path factory_dir = sandbox_.dir() / ".factory";
    EXPECT_TRUE(fs::exists(factory_dir / "factory.db"));
    EXPECT_EQ(FilesHolding(factory_dir, key_, factory_dir / "worktrees"),
              std::vector<std::string>{});
  }

  void ExpectAuditOk() {
    CliResult audit = Factory({"audit", "verify"});
    EXPECT_EQ(audit.exit_code, 0) << audit.out << audit.err;
  }

  CliSandbox sandbox_;
  std::string key_;
  std::map<std::string, std::string> env_;
};

TEST_F(RedactTest, AgentAndGateOutputNeverStoredOrPrinted) {
  const fs::path repo = sandbox_.dir();
  testing::WriteFile(repo / ".factory/config.yaml",
                     "concurrency: 1\nmax_attempts: 2\n"
                     "gates:\n  - name: leak\n    command: sh tools/gate.sh\n"
                     "rebase:\n  max_per_task: 0\n");
  testing::WriteFile(repo / ".factory/agents/leaker.md",
                     "---\nname: leaker\nrole: prints what it finds\nrunner: script\n"
                     "capabilities: [code]\ncommand: sh tools/agent.sh\n---\nLeaks.\n");
  testing::WriteFile(repo / "backlog.yaml",
                     "tasks:\n  - {id: leak, title: Leak the key, agent: leaker}\n");

  CliResult run =
      Factory({"--log-level", "debug", "run", "--backlog", "backlog.yaml", "--run-id", "r1"});
  EXPECT_NE(run.exit_code, 0) << "the gate always fails, so the run cannot succeed";
  EXPECT_FALSE(Contains(run.out, key_)) << run.out;
  EXPECT_FALSE(Contains(run.err, key_)) << run.err;

  // The attempts really ran and really printed the key: the logs hold the marker instead.
  const fs::path attempts = repo / ".factory/runs/r1";
  const std::string agent_out = testing::ReadFile(attempts / "leak-1/runner.stdout.log");
  const std::string agent_err = testing::ReadFile(attempts / "leak-1/runner.stderr.log");
  EXPECT_EQ(agent_out, std::string("agent stdout: ") + kMarker + "\n");
  EXPECT_EQ(agent_err, std::string("agent stderr: ") + kMarker + "\n");
  std::string gate_log;
  for (const auto& entry : fs::directory_iterator(attempts / "leak-1/gates")) {
    gate_log += testing::ReadFile(entry.path());
  }
  EXPECT_TRUE(Contains(gate_log, std::string("gate output: ") + kMarker)) << gate_log;

  // The second attempt's prompt carries the gate's output as feedback, redacted.
  const std::string prompt = testing::ReadFile(attempts / "leak-2/prompt.md");
  EXPECT_TRUE(Contains(prompt, std::string("gate output: ") + kMarker)) << prompt;
  EXPECT_FALSE(Contains(prompt, key_));

  ExpectNoFileHoldsTheKey();

  CliResult tasks = Factory({"task", "list", "--run", "r1", "--json"});
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  ASSERT_EQ(tasks.Json().size(), 1u) << tasks.out;
  const std::string task_id = tasks.Json()[0]["id"];
  for (const auto& args : std::vector<std::vector<std::string>>{{"task", "show", task_id, "--json"},
                                                                {"task", "show", task_id},
                                                                {"run", "show", "r1"},
                                                                {"run", "show", "r1", "--json"}}) {
    CliResult shown = Factory(args);
    EXPECT_FALSE(Contains(shown.out, key_)) << CliSandbox::Join(args) << ":\n" << shown.out;
    EXPECT_FALSE(Contains(shown.err, key_)) << CliSandbox::Join(args) << ":\n" << shown.err;
  }
  CliResult shown = Factory({"task", "show", task_id, "--json"});
  EXPECT_TRUE(Contains(shown.out, kMarker)) << "the failure should be visible, redacted:\n"
                                            << shown.out;
  ExpectAuditOk();
}

TEST_F(RedactTest, WorkerCommandOutputNeverStoredOrPrinted) {
  const std::string task_id =
      sandbox_
          .Ok({"task", "add", "--title", "leaky command", "--max-attempts", "1", "--command",
               "echo \"out $(cat secret.txt)\"; echo \"err $(cat secret.txt)\" >&2; exit 3"},
              Env())
          .Line();
  CliResult worker = Factory({"--log-level", "debug", "worker", "--until-idle"});
  EXPECT_FALSE(Contains(worker.out, key_)) << worker.out;
  EXPECT_FALSE(Contains(worker.err, key_)) << worker.err;

  std::string artifacts;
  for (const auto& entry :
       fs::recursive_directory_iterator(sandbox_.dir() / ".factory/artifacts")) {
    if (entry.is_regular_file()) artifacts += testing::ReadFile(entry.path());
  }
  EXPECT_TRUE(Contains(artifacts, std::string("out ") + kMarker)) << artifacts;
  EXPECT_TRUE(Contains(artifacts, std::string("err ") + kMarker)) << artifacts;

  ExpectNoFileHoldsTheKey();
  CliResult shown = Factory({"task", "show", task_id, "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_FALSE(Contains(shown.out, key_)) << shown.out;
  EXPECT_TRUE(Contains(shown.out, kMarker)) << shown.out;
  ExpectAuditOk();
}

// The queue's own path, in process: a secret in a failure's error and details, in a result, in
// metadata and in a recorded event (raw and JSON-escaped) is redacted before anything is hashed
// or written, so the database file never holds it and the chain still verifies.
TEST(QueueRedactionTest, EventsAttemptsResultsAndMetadataAreStoredRedacted) {
  testing::TempDir dir;
  const std::string secret = "queue-secret-" + RandomKey();
  const std::string quoted = "quote\"d-" + RandomKey();  // JSON-escaped when dumped
  ProcessRedactor().Add("QUEUE_TEST_TOKEN", secret);
  ProcessRedactor().Add("QUOTED_TEST_TOKEN", quoted);
  const std::string db_path = (dir.path() / "factory.db").string();
  auto store = OpenSqliteStore(SqliteOptions{.path = db_path});
  ASSERT_TRUE(store) << store.error().message;
  Queue queue(**store);
  auto first = queue.Enqueue(EnqueueRequest{.title = "fails", .max_attempts = 1});
  auto second = queue.Enqueue(EnqueueRequest{.title = "succeeds"});
  ASSERT_TRUE(first && second);
  auto claimed = queue.ClaimAndStart("w", 60'000, 2);
  ASSERT_TRUE(claimed) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 2u);
  for (const ClaimedTask& task : *claimed) {
    if (task.task.id == first->task.id) {
      const nlohmann::json details{{"stdout_tail", "printed " + secret},
                                   {"feedback", "and " + quoted}};
      ASSERT_TRUE(queue.Fail(task.lease, "exit 1: " + secret, details.dump(), false));
    } else {
      ASSERT_TRUE(queue.Complete(task.lease, nlohmann::json{{"out", secret}}.dump()));
    }
  }
  ASSERT_TRUE(queue.events().Append(
      {.kind = events::EventKind::kAgentStep,
       .run_id = "default",
       .task_id = first->task.id,
       .actor = "test",
       .payload_json = nlohmann::json{{"summary", secret + " " + quoted}}.dump()}));
  ASSERT_TRUE(queue.UpdateMetadata(second->task.id, nlohmann::json{{"note", secret}}.dump()));

  auto attempts = queue.ListAttempts(first->task.id);
  ASSERT_TRUE(attempts);
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ((*attempts)[0].error, "exit 1: [REDACTED:QUEUE_TEST_TOKEN]");
  EXPECT_TRUE(Contains((*attempts)[0].details_json, "[REDACTED:QUOTED_TEST_TOKEN]"));
  auto audit = VerifyChain(**store);
  ASSERT_TRUE(audit);
  EXPECT_TRUE(audit->ok) << audit->problem;
  store->reset();  // closes the database, so its pages are all in the main file or the WAL

  const std::string escaped = nlohmann::json(quoted).dump();
  for (const auto& file : {db_path, db_path + "-wal"}) {
    const std::string bytes = testing::ReadFile(file);
    EXPECT_FALSE(Contains(bytes, secret)) << file;
    EXPECT_FALSE(Contains(bytes, quoted)) << file;
    EXPECT_FALSE(Contains(bytes, escaped.substr(1, escaped.size() - 2))) << file;
  }
}

}  // namespace
}  // namespace factory
