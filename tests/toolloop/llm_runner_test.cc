// The llm runner end to end: a real git worktree, the real sandbox, the real router and OpenAI
// provider over loopback HTTP against the scripted fake server.

#include "toolloop/llm_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/test_repo.h"
#include "llm/fake_provider.h"
#include "llm/http_client.h"
#include "llm/router.h"
#include "workspace/sandbox.h"

namespace factory::toolloop {
namespace {

using llm::ToolCall;
using llm::Usage;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileBytes;
using testing::TempRepo;
using testing::WriteFileBytes;

constexpr char kApiKey[] = "sk-toolloop-test-KEY-0123456789";
constexpr double kInputPrice = 0.4, kOutputPrice = 1.6, kCachedPrice = 0.1;

double CostOf(const Usage& usage) {
  return ((usage.input_tokens - usage.cached_read_tokens) * kInputPrice +
          usage.cached_read_tokens * kCachedPrice + usage.output_tokens * kOutputPrice) /
         1e6;
}

class BudgetRefusal final : public llm::CallAdmission {
 public:
  Result<int64_t> Reserve(const llm::CallContext&, const llm::Deployment&, double) override {
    return ResourceExhausted("task budget of $0.01 reached");
  }
  void Settle(int64_t, double) override {}
};

class LlmRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("FACTORY_TOOLLOOP_TEST_KEY", kApiKey, 1);
    sandbox_ = MakeSandbox();
    attempt_dir_ = repo_.Path(".factory/attempts/r1/t1-1");
    std::filesystem::create_directories(attempt_dir_);
    WriteFileBytes(repo_.Path(".git/info/exclude"), ".factory/\n");
  }
  void TearDown() override {
    router_.reset();
    http_.reset();  // close keep-alive connections before the fake server stops
    ::unsetenv("FACTORY_TOOLLOOP_TEST_KEY");
  }

  void MakeRouter(int64_t context_window = 128'000, llm::CallAdmission* admission = nullptr) {
    const std::string yaml = std::string(R"(providers:
  fake: {kind: openai, base_url: "${URL}", api_key_env: FACTORY_TOOLLOOP_TEST_KEY, timeout_s: 10}
models:
  small: {provider: fake, model: gpt-fake, input_per_mtok: 0.4, output_per_mtok: 1.6,
          cached_per_mtok: 0.1, context_window: )") +
                             std::to_string(context_window) + R"(}
aliases:
  cloud/fast: [small]
retry: {max_attempts: 1, base_ms: 10, max_ms: 50}
)";
    std::map<std::string, std::string> env = {{"URL", fake_.openai_base_url()},
                                              {"FACTORY_TOOLLOOP_TEST_KEY", kApiKey}};
    auto config = llm::ParseModelsConfig(yaml, "test.yaml", [env](const std::string& name) {
      auto it = env.find(name);
      return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    });
    ASSERT_TRUE(config) << config.error().ToString();
    llm::RouterOptions options;
    options.admission = admission;
    options.provider_factory = [this](const llm::ProviderConfig& provider) {
      return llm::MakeProvider(provider, http_.get());
    };
    auto router = llm::Router::Create(std::move(*config), std::move(options));
    ASSERT_TRUE(router) << router.error().ToString();
    router_ = std::move(*router);
  }

  AgentSpec Agent(int max_turns = 10) {
    AgentSpec agent;
    agent.name = "coder";
    agent.role = "writes code";
    agent.runner = RunnerKind::kLlm;
    agent.model = "cloud/fast";
    agent.max_turns = max_turns;
    agent.system_prompt = "You are the coder agent. Be precise.";
    return agent;
  }

