// `factory run` with a built-in `llm` agent, through the real binary: the agent edits a
// temporary git repository through tool calls answered by the scripted fake OpenAI-compatible
// server (loopback HTTP), its gate runs for real, its calls land in the ledger at the configured
// prices, the cost pyramid escalates after a failed gate, a task budget cap ends the task as
// budget_exceeded, and an agent's daily cap pauses it until `factory agents resume`.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_test_util.h"
#include "ledger/ledger.h"
#include "llm/fake_provider.h"
#include "store/store.h"

namespace factory {
namespace {

using llm::ToolCall;
using llm::Usage;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr char kKeyVariable[] = "FACTORY_LLMRUN_TEST_KEY";
constexpr char kApiKey[] = "sk-llmrun-secret-KEY-31415926535";

// Prices per million tokens (input, cached input, output) of the two tiers the tests use.
struct Prices {
  double input, cached, output;
};
constexpr Prices kFast{1.0, 0.5, 4.0};
constexpr Prices kMid{3.0, 1.5, 15.0};

double CostOf(const Prices& prices, const Usage& usage) {
  return (static_cast<double>(usage.input_tokens - usage.cached_read_tokens) * prices.input +
          static_cast<double>(usage.cached_read_tokens) * prices.cached +
          static_cast<double>(usage.output_tokens) * prices.output) /
         1e6;
}

ToolCall Call(std::string id, std::string name, const json& arguments) {
  return ToolCall{std::move(id), std::move(name), arguments.dump()};
}

std::string Sh(const std::filesystem::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

class LlmRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Sh(dir(),
       "git init -q -b main && git config user.email t@example.com && git config user.name t && "
       "printf '# greeter\\n' > README.md && "
       "printf 'grep -qx \"hello factory\" greeting.txt\\n' > check.sh && "
       "git add -A && git commit -qm init");
    sandbox_.Ok({"init"});
    // Only the agent under test: `factory init`'s examples would be validated too.
    for (const char* example : {"builder.md", "claude-coder.md", "llm-coder.md"}) {
      std::filesystem::remove(sandbox_.Path(std::string(".factory/agents/") + example));
    }
    WriteAgent("");
    WriteConfig("");
    testing::WriteFile(sandbox_.Path(".factory/models.yaml"), ModelsYaml());
    testing::WriteFile(sandbox_.Path("backlog.yaml"),
                       "tasks:\n"
                       "  - id: greet\n"
                       "    title: Greet the factory\n"
                       "    description: Create greeting.txt containing the line 'hello "
                       "factory'.\n"
                       "    acceptance: [sh check.sh passes]\n"
                       "    agent: coder\n");
  }

  const std::filesystem::path& dir() const { return sandbox_.dir(); }

  std::string ModelsYaml() const {
    return "providers:\n"
           "  fake: {kind: openai, base_url: \"" +
           fake_.openai_base_url() + "\", api_key_env: " + kKeyVariable +
           ", timeout_s: 20}\n"
           "models:\n"
           "  fast-model: {provider: fake, model: fake-fast, input_per_mtok: 1.0, "
           "cached_per_mtok: 0.5, output_per_mtok: 4.0, context_window: 100000, "
           "max_output_tokens: 1000}\n"
           "  mid-model: {provider: fake, model: fake-mid, input_per_mtok: 3.0, "
           "cached_per_mtok: 1.5, output_per_mtok: 15.0, context_window: 100000, "
           "max_output_tokens: 1000}\n"
           "  top-model: {provider: fake, model: fake-top, input_per_mtok: 15.0, "
           "output_per_mtok: 75.0, context_window: 100000, max_output_tokens: 1000}\n"
           "aliases:\n"
           "  cloud/fast: [fast-model]\n"
           "  cloud/mid: [mid-model]\n"
           "  cloud/frontier: [top-model]\n"
           "routing:\n"
           "  - {task_type: \"*\", chain: [cloud/fast, cloud/mid, cloud/frontier]}\n"
           "retry: {max_attempts: 1, base_ms: 10, max_ms: 50}\n"
           "cache: {enabled: false}\n";
  }

  // The llm agent: its ceiling is cloud/mid, so the pyramid is cloud/fast > cloud/mid.
  void WriteAgent(const std::string& extra) {
    testing::WriteFile(sandbox_.Path(".factory/agents/coder.md"),
                       "---\n"
                       "name: coder\n"
                       "role: writes code with the tool loop\n"
                       "runner: llm\n"
                       "model: cloud/mid\n"
                       "capabilities: [code]\n"
                       "max_turns: 6\n" +
                           extra +
                           "---\n"
                           "You are the coder. Use the tools.\n");
  }

