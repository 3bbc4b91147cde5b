// The JSON answers of the reviewer and the rebase agent: ParseJsonObjectAnswer, then the checks
// RequestReview and RequestRebase make (CheckReviewAnswer, CheckRebaseAnswer) and what they read
// from an answer that passed. Also CapDiff, which cuts the attempt's diff (the agent's writing)
// for the reviewer's prompt (the first byte chooses the cap).

#include "orchestrator/agent_answer.h"

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "orchestrator/rebase.h"
#include "orchestrator/review.h"
#include "toolloop/workspace_fs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  std::string_view text = factory::fuzz::AsText(data, size);
  const uint8_t cap = factory::fuzz::TakeByte(text);

  const std::string capped = factory::CapDiff(std::string(text), cap);
  if (text.size() <= cap) {
    Require(capped == text, "a diff within the cap is unchanged");
  } else {
    Require(factory::toolloop::IsValidUtf8(capped), "a cut diff is valid UTF-8");
  }

  auto parsed = factory::ParseJsonObjectAnswer(text);
  if (!parsed) {
    Require(!parsed.error().message.empty(), "a refused answer says why");
    Require(factory::toolloop::IsValidUtf8(parsed.error().message),
            "what goes back to the model is valid UTF-8");
    return 0;
  }
  Require(parsed->is_object(), "an answer is an object");
  const nlohmann::json& answer = *parsed;

  const std::string review_problem = factory::CheckReviewAnswer(answer);
  (void)factory::toolloop::IsValidUtf8(review_problem);
  if (review_problem.empty()) {  // RequestReview's reading of a valid verdict
    const bool passed = answer["verdict"] == "pass";
    size_t reasons = 0;
    for (const auto& reason : answer["reasons"]) {
      const std::string& reason_text = reason.get_ref<const std::string&>();
      if (reason_text.find_first_not_of(" \t\r\n") != std::string::npos) ++reasons;
    }
    Require(passed || reasons > 0, "a fail verdict has a reason");
  }

  const std::string rebase_problem = factory::CheckRebaseAnswer(answer);
  if (rebase_problem.empty()) {  // RequestRebase's reading of a valid answer
    const std::string spec = answer["spec"].get<std::string>();
    Require(factory::toolloop::IsValidUtf8(spec), "an accepted spec is valid UTF-8");
    std::vector<std::string> changes;
    for (const auto& change : answer["changes"]) changes.push_back(change);
  }
  return 0;
}