  RunnerContext Context() {
    RunnerContext context;
    context.input.run_id = "r1";
    context.input.task_id = "t1";
    context.input.title = "Greet";
    context.input.spec = "Create src/hello.txt saying hello.";
    context.input.acceptance = {"src/hello.txt says hello factory"};
    context.input.feedback = "gate 'test' failed: hello.txt missing";
    context.input.attempt = 2;
    context.worktree = repo_.root();
    context.attempt_dir = attempt_dir_;
    context.sandbox = sandbox_.get();
    context.timeout_ms = 60'000;
    return context;
  }

  std::vector<nlohmann::json> Transcript() {
    std::vector<nlohmann::json> lines;
    std::ifstream in(attempt_dir_ + "/transcript.jsonl");
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  static ToolCall Call(std::string id, std::string name, const nlohmann::json& arguments) {
    return ToolCall{std::move(id), std::move(name), arguments.dump()};
  }

  TempRepo repo_;
  std::string attempt_dir_;
  std::unique_ptr<Sandbox> sandbox_;
  FakeProviderServer fake_;
  std::unique_ptr<llm::HttpClient> http_ = std::make_unique<llm::HttpClient>();
  std::unique_ptr<llm::Router> router_;  // after fake_ and http_: destroyed first
};

TEST_F(LlmRunnerTest, WritesEditsRunsAndFinishes) {
  MakeRouter();
  const std::vector<Usage> usages = {
      {1'000, 50, 0, 0}, {1'200, 40, 512, 0}, {1'400, 30, 1'024, 0}, {1'600, 20, 1'024, 0}};
  fake_.Enqueue(FakeReply::Tools(
      {Call("c1", "write_file", {{"path", "src/hello.txt"}, {"content", "hello world\n"}})},
      usages[0], "I will create the file."));
  fake_.Enqueue(FakeReply::Tools(
      {Call("c2", "edit_file",
            {{"path", "src/hello.txt"}, {"search", "world"}, {"replace", "factory"}})},
      usages[1]));
  fake_.Enqueue(FakeReply::Tools(
      {Call("c3", "run_command",
            {{"command", "cat src/hello.txt && echo ran > ran.txt"}, {"timeout_s", 30}})},
      usages[2]));
  fake_.Enqueue(
      FakeReply::Tools({Call("c4", "finish", {{"summary", "greeting added"}})}, usages[3]));

  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_TRUE(outcome->success) << outcome->error;
  EXPECT_EQ(outcome->summary, "greeting added");
  EXPECT_EQ(ReadFileBytes(repo_.Path("src/hello.txt")), "hello factory\n");
  EXPECT_EQ(ReadFileBytes(repo_.Path("ran.txt")), "ran\n");

  // Steps: the model choice, then one per tool call (the model's text is in the transcript).
  ASSERT_EQ(outcome->steps.size(), 5u);
  EXPECT_EQ(outcome->steps[0].kind, "model");
  EXPECT_THAT(outcome->steps[0].summary, HasSubstr("cloud/fast"));
  for (size_t index = 1; index < outcome->steps.size(); ++index) {
    EXPECT_EQ(outcome->steps[index].kind, "tool_use");
  }
  EXPECT_THAT(outcome->steps[2].summary, HasSubstr("edit_file"));

  // Usage and cost summed over the calls: the fake's usage x the configured prices.
  Usage total;
  double cost = 0;
  for (const auto& usage : usages) {
    total.input_tokens += usage.input_tokens;
    total.output_tokens += usage.output_tokens;
    total.cached_read_tokens += usage.cached_read_tokens;
    cost += CostOf(usage);
  }
  EXPECT_EQ(outcome->usage.input_tokens, total.input_tokens);
  EXPECT_EQ(outcome->usage.output_tokens, total.output_tokens);
  EXPECT_EQ(outcome->usage.cached_tokens, total.cached_read_tokens);
  ASSERT_TRUE(outcome->usage.cost_usd.has_value());
  EXPECT_NEAR(*outcome->usage.cost_usd, cost, 1e-12);
  EXPECT_EQ(outcome->usage.model, "small");

  // The prompt: system = agent body; first user message = task, acceptance, feedback, repo map.
  const auto requests = fake_.requests();
  ASSERT_EQ(requests.size(), 4u);
  const auto first = requests[0].Json();
  const auto& messages = first["messages"];
  EXPECT_EQ(messages[0]["role"], "system");
  EXPECT_EQ(messages[0]["content"], "You are the coder agent. Be precise.");
  const std::string task = messages[1]["content"];
  EXPECT_THAT(task, HasSubstr("Create src/hello.txt saying hello."));
  EXPECT_THAT(task, HasSubstr("src/hello.txt says hello factory"));
  EXPECT_THAT(task, HasSubstr("hello.txt missing"));
  EXPECT_THAT(task, HasSubstr("## Repository map"));
  EXPECT_THAT(task, HasSubstr("README.md ("));
  EXPECT_THAT(task, HasSubstr("# project"));  // README's first lines
  EXPECT_THAT(task, Not(HasSubstr(".factory")));
  EXPECT_EQ(outcome->prompt_bytes,
            static_cast<int64_t>(messages[0]["content"].get<std::string>().size() + task.size()));
  EXPECT_EQ(first["tools"].size(), 7u);
  // The command's output went back to the model.
  EXPECT_THAT(requests[3].body, HasSubstr("hello factory"));
  EXPECT_THAT(requests[3].body, HasSubstr("exit code 0"));

  // The transcript: every message, every call, the outcome; no API key.
  const auto lines = Transcript();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front()["type"], "start");
  EXPECT_EQ(lines.back()["type"], "outcome");
  EXPECT_EQ(lines.back()["success"], true);
  int calls = 0, tool_results = 0;
  for (const auto& line : lines) {
    calls += line["type"] == "call";
    tool_results += line["type"] == "message" && line["role"] == "tool";
  }
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(tool_results, 4);
  EXPECT_THAT(ReadFileBytes(attempt_dir_ + "/transcript.jsonl"), Not(HasSubstr(kApiKey)));
}

