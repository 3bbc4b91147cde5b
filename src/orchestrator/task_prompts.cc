#include "orchestrator/task_prompts.h"

#include <map>

namespace factory {

std::string AcceptanceBullets(const std::vector<std::string>& acceptance) {
  std::string bullets;
  for (const auto& criterion : acceptance) bullets += "- " + criterion + "\n";
  return bullets;
}

Result<std::string> RenderTaskPrompt(const prompts::PromptLibrary& library, const char* name,
                                     const std::map<std::string, std::string>& values) {
  FACTORY_ASSIGN_OR_RETURN(const prompts::PromptEntry* entry, library.Find(name));
  auto rendered = entry->prompt.Render(values);
  if (!rendered) {
    // Render errors name the variable's declaration line; say which file the prompt came from
    // when the message does not already.
    const std::string& file = entry->prompt.file();
    if (rendered.error().message.find(file) != std::string::npos) return rendered;
    return InvalidArgument(file + ": " + rendered.error().message);
  }
  return rendered;
}

Result<std::string> RenderImplementPrompt(const prompts::PromptLibrary& library,
                                          const ImplementPromptInput& input) {
  std::map<std::string, std::string> values = {
      {"TASK_ID", input.task_key},
      {"TASK_TITLE", input.title},
      {"TASK_SPEC", input.spec},
      {"ACCEPTANCE", AcceptanceBullets(input.acceptance)},
      {"ATTEMPT", std::to_string(input.attempt)},
      {"MAX_ATTEMPTS", std::to_string(input.max_attempts)},
  };
  if (!input.feedback.empty()) values["FEEDBACK"] = input.feedback;
  if (!input.relevant_files.empty()) values["RELEVANT_FILES"] = input.relevant_files;
  if (!input.scope.empty()) values["SCOPE"] = AcceptanceBullets(input.scope);
  return RenderTaskPrompt(library, prompts::kImplementPrompt, values);
}

}  // namespace factory
