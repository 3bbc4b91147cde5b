#include "orchestrator/agent_answer.h"

#include <utility>

#include "toolloop/workspace_fs.h"

namespace factory {

using json = nlohmann::json;

namespace {

std::string_view TrimWhitespace(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const size_t last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

// The inside of one ``` fence around the whole text, or the text itself.
std::string_view Unfenced(std::string_view text) {
  text = TrimWhitespace(text);
  if (!text.starts_with("```") || text.size() < 6 || !text.ends_with("```")) return text;
  const size_t newline = text.find('\n');
  if (newline == std::string_view::npos) return text;
  // The opening line may name the language (```json); the body ends at the closing fence.
  return TrimWhitespace(text.substr(newline + 1, text.size() - 3 - (newline + 1)));
}

std::string Preview(std::string_view text) {
  std::string preview = toolloop::SanitizeUtf8(text.substr(0, 80));
  for (char& c : preview) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text.size() > 80 ? preview + "..." : preview;
}

}  // namespace

Result<json> ParseJsonObjectAnswer(std::string_view text) {
  const std::string_view body = Unfenced(text);
  if (body.empty()) return InvalidArgument("the answer is empty; expected one JSON object");
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return InvalidArgument("the answer is not valid JSON (it starts with \"" + Preview(body) +
                           "\"); expected one JSON object and nothing else");
  }
  if (!parsed.is_object()) {
    return InvalidArgument(std::string("the answer is a JSON ") + parsed.type_name() +
                           ", not an object");
  }
  return parsed;
}

Result<JsonAnswer> AskForJson(llm::Router& router, const std::vector<std::string>& targets,
                              std::string prompt, const llm::CallContext& context,
                              const AnswerCheck& check, std::string_view expected_shape,
                              double* cost_usd) {
  JsonAnswer answer;
  llm::ChatRequest request;
  request.messages.push_back(llm::Message::User(toolloop::SanitizeUtf8(prompt)));
  auto report_cost = [&] {
    if (cost_usd != nullptr) *cost_usd = answer.cost_usd;
  };
  std::string problem;
  for (int round = 0; round < 2; ++round) {
    auto response = router.Chat(targets, request, context);
    if (!response) {
      report_cost();
      return std::unexpected(response.error().ToError().Wrap("the " + context.agent + " agent"));
    }
    ++answer.calls;
    answer.cost_usd += response->cost_usd;
    answer.model = response->model_name;
    auto parsed = ParseJsonObjectAnswer(response->text);
    problem = parsed ? check(*parsed) : parsed.error().message;
    if (problem.empty()) {
      answer.value = std::move(*parsed);
      report_cost();
      return answer;
    }
    if (round == 0) answer.first_problem = problem;
    request.messages.push_back(llm::Message::Assistant(toolloop::SanitizeUtf8(response->text)));
    request.messages.push_back(llm::Message::User(
        "Your answer cannot be used: " + problem +
        ". Answer again with one JSON object and nothing else (no Markdown fence, no "
        "commentary), of the form " +
        std::string(expected_shape) + "."));
  }
  report_cost();
  return Aborted("the " + context.agent + " agent's answer was invalid twice: " + problem);
}

}  // namespace factory