  void WriteConfig(const std::string& extra) {
    testing::WriteFile(sandbox_.Path(".factory/config.yaml"),
                       "concurrency: 1\n"
                       "max_attempts: 2\n"
                       "gates:\n"
                       "  - {name: check, command: sh check.sh, timeout: 60}\n"
                       "protected: [check.sh, \".factory/**\"]\n" +
                           extra);
  }

  testing::SpawnOptions WithKey() const {
    testing::SpawnOptions options;
    options.env[kKeyVariable] = kApiKey;
    return options;
  }

  CliResult Run(const std::vector<std::string>& args, int64_t timeout_ms = 90'000) {
    return sandbox_.Run(args, WithKey(), timeout_ms);
  }

  // The fake's reply: write greeting.txt with `line`.
  void EnqueueWrite(const std::string& id, const std::string& line, Usage usage) {
    fake_.Enqueue(FakeReply::Tools(
        {Call(id, "write_file", {{"path", "greeting.txt"}, {"content", line + "\n"}})}, usage,
        "Writing the greeting."));
  }
  void EnqueueFinish(const std::string& id, Usage usage) {
    fake_.Enqueue(FakeReply::Tools({Call(id, "finish", {{"summary", "greeting written"}})}, usage));
  }

  std::vector<std::string> RequestedModels() const {
    std::vector<std::string> models;
    for (const auto& request : fake_.requests()) models.push_back(request.Json()["model"]);
    return models;
  }

  std::unique_ptr<Store> OpenDb() const {
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox_.DbPath().string()});
    EXPECT_TRUE(store.has_value()) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }

  std::vector<ModelCallRow> LedgerRows(const std::string& run_id) const {
    auto store = OpenDb();
    if (store == nullptr) return {};
    ledger::Ledger ledger(*store);
    auto rows = ledger.Calls(ModelCallQuery{.run_id = run_id});
    EXPECT_TRUE(rows.has_value()) << rows.error().ToString();
    if (!rows) return {};
    std::sort(rows->begin(), rows->end(),
              [](const ModelCallRow& a, const ModelCallRow& b) { return a.id < b.id; });
    return *rows;
  }

  // Every file under the test's directory (repository, worktrees, artifacts, transcripts, the
  // database) that contains `needle`.
  std::vector<std::string> FilesContaining(const std::string& needle) const {
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir())) {
      if (!entry.is_regular_file()) continue;
      if (testing::ReadFile(entry.path()).find(needle) != std::string::npos) {
        found.push_back(entry.path().string());
      }
    }
    return found;
  }

  FakeProviderServer fake_;
  CliSandbox sandbox_;
};

