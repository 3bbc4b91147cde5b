#include "orchestrator/review.h"

#include <map>
#include <utility>

#include "orchestrator/agent_answer.h"
#include "orchestrator/task_prompts.h"
#include "toolloop/workspace_fs.h"

namespace factory {

using json = nlohmann::json;

std::string CheckReviewAnswer(const json& answer) {
  auto verdict = answer.find("verdict");
  if (verdict == answer.end()) return "the field \"verdict\" is missing";
  if (!verdict->is_string() || (*verdict != "pass" && *verdict != "fail")) {
    return "\"verdict\" must be \"pass\" or \"fail\", not " + verdict->dump();
  }
  auto reasons = answer.find("reasons");
  if (reasons == answer.end()) return "the field \"reasons\" is missing";
  if (!reasons->is_array()) return "\"reasons\" must be an array of strings";
  bool any = false;
  for (size_t index = 0; index < reasons->size(); ++index) {
    const json& reason = (*reasons)[index];
    if (!reason.is_string()) return "\"reasons[" + std::to_string(index) + "]\" must be a string";
    if (reason.get_ref<const std::string&>().find_first_not_of(" \t\r\n") != std::string::npos) {
      any = true;
    }
  }
  if (*verdict == "fail" && !any) {
    return "a \"fail\" verdict needs at least one reason saying what to change";
  }
  return "";
}

std::string CapDiff(const std::string& diff, size_t max_bytes) {
  if (diff.size() <= max_bytes) return diff;
  size_t cut = diff.rfind('\n', max_bytes);
  if (cut == std::string::npos || cut < max_bytes / 2) cut = max_bytes;
  std::string capped = toolloop::SanitizeUtf8(std::string_view(diff).substr(0, cut));
  if (!capped.ends_with('\n')) capped += '\n';
  capped += "\n[diff truncated: " + std::to_string(diff.size() - cut) + " of " +
            std::to_string(diff.size()) +
            " bytes not shown; the diff summary lists every changed file]\n";
  return capped;
}

Result<std::string> RenderReviewPrompt(const prompts::PromptLibrary& library,
                                       const ReviewInput& input) {
  std::map<std::string, std::string> values = {
      {"TASK_ID", input.task_key},
      {"TASK_TITLE", input.title},
      {"TASK_SPEC", input.spec},
      {"ACCEPTANCE", AcceptanceBullets(input.acceptance)},
      {"DIFF", input.diff.empty() ? std::string("(empty diff)") : input.diff},
  };
  if (!input.diff_stat.empty()) values["DIFF_STAT"] = input.diff_stat;
  if (!input.gate_results.empty()) values["GATE_RESULTS"] = input.gate_results;
  return RenderTaskPrompt(library, prompts::kReviewPrompt, values);
}

Result<ReviewVerdict> RequestReview(llm::Router& router, const prompts::PromptLibrary& library,
                                    const GateConfig& gate, const ReviewInput& input,
                                    const llm::CallContext& context, double* cost_usd) {
  if (cost_usd != nullptr) *cost_usd = 0;
  FACTORY_ASSIGN_OR_RETURN(std::string prompt, RenderReviewPrompt(library, input));
  FACTORY_ASSIGN_OR_RETURN(
      JsonAnswer answer,
      AskForJson(router, {gate.model}, std::move(prompt), context, CheckReviewAnswer,
                 R"({"verdict": "pass" or "fail", "reasons": ["..."]})", cost_usd));
  ReviewVerdict verdict;
  verdict.passed = answer.value["verdict"] == "pass";
  for (const auto& reason : answer.value["reasons"]) {
    const std::string& text = reason.get_ref<const std::string&>();
    if (text.find_first_not_of(" \t\r\n") != std::string::npos) verdict.reasons.push_back(text);
  }
  verdict.model = answer.model;
  verdict.cost_usd = answer.cost_usd;
  verdict.calls = answer.calls;
  return verdict;
}

std::string ReviewFeedback(const std::string& gate, const std::vector<std::string>& reasons) {
  std::string feedback =
      "The reviewer (review gate '" + gate + "') rejected the change. Fix each of these points:\n";
  for (const auto& reason : reasons) feedback += "- " + reason + "\n";
  return feedback;
}

}  // namespace factory
