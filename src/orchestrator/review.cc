#include "orchestrator/review.h"

#include <chrono>
#include <map>
#include <utility>

#include "core/clock.h"
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

namespace {

std::string FirstLineOf(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

std::string TailOf(const std::string& text, size_t bytes) {
  if (text.size() <= bytes) return text;
  return "..." + text.substr(text.size() - bytes);
}

class ReviewGate final : public Gate {
 public:
  ReviewGate(GateConfig config, llm::Router* router, const prompts::PromptLibrary* library,
             std::string no_prompts_reason)
      : config_(std::move(config)),
        router_(router),
        library_(library),
        no_prompts_reason_(std::move(no_prompts_reason)) {}

  const std::string& name() const override { return config_.name; }
  std::string_view kind() const override { return GateKindName(GateKind::kReview); }

  Result<GateReport> Run(const GateContext& context) override {
    GateReport report;
    report.name = name();
    report.kind = std::string(kind());
    report.model = config_.model;
    if (router_ == nullptr || library_ == nullptr) {
      report.verdict = GateVerdict::kNoVerdict;
      report.retryable = false;
      report.error = router_ == nullptr ? "review gate '" + name() +
                                              "' needs the model router (.factory/models.yaml)"
                                        : "no prompt templates: " + no_prompts_reason_;
      report.log = report.error;
      return report;
    }
    if (context.subject == nullptr) return InvalidArgument("gate '" + name() + "': no subject");
    FACTORY_ASSIGN_OR_RETURN(AttemptDiff diff, context.subject->Diff());
    std::vector<GateResult> commands;
    for (const GateReport& earlier : context.earlier) {
      if (earlier.command) commands.push_back(*earlier.command);
    }
    ReviewInput input{.task_key = context.task_key,
                      .title = context.title,
                      .spec = context.spec,
                      .acceptance = context.acceptance,
                      .diff = CapDiff(diff.diff),
                      .diff_stat = diff.stat,
                      .gate_results = DescribeGateResults(commands)};
    llm::CallContext call;
    call.run_id = context.run_id;
    call.task_id = context.task_id;
    call.attempt_id = context.attempt_id;
    call.agent = name();
    call.purpose = kReviewPurpose;
    call.deadline_ms =
        SystemClock().NowMillis() +
        std::chrono::duration_cast<std::chrono::milliseconds>(config_.timeout).count();
    auto verdict = RequestReview(*router_, *library_, config_, input, call, &report.cost_usd);
    if (!verdict) {
      // Not the builder's fault: retried without feedback, and no rebase counts it.
      report.verdict = GateVerdict::kNoVerdict;
      report.log = verdict.error().message;
      report.error = "review gate '" + name() + "' gave no verdict: " + verdict.error().message;
      return report;
    }
    report.model = verdict->model;
    report.reasons = verdict->reasons;
    report.log.clear();
    for (const auto& reason : verdict->reasons) report.log += reason + "\n";
    if (verdict->passed) {
      report.verdict = GateVerdict::kPass;
      return report;
    }
    report.verdict = GateVerdict::kFail;
    report.error = "review gate '" + name() + "' failed";
    if (!verdict->reasons.empty()) report.error += ": " + FirstLineOf(verdict->reasons.front());
    report.feedback = ReviewFeedback(name(), verdict->reasons);
    return report;
  }

 private:
  const GateConfig config_;
  llm::Router* const router_;
  const prompts::PromptLibrary* const library_;
  const std::string no_prompts_reason_;
};

}  // namespace

std::string DescribeGateResults(const std::vector<GateResult>& results) {
  std::string text;
  for (const auto& gate : results) {
    text += "- " + gate.name + " (`" + gate.command + "`): " + (gate.passed ? "passed" : "failed") +
            ", exit " + std::to_string(gate.exit_code) + ", " + std::to_string(gate.duration_ms) +
            " ms\n";
    std::string tail = TailOf(gate.output_tail, 1024);
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    if (!tail.empty()) text += "  Output (tail):\n  ```\n" + tail + "\n  ```\n";
  }
  return text;
}

void RegisterReviewGates(GateRegistry& registry, llm::Router* router,
                         const prompts::PromptLibrary* library, std::string no_prompts_reason) {
  (void)registry.Register(
      std::string(GateKindName(GateKind::kReview)),
      [router, library, reason = std::move(no_prompts_reason)](
          const GateConfig& config) -> Result<std::unique_ptr<Gate>> {
        return std::unique_ptr<Gate>(std::make_unique<ReviewGate>(config, router, library, reason));
      },
      /*replace=*/true);
}

}  // namespace factory
