// `factory run` with an external `cli` agent behind `factory gateway`, through the real binaries:
// config.yaml names the gateway, the agent (a small shell script standing in for Claude Code or
// Codex, run in the bubblewrap sandbox with `network: true`) calls the gateway with curl through
// the variables the vendors' SDKs read ($OPENAI_BASE_URL, $OPENAI_API_KEY), and the gateway
// forwards to the fake OpenAI-compatible provider (tests/llm/fake_provider.h). Each attempt gets
// its own virtual key: its calls are ledgered under the run, the queue's task, that attempt and
// the agent; the key is revoked when the attempt ends (failed or not); the agent never sees the
// real provider key; the key is written nowhere.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_test_util.h"
#include "core/sha256.h"
#include "gateway/keys.h"
#include "ledger/ledger.h"
#include "llm/fake_provider.h"
#include "store/store.h"

namespace factory {
namespace {

using llm::Usage;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::HasSubstr;
using json = nlohmann::json;

// The real provider key: in the gateway's environment (it needs it) and, as a careless user's
// shell would have it, in `factory run`'s too, under models.yaml's variable and OPENAI_API_KEY.
constexpr char kKeyVariable[] = "GWRUN_PROVIDER_KEY";
constexpr char kRealKey[] = "sk-gwrun-real-UPSTREAM-271828182845";

std::string Sh(const std::filesystem::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

// The stand-in external agent. It proves what it saw without writing any secret: the SHA-256 of
// the key it was given (the store keeps the same hash), and how many environment variables hold
// the real key (by a prefix of it, so the script does not contain the key either).
constexpr char kAgentScript[] = R"(#!/bin/sh
set -eu
curl -sS -f -X POST "$OPENAI_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $OPENAI_API_KEY" -H "Content-Type: application/json" \
  -d '{"model": "cloud/fast", "messages": [{"role": "user", "content": "greet"}]}' \
  > "answer-$FACTORY_ATTEMPT.json"
printf '%s' "$OPENAI_API_KEY" | sha256sum | cut -d' ' -f1 > key.sha256
if [ "$ANTHROPIC_API_KEY" = "$OPENAI_API_KEY" ]; then echo same > anthropic-key.txt; fi
printf '%s\n%s\n' "$OPENAI_BASE_URL" "$ANTHROPIC_BASE_URL" > urls.txt
env | grep -c 'sk-gwrun-real' > leaked.txt || true
if [ "$FACTORY_ATTEMPT" = 1 ]; then
  echo "attempt 1 gives up on purpose" >&2
  exit 1
fi
)";

class GatewayRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The agent's script is part of the repository: the sandbox shows the agent its worktree
    // and the host's system directories, not the test's temporary ones.
    testing::WriteFile(sandbox_.Path("agent.sh"), kAgentScript);
    Sh(dir(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "printf '# greeter\\n' > README.md && git add -A && git commit -qm init");
    sandbox_.Ok({"init"});
    for (const char* example : {"builder.md", "claude-coder.md", "llm-coder.md"}) {
      std::filesystem::remove(sandbox_.Path(std::string(".factory/agents/") + example));
    }
    testing::WriteFile(sandbox_.Path(".factory/agents/ext.md"),
                       "---\n"
                       "name: ext\n"
                       "role: an external coding CLI behind the gateway\n"
                       "runner: cli\n"
                       "preset: opencode\n"
                       "command: sh agent.sh\n"
                       "capabilities: [code]\n"
                       "network: true\n"
                       "---\n"
                       "You are an external agent.\n");
    testing::WriteFile(sandbox_.Path(".factory/models.yaml"),
                       "providers:\n"
                       "  fake: {kind: openai, base_url: \"" +
                           fake_.openai_base_url() + "\", api_key_env: " + kKeyVariable +
                           ", timeout_s: 20}\n"
                           "models:\n"
                           "  mini: {provider: fake, model: gpt-mini, input_per_mtok: 2.0, "
                           "output_per_mtok: 8.0, max_output_tokens: 1000}\n"
                           "aliases:\n"
                           "  cloud/fast: [mini]\n");
    testing::WriteFile(sandbox_.Path("backlog.yaml"),
                       "tasks:\n"
                       "  - id: greet\n"
                       "    title: Greet through the gateway\n"
                       "    description: Ask the model for a greeting.\n"
                       "    acceptance: [answer-2.json holds the greeting]\n"
                       "    agent: ext\n");
    StartGateway();
  }

