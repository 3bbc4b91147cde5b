// docs/quickstart.md, for a local OpenAI-compatible server, performed exactly as written with the
// built `factory` binary: export the server's URL (and a second model id for the reviewer),
// `factory init`, `factory doctor`, `factory run feature.md`, `factory run merge RUN`, in a fresh
// git repository whose test command (`make test`) init detects. The fake provider (loopback
// HTTP) is the only stand-in: it plans, answers the backlog, writes the file through tool calls
// and reviews.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "cli/cli_test_util.h"
#include "feature/feature_test_util.h"
#include "llm/fake_provider.h"

namespace factory {
namespace {

using json = nlohmann::json;
using llm::ToolCall;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using llm::fake::RecordedRequest;
using testing::CliSandbox;
using ::testing::HasSubstr;

std::string Sh(const std::filesystem::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

constexpr char kBacklog[] = R"({"tasks": [
  {"id": "hello", "title": "Write the greeting",
   "description": "Create hello.txt holding the line 'hello, world'.",
   "acceptance": ["hello.txt holds exactly the line 'hello, world'", "make test passes"],
   "type": "code", "capabilities": ["code"], "scope": ["hello.txt"]}
]})";

// What the fake answers: the planners' documents, the backlog, the builder's tool calls (write
// the file, then finish) and the reviewer's verdict, told apart by their prompts.
std::optional<FakeReply> Respond(const RecordedRequest& request) {
  const llm::Usage usage{.input_tokens = 400, .output_tokens = 60};
  const std::string step = testing::StepOf(request);
  if (step == "spec" || step == "architecture" || step == "qa") {
    return FakeReply::Text(testing::PlannerDocument(step), usage);
  }
  if (step == "backlog" || step == "repair") return FakeReply::Text(kBacklog, usage);
  const json body = request.Json();
  const auto& messages = body["messages"];
  const std::string first = messages.empty() ? "" : messages[0].value("content", "");
  if (first.find("You are the reviewer of one change") != std::string::npos) {
    return FakeReply::Text(
        json{{"verdict", "pass"}, {"reasons", {"hello.txt holds the greeting"}}}.dump(), usage);
  }
  if (testing::IsToolResultTurn(body)) {
    return FakeReply::Tools({ToolCall{"f1", "finish", R"({"summary": "wrote hello.txt"})"}}, usage);
  }
  return FakeReply::Tools(
      {ToolCall{"w1", "write_file",
                json{{"path", "hello.txt"}, {"content", "hello, world\n"}}.dump()}},
      usage);
}

TEST(QuickstartTest, FromInitToAMergedFeatureInTheDocumentedCommands) {
  FakeProviderServer fake;
  fake.SetResponder(Respond);
  CliSandbox sandbox;
  const std::filesystem::path dir = sandbox.dir();
  // A project with a test command: `make test` checks the greeting once it exists.
  testing::WriteFile(dir / "Makefile", "test:\n\tsh tests/check.sh\n");
  testing::WriteFile(dir / "tests/check.sh",
                     "if [ -f hello.txt ]; then grep -qx 'hello, world' hello.txt; fi\n");
  Sh(dir,
     "git init -q -b main && git config user.email t@example.com && git config user.name t && "
     "git add -A && git commit -qm init");
  testing::WriteFile(dir / "feature.md", "# Greeting\n\nGreet the world in hello.txt.\n");

  // 1. export FACTORY_LLM_BASE_URL=... FACTORY_LLM_REVIEW_MODEL=...
  testing::SpawnOptions exported;
  exported.env["FACTORY_LLM_BASE_URL"] = fake.openai_base_url();
  exported.env["FACTORY_LLM_REVIEW_MODEL"] = "fake-reviewer";
  auto run = [&](const std::vector<std::string>& args) {
    return sandbox.Run(args, exported, 180'000);
  };

  // 2. factory init
  auto init = run({"init"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr("make test"));
  EXPECT_THAT(init.out, HasSubstr("agent: llm-coder"));
  EXPECT_THAT(init.out, HasSubstr("review: gate 'review' on model local-review"));

  // 3. factory doctor
  auto doctor = run({"doctor"});
  ASSERT_EQ(doctor.exit_code, 0) << doctor.out << doctor.err;

  // 4. factory run feature.md
  auto built = run({"run", "feature.md"});
  ASSERT_EQ(built.exit_code, 0) << built.out << built.err;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(built.err, match, std::regex("factory: run ([^ ]+) on")))
      << built.err;
  const std::string run_id = match[1];

  // 5. factory run merge RUN
  auto merged = run({"run", "merge", run_id});
  ASSERT_EQ(merged.exit_code, 0) << merged.err;

  // The feature is on main, built and checked.
  EXPECT_EQ(Sh(dir, "git show main:hello.txt"), "hello, world\n");
  EXPECT_EQ(testing::ReadFile(dir / "hello.txt"), "hello, world\n");  // the checkout moved too
  const json metadata =
      json::parse(testing::ReadFile(dir / ".factory/specs/feature/metadata.json"));
  EXPECT_EQ(metadata["status"], "done");

  // The builder ran on the server's default model, the reviewer on the second id.
  std::set<std::string> builder_models;
  std::set<std::string> reviewer_models;
  for (const RecordedRequest& request : fake.requests()) {
    const json body = request.Json();
    if (!body.is_object() || !body.contains("messages")) continue;
    const std::string first = body["messages"][0].value("content", "");
    const std::string model = body.value("model", "");
    if (first.find("You are the reviewer of one change") != std::string::npos) {
      reviewer_models.insert(model);
    } else if (testing::StepOf(request) == "other") {
      builder_models.insert(model);
    }
  }
  EXPECT_EQ(reviewer_models, std::set<std::string>{"fake-reviewer"});
  EXPECT_EQ(builder_models, std::set<std::string>{"default"});
}

}  // namespace
}  // namespace factory