TEST_F(LlmRunnerTest, ApiKeyNeverReachesCommandsOrTranscript) {
  MakeRouter();
  fake_.Enqueue(FakeReply::Tools(
      {Call("c1", "run_command", {{"command", "env; echo \"key=$FACTORY_TOOLLOOP_TEST_KEY\""}})}));
  // The model echoes the key it somehow knows: the transcript still redacts it.
  fake_.Enqueue(
      FakeReply::Tools({Call("c2", "finish", {{"summary", std::string("leak ") + kApiKey}})}, {},
                       std::string("my key is ") + kApiKey));
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->success);
  const auto requests = fake_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_THAT(requests[1].Json()["messages"].dump(), HasSubstr("key=\\n"));
  EXPECT_THAT(requests[1].Json()["messages"].dump(), Not(HasSubstr(kApiKey)));
  const std::string transcript = ReadFileBytes(attempt_dir_ + "/transcript.jsonl");
  EXPECT_THAT(transcript, Not(HasSubstr(kApiKey)));
  EXPECT_THAT(transcript, HasSubstr("[REDACTED]"));
  EXPECT_THAT(outcome->summary, Not(HasSubstr(kApiKey)));
  for (const auto& step : outcome->steps) EXPECT_THAT(step.summary, Not(HasSubstr(kApiKey)));
}

