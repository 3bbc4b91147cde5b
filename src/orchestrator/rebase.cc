#include "orchestrator/rebase.h"

#include <algorithm>
#include <map>
#include <utility>

#include "events/event_kind.h"
#include "orchestrator/agent_answer.h"
#include "orchestrator/observer.h"
#include "orchestrator/task_prompts.h"
#include "stats/stats.h"
#include "store/details.h"
#include "toolloop/workspace_fs.h"

namespace factory {

using json = nlohmann::json;

namespace {

constexpr size_t kFeedbackPerReport = 8 * 1024;  // of each failed attempt, for the rebase agent
constexpr int kEventPage = 1000;

json ParseObject(const std::string& text) {
  json parsed = json::parse(text.empty() ? "{}" : text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return json::object();
  return parsed;
}

// The end of a long feedback (the useful part of an output tail), on a UTF-8 boundary.
std::string FeedbackTail(const std::string& feedback) {
  if (feedback.size() <= kFeedbackPerReport) return feedback;
  return "[...]" + toolloop::SanitizeUtf8(
                       std::string_view(feedback).substr(feedback.size() - kFeedbackPerReport));
}

std::string FailureReports(const std::vector<FailedAttempt>& failures) {
  std::string reports;
  for (const auto& failure : failures) {
    reports += "### Attempt " + std::to_string(failure.number) + " (failed in " +
               (failure.phase.empty() ? std::string("an unknown phase") : failure.phase) + ")\n\n";
    reports += failure.feedback.empty() ? std::string("(no feedback recorded)")
                                        : FeedbackTail(failure.feedback);
    if (!reports.ends_with('\n')) reports += '\n';
    reports += '\n';
  }
  return reports;
}

}  // namespace

bool IsGateFailurePhase(std::string_view phase) {
  return phase == kPhaseGates || phase == kPhaseReview;
}

std::string TaskHistory::Feedback() const {
  return failures.empty() ? std::string() : failures.back().feedback;
}

Result<TaskHistory> ReadTaskHistory(Queue& queue, const Task& task, int64_t current_epoch) {
  TaskHistory history;
  history.spec = task.spec;
  EventQuery query{.after_seq = 0, .run_id = task.run_id, .task_id = task.id, .limit = kEventPage};
  while (true) {
    FACTORY_ASSIGN_OR_RETURN(std::vector<Event> page, queue.ListEvents(query));
    for (const Event& event : page) {
      if (events::KindOf(event) != events::EventKind::kTaskRebased) continue;
      const json payload = ParseObject(event.payload_json);
      auto spec = payload.find("spec");
      if (spec == payload.end() || !spec->is_string()) continue;
      ++history.rebases;
      history.spec = spec->get<std::string>();
      history.spec_version = payload.value("spec_version", history.spec_version + 1);
      history.rebased_at_epoch = payload.value("epoch", int64_t{0});
    }
    if (static_cast<int>(page.size()) < kEventPage) break;
    query.after_seq = page.back().seq;
  }

  FACTORY_ASSIGN_OR_RETURN(std::vector<Attempt> attempts, queue.ListAttempts(task.id));
  std::sort(attempts.begin(), attempts.end(),
            [](const Attempt& a, const Attempt& b) { return a.epoch < b.epoch; });
  for (const Attempt& attempt : attempts) {
    if (attempt.epoch >= current_epoch || attempt.status != AttemptStatus::kFailed) continue;
    if (history.rebases > 0 && attempt.epoch < history.rebased_at_epoch) continue;
    auto details = ParseAttemptDetails(attempt.details_json);
    if (!details) return std::unexpected(details.error().Wrap("attempt " + attempt.id));
    FailedAttempt failure;
    failure.number = attempt.number;
    failure.epoch = attempt.epoch;
    failure.phase = details->failed_phase;
    failure.feedback = details->feedback.value_or(attempt.error);
    if (IsGateFailurePhase(failure.phase)) ++history.gate_failures;
    history.failures.push_back(std::move(failure));
  }
  return history;
}

std::string CheckRebaseAnswer(const json& answer) {
  auto spec = answer.find("spec");
  if (spec == answer.end()) return "the field \"spec\" is missing";
  if (!spec->is_string()) return "\"spec\" must be a string (the complete new spec)";
  const std::string& text = spec->get_ref<const std::string&>();
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return "\"spec\" is empty";
  if (!toolloop::IsValidUtf8(text)) return "\"spec\" is not valid UTF-8";
  if (text.size() > kMaxSpecBytes) {
    return "\"spec\" has " + std::to_string(text.size()) + " bytes; at most " +
           std::to_string(kMaxSpecBytes) + " are allowed";
  }
  auto changes = answer.find("changes");
  if (changes == answer.end()) return "the field \"changes\" is missing";
  if (!changes->is_array()) return "\"changes\" must be an array of strings";
  for (size_t index = 0; index < changes->size(); ++index) {
    if (!(*changes)[index].is_string()) {
      return "\"changes[" + std::to_string(index) + "]\" must be a string";
    }
  }
  return "";
}

Result<std::string> RenderRebasePrompt(const prompts::PromptLibrary& library,
                                       const RebaseInput& input) {
  std::map<std::string, std::string> values = {
      {"TASK_ID", input.task_key},
      {"TASK_TITLE", input.title},
      {"ORIGINAL_SPEC", input.history.spec},
      {"ACCEPTANCE", AcceptanceBullets(input.acceptance)},
      {"FAILURE_REPORTS", FailureReports(input.history.failures)},
      {"SPEC_VERSION", std::to_string(input.history.spec_version)},
  };
  if (!input.relevant_files.empty()) values["RELEVANT_FILES"] = input.relevant_files;
  return RenderTaskPrompt(library, prompts::kRebasePrompt, values);
}

Result<RebaseResult> RequestRebase(llm::Router& router, const prompts::PromptLibrary& library,
                                   const std::vector<std::string>& targets,
                                   const RebaseInput& input, const llm::CallContext& context,
                                   double* cost_usd) {
  if (cost_usd != nullptr) *cost_usd = 0;
  FACTORY_ASSIGN_OR_RETURN(std::string prompt, RenderRebasePrompt(library, input));
  FACTORY_ASSIGN_OR_RETURN(
      JsonAnswer answer,
      AskForJson(router, targets, std::move(prompt), context, CheckRebaseAnswer,
                 R"({"spec": "the complete new spec", "changes": ["what changed and why"]})",
                 cost_usd));
  RebaseResult result;
  result.spec_version = input.history.spec_version + 1;
  result.spec = answer.value["spec"].get<std::string>();
  for (const auto& change : answer.value["changes"]) result.changes.push_back(change);
  result.model = answer.model;
  result.cost_usd = answer.cost_usd;
  result.calls = answer.calls;
  return result;
}

}  // namespace factory
