// Clean contexts: a feature run on the example repository (examples/textkit copied
// into a temporary git repository), through the real binary. The planners and the backlog agent
// are answered by the scripted fake provider (loopback HTTP; the backlog is the example's own
// backlog.yaml), and the build is done by built-in `llm` agents whose tool calls the fake also
// answers (write a note, then finish), under the example's real gates (python compileall and
// unittest). Then: the median `prompt_bytes` the runners recorded for the implementation
// attempts (`factory stats --json`) is below 5 KB, and no implementation prompt carries any
// planning text (the planners' documents or the feature request). Whatever prompt the runner
// builds, this measures what it recorded and what reached the provider.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"
#include "feature_test_util.h"
#include "llm/fake_provider.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using llm::ToolCall;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using llm::fake::RecordedRequest;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::HasSubstr;

constexpr char kKeyVariable[] = "FEATURE_PROMPT_SIZE_TEST_KEY";
constexpr char kRequestMarker[] = "FEATURE-REQUEST-MARKER";
constexpr size_t kTargetMedianBytes = 5 * 1024;

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

json YamlToJson(const YAML::Node& node) {
  if (node.IsMap()) {
    json object = json::object();
    for (const auto& entry : node) object[entry.first.as<std::string>()] = YamlToJson(entry.second);
    return object;
  }
  if (node.IsSequence()) {
    json array = json::array();
    for (const auto& item : node) array.push_back(YamlToJson(item));
    return array;
  }
  return node.as<std::string>();
}

// The bytes of the messages a request opens with (system + first user message): what an
// attempt's first call sends before any tool result.
size_t OpeningBytes(const json& body) {
  size_t bytes = 0;
  for (const auto& message : body.value("messages", json::array())) {
    if (!message.contains("content") || !message["content"].is_string()) continue;
    const std::string role = message.value("role", "");
    if (role != "system" && role != "user") continue;
    bytes += message["content"].get<std::string>().size();
  }
  return bytes;
}