  void TearDown() override {
    if (gateway_pid_ > 0) {
      kill(gateway_pid_, SIGTERM);
      if (testing::WaitForExit(gateway_pid_, 10'000) == -1) {
        kill(gateway_pid_, SIGKILL);
        waitpid(gateway_pid_, nullptr, 0);
      }
    }
  }

  const std::filesystem::path& dir() const { return sandbox_.dir(); }

  // `factory gateway` on a free loopback port, on the project's store, in front of the fake.
  void StartGateway() {
    testing::SpawnOptions options;
    options.cwd = dir();
    options.env[kKeyVariable] = kRealKey;
    options.stdout_path = (io_.path() / "gateway.out").string();
    options.stderr_path = (io_.path() / "gateway.err").string();
    gateway_pid_ = testing::SpawnFactory({"gateway", "--listen", "127.0.0.1:0"}, options);
    // "factory gateway: listening on http://127.0.0.1:PORT" once it accepts connections.
    const std::string prefix = "listening on http://127.0.0.1:";
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          const std::string text = testing::ReadFile(options.stdout_path);
          const size_t at = text.find(prefix);
          if (at == std::string::npos) return false;
          size_t end = at + prefix.size();
          while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
          if (end == at + prefix.size()) return false;
          const size_t url_at = at + prefix.find("http");
          gateway_url_ = text.substr(url_at, end - url_at);
          return true;
        },
        20'000))
        << "the gateway did not start: " << testing::ReadFile(options.stderr_path);
  }

  void WriteConfig(const std::string& gateway_url) {
    testing::WriteFile(sandbox_.Path(".factory/config.yaml"),
                       "concurrency: 1\n"
                       "max_attempts: 2\n"
                       "gates:\n"
                       "  - {name: greeting, command: \"grep -q 'hello through the gateway' "
                       "answer-2.json\", timeout: 60}\n"
                       "protected: [\".factory/**\", agent.sh]\n"
                       "gateway:\n"
                       "  url: " +
                           gateway_url + "\n");
  }

  CliResult Run(const std::vector<std::string>& args) {
    testing::SpawnOptions options;
    options.env[kKeyVariable] = kRealKey;
    options.env["OPENAI_API_KEY"] = kRealKey;
    options.env["ANTHROPIC_API_KEY"] = kRealKey;
    return sandbox_.Run(args, options, 120'000);
  }

  std::unique_ptr<Store> OpenDb() const {
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox_.DbPath().string()});
    EXPECT_TRUE(store.has_value()) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }

  // Every "fk-..." token in any file under the test's directory (repository, worktrees,
  // artifacts, logs, the database).
  std::set<std::string> KeyLikeTokens() const {
    std::set<std::string> found;
    // A key is "fk-" and 43 characters of the URL-safe base64 alphabet.
    constexpr size_t kBodyLength = 43;
    auto is_key_char = [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    };
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir())) {
      if (!entry.is_regular_file()) continue;
      const std::string text = testing::ReadFile(entry.path());
      for (size_t at = text.find("fk-"); at != std::string::npos; at = text.find("fk-", at + 1)) {
        size_t end = at + 3;
        while (end < text.size() && end - at - 3 < kBodyLength && is_key_char(text[end])) ++end;
        if (end - at - 3 == kBodyLength) found.insert(text.substr(at, end - at));
      }
    }
    return found;
  }

  FakeProviderServer fake_;
  CliSandbox sandbox_;
  testing::TempDir io_;
  pid_t gateway_pid_ = -1;
  std::string gateway_url_;
};