TEST_F(LlmRunnerTest, WriteFilePastTheDiskQuotaIsRefusedAndEndsTheAttempt) {
  MakeRouter();
  SandboxConfig config;
  config.disk_mb = 1;
  sandbox_ = MakeSandbox(config);
  const std::string chunk(400 * 1024, 'x');
  for (const char* name : {"a.txt", "b.txt", "c.txt"}) {
    fake_.Enqueue(
        FakeReply::Tools({Call(name, "write_file", {{"path", name}, {"content", chunk}})}));
  }
  fake_.Enqueue(FakeReply::Tools({Call("c4", "finish", {{"summary", "wrote them"}})}));
  LlmRunner runner(*router_, Agent());
  RunnerContext context = Context();
  // The transcript (which quotes every write) is the factory's, outside the worktree.
  testing::TempDir attempt_dir;
  context.attempt_dir = attempt_dir.path().string();
  auto outcome = runner.Run(context);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(outcome->error, "the attempt wrote more than 1 MiB (sandbox.disk_mb)");
  EXPECT_TRUE(std::filesystem::exists(repo_.Path("b.txt")));
  EXPECT_FALSE(std::filesystem::exists(repo_.Path("c.txt")));
  EXPECT_EQ(fake_.request_count(), 3u) << "the model is not asked again past the quota";
}

TEST_F(LlmRunnerTest, CommandsTogetherPastTheDiskQuotaEndTheAttempt) {
  MakeRouter();
  SandboxConfig config;
  config.disk_mb = 4;
  sandbox_ = MakeSandbox(config);
  // Each command stays under the quota; the second takes the attempt past it.
  for (const char* name : {"a", "b", "c"}) {
    fake_.Enqueue(FakeReply::Tools({Call(
        name, "run_command",
        {{"command", std::string("dd if=/dev/zero of=") + name + " bs=1M count=3 2>/dev/null"}})}));
  }
  fake_.Enqueue(FakeReply::Tools({Call("c4", "finish", {{"summary", "wrote them"}})}));
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(outcome->error, "the attempt wrote more than 4 MiB (sandbox.disk_mb)");
  EXPECT_FALSE(std::filesystem::exists(repo_.Path("c")));
  EXPECT_EQ(fake_.request_count(), 2u);
}

TEST_F(LlmRunnerTest, TurnLimitEndsTheAttempt) {
  MakeRouter();
  fake_.SetDefault(FakeReply::Tools({Call("c", "list_dir", {{"path", "."}})}, {100, 10, 0, 0}));
  LlmRunner runner(*router_, Agent(/*max_turns=*/3));
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_THAT(outcome->error, HasSubstr("turn limit reached"));
  EXPECT_EQ(fake_.request_count(), 3u);
  EXPECT_EQ(outcome->steps.size(), 1u + 3u);  // the model choice + one per turn
  EXPECT_EQ(outcome->usage.input_tokens, 300);
}

TEST_F(LlmRunnerTest, TextOnlyAnswerGetsAReminder) {
  MakeRouter();
  fake_.Enqueue(FakeReply::Text("I think I am done."));
  fake_.Enqueue(FakeReply::Tools({Call("c", "finish", {{"summary", "ok"}})}));
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->success);
  EXPECT_THAT(fake_.requests()[1].body, HasSubstr("call finish"));
}

TEST_F(LlmRunnerTest, RouterErrorsEndTheAttempt) {
  MakeRouter();
  fake_.Enqueue(FakeReply::Error(400, "bad request from test"));
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_THAT(outcome->error, HasSubstr("model call failed"));
}

