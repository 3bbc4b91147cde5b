#include "plan/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agents/registry.h"
#include "agents/temp_dir.h"

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

}  // namespace
}  // namespace factory
