#pragma once
// The review gate: a reviewer model judges an attempt's diff against the task's
// acceptance criteria and answers {"verdict": "pass"|"fail", "reasons": ["..."]}.
//
// The pipeline runs each `kind: review` gate after every command gate has passed (the task
// moves verifying -> review). The reviewer gets the `review` prompt: title, current spec,
// acceptance, the attempt's unified diff against its start commit (capped at kMaxReviewDiff
// with a note saying so), the diff stat and the command gates' results; its calls go through
// the Router as agent = the gate's name, purpose "review", with the run, task and attempt ids.
// An invalid answer is sent back once with the problem; invalid twice, or a failed call, is an
// infrastructure failure of the attempt (retryable, not the builder's fault). `fail` fails the
// attempt in phase "review" with the reasons as the next attempt's feedback. Each verdict is a
// `review.verdict` event {gate, model, verdict, reasons, cost_usd}.
//
// The reviewer must not share a model with the builders: RunEnvironment rejects such a
// configuration when the run is validated.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.h"
#include "llm/router.h"
#include "plan/config.h"
#include "prompts/library.h"
#include "verify/gate.h"

namespace factory {

inline constexpr char kReviewPurpose[] = "review";
inline constexpr size_t kMaxReviewDiff = 64 * 1024;

// "" when `answer` is a valid verdict: "verdict" is "pass" or "fail", "reasons" an array of
// strings, with at least one non-empty reason on "fail"; else what is wrong.
std::string CheckReviewAnswer(const nlohmann::json& answer);

// `diff` cut to at most max_bytes (on a line boundary when possible) with a note saying how much
// was left out; unchanged when it fits.
std::string CapDiff(const std::string& diff, size_t max_bytes = kMaxReviewDiff);

struct ReviewInput {
  std::string task_key;
  std::string title;
  std::string spec;  // the current spec version
  std::vector<std::string> acceptance;
  std::string diff;          // capped already
  std::string diff_stat;     // `git diff --stat`
  std::string gate_results;  // one line per command gate (and a tail of its output)
};

struct ReviewVerdict {
  bool passed = false;
  std::vector<std::string> reasons;
  std::string model;
  double cost_usd = 0;
  int calls = 0;
};

Result<std::string> RenderReviewPrompt(const prompts::PromptLibrary& library,
                                       const ReviewInput& input);

// Asks the gate's reviewer (targets {gate.model}) for its verdict. Errors: the router's,
// kAborted for an answer still invalid after one repair, a render error. `cost_usd` receives
// the cost of the calls made, even on failure.
Result<ReviewVerdict> RequestReview(llm::Router& router, const prompts::PromptLibrary& library,
                                    const GateConfig& gate, const ReviewInput& input,
                                    const llm::CallContext& context, double* cost_usd = nullptr);

// The feedback the next attempt gets from a `fail` verdict.
std::string ReviewFeedback(const std::string& gate, const std::vector<std::string>& reasons);

// The command gates' results as the reviewer reads them: status and the tail of the output.
std::string DescribeGateResults(const std::vector<GateResult>& results);

// Registers the review gate kind: each gate asks its reviewer (RequestReview) about the
// subject's diff, with the command gates' results from GateContext::earlier. Without a router
// or prompts, its gates give no verdict (not retryable), saying why. REQUIRES: router and
// library, when non-null, outlive the registry's gates.
void RegisterReviewGates(GateRegistry& registry, llm::Router* router,
                         const prompts::PromptLibrary* library, std::string no_prompts_reason);

}  // namespace factory
