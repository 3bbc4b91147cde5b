#pragma once
// Shared by the feature tests: telling the planners' requests apart at the fake provider (the
// three planners call in parallel, in no fixed order), replies for each, valid and invalid
// backlogs, and the example's agents turned into built-in `llm` agents.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/test_util.h"
#include "llm/fake_provider.h"

namespace factory::testing {

// Which step a request to the fake is: "spec", "architecture", "qa", "backlog", "repair", or
// "other". Read from the system prompt's first line (the shipped templates' role sentences) and,
// for repairs, the last user message.
inline std::string StepOf(const llm::fake::RecordedRequest& request) {
  const nlohmann::json body = request.Json();
  if (!body.is_object() || !body.contains("messages") || body["messages"].empty()) return "other";
  const auto& messages = body["messages"];
  const std::string last = messages.back().value("content", "");
  if (last.find("rejected by the validator") != std::string::npos) return "repair";
  const std::string system = messages.front().value("content", "");
  if (system.find("You are the specification planner") != std::string::npos) return "spec";
  if (system.find("You are the architecture planner") != std::string::npos) return "architecture";
  if (system.find("You are the QA planner") != std::string::npos) return "qa";
  if (system.find("You are the backlog planner") != std::string::npos) return "backlog";
  return "other";
}

// A planner's document, with a marker the tests look for downstream.
inline std::string PlannerDocument(const std::string& step) {
  return "# " + step + " document\n\nPLANNING-MARKER-" + step +
         ": this text must reach the backlog agent and never a build attempt.\n";
}

// Two tasks for the `builder` agent; `farewell` depends on `greeting`. Both may change out/.
inline std::string ValidBacklogJson() {
  return R"({"tasks": [
  {"id": "greeting", "title": "Write the greeting",
   "description": "Create out/greeting.txt saying hello.",
   "acceptance": ["out/greeting.txt exists"], "type": "code", "capabilities": ["code"],
   "scope": ["out/**"]},
  {"id": "farewell", "title": "Write the farewell",
   "description": "Create out/farewell.txt saying goodbye.",
   "acceptance": ["out/farewell.txt exists"], "depends_on": ["greeting"],
   "capabilities": ["code"], "priority": 1, "scope": ["out/**"]}
]})";
}

// Invalid: a dependency on a task that does not exist.
inline std::string InvalidBacklogJson() {
  return R"({"tasks": [
  {"id": "greeting", "title": "Write the greeting", "acceptance": ["it exists"],
   "depends_on": ["nowhere"], "capabilities": ["code"], "scope": ["out/**"]}
]})";
}

// The agent file `file` (e.g. the example's coder.md) as a built-in `llm` agent on `model`: same
// name, role and system prompt (the body), the given capabilities.
inline std::string AsLlmAgent(const std::filesystem::path& file, const std::string& capabilities,
                              const std::string& model = "cloud/mid") {
  const std::string text = ReadFile(file);
  const size_t close = text.find("\n---\n", 4);
  const std::string body = close == std::string::npos ? "" : text.substr(close + 5);
  const size_t name_at = text.find("\nname: ");
  const size_t role_at = text.find("\nrole: ");
  auto line = [&](size_t at) { return text.substr(at + 1, text.find('\n', at + 1) - at - 1); };
  return "---\n" + line(name_at) + "\n" + line(role_at) + "\nrunner: llm\nmodel: " + model +
         "\ncapabilities: [" + capabilities + "]\nmax_turns: 4\nconcurrency: 2\n---\n" + body;
}

// Whether a chat request carries a tool result: a tool loop's later turn, not its opening.
inline bool IsToolResultTurn(const nlohmann::json& body) {
  for (const auto& message : body.value("messages", nlohmann::json::array())) {
    if (message.value("role", "") == "tool") return true;
  }
  return false;
}

inline std::string ModelsYaml(const std::string& base_url, const std::string& key_variable) {
  return "providers:\n"
         "  fake: {kind: openai, base_url: \"" +
         base_url + "\", api_key_env: " + key_variable +
         ", timeout_s: 30}\n"
         "models:\n"
         "  plan-model: {provider: fake, model: fake-plan, input_per_mtok: 2.0, "
         "output_per_mtok: 8.0, context_window: 100000, max_output_tokens: 2000}\n"
         "aliases:\n"
         "  cloud/mid: [plan-model]\n"
         "routing:\n"
         "  - {task_type: plan, chain: [cloud/mid]}\n"
         "  - {task_type: \"*\", chain: [cloud/mid]}\n"
         "retry: {max_attempts: 1, base_ms: 10, max_ms: 50}\n"
         "cache: {enabled: false}\n";
}

}  // namespace factory::testing