TEST_F(LlmRunTest, LlmAgentEditsTheRepositoryPassesItsGateAndEveryCallIsLedgered) {
  const std::vector<Usage> usages = {
      {1'200, 60, 0, 0}, {1'500, 40, 1'000, 0}, {1'700, 20, 1'200, 0}};
  EnqueueWrite("c1", "hello factory", usages[0]);
  fake_.Enqueue(
      FakeReply::Tools({Call("c2", "run_command", {{"command", "sh check.sh"}})}, usages[1]));
  EnqueueFinish("c3", usages[2]);

  CliResult run = Run(
      {"run", "--backlog", "backlog.yaml", "--run-id", "r1", "--json", "--no-sandbox", "--plain"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json summary = run.Json();
  EXPECT_EQ(summary["done"], 1);
  EXPECT_EQ(summary["attempts"], 1);

  // The change went through the tool call, the gate and the merge queue.
  EXPECT_EQ(Sh(dir(), "git show factory/r1:greeting.txt"), "hello factory\n");
  EXPECT_EQ(Sh(dir(), "git rev-list --count main"), "1\n");  // the base branch is untouched
  // The command's result went back to the model.
  const auto requests = fake_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_THAT(requests[2].body, HasSubstr("exit code 0"));
  // Attempt 1 is the pyramid's first rung.
  EXPECT_EQ(RequestedModels(), (std::vector<std::string>{"fake-fast", "fake-fast", "fake-fast"}));
  // The task message is the rendered implementation prompt the attempt kept (no repo map); the
  // tool rules follow the agent's body in the system message.
  const json first = requests[0].Json();
  const std::string task_message = first["messages"][1]["content"];
  EXPECT_EQ(task_message, testing::ReadFile(sandbox_.Path(".factory/runs/r1/greet-1/prompt.md")));
  EXPECT_THAT(task_message, ::testing::StartsWith("# Task greet: Greet the factory\n"));
  EXPECT_THAT(task_message, Not(HasSubstr("Repository map")));
  EXPECT_THAT(first["messages"][0]["content"].get<std::string>(),
              HasSubstr("You are the coder. Use the tools."));
  EXPECT_THAT(first["messages"][0]["content"].get<std::string>(),
              HasSubstr("call finish(summary)"));
  // The attempt's prompt_bytes is what reached the model: the system and the task message.
  {
    auto store = OpenDb();
    ASSERT_NE(store, nullptr);
    std::vector<Attempt> attempts;
    Status read = store->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(auto tasks, txn.ListTasks(TaskQuery{.run_id = "r1"}));
      if (tasks.size() != 1) return Internal("expected one task in run r1");
      FACTORY_ASSIGN_OR_RETURN(attempts, txn.ListAttempts(tasks[0].id));
      return Ok();
    });
    ASSERT_TRUE(read.has_value()) << read.error().ToString();
    ASSERT_EQ(attempts.size(), 1u);
    const json details = json::parse(attempts[0].details_json);
    EXPECT_EQ(details["prompt_bytes"].get<size_t>(),
              first["messages"][0]["content"].get<std::string>().size() + task_message.size());
  }

  // Ledger totals = the fake's reported usage x the configured prices.
  double expected_cost = 0;
  Usage expected;
  for (const auto& usage : usages) {
    expected_cost += CostOf(kFast, usage);
    expected.input_tokens += usage.input_tokens;
    expected.output_tokens += usage.output_tokens;
    expected.cached_read_tokens += usage.cached_read_tokens;
  }
  json costs = Run({"costs", "--by", "model", "--json"}).Json();
  ASSERT_EQ(costs["rows"].size(), 1u) << costs.dump();
  EXPECT_EQ(costs["rows"][0]["key"], "fake/fast-model");
  EXPECT_EQ(costs["total"]["calls"], 3);
  EXPECT_EQ(costs["total"]["input_tokens"], expected.input_tokens);
  EXPECT_EQ(costs["total"]["output_tokens"], expected.output_tokens);
  EXPECT_EQ(costs["total"]["cached_tokens"], expected.cached_read_tokens);
  EXPECT_NEAR(costs["total"]["cost_usd"].get<double>(), expected_cost, 1e-12);
  // ... and the run's own accounting (the attempt's details) agrees.
  json show = Run({"run", "show", "r1", "--json"}).Json();
  EXPECT_NEAR(show["summary"]["cost_usd"].get<double>(), expected_cost, 1e-12) << show.dump();

  // Every call is attributed to the run, the queue's task, the attempt and the agent.
  const std::string task_id = show["tasks"][0]["task_id"];
  const auto rows = LedgerRows("r1");
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) {
    EXPECT_EQ(row.task_id, task_id);
    EXPECT_EQ(row.agent, "coder");
    EXPECT_EQ(row.alias, "cloud/fast");
    EXPECT_EQ(row.status, "ok");
    EXPECT_EQ(row.purpose, "tool_loop");
    EXPECT_FALSE(row.attempt_id.empty());
    EXPECT_EQ(row.attempt_id, rows[0].attempt_id);
  }
  // The key went to the provider and nowhere else: no file here holds it.
  EXPECT_EQ(requests[0].Header("Authorization"), std::string("Bearer ") + kApiKey);
  EXPECT_THAT(FilesContaining(kApiKey), ::testing::IsEmpty());
}

TEST_F(LlmRunTest, AFailedGateEscalatesTheNextAttemptOneTierAndTheLedgerShowsIt) {
  const Usage usage{2'000, 50, 0, 0};
  EnqueueWrite("a1", "hello world", usage);  // attempt 1: wrong, the gate fails
  EnqueueFinish("a2", usage);
  EnqueueWrite("b1", "hello factory", usage);  // attempt 2: right
  EnqueueFinish("b2", usage);

  CliResult run = Run(
      {"run", "--backlog", "backlog.yaml", "--run-id", "r2", "--json", "--no-sandbox", "--plain"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.Json()["attempts"], 2);
  EXPECT_EQ(Sh(dir(), "git show factory/r2:greeting.txt"), "hello factory\n");

  EXPECT_EQ(RequestedModels(),
            (std::vector<std::string>{"fake-fast", "fake-fast", "fake-mid", "fake-mid"}));
  // Attempt 2 was told why attempt 1 failed.
  EXPECT_THAT(fake_.requests()[2].body, HasSubstr("Gate 'check' (`sh check.sh`) failed"));

  const auto rows = LedgerRows("r2");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].alias, "cloud/fast");
  EXPECT_EQ(rows[0].model, "fast-model");
  EXPECT_EQ(rows[1].attempt_id, rows[0].attempt_id);
  EXPECT_EQ(rows[2].alias, "cloud/mid");
  EXPECT_EQ(rows[2].model, "mid-model");
  EXPECT_NE(rows[2].attempt_id, rows[0].attempt_id);
  EXPECT_EQ(rows[3].attempt_id, rows[2].attempt_id);
  for (const auto& row : rows) EXPECT_EQ(row.task_id, rows[0].task_id);

  json costs = Run({"costs", "--by", "model", "--json"}).Json();
  ASSERT_EQ(costs["rows"].size(), 2u) << costs.dump();
  EXPECT_EQ(costs["rows"][0]["key"], "fake/fast-model");
  EXPECT_NEAR(costs["rows"][0]["cost_usd"].get<double>(), 2 * CostOf(kFast, usage), 1e-12);
  EXPECT_EQ(costs["rows"][1]["key"], "fake/mid-model");
  EXPECT_NEAR(costs["rows"][1]["cost_usd"].get<double>(), 2 * CostOf(kMid, usage), 1e-12);
}

TEST_F(LlmRunTest, ReachingTheTaskCapEndsTheTaskAsBudgetExceeded) {
  // The first call fits the cap's worst case but costs $0.10 (100k input tokens at $1/Mtok);
  // the second is refused before it is sent.
  WriteConfig("budget: {usd_per_task: 0.05}\n");
  EnqueueWrite("c1", "hello factory", Usage{100'000, 10, 0, 0});
  EnqueueFinish("c2", Usage{10, 10, 0, 0});

  CliResult run = Run(
      {"run", "--backlog", "backlog.yaml", "--run-id", "r3", "--json", "--no-sandbox", "--plain"});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_EQ(run.Json()["failed"], 1);
  EXPECT_EQ(fake_.request_count(), 1u);

  json show = Run({"run", "show", "r3", "--json"}).Json();
  const json& task = show["tasks"][0];
  EXPECT_EQ(task["state"], "failed");
  // Final at once: another attempt would be refused too.
  EXPECT_EQ(task["attempts"], 1) << show.dump();
  const std::string error = task["last_error"];
  EXPECT_THAT(error, ::testing::StartsWith("budget_exceeded: "));
  EXPECT_THAT(error, HasSubstr(" cap: spent $"));
  EXPECT_THAT(Run({"run", "show", "r3"}).out, HasSubstr("budget_exceeded"));

  const auto rows = LedgerRows("r3");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].status, "ok");
  EXPECT_NEAR(rows[0].cost_usd, CostOf(kFast, Usage{100'000, 10, 0, 0}), 1e-12);
  EXPECT_EQ(rows[1].status, "resource_exhausted");
  EXPECT_EQ(rows[1].cost_usd, 0);
}

TEST_F(LlmRunTest, AnAgentsDailyCapPausesItUntilResumed) {
  WriteAgent("budget: {usd_per_day: 0.05}\n");
  EnqueueWrite("c1", "hello factory", Usage{100'000, 10, 0, 0});  // $0.10: over the day's cap
  // After the pause is lifted (with a higher cap) the resumed run's new attempt finishes.
  EnqueueWrite("d1", "hello factory", Usage{100, 10, 0, 0});
  EnqueueFinish("d2", Usage{100, 10, 0, 0});

  testing::TempDir output;
  auto spawn = [&](const std::vector<std::string>& args, const std::string& name) {
    testing::SpawnOptions options = WithKey();
    options.cwd = dir();
    options.stdout_path = output / (name + ".out");
    options.stderr_path = output / (name + ".err");
    return testing::SpawnFactory(args, options);
  };
  auto wait_exit = [](pid_t pid) {
    const int code = testing::WaitForExit(pid, 60'000);
    if (code == -1) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    return code;
  };
  auto paused = [&] {
    auto store = OpenDb();
    std::vector<AgentPause> pauses;
    if (store == nullptr) return pauses;
    (void)store->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(pauses, txn.ListAgentPauses());
      return Ok();
    });
    return pauses;
  };

  const pid_t first = spawn(
      {"run", "--backlog", "backlog.yaml", "--run-id", "r4", "--no-sandbox", "--plain"}, "first");
  // The second call is refused and pauses the agent; the attempt waits instead of failing.
  ASSERT_TRUE(testing::WaitUntil([&] { return !paused().empty(); }, 60'000))
      << testing::ReadFile(output / "first.err");
  const auto pauses = paused();
  ASSERT_EQ(pauses.size(), 1u);
  EXPECT_EQ(pauses[0].agent, "coder");
  EXPECT_THAT(pauses[0].reason, HasSubstr("daily"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1'500));
  EXPECT_TRUE(testing::ProcessAlive(first)) << "a pause is not a failure";
  EXPECT_EQ(fake_.request_count(), 1u);
  // Ctrl-C twice: the waiting attempt is cancelled and given back; nothing is lost.
  kill(first, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(first, SIGINT);
  EXPECT_EQ(wait_exit(first), 1) << testing::ReadFile(output / "first.err");

  // With a higher cap, a resumed run says the agent is paused and waits for it...
  WriteAgent("budget: {usd_per_day: 10}\n");
  const pid_t second = spawn({"run", "resume", "r4", "--json", "--plain"}, "second");
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        return testing::ReadFile(output / "second.err").find("agent coder is paused") !=
               std::string::npos;
      },
      30'000))
      << testing::ReadFile(output / "second.err");
  std::this_thread::sleep_for(std::chrono::milliseconds(1'500));
  EXPECT_TRUE(testing::ProcessAlive(second));
  EXPECT_EQ(fake_.request_count(), 1u);
  // ... until `factory agents resume` (another process) lifts the pause; then the task runs.
  CliResult resumed_agent = Run({"agents", "resume", "coder"});
  EXPECT_EQ(resumed_agent.exit_code, 0) << resumed_agent.err;
  EXPECT_EQ(wait_exit(second), 0) << testing::ReadFile(output / "second.err");
  EXPECT_EQ(json::parse(testing::ReadFile(output / "second.out"))["done"], 1);
  EXPECT_TRUE(paused().empty());
  EXPECT_EQ(Sh(dir(), "git show factory/r4:greeting.txt"), "hello factory\n");
  EXPECT_EQ(fake_.request_count(), 3u);
}

TEST_F(LlmRunTest, LlmAgentsAreCheckedBeforeAnythingStarts) {
  // The key variable unset: the error names the task, the agent and the variable.
  CliResult no_key = sandbox_.Run({"run", "--backlog", "backlog.yaml", "--no-sandbox"});
  EXPECT_EQ(no_key.exit_code, 2) << no_key.err;
  EXPECT_THAT(no_key.err, HasSubstr("backlog.yaml:2: task 'greet': agent 'coder'"));
  EXPECT_THAT(no_key.err,
              HasSubstr(std::string("environment variable ") + kKeyVariable + " is not set"));
  // No models.yaml.
  std::filesystem::remove(sandbox_.Path(".factory/models.yaml"));
  CliResult no_models = Run({"run", "--backlog", "backlog.yaml", "--no-sandbox"});
  EXPECT_EQ(no_models.exit_code, 2) << no_models.err;
  EXPECT_THAT(no_models.err, HasSubstr("task 'greet': agent 'coder'"));
  EXPECT_THAT(no_models.err, HasSubstr("models.yaml, which does not exist"));
  // An alias models.yaml does not define: the agent file's line.
  testing::WriteFile(sandbox_.Path(".factory/models.yaml"), ModelsYaml());
  WriteAgent("fallbacks: [cloud/huge]\n");
  CliResult bad_alias = Run({"run", "--backlog", "backlog.yaml", "--no-sandbox"});
  EXPECT_EQ(bad_alias.exit_code, 2) << bad_alias.err;
  EXPECT_THAT(bad_alias.err, HasSubstr("agents/coder.md:8: field 'fallbacks[0]': unknown model "
                                       "alias 'cloud/huge'"));
  // A budget with a bad value: config.yaml's line.
  WriteAgent("");
  WriteConfig("budget:\n  usd_per_task: -2\n");
  CliResult bad_budget = Run({"run", "--backlog", "backlog.yaml", "--no-sandbox"});
  EXPECT_EQ(bad_budget.exit_code, 2) << bad_budget.err;
  EXPECT_THAT(bad_budget.err, HasSubstr("config.yaml:7: field 'budget.usd_per_task'"));
  // Nothing was created and no model was called.
  WriteConfig("");
  EXPECT_EQ(Run({"runs", "--json"}).Json().size(), 0u);
  EXPECT_EQ(fake_.request_count(), 0u);
}

}  // namespace
}  // namespace factory
