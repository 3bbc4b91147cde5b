#pragma once
// Structured answers from single-call agents of the pipeline (the reviewer, the rebase agent):
// one routed chat call whose answer must be a JSON object of a given shape. An answer that is
// not gets sent back once, in the same conversation, with what is wrong; a second invalid
// answer is an error.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "llm/router.h"

namespace factory {

// Parses an agent's answer as one JSON object. Surrounding whitespace and one Markdown code
// fence (```json ... ``` or ``` ... ```) around the object are tolerated; anything else is
// InvalidArgument saying what was found instead.
Result<nlohmann::json> ParseJsonObjectAnswer(std::string_view text);

// "" when `answer` has the expected shape, else what is wrong (sent back to the model).
using AnswerCheck = std::function<std::string(const nlohmann::json& answer)>;

struct JsonAnswer {
  nlohmann::json value;  // passed the check
  std::string model;     // the model that gave it (ChatResponse::model_name)
  double cost_usd = 0;   // every call made, the invalid answer's included
  int calls = 0;
  std::string first_problem;  // why the first answer was refused ("" when it was valid)
};

// Asks `targets` with `prompt` as the user message (context attributes the calls in the
// ledger). Errors: the router's (kResourceExhausted for budgets, kUnavailable...), wrapped with
// "the <agent> agent"; kAborted when the answer is still invalid after one repair, naming the
// problem. `cost_usd`, when not null, receives the cost of the calls made even on failure.
Result<JsonAnswer> AskForJson(llm::Router& router, const std::vector<std::string>& targets,
                              std::string prompt, const llm::CallContext& context,
                              const AnswerCheck& check, std::string_view expected_shape,
                              double* cost_usd = nullptr);

}  // namespace factory
