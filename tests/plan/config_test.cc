#include "plan/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agents/registry.h"
#include "common/test_util.h"

namespace factory {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

TEST(ConfigTest, EmptyFileGivesDefaults) {
  auto loaded = ParseProjectConfig("", "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  const ProjectConfig& config = loaded->value;
  EXPECT_FALSE(config.base_branch.has_value());
  EXPECT_EQ(config.concurrency, 4);
  EXPECT_EQ(config.max_attempts, 3);
  EXPECT_TRUE(config.gates.empty());
  EXPECT_TRUE(config.protected_paths.empty());
  EXPECT_TRUE(config.sandbox.enabled);
  EXPECT_FALSE(config.sandbox.network);
  EXPECT_TRUE(config.default_agents.empty());
}

TEST(ConfigTest, ParsesEveryKey) {
  const char* text = R"(base_branch: develop
concurrency: 8
max_attempts: 5
gates:
  - name: build
    command: make -j2
    timeout: 90
  - name: test
    command: make test
    timeout: 1h30m
  - name: lint
    command: make lint
protected: ["tests/**", "Makefile"]
sandbox:
  enabled: false
  network: true
  cpu_seconds: 100
  memory_mb: 512
  file_size_mb: 64
  max_processes: 128
  output_limit_kb: 256
default_agents:
  code: builder
  docs: writer
)";
  auto loaded = ParseProjectConfig(text, "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_TRUE(loaded->warnings.empty());
  const ProjectConfig& config = loaded->value;
  EXPECT_EQ(config.base_branch, "develop");
  EXPECT_EQ(config.concurrency, 8);
  EXPECT_EQ(config.max_attempts, 5);
  ASSERT_EQ(config.gates.size(), 3u);
  EXPECT_EQ(config.gates[0].name, "build");
  EXPECT_EQ(config.gates[0].command, "make -j2");
  EXPECT_EQ(config.gates[0].timeout, seconds(90));
  EXPECT_EQ(config.gates[0].line, 5);
  EXPECT_EQ(config.gates[1].timeout, seconds(5400));
  EXPECT_EQ(config.gates[2].timeout, seconds(600));
  EXPECT_EQ(config.protected_paths, (std::vector<std::string>{"tests/**", "Makefile"}));
  EXPECT_FALSE(config.sandbox.enabled);
  EXPECT_TRUE(config.sandbox.network);
  EXPECT_EQ(config.sandbox.cpu_seconds, 100);
  EXPECT_EQ(config.sandbox.memory_mb, 512);
  EXPECT_EQ(config.sandbox.file_size_mb, 64);
  EXPECT_EQ(config.sandbox.max_processes, 128);
  EXPECT_EQ(config.sandbox.output_limit_kb, 256);
  EXPECT_EQ(config.default_agents.at("code"), "builder");
  EXPECT_EQ(config.default_agents.at("docs"), "writer");
}

TEST(ConfigTest, UnknownKeysAreWarningsWithLines) {
  auto loaded = ParseProjectConfig(
      "concurrency: 2\nparallelism: 4\ngates:\n  - name: t\n    command: x\n    retries: 2\n"
      "sandbox:\n  gpu: true\n",
      "cfg/config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->warnings.size(), 3u);
  EXPECT_EQ(loaded->warnings[0].ToString(),
            "cfg/config.yaml:2: warning: field 'parallelism': unknown field (ignored)");
  EXPECT_EQ(loaded->warnings[1].ToString(),
            "cfg/config.yaml:6: warning: field 'gates[0].retries': unknown field (ignored)");
  EXPECT_EQ(loaded->warnings[2].ToString(),
            "cfg/config.yaml:8: warning: field 'sandbox.gpu': unknown field (ignored)");
}

struct BadConfigCase {
  const char* label;
  const char* text;
  const char* expected;
};

class BadConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfigTest, FailsWithFileLineMessage) {
  auto loaded = ParseProjectConfig(GetParam().text, "path/to/config.yaml");
  ASSERT_FALSE(loaded) << GetParam().label;
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(loaded.error().message, HasSubstr(GetParam().expected)) << GetParam().label;
}

constexpr char kTwoGates[] = "gates:\n  - name: build\n    command: make\n  - name: test\n";

INSTANTIATE_TEST_SUITE_P(
    Table, BadConfigTest,
    ::testing::Values(
        BadConfigCase{"gate_timeout_word",
                      "gates:\n  - name: build\n    command: make\n  - name: test\n"
                      "    command: make test\n    timeout: soon\n",
                      "path/to/config.yaml:6: field 'gates[1].timeout': must be a positive number "
                      "of seconds"},
        BadConfigCase{"gate_timeout_zero", "gates:\n  - {name: t, command: x, timeout: 0}\n",
                      "path/to/config.yaml:2: field 'gates[0].timeout': must be a positive"},
        BadConfigCase{"gate_timeout_negative", "gates:\n  - {name: t, command: x, timeout: -5}\n",
                      "field 'gates[0].timeout': must be a positive"},
        BadConfigCase{"gate_timeout_bad_unit", "gates:\n  - {name: t, command: x, timeout: 5d}\n",
                      "field 'gates[0].timeout'"},
        BadConfigCase{"gate_timeout_list", "gates:\n  - {name: t, command: x, timeout: [1]}\n",
                      "field 'gates[0].timeout'"},
        BadConfigCase{"gate_missing_command", kTwoGates,
                      "path/to/config.yaml:4: field 'gates[1].command': missing required field"},
        BadConfigCase{"gate_missing_name", "gates:\n  - command: make\n",
                      "path/to/config.yaml:2: field 'gates[0].name': missing required field"},
        BadConfigCase{"gate_empty_command", "gates:\n  - name: a\n    command: ''\n",
                      "path/to/config.yaml:3: field 'gates[0].command': must not be empty"},
        BadConfigCase{"gate_duplicate_name",
                      "gates:\n  - {name: t, command: x}\n  - {name: t, command: y}\n",
                      "path/to/config.yaml:3: field 'gates[1].name': duplicate gate name 't' "
                      "(also at line 2)"},
        BadConfigCase{"gate_not_a_map", "gates:\n  - make test\n",
                      "path/to/config.yaml:2: field 'gates[0]': must be a mapping"},
        BadConfigCase{"gates_not_a_list", "gates: make\n",
                      "path/to/config.yaml:1: field 'gates': must be a list"},
        BadConfigCase{"concurrency_zero", "concurrency: 0\n",
                      "path/to/config.yaml:1: field 'concurrency': must be an integer between 1 "
                      "and 10000 (got '0')"},
        BadConfigCase{"concurrency_word", "\nconcurrency: many\n",
                      "path/to/config.yaml:2: field 'concurrency': must be an integer"},
        BadConfigCase{"max_attempts_zero", "max_attempts: 0\n",
                      "path/to/config.yaml:1: field 'max_attempts': must be an integer"},
        BadConfigCase{"base_branch_list", "base_branch: [main]\n",
                      "path/to/config.yaml:1: field 'base_branch': must be a string"},
        BadConfigCase{"protected_scalar", "protected: tests/**\n",
                      "path/to/config.yaml:1: field 'protected': must be a list of strings"},
        BadConfigCase{"protected_parent", "protected:\n  - src/**\n  - ../outside/*\n",
                      "path/to/config.yaml:3: field 'protected[1]': must not contain '..'"},
        BadConfigCase{"sandbox_not_map", "sandbox: yes\n",
                      "path/to/config.yaml:1: field 'sandbox': must be a mapping"},
        BadConfigCase{"sandbox_network_word", "sandbox:\n  network: perhaps\n",
                      "path/to/config.yaml:2: field 'sandbox.network': must be true or false"},
        BadConfigCase{"sandbox_memory_word", "sandbox:\n  enabled: true\n  memory_mb: lots\n",
                      "path/to/config.yaml:3: field 'sandbox.memory_mb': must be an integer"},
        BadConfigCase{"sandbox_zero_limit", "sandbox:\n  max_processes: 0\n",
                      "path/to/config.yaml:2: field 'sandbox.max_processes': must be an integer"},
        BadConfigCase{"default_agents_list", "default_agents: [builder]\n",
                      "path/to/config.yaml:1: field 'default_agents': must be a mapping"},
        BadConfigCase{"default_agent_not_string", "default_agents:\n  code: [a, b]\n",
                      "path/to/config.yaml:2: field 'default_agents.code': must be a string"},
        BadConfigCase{"budget_not_map", "budget: 10\n",
                      "path/to/config.yaml:1: field 'budget': must be a mapping"},
        BadConfigCase{"budget_negative_usd", "budget:\n  usd_per_task: 2\n  usd_per_run: -1\n",
                      "path/to/config.yaml:3: field 'budget.usd_per_run': must be a number "
                      "between 0 and 1000000000 (got '-1')"},
        BadConfigCase{"budget_word", "budget:\n  usd_per_call: cheap\n",
                      "path/to/config.yaml:2: field 'budget.usd_per_call': must be a number"},
        BadConfigCase{"budget_nan", "budget:\n  global_usd_per_day: .nan\n",
                      "path/to/config.yaml:2: field 'budget.global_usd_per_day': must be a "
                      "number"},
        BadConfigCase{"budget_tokens_fraction", "budget:\n  tokens_per_task: 1.5\n",
                      "path/to/config.yaml:2: field 'budget.tokens_per_task': must be an "
                      "integer"},
        BadConfigCase{"budget_tokens_zero", "budget:\n  tokens_per_task: 0\n",
                      "path/to/config.yaml:2: field 'budget.tokens_per_task': must be an "
                      "integer >= 1 (got '0')"},
        BadConfigCase{"budget_agent_day_list", "budget:\n  usd_per_agent_per_day: [1]\n",
                      "path/to/config.yaml:2: field 'budget.usd_per_agent_per_day': must be a "
                      "number"},
        BadConfigCase{"velocity_not_map", "budget:\n  velocity: on\n",
                      "path/to/config.yaml:2: field 'budget.velocity': must be a mapping"},
        BadConfigCase{"velocity_factor_one", "budget:\n  velocity: {factor: 1}\n",
                      "path/to/config.yaml:2: field 'budget.velocity.factor': must be a number"},
        BadConfigCase{"velocity_window_word",
                      "budget:\n  velocity:\n    enabled: true\n    window: soon\n",
                      "path/to/config.yaml:4: field 'budget.velocity.window': must be a "
                      "positive number of seconds or a duration"},
        BadConfigCase{"velocity_enabled_word", "budget:\n  velocity: {enabled: maybe}\n",
                      "path/to/config.yaml:2: field 'budget.velocity.enabled': must be true or "
                      "false"},
        BadConfigCase{"root_list", "- a\n- b\n",
                      "path/to/config.yaml:1: the config must be a YAML mapping"},
        BadConfigCase{"yaml_syntax", "concurrency: 2\ngates: [a\n", "path/to/config.yaml:"}),
    [](const ::testing::TestParamInfo<BadConfigCase>& info) { return info.param.label; });

TEST(ConfigTest, EveryErrorIsReported) {
  auto loaded = ParseProjectConfig(
      "concurrency: 0\nmax_attempts: x\ngates:\n  - {name: t, command: x, timeout: never}\n",
      "config.yaml");
  ASSERT_FALSE(loaded);
  const std::string& message = loaded.error().message;
  EXPECT_THAT(message, HasSubstr("config.yaml:1: field 'concurrency'"));
  EXPECT_THAT(message, HasSubstr("config.yaml:2: field 'max_attempts'"));
  EXPECT_THAT(message, HasSubstr("config.yaml:4: field 'gates[0].timeout'"));
}

TEST(ConfigTest, BudgetKeysAreParsedAndAbsentOnesMeanNoLimit) {
  auto loaded = ParseProjectConfig(R"(budget:
  usd_per_call: 0.5
  usd_per_task: 2
  tokens_per_task: 200000
  usd_per_run: 20.25
  usd_per_agent_per_day: 10
  global_usd_per_day: 0
  velocity: {enabled: false, factor: 4.5, window: 5m, baseline: 2h, min_baseline_usd: 0.1}
)",
                                   "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_TRUE(loaded->warnings.empty());
  const BudgetConfig& budget = loaded->value.budget;
  EXPECT_EQ(budget.usd_per_call, 0.5);
  EXPECT_EQ(budget.usd_per_task, 2.0);
  EXPECT_EQ(budget.tokens_per_task, 200000);
  EXPECT_EQ(budget.usd_per_run, 20.25);
  EXPECT_EQ(budget.usd_per_agent_per_day, 10.0);
  EXPECT_EQ(budget.global_usd_per_day, 0.0);  // zero is a limit (spend nothing), not "unset"
  EXPECT_FALSE(budget.velocity.enabled);
  EXPECT_EQ(budget.velocity.factor, 4.5);
  EXPECT_EQ(budget.velocity.window, seconds(300));
  EXPECT_EQ(budget.velocity.baseline, seconds(7200));
  EXPECT_EQ(budget.velocity.min_baseline_usd, 0.1);

  auto partial = ParseProjectConfig("budget:\n  usd_per_task: 1\n  usd_per_run:\n", "c.yaml");
  ASSERT_TRUE(partial) << partial.error().message;
  EXPECT_EQ(partial->value.budget.usd_per_task, 1.0);
  EXPECT_FALSE(partial->value.budget.usd_per_run.has_value());
  EXPECT_FALSE(partial->value.budget.usd_per_call.has_value());
  EXPECT_FALSE(partial->value.budget.global_usd_per_day.has_value());
  EXPECT_TRUE(partial->value.budget.velocity.enabled);
  EXPECT_EQ(partial->value.budget.velocity.factor, 3.0);
}

TEST(ConfigTest, UnknownBudgetKeysAreWarningsWithLines) {
  auto loaded =
      ParseProjectConfig("budget:\n  usd_per_tsk: 1\n  velocity: {windw: 5m}\n", "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->warnings.size(), 2u);
  EXPECT_THAT(loaded->warnings[0].ToString(),
              HasSubstr("config.yaml:2: warning: field 'budget.usd_per_tsk': unknown field"));
  EXPECT_THAT(loaded->warnings[1].ToString(),
              HasSubstr("config.yaml:3: warning: field 'budget.velocity.windw': unknown field"));
  EXPECT_FALSE(loaded->value.budget.usd_per_task.has_value());
}

TEST(ConfigTest, DurationsInSecondsOrWithUnits) {
  EXPECT_EQ(ParseDuration("90"), seconds(90));
  EXPECT_EQ(ParseDuration("90s"), seconds(90));
  EXPECT_EQ(ParseDuration("5m"), seconds(300));
  EXPECT_EQ(ParseDuration("2h"), seconds(7200));
  EXPECT_EQ(ParseDuration("1h30m15s"), seconds(5415));
  for (const char* bad : {"", "0", "-1", "0s", "m", "5x", "1.5m", "5m ", " 5m", "s5"}) {
    EXPECT_FALSE(ParseDuration(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(ConfigTest, DefaultConfigTextIsValidAndCommented) {
  auto loaded = ParseProjectConfig(kDefaultConfigYaml, "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_TRUE(loaded->warnings.empty()) << FormatDiagnostics(loaded->warnings);
  const ProjectConfig& config = loaded->value;
  EXPECT_EQ(config.concurrency, 4);
  EXPECT_EQ(config.max_attempts, 3);
  EXPECT_FALSE(config.base_branch.has_value());
  EXPECT_EQ(config.protected_paths, (std::vector<std::string>{".factory/**"}));
  EXPECT_THAT(std::string(kDefaultConfigYaml), HasSubstr("# base_branch: main"));
  EXPECT_THAT(std::string(kDefaultConfigYaml), HasSubstr("#  - name: test"));
}

TEST(ConfigTest, WriteDefaultConfigNeverOverwrites) {
  testing::TempDir dir;
  auto path = dir.path() / ".factory" / "config.yaml";
  ASSERT_TRUE(WriteDefaultConfig(path));
  EXPECT_EQ(testing::ReadFile(path), kDefaultConfigYaml);
  auto loaded = LoadProjectConfig(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.source, path.string());
  auto again = WriteDefaultConfig(path);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  auto missing = LoadProjectConfig(dir.path() / "none.yaml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST(ConfigTest, LoadedFileErrorsNameThePath) {
  testing::TempDir dir;
  auto path = dir.Write(".factory/config.yaml", "concurrency: 1\ngates:\n  - {name: a}\n");
  auto loaded = LoadProjectConfig(path);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message,
              HasSubstr(path.string() + ":3: field 'gates[0].command': missing required field"));
}

TEST(ConfigTest, ProtectedPathsWithTaskExemptions) {
  ProjectConfig config;
  config.protected_paths = {"tests/**", "**/*.lock"};
  EXPECT_EQ(config.ProtectedMatch("tests/unit/a_test.cc"), "tests/**");
  EXPECT_EQ(config.ProtectedMatch("deps/yarn.lock"), "**/*.lock");
  EXPECT_FALSE(config.ProtectedMatch("src/a.cc").has_value());
  EXPECT_FALSE(config.ProtectedMatch("tests/unit/a_test.cc", {"tests/unit/**"}).has_value());
  EXPECT_EQ(config.ProtectedMatch("tests/e2e/x.sh", {"tests/unit/**"}), "tests/**");
}

TEST(ConfigTest, DefaultAgentsMustExist) {
  auto loaded =
      ParseProjectConfig("default_agents:\n  code: builder\n  docs: ghost\n", "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  AgentRegistry agents;
  AgentSpec builder;
  builder.name = "builder";
  ASSERT_TRUE(agents.Add(builder));
  auto status = ValidateDefaultAgents(loaded->value, agents);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message,
            "config.yaml:3: field 'default_agents.docs': unknown agent 'ghost'");
  ProjectConfig good;
  good.default_agents = {{"code", "builder"}};
  EXPECT_TRUE(ValidateDefaultAgents(good, agents));
}

TEST(ConfigTest, GatewayUrlIsParsedWithoutItsTrailingSlash) {
  auto loaded = ParseProjectConfig("concurrency: 2\ngateway:\n  url: http://127.0.0.1:8787/\n",
                                   "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_TRUE(loaded->warnings.empty());
  EXPECT_EQ(loaded->value.gateway.url, "http://127.0.0.1:8787");
  EXPECT_EQ(loaded->value.gateway.line, 3);
  auto ipv6 = ParseProjectConfig("gateway: {url: \"http://[::1]:9000\"}\n", "config.yaml");
  ASSERT_TRUE(ipv6) << ipv6.error().message;
  EXPECT_EQ(ipv6->value.gateway.url, "http://[::1]:9000");
  // Absent, or `url:` with nothing: no gateway.
  for (const char* text : {"concurrency: 2\n", "gateway:\n", "gateway: {url: }\n"}) {
    auto none = ParseProjectConfig(text, "config.yaml");
    ASSERT_TRUE(none) << text << none.error().message;
    EXPECT_EQ(none->value.gateway.url, "") << text;
  }
  auto unknown = ParseProjectConfig("gateway: {url: \"http://h:1\", key: x}\n", "config.yaml");
  ASSERT_TRUE(unknown) << unknown.error().message;
  ASSERT_EQ(unknown->warnings.size(), 1u);
  EXPECT_THAT(unknown->warnings[0].ToString(),
              HasSubstr("config.yaml:1: warning: field 'gateway.key': unknown field"));
}

TEST(ConfigTest, BadGatewayUrlsFailWithFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"gateway: http://127.0.0.1:8787", "field 'gateway': must be a mapping with url"},
      {"gateway:\n  url: [a]", "field 'gateway.url': must be a string"},
      {"gateway:\n  url: 127.0.0.1:8787", "must be http://HOST:PORT"},
      {"gateway:\n  url: https://127.0.0.1:8787", "serves plain HTTP"},
      {"gateway:\n  url: http://127.0.0.1", "the port is missing"},
      {"gateway:\n  url: http://:8787", "the host is missing"},
      {"gateway:\n  url: http://127.0.0.1:0", "the port must be 1..65535"},
      {"gateway:\n  url: http://127.0.0.1:65536", "the port must be 1..65535"},
      {"gateway:\n  url: http://127.0.0.1:port", "the port must be 1..65535"},
      {"gateway:\n  url: http://127.0.0.1:8787/v1", "without a path"},
      {"gateway:\n  url: http://u@127.0.0.1:8787", "without a path, query or user"},
      {"gateway:\n  url: http://::1:8787", "in brackets"},
  };
  for (const auto& [text, expected] : cases) {
    auto loaded = ParseProjectConfig(text + "\n", "path/to/config.yaml");
    ASSERT_FALSE(loaded) << text;
    EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
    const std::string line = text.find('\n') == std::string::npos ? "1" : "2";
    EXPECT_THAT(loaded.error().message, HasSubstr("path/to/config.yaml:" + line + ": field"))
        << text;
    EXPECT_THAT(loaded.error().message, HasSubstr(expected)) << text;
  }
}

TEST(ConfigTest, DefaultConfigDocumentsTheGateway) {
  const std::string text(kDefaultConfigYaml);
  EXPECT_THAT(text, HasSubstr("# gateway:\n#   url: http://127.0.0.1:8788"));
  // Uncommented, the documented example parses.
  auto loaded = ParseProjectConfig("gateway:\n  url: http://127.0.0.1:8787\n", "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.gateway.url, "http://127.0.0.1:8787");
}

}  // namespace
}  // namespace factory

namespace factory {
namespace {

TEST(ConfigReviewAndRebaseTest, ReviewGatesAndRebaseAreParsed) {
  const char* text = R"(gates:
  - {name: test, command: make test}
  - name: review
    kind: review
    model: cloud/mid
    timeout: 300
  - {name: lint, kind: command, command: make lint}
rebase:
  after_failures: 3
  max_per_task: 2
  model: cloud/frontier
)";
  auto loaded = ParseProjectConfig(text, "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_TRUE(loaded->warnings.empty()) << FormatDiagnostics(loaded->warnings);
  const ProjectConfig& config = loaded->value;
  ASSERT_EQ(config.gates.size(), 3u);
  EXPECT_EQ(config.gates[0].kind, GateKind::kCommand);
  const GateConfig& review = config.gates[1];
  EXPECT_EQ(review.kind, GateKind::kReview);
  EXPECT_EQ(review.model, "cloud/mid");
  EXPECT_EQ(review.model_line, 5);
  EXPECT_TRUE(review.command.empty());
  EXPECT_EQ(review.timeout, std::chrono::seconds(300));
  EXPECT_EQ(config.gates[2].kind, GateKind::kCommand);
  EXPECT_EQ(config.gates[2].command, "make lint");
  EXPECT_TRUE(config.HasReviewGate());
  // Command gates in order, the review gate apart.
  auto commands = config.GatesOfKind(GateKind::kCommand);
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0].name, "test");
  EXPECT_EQ(commands[1].name, "lint");
  ASSERT_EQ(config.GatesOfKind(GateKind::kReview).size(), 1u);

  EXPECT_EQ(config.rebase.after_failures, 3);
  EXPECT_EQ(config.rebase.max_per_task, 2);
  EXPECT_EQ(config.rebase.model, "cloud/frontier");
  EXPECT_EQ(config.rebase.model_line, 11);
}

TEST(ConfigReviewAndRebaseTest, RebaseDefaultsWhenAbsent) {
  auto loaded = ParseProjectConfig("concurrency: 2\n", "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.rebase.after_failures, 2);
  EXPECT_EQ(loaded->value.rebase.max_per_task, 1);
  EXPECT_TRUE(loaded->value.rebase.model.empty());
  EXPECT_FALSE(loaded->value.HasReviewGate());
  // The shipped default config turns rebasing on with the defaults and documents review gates.
  auto shipped = ParseProjectConfig(kDefaultConfigYaml, "config.yaml");
  ASSERT_TRUE(shipped) << shipped.error().message;
  EXPECT_EQ(shipped->value.rebase.after_failures, 2);
  EXPECT_EQ(shipped->value.rebase.max_per_task, 1);
  EXPECT_THAT(std::string(kDefaultConfigYaml), HasSubstr("#    kind: review"));
}

TEST(ConfigReviewAndRebaseTest, UnknownRebaseKeysAreWarnings) {
  auto loaded = ParseProjectConfig("rebase:\n  after_failure: 3\n", "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_THAT(FormatDiagnostics(loaded->warnings),
              HasSubstr("config.yaml:2: warning: field 'rebase.after_failure': unknown field"));
}

INSTANTIATE_TEST_SUITE_P(
    ReviewAndRebase, BadConfigTest,
    ::testing::Values(
        BadConfigCase{"review_gate_without_model", "gates:\n  - {name: review, kind: review}\n",
                      "path/to/config.yaml:2: field 'gates[0].model': missing required field"},
        BadConfigCase{"review_gate_with_command",
                      "gates:\n  - name: review\n    kind: review\n    model: cloud/mid\n"
                      "    command: make\n",
                      "path/to/config.yaml:5: field 'gates[0].command': a review gate has no "
                      "command"},
        BadConfigCase{"command_gate_with_model",
                      "gates:\n  - {name: t, command: make, model: cloud/mid}\n",
                      "path/to/config.yaml:2: field 'gates[0].model': only a review gate"},
        BadConfigCase{"gate_unknown_kind", "gates:\n  - name: t\n    kind: approve\n",
                      "path/to/config.yaml:3: field 'gates[0].kind': must be command or review, "
                      "not 'approve'"},
        BadConfigCase{"review_gate_empty_model", "gates:\n  - {name: r, kind: review, model: ''}\n",
                      "path/to/config.yaml:2: field 'gates[0].model': must not be empty"},
        BadConfigCase{"rebase_not_map", "rebase: 2\n",
                      "path/to/config.yaml:1: field 'rebase': must be a mapping"},
        BadConfigCase{"rebase_after_zero", "rebase:\n  after_failures: 0\n",
                      "path/to/config.yaml:2: field 'rebase.after_failures': must be an "
                      "integer between 1 and 100"},
        BadConfigCase{"rebase_max_negative", "rebase:\n  max_per_task: -1\n",
                      "path/to/config.yaml:2: field 'rebase.max_per_task': must be an integer "
                      "between 0 and 100"},
        BadConfigCase{"rebase_model_list", "rebase:\n  model: [a]\n",
                      "path/to/config.yaml:2: field 'rebase.model': must be a string"},
        BadConfigCase{"rebase_model_empty", "rebase:\n  after_failures: 2\n  model: \"\"\n",
                      "path/to/config.yaml:3: field 'rebase.model': must not be empty"}));

TEST(ConfigCommitTest, CommitSectionIsParsedAndDefaultsWhenAbsent) {
  auto absent = ParseProjectConfig("concurrency: 2\n", "config.yaml");
  ASSERT_TRUE(absent) << absent.error().message;
  EXPECT_EQ(absent->value.commit.max_file_mb, 5);
  EXPECT_TRUE(absent->value.commit.exclude.empty());
  EXPECT_TRUE(absent->value.commit.default_exclude);
  auto loaded = ParseProjectConfig(
      "commit: {max_file_mb: 0, exclude: [\"*.log\", \"dist/\"], default_exclude: false}\n",
      "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->value.commit.max_file_mb, 0);
  EXPECT_EQ(loaded->value.commit.exclude, (std::vector<std::string>{"*.log", "dist/"}));
  EXPECT_FALSE(loaded->value.commit.default_exclude);
  auto shipped = ParseProjectConfig(kDefaultConfigYaml, "config.yaml");
  ASSERT_TRUE(shipped) << shipped.error().message;
  EXPECT_EQ(shipped->value.commit.max_file_mb, 5);
  EXPECT_TRUE(shipped->value.commit.default_exclude);
}

INSTANTIATE_TEST_SUITE_P(
    Commit, BadConfigTest,
    ::testing::Values(BadConfigCase{"commit_negative_size", "commit:\n  max_file_mb: -1\n",
                                    "path/to/config.yaml:2: field 'commit.max_file_mb'"},
                      BadConfigCase{"commit_exclude_scalar", "commit:\n  exclude: \"*.log\"\n",
                                    "path/to/config.yaml:2: field 'commit.exclude'"},
                      BadConfigCase{"commit_not_a_mapping", "commit: 5\n",
                                    "path/to/config.yaml:1: field 'commit': must be a mapping"}));

}  // namespace
}  // namespace factory