TEST_F(LlmRunnerTest, BudgetRefusalIsBudgetExceeded) {
  BudgetRefusal refusal;
  MakeRouter(128'000, &refusal);
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_THAT(outcome->error, ::testing::StartsWith("budget_exceeded: "));
  EXPECT_EQ(fake_.request_count(), 0u);
  router_.reset();
}

// Refuses every reservation while `paused` is set, as the BudgetGuard does for a paused agent.
class PausableAdmission final : public llm::CallAdmission {
 public:
  Result<int64_t> Reserve(const llm::CallContext& context, const llm::Deployment&,
                          double) override {
    contexts.push_back(context);
    if (paused.load()) return ResourceExhausted("budget: agent coder is paused (daily cap)");
    return 1;
  }
  void Settle(int64_t, double) override {}
  std::atomic<bool> paused{false};
  std::vector<llm::CallContext> contexts;  // only touched by the runner's thread
};

TEST_F(LlmRunnerTest, APausedAgentWaitsForTheResumeThenGoesOn) {
  PausableAdmission admission;
  admission.paused = true;
  MakeRouter(128'000, &admission);
  fake_.Enqueue(FakeReply::Tools({Call("c1", "finish", {{"summary", "done after pause"}})}));
  LlmRunnerOptions options;
  options.agent_paused = [&](std::string_view agent) -> Result<bool> {
    EXPECT_EQ(agent, "coder");
    return admission.paused.load();
  };
  options.pause_poll_ms = 20;
  std::thread resume([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    admission.paused = false;
  });
  RunnerContext context = Context();
  context.timeout_ms = 250;  // shorter than the pause: waiting does not count against it
  context.input.queue_task_id = "01QUEUETASKID";
  context.input.attempt_id = "01ATTEMPTID";
  LlmRunner runner(*router_, Agent(), options);
  auto outcome = runner.Run(context);
  resume.join();
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->success) << outcome->error;
  EXPECT_EQ(outcome->summary, "done after pause");
  EXPECT_EQ(fake_.request_count(), 1u);
  bool saw_pause = false;
  for (const auto& step : outcome->steps) saw_pause |= step.kind == "paused";
  EXPECT_TRUE(saw_pause);
  std::vector<std::string> types;
  for (const auto& line : Transcript()) types.push_back(line["type"]);
  EXPECT_THAT(types, ::testing::Contains("paused"));
  EXPECT_THAT(types, ::testing::Contains("resumed"));
  // Calls are attributed to the queue's ids when the pipeline gives them.
  ASSERT_GE(admission.contexts.size(), 2u);
  EXPECT_EQ(admission.contexts.back().task_id, "01QUEUETASKID");
  EXPECT_EQ(admission.contexts.back().attempt_id, "01ATTEMPTID");
  EXPECT_EQ(admission.contexts.back().run_id, "r1");
  EXPECT_EQ(admission.contexts.back().agent, "coder");
}

TEST_F(LlmRunnerTest, CancelEndsTheWaitOfAPausedAgent) {
  PausableAdmission admission;
  admission.paused = true;
  MakeRouter(128'000, &admission);
  LlmRunnerOptions options;
  options.agent_paused = [&](std::string_view) -> Result<bool> { return true; };
  options.pause_poll_ms = 20;
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  RunnerContext context = Context();
  context.cancel = &cancel;
  LlmRunner runner(*router_, Agent(), options);
  auto outcome = runner.Run(context);
  canceller.join();
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->cancelled);
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(fake_.request_count(), 0u);
}

TEST_F(LlmRunnerTest, ARefusalWhileNotPausedEndsTheAttemptAsBudgetExceeded) {
  PausableAdmission admission;
  admission.paused = true;  // refuses, but the guard says the agent is not paused: a task cap
  MakeRouter(128'000, &admission);
  LlmRunnerOptions options;
  options.agent_paused = [](std::string_view) -> Result<bool> { return false; };
  LlmRunner runner(*router_, Agent(), options);
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_THAT(outcome->error, ::testing::StartsWith("budget_exceeded: "));
  EXPECT_EQ(admission.contexts.size(), 1u);
}

TEST_F(LlmRunnerTest, CancelStopsBeforeTheNextCall) {
  MakeRouter();
  std::atomic<bool> cancel{true};
  RunnerContext context = Context();
  context.cancel = &cancel;
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(context);
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->cancelled);
  EXPECT_FALSE(outcome->success);
  EXPECT_EQ(fake_.request_count(), 0u);
}

TEST_F(LlmRunnerTest, WallTimeoutBoundsCommandsAndEndsTheAttempt) {
  MakeRouter();
  fake_.Enqueue(
      FakeReply::Tools({Call("c1", "run_command", {{"command", "sleep 30"}, {"timeout_s", 600}})}));
  fake_.SetDefault(FakeReply::Tools({Call("c", "finish", {{"summary", "too late"}})}));
  RunnerContext context = Context();
  context.timeout_ms = 1'500;
  LlmRunner runner(*router_, Agent());
  auto outcome = runner.Run(context);
  ASSERT_TRUE(outcome);
  EXPECT_FALSE(outcome->success);
  EXPECT_TRUE(outcome->timed_out);
  EXPECT_LT(outcome->duration_ms, 10'000);
  EXPECT_EQ(fake_.request_count(), 1u);
}

TEST_F(LlmRunnerTest, CompactionOnATinyContextWindowStillFinishes) {
  std::string big;
  for (int line = 0; line < 1'000; ++line) big += "BIGFILE line " + std::to_string(line) + "\n";
  WriteFileBytes(repo_.Path("big.txt"), big);  // ~18 KB, ~4,600 tokens
  MakeRouter(/*context_window=*/4'000);
  fake_.Enqueue(FakeReply::Tools({Call("c1", "read_file", {{"path", "big.txt"}})}));
  fake_.Enqueue(FakeReply::Tools({Call("c2", "list_dir", {{"path", "."}})}));
  fake_.Enqueue(FakeReply::Tools({Call("c3", "finish", {{"summary", "read it"}})}));
  LlmRunnerOptions options;
  options.keep_recent_turns = 1;
  LlmRunner runner(*router_, Agent(), options);
  auto outcome = runner.Run(Context());
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->success) << outcome->error;
  const auto requests = fake_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_THAT(requests[1].body, HasSubstr("BIGFILE line 999"));  // the latest turn is kept
  EXPECT_THAT(requests[2].body, Not(HasSubstr("BIGFILE line 999")));
  EXPECT_THAT(requests[2].body, HasSubstr("elided to save context"));
  // The system prompt and the task survive compaction.
  const auto messages = requests[2].Json()["messages"];
  EXPECT_EQ(messages[0]["content"], "You are the coder agent. Be precise.");
  EXPECT_THAT(messages[1]["content"].get<std::string>(), HasSubstr("Create src/hello.txt"));
  int compactions = 0;
  for (const auto& line : Transcript()) compactions += line["type"] == "compaction";
  EXPECT_GE(compactions, 1);
}

// The cost pyramid's choice of models per attempt, on a three-tier models.yaml.
class ChooseModelsTest : public ::testing::Test {
 protected:
  void Make(const std::string& routing) {
    const std::string yaml = std::string(R"(providers:
  up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
  nokey: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: FACTORY_UNSET_KEY_X}
models:
  fast-model: {provider: up, model: f, input_per_mtok: 1, output_per_mtok: 1}
  mid-model: {provider: up, model: m, input_per_mtok: 2, output_per_mtok: 2}
  top-model: {provider: up, model: t, input_per_mtok: 3, output_per_mtok: 3}
  keyless: {provider: nokey, model: k, input_per_mtok: 0.1, output_per_mtok: 0.1}
aliases:
  local/fast: [keyless]
  cloud/fast: [fast-model]
  cloud/mid: [mid-model]
  cloud/frontier: [top-model]
)") + routing;
    auto config = llm::ParseModelsConfig(
        yaml, "models.yaml", [](const std::string&) { return std::optional<std::string>(); });
    ASSERT_TRUE(config) << config.error().ToString();
    auto router = llm::Router::Create(std::move(*config));
    ASSERT_TRUE(router) << router.error().ToString();
    router_ = std::move(*router);
  }
  static AgentSpec Agent(std::string model, std::vector<std::string> fallbacks = {}) {
    AgentSpec agent;
    agent.name = "coder";
    agent.runner = RunnerKind::kLlm;
    agent.model = std::move(model);
    agent.fallbacks = std::move(fallbacks);
    return agent;
  }
  std::unique_ptr<llm::Router> router_;
};

TEST_F(ChooseModelsTest, StartsCheapAndEscalatesOneTierPerAttemptUpToTheAgentsAlias) {
  Make(R"(routing:
  - {task_type: review, chain: [cloud/frontier]}
  - {task_type: "*", chain: [local/fast, cloud/fast, cloud/mid, cloud/frontier]}
)");
  const AgentSpec agent = Agent("cloud/mid", {"cloud/frontier"});
  // local/fast has no key: it is skipped, so the ladder is cloud/fast > cloud/mid.
  ModelChoice first = ChooseModels(*router_, agent, "code", 1);
  EXPECT_EQ(first.alias, "cloud/fast");
  EXPECT_EQ(first.step, 0);
  EXPECT_EQ(first.ladder, (std::vector<std::string>{"cloud/fast", "cloud/mid"}));
  EXPECT_EQ(first.targets, (std::vector<std::string>{"cloud/fast", "cloud/frontier"}));
  EXPECT_THAT(first.Describe(), HasSubstr("cloud/fast (cost pyramid step 1 of cloud/fast > "
                                          "cloud/mid), then cloud/frontier"));
  ModelChoice second = ChooseModels(*router_, agent, "code", 2);
  EXPECT_EQ(second.alias, "cloud/mid");
  EXPECT_EQ(second.step, 1);
  // Never past the agent's alias.
  EXPECT_EQ(ChooseModels(*router_, agent, "code", 5).alias, "cloud/mid");
  // The rule for the task type decides the chain: none of it is within the ceiling here.
  ModelChoice review = ChooseModels(*router_, agent, "review", 1);
  EXPECT_EQ(review.alias, "");
  EXPECT_EQ(review.targets, (std::vector<std::string>{"cloud/mid", "cloud/frontier"}));
  EXPECT_THAT(review.why_no_pyramid, HasSubstr("no available alias"));
}

TEST_F(ChooseModelsTest, AModelNameOrNoMatchingRuleMeansTheAgentsOwnModels) {
  Make(R"(routing:
  - {task_type: docs, chain: [cloud/fast, cloud/mid]}
)");
  ModelChoice by_name = ChooseModels(*router_, Agent("mid-model"), "docs", 2);
  EXPECT_EQ(by_name.alias, "");
  EXPECT_EQ(by_name.targets, (std::vector<std::string>{"mid-model"}));
  EXPECT_THAT(by_name.why_no_pyramid, HasSubstr("is a model, not an alias"));
  ModelChoice no_rule = ChooseModels(*router_, Agent("cloud/mid", {"cloud/mid"}), "code", 1);
  EXPECT_EQ(no_rule.alias, "");
  EXPECT_EQ(no_rule.targets, (std::vector<std::string>{"cloud/mid"}));  // no duplicates
  EXPECT_THAT(no_rule.why_no_pyramid, HasSubstr("no routing rule matches"));
  EXPECT_EQ(ChooseModels(*router_, Agent("cloud/mid"), "docs", 1).alias, "cloud/fast");
}

TEST(RepoMapTest, IsCappedAndSkipsGitAndFactory) {
  TempRepo repo;
  for (int file = 0; file < 500; ++file) {
    WriteFileBytes(repo.Path("src/file_" + std::to_string(file) + ".cc"), "int x;\n");
  }
  WriteFileBytes(repo.Path(".factory/attempts/x"), "y");
  const std::string map = BuildRepoMap(repo.root(), 8 * 1024);
  EXPECT_LE(map.size(), 8u * 1024);
  EXPECT_THAT(map, HasSubstr("README.md ("));
  EXPECT_THAT(map, HasSubstr("more entries not shown"));
  EXPECT_THAT(map, HasSubstr("### README.md (first lines)"));
  EXPECT_THAT(map, Not(HasSubstr(".git/")));
  EXPECT_THAT(map, Not(HasSubstr(".factory")));
}

}  // namespace
}  // namespace factory::toolloop
