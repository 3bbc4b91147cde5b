#include "setup/agent_choice.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <set>
#include <string>

#include "agents/agent.h"
#include "common/test_util.h"
#include "llm/models_config.h"

namespace factory::setup {
namespace {

using ::testing::HasSubstr;

HostProbe Probe(std::map<std::string, std::string> env, std::set<std::string> binaries = {}) {
  HostProbe probe;
  probe.env = [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
  probe.on_path = [binaries](const std::string& program) { return binaries.contains(program); };
  return probe;
}

AgentSpec Parse(const AgentChoice& choice) {
  auto parsed = ParseAgentFile(choice.file_text, choice.file_name);
  EXPECT_TRUE(parsed) << (parsed ? "" : parsed.error().message) << "\n" << choice.file_text;
  if (!parsed) return {};
  EXPECT_TRUE(parsed->warnings.empty()) << FormatDiagnostics(parsed->warnings);
  EXPECT_EQ(parsed->value.name + ".md", choice.file_name);
  return parsed->value;
}

// The models of models.yaml an alias or model name stands for.
std::set<std::string> ModelsOf(const llm::ModelsConfig& models, const std::string& target) {
  if (const auto* alias = models.FindAlias(target)) {
    return {alias->models.begin(), alias->models.end()};
  }
  return {target};
}

// The default models.yaml as a host with `env` loads it.
llm::ModelsConfig DefaultModels(const std::map<std::string, std::string>& env) {
  auto models =
      llm::ParseModelsConfig(llm::kDefaultModelsYaml, "models.yaml",
                             [env](const std::string& name) -> std::optional<std::string> {
                               auto it = env.find(name);
                               if (it == env.end()) return std::nullopt;
                               return it->second;
                             });
  EXPECT_TRUE(models) << models.error().message;
  return models ? *models : llm::ModelsConfig{};
}

// Whether some model of `target` is served by an available provider of the default models.yaml.
bool Routes(const llm::ModelsConfig& models, const std::string& target) {
  for (const auto& name : ModelsOf(models, target)) {
    const auto* model = models.FindModel(name);
    if (model == nullptr) continue;
    const auto* provider = models.FindProvider(model->provider);
    if (provider != nullptr && provider->available) return true;
  }
  return false;
}

struct ProviderCase {
  std::map<std::string, std::string> env;
  std::string provider;
  std::string model;
  std::string review;  // "" = none
};

class LlmChoiceTest : public ::testing::TestWithParam<ProviderCase> {};

// The chosen llm agent's model and the reviewer's are routed by the default models.yaml to the
// provider that was found, and the reviewer shares no model with the builder's alias.
TEST_P(LlmChoiceTest, ChoosesAnAgentTheDefaultModelsRoute) {
  const ProviderCase& c = GetParam();
  auto choice = ChooseAgent(Probe(c.env, {"claude"}));
  ASSERT_TRUE(choice) << choice.error().message;
  EXPECT_EQ(choice->kind, AgentKind::kLlm);
  EXPECT_EQ(choice->provider, c.provider);
  EXPECT_EQ(choice->model, c.model);
  EXPECT_EQ(choice->review_model, c.review) << choice->review_reason;
  const AgentSpec spec = Parse(*choice);
  EXPECT_EQ(spec.runner, RunnerKind::kLlm);
  EXPECT_EQ(spec.model, c.model);

  const llm::ModelsConfig models = DefaultModels(c.env);
  EXPECT_TRUE(Routes(models, c.model)) << c.model;
  if (!c.review.empty()) {
    EXPECT_TRUE(Routes(models, c.review)) << c.review;
    std::set<std::string> builder;
    // The cost pyramid lets the builder use every cheaper rung too: local/fast and its own.
    for (const std::string& alias : {std::string("local/fast"), c.model}) {
      for (const auto& name : ModelsOf(models, alias)) builder.insert(name);
    }
    for (const auto& name : ModelsOf(models, c.review)) {
      const auto* reviewer = models.FindModel(name);
      ASSERT_NE(reviewer, nullptr) << name;
      for (const auto& used : builder) {
        const auto* model = models.FindModel(used);
        ASSERT_NE(model, nullptr);
        EXPECT_FALSE(model->provider == reviewer->provider && model->model_id == reviewer->model_id)
            << "the reviewer " << name << " is the builder's " << used;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Providers, LlmChoiceTest,
    ::testing::Values(
        ProviderCase{
            {{"FACTORY_LLM_BASE_URL", "http://127.0.0.1:8080/v1"}}, "local", "local/fast", ""},
        ProviderCase{{{"FACTORY_LLM_BASE_URL", "http://127.0.0.1:8080/v1"},
                      {"FACTORY_LLM_MODEL", "qwen-coder"},
                      {"FACTORY_LLM_REVIEW_MODEL", "llama-3"}},
                     "local",
                     "local/fast",
                     "local-review"},
        ProviderCase{{{"FACTORY_LLM_BASE_URL", "http://127.0.0.1:8080/v1"},
                      {"FACTORY_LLM_REVIEW_MODEL", "default"}},
                     "local",
                     "local/fast",
                     ""},
        ProviderCase{
            {{"FACTORY_LLM_BASE_URL", "http://127.0.0.1:8080/v1"}, {"OPENAI_API_KEY", "sk-x"}},
            "local",
            "local/fast",
            "gpt-4.1"},
        ProviderCase{{{"OPENAI_API_KEY", "sk-x"}}, "openai", "cloud/fast", "gpt-4.1"},
        ProviderCase{{{"ANTHROPIC_API_KEY", "sk-ant"}}, "anthropic", "cloud/fast", "claude-sonnet"},
        ProviderCase{{{"OPENAI_API_KEY", "sk-x"}, {"ANTHROPIC_API_KEY", "sk-ant"}},
                     "openai",
                     "cloud/fast",
                     "gpt-4.1"}),
    [](const ::testing::TestParamInfo<ProviderCase>& info) {
      return "case" + std::to_string(info.index);
    });

TEST(AgentChoiceTest, ACliOnPathWhenNoProvider) {
  auto choice = ChooseAgent(Probe({}, {"aider", "codex"}));
  ASSERT_TRUE(choice) << choice.error().message;
  EXPECT_EQ(choice->kind, AgentKind::kCli);
  EXPECT_EQ(choice->name, "codex-coder");  // codex comes before aider
  EXPECT_THAT(choice->reason, HasSubstr("codex"));
  EXPECT_TRUE(choice->review_model.empty());
  const AgentSpec spec = Parse(*choice);
  EXPECT_EQ(spec.runner, RunnerKind::kCli);
  EXPECT_EQ(spec.preset, "codex");
  EXPECT_TRUE(spec.network);
  EXPECT_EQ(spec.env, std::vector<std::string>{"OPENAI_API_KEY"});
}

TEST(AgentChoiceTest, EveryPresetMakesAValidAgent) {
  for (std::string_view preset : kCliPresets) {
    auto choice = ChooseAgent(Probe({}, {std::string(preset)}), preset);
    ASSERT_TRUE(choice) << preset << ": " << choice.error().message;
    EXPECT_EQ(Parse(*choice).preset, preset);
  }
}

TEST(AgentChoiceTest, NoneWhenNothingCanRun) {
  auto choice = ChooseAgent(Probe({{"OPENAI_API_KEY", ""}}, {}));
  ASSERT_TRUE(choice) << choice.error().message;
  EXPECT_EQ(choice->kind, AgentKind::kNone);
  EXPECT_TRUE(choice->file_text.empty());
  EXPECT_THAT(choice->reason, HasSubstr("FACTORY_LLM_BASE_URL"));
}

TEST(AgentChoiceTest, PreferencesForceOrFailClearly) {
  const HostProbe probe = Probe({{"OPENAI_API_KEY", "sk-x"}}, {"claude"});
  auto claude = ChooseAgent(probe, "claude");
  ASSERT_TRUE(claude);
  EXPECT_EQ(claude->name, "claude-coder");
  // The CLI uses no model of models.yaml: any available one may review it.
  EXPECT_EQ(claude->review_model, "gpt-4.1");
  auto none = ChooseAgent(probe, "none");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->kind, AgentKind::kNone);

  auto missing = ChooseAgent(probe, "gemini");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(missing.error().message, HasSubstr("gemini"));
  auto no_provider = ChooseAgent(Probe({}, {}), "llm");
  ASSERT_FALSE(no_provider);
  EXPECT_THAT(no_provider.error().message, HasSubstr("OPENAI_API_KEY"));
  auto unknown = ChooseAgent(probe, "cursor");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
}

TEST(AgentChoiceTest, NoAgentMessageNamesTheDirectoryAndEveryChoice) {
  const std::string message = NoAgentMessage("/repo/.factory/agents");
  for (const char* part :
       {"/repo/.factory/agents", "FACTORY_LLM_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
        "claude", "codex", "factory init", "/repo/.factory/agents/examples/"}) {
    EXPECT_THAT(message, HasSubstr(part));
  }
}

TEST(FindOnPathTest, FindsExecutablesOnly) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "bin/tool", "#!/bin/sh\n");
  testing::WriteFile(dir.path() / "bin/data", "x");
  ASSERT_EQ(chmod((dir.path() / "bin/tool").c_str(), 0755), 0);
  const std::string path = "/nonexistent:" + (dir.path() / "bin").string();
  EXPECT_TRUE(FindOnPath("tool", path));
  EXPECT_FALSE(FindOnPath("data", path));
  EXPECT_FALSE(FindOnPath("missing", path));
  EXPECT_FALSE(FindOnPath("bin/tool", path));
}

}  // namespace
}  // namespace factory::setup