TEST_F(GatewayRunTest, CliAgentCallsAreMeteredPerAttemptWithKeysRevokedAndSecretsHidden) {
  ASSERT_FALSE(gateway_url_.empty());
  WriteConfig(gateway_url_ + "/");
  fake_.Enqueue(FakeReply::Text("first try", Usage{100, 5, 0, 0}));
  fake_.Enqueue(FakeReply::Text("hello through the gateway", Usage{120, 8, 0, 0}));

  CliResult run = Run({"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--json", "--plain"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_EQ(run.Json()["done"], 1) << run.out;
  EXPECT_EQ(run.Json()["attempts"], 2) << run.out;

  // The model calls went through the gateway, which used the real key upstream.
  ASSERT_EQ(fake_.request_count(), 2u);
  for (const auto& request : fake_.requests()) {
    EXPECT_EQ(request.Header("Authorization"), std::string("Bearer ") + kRealKey);
    EXPECT_EQ(request.Json()["model"], "gpt-mini");
  }

  // What the agent saw (attempt 2's files, merged): the gateway's URLs, the virtual key under
  // both vendors' names, and the real key nowhere in its environment.
  EXPECT_EQ(Sh(dir(), "git show factory/r1:urls.txt"),
            gateway_url_ + "/v1\n" + gateway_url_ + "\n");
  EXPECT_EQ(Sh(dir(), "git show factory/r1:anthropic-key.txt"), "same\n");
  EXPECT_EQ(Sh(dir(), "git show factory/r1:leaked.txt"), "0\n");
  const std::string seen_key_hash = Sh(dir(), "git show factory/r1:key.sha256");

  auto store = OpenDb();
  ASSERT_NE(store, nullptr);
  // One key per attempt, scoped to the run, the queue's task and that attempt, all revoked.
  std::string task_id;
  std::optional<std::vector<Attempt>> attempts;
  Status read = store->Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, txn.ListTasks(TaskQuery{.run_id = "r1"}));
    if (tasks.size() != 1) return Internal(std::to_string(tasks.size()) + " tasks in r1");
    task_id = tasks[0].id;
    FACTORY_ASSIGN_OR_RETURN(attempts, txn.ListAttempts(task_id));
    return Ok();
  });
  ASSERT_TRUE(read) << read.error().ToString();
  ASSERT_EQ(attempts->size(), 2u);
  std::sort(attempts->begin(), attempts->end(),
            [](const Attempt& a, const Attempt& b) { return a.number < b.number; });
  auto keys = gateway::ListKeys(*store);
  ASSERT_TRUE(keys) << keys.error().ToString();
  ASSERT_EQ(keys->size(), 2u);
  for (size_t index = 0; index < 2; ++index) {
    const VirtualKey& key = (*keys)[index];
    EXPECT_EQ(key.agent, "ext");
    EXPECT_EQ(key.run_id, "r1");
    EXPECT_EQ(key.task_id, task_id);
    EXPECT_EQ(key.attempt_id, (*attempts)[index].id) << "key " << index;
    EXPECT_GT(key.revoked_ms, 0) << "key " << index << " is still active";
    EXPECT_GE(key.revoked_ms, key.created_ms);
  }
  EXPECT_EQ(seen_key_hash, (*keys)[1].key_hash + "\n") << "attempt 2 used its own key";

  // The ledger: each call under the run, the queue's task, its attempt and the agent, priced.
  ledger::Ledger ledger(*store);
  auto rows = ledger.Calls(ModelCallQuery{.run_id = "r1"});
  ASSERT_TRUE(rows) << rows.error().ToString();
  ASSERT_EQ(rows->size(), 2u);
  std::sort(rows->begin(), rows->end(),
            [](const ModelCallRow& a, const ModelCallRow& b) { return a.id < b.id; });
  const int64_t inputs[] = {100, 120}, outputs[] = {5, 8};
  for (size_t index = 0; index < 2; ++index) {
    const ModelCallRow& row = (*rows)[index];
    EXPECT_EQ(row.agent, "ext");
    EXPECT_EQ(row.task_id, task_id);
    EXPECT_EQ(row.attempt_id, (*attempts)[index].id) << "call " << index;
    EXPECT_EQ(row.purpose, "gateway");
    EXPECT_EQ(row.status, "ok");
    EXPECT_EQ(row.input_tokens, inputs[index]);
    EXPECT_EQ(row.output_tokens, outputs[index]);
    EXPECT_NEAR(row.cost_usd, (inputs[index] * 2.0 + outputs[index] * 8.0) / 1e6, 1e-12);
  }

  // The keys are written nowhere (logs, events, task files, prompts, the database), and the
  // real provider key neither.
  for (const std::string& token : KeyLikeTokens()) {
    for (const VirtualKey& key : *keys) {
      EXPECT_NE(Sha256Hex(token), key.key_hash)
          << "the key of attempt " << key.attempt_id << " is in a file";
    }
  }
  std::string real_key_files;
  testing::Shell("grep -rl -- '" + std::string(kRealKey) + "' '" + dir().string() + "'",
                 &real_key_files);
  EXPECT_EQ(real_key_files, "");
  EXPECT_THAT(run.out + run.err, ::testing::Not(HasSubstr("fk-")));
}

TEST_F(GatewayRunTest, WithoutAGatewayTheAgentGetsNoKey) {
  testing::WriteFile(sandbox_.Path(".factory/config.yaml"),
                     "concurrency: 1\nmax_attempts: 1\nprotected: [\".factory/**\"]\n");
  CliResult run = Run({"run", "--backlog", "backlog.yaml", "--run-id", "r2", "--json", "--plain"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("OPENAI_BASE_URL"));  // the script's `set -u`: not set
  EXPECT_EQ(fake_.request_count(), 0u);
  auto store = OpenDb();
  ASSERT_NE(store, nullptr);
  auto keys = gateway::ListKeys(*store);
  ASSERT_TRUE(keys) << keys.error().ToString();
  EXPECT_TRUE(keys->empty());
}

}  // namespace
}  // namespace factory
