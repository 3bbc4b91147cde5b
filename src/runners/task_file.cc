#include <nlohmann/json.hpp>
#include <string>

#include "runners/runner.h"

namespace factory {

std::string TaskFileJson(const AttemptInput& input) {
  nlohmann::ordered_json json = {
      {"run_id", input.run_id},         {"task_id", input.task_id},
      {"title", input.title},           {"spec", input.spec},
      {"acceptance", input.acceptance}, {"type", input.type},
      {"attempt", input.attempt},       {"max_attempts", input.max_attempts},
      {"feedback", input.feedback},     {"prompt", input.prompt},
  };
  // Feedback carries raw tool output, which may not be valid UTF-8: replace bad bytes rather
  // than throw.
  return json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

std::string BuildPrompt(const AgentSpec& agent, const AttemptInput& input) {
  std::string prompt;
  if (!agent.system_prompt.empty()) {
    prompt += agent.system_prompt;
    prompt += "\n\n";
  }
  prompt += "# Task " + input.task_id;
  if (!input.title.empty()) prompt += ": " + input.title;
  prompt += "\n\n";
  if (!input.spec.empty()) {
    prompt += input.spec;
    if (prompt.back() != '\n') prompt += '\n';
    prompt += '\n';
  }
  if (!input.acceptance.empty()) {
    prompt += "## Acceptance criteria\n\n";
    for (const auto& criterion : input.acceptance) prompt += "- " + criterion + "\n";
    prompt += '\n';
  }
  if (!input.feedback.empty()) {
    prompt += "## Why the previous attempt failed\n\n";
    prompt += "This is attempt " + std::to_string(input.attempt) + " of " +
              std::to_string(input.max_attempts) +
              ". The previous attempt was rejected; fix the cause:\n\n";
    prompt += input.feedback;
    if (prompt.back() != '\n') prompt += '\n';
    prompt += '\n';
  }
  prompt +=
      "## How to work\n\n"
      "- Work only inside the current directory, the git worktree of this task.\n"
      "- Do not commit: the factory commits your changes and runs the project's checks on "
      "them.\n"
      "- Finish with a short summary of what you changed.\n";
  return prompt;
}

std::string AgentPrompt(const AgentSpec& agent, const AttemptInput& input) {
  if (input.prompt.empty()) return BuildPrompt(agent, input);
  if (agent.system_prompt.empty()) return input.prompt;
  std::string prompt = agent.system_prompt;
  while (!prompt.empty() && (prompt.back() == '\n' || prompt.back() == ' ')) prompt.pop_back();
  return prompt + "\n\n" + input.prompt;
}

}  // namespace factory