TEST(FeaturePromptSizeTest, ImplementationPromptsOnTheExampleAreSmallAndFreeOfPlanningText) {
  FakeProviderServer fake;
  CliSandbox sandbox;
  const fs::path dir = sandbox.dir();
  const fs::path example = fs::path(FACTORY_SOURCE_DIR) / "examples" / "textkit";
  fs::copy(example, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  testing::WriteFile(dir / ".factory/agents/coder.md",
                     testing::AsLlmAgent(example / ".factory/agents/coder.md", "code"));
  testing::WriteFile(dir / ".factory/agents/writer.md",
                     testing::AsLlmAgent(example / ".factory/agents/writer.md", "docs"));
  testing::WriteFile(dir / ".factory/models.yaml",
                     testing::ModelsYaml(fake.openai_base_url(), kKeyVariable));
  Sh(dir,
     "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@example.com "
     "commit -qm textkit");
  testing::WriteFile(dir / "textkit-package.md",
                     std::string("# The textkit package\n\n") + kRequestMarker +
                         ": build the text helpers the test suite expects (normalize, tokenize, "
                         "slugify, stats), a command line, and its documentation.\n");

  // The backlog agent answers with the example's own backlog.
  json backlog = {
      {"tasks", YamlToJson(YAML::LoadFile((example / "backlog.yaml").string()))["tasks"]}};
  // Its agents here write notes: their tasks' scopes allow them.
  for (auto& task : backlog["tasks"]) task["scope"].push_back("notes/**");
  const std::string backlog_text = backlog.dump(1);
  auto notes = std::make_shared<std::atomic<int>>(0);
  fake.SetResponder([=](const RecordedRequest& request) -> std::optional<FakeReply> {
    const std::string step = testing::StepOf(request);
    if (step == "spec" || step == "architecture" || step == "qa") {
      return FakeReply::Text(testing::PlannerDocument(step),
                             {.input_tokens = 900, .output_tokens = 300});
    }
    if (step == "backlog" || step == "repair") {
      return FakeReply::Text(backlog_text, {.input_tokens = 1500, .output_tokens = 600});
    }
    // An implementation turn: write a note, then finish.
    if (testing::IsToolResultTurn(request.Json())) {
      return FakeReply::Tools({ToolCall{"finish-1", "finish", R"({"summary": "noted"})"}},
                              {.input_tokens = 1200, .output_tokens = 20});
    }
    const std::string path = "notes/note-" + std::to_string(notes->fetch_add(1)) + ".md";
    return FakeReply::Tools(
        {ToolCall{"write-1", "write_file",
                  json{{"path", path}, {"content", "A note of the attempt.\n"}}.dump()}},
        {.input_tokens = 1000, .output_tokens = 40});
  });

  // Only `factory init` creates a database; made elsewhere, so that the example files init
  // writes do not join the example's own.
  testing::TempDir scratch;
  sandbox.Ok({"--db", (scratch.path() / "factory.db").string(), "init"});
  fs::copy_file(scratch.path() / "factory.db", dir / ".factory" / "factory.db");
  testing::SpawnOptions options;
  options.env[kKeyVariable] = "sk-prompt-size-test";
  CliResult run = sandbox.Run(
      {"run", "textkit-package.md", "--run-id", "textkit1", "--plain", "--json"}, options, 120'000);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  const json summary = run.Json();
  ASSERT_EQ(summary["done"], 6) << run.out;
  EXPECT_EQ(summary["feature"]["final_gates"], "passed");

  // What the runners recorded, as `factory stats` reports it.
  CliResult stats = sandbox.Run({"stats", "--run", "textkit1", "--json"}, options);
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const json prompt_bytes = stats.Json()["total"]["prompt_bytes"];
  ASSERT_TRUE(prompt_bytes.is_object()) << stats.out;
  EXPECT_EQ(prompt_bytes["count"], summary["attempts"]) << "every attempt records its prompt size";
  ASSERT_TRUE(prompt_bytes["p50"].is_number()) << stats.out;
  EXPECT_GT(prompt_bytes["p50"].get<int64_t>(), 0);
  EXPECT_LT(prompt_bytes["p50"].get<int64_t>(), static_cast<int64_t>(kTargetMedianBytes))
      << "median implementation prompt: " << prompt_bytes.dump();

  // What reached the provider: the opening of every attempt's first call (its prompt), and no
  // planning text in any implementation call.
  std::vector<size_t> opening_sizes;
  size_t implementation_calls = 0;
  for (const auto& request : fake.requests()) {
    if (testing::StepOf(request) != "other") continue;
    ++implementation_calls;
    EXPECT_THAT(request.body, ::testing::Not(HasSubstr("PLANNING-MARKER")));
    EXPECT_THAT(request.body, ::testing::Not(HasSubstr(kRequestMarker)));
    if (!testing::IsToolResultTurn(request.Json())) {
      opening_sizes.push_back(OpeningBytes(request.Json()));
    }
  }
  EXPECT_EQ(implementation_calls, 12u) << "6 attempts, 2 turns each";
  ASSERT_EQ(opening_sizes.size(), 6u);
  std::sort(opening_sizes.begin(), opening_sizes.end());
  EXPECT_LT(opening_sizes[opening_sizes.size() / 2], kTargetMedianBytes);

  // The planning text is real (it reached the backlog agent), so its absence above means
  // something.
  bool backlog_saw_plans = false;
  for (const auto& request : fake.requests()) {
    if (testing::StepOf(request) == "backlog" &&
        request.body.find("PLANNING-MARKER-spec") != std::string::npos &&
        request.body.find(kRequestMarker) != std::string::npos) {
      backlog_saw_plans = true;
    }
  }
  EXPECT_TRUE(backlog_saw_plans);
}

}  // namespace
}  // namespace factory
