#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runners/runner.h"

namespace factory {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

AttemptInput SampleInput() {
  AttemptInput input;
  input.run_id = "r1";
  input.task_id = "t1";
  input.title = "Add a parser";
  input.spec = "Parse the config file.";
  input.acceptance = {"parses valid files", "rejects bad ones"};
  input.type = "code";
  input.attempt = 2;
  input.max_attempts = 3;
  input.feedback = "Gate 'test' failed with exit code 1.";
  return input;
}

TEST(TaskFileTest, JsonHasEveryField) {
  auto json = nlohmann::json::parse(TaskFileJson(SampleInput()));
  EXPECT_EQ(json["run_id"], "r1");
  EXPECT_EQ(json["task_id"], "t1");
  EXPECT_EQ(json["title"], "Add a parser");
  EXPECT_EQ(json["spec"], "Parse the config file.");
  EXPECT_EQ(json["acceptance"], nlohmann::json({"parses valid files", "rejects bad ones"}));
  EXPECT_EQ(json["type"], "code");
  EXPECT_EQ(json["attempt"], 2);
  EXPECT_EQ(json["max_attempts"], 3);
  EXPECT_EQ(json["feedback"], "Gate 'test' failed with exit code 1.");
}

TEST(TaskFileTest, InvalidUtf8InFeedbackIsReplacedNotFatal) {
  AttemptInput input = SampleInput();
  input.feedback = std::string("bad byte \xff here");
  std::string text = TaskFileJson(input);
  auto json = nlohmann::json::parse(text);
  EXPECT_THAT(json["feedback"].get<std::string>(), HasSubstr("bad byte"));
  EXPECT_THAT(json["feedback"].get<std::string>(), HasSubstr("here"));
}

TEST(TaskFileTest, PromptCarriesAgentBodyTaskAcceptanceAndFeedback) {
  AgentSpec agent;
  agent.name = "builder";
  agent.system_prompt = "You are a careful engineer.";
  std::string prompt = BuildPrompt(agent, SampleInput());
  EXPECT_EQ(prompt.rfind("You are a careful engineer.", 0), 0u);
  EXPECT_THAT(prompt, HasSubstr("# Task t1: Add a parser"));
  EXPECT_THAT(prompt, HasSubstr("Parse the config file."));
  EXPECT_THAT(prompt, HasSubstr("- parses valid files\n- rejects bad ones\n"));
  EXPECT_THAT(prompt, HasSubstr("attempt 2 of 3"));
  EXPECT_THAT(prompt, HasSubstr("Gate 'test' failed with exit code 1."));
  EXPECT_EQ(prompt, BuildPrompt(agent, SampleInput()));  // deterministic

  AttemptInput first = SampleInput();
  first.attempt = 1;
  first.feedback.clear();
  EXPECT_THAT(BuildPrompt(agent, first), Not(HasSubstr("previous attempt")));
}

}  // namespace
}  // namespace factory
