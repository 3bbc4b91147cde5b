#pragma once
// The prompts the pipeline renders for one task from the project's prompt library
// (prompts/library.h): `implement` for an attempt (rebase.h and review.h render theirs). Every
// value comes from the task itself, its attempts and its files: nothing of the planning
// transcripts ever reaches them.

#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "prompts/library.h"

namespace factory {

// Acceptance criteria as the templates take them: one "- " bullet per line; "" when none.
std::string AcceptanceBullets(const std::vector<std::string>& acceptance);

// What an implementation attempt is told (the `implement` template's variables).
struct ImplementPromptInput {
  std::string task_key;  // TASK_ID
  std::string title;
  std::string spec;  // the current spec version
  std::vector<std::string> acceptance;
  int attempt = 1;
  int max_attempts = 1;
  std::string feedback;            // "" on a first attempt or right after a rebase
  std::string relevant_files;      // "" when the task names none: RELEVANT_FILES stays unset
  std::vector<std::string> scope;  // globs; empty (the whole repository): SCOPE stays unset
};

// Renders `implement`. InvalidArgument naming the template's file when it cannot be rendered.
Result<std::string> RenderImplementPrompt(const prompts::PromptLibrary& library,
                                          const ImplementPromptInput& input);

// Renders prompt `name` with `values`, an error naming the template's file.
Result<std::string> RenderTaskPrompt(const prompts::PromptLibrary& library, const char* name,
                                     const std::map<std::string, std::string>& values);

}  // namespace factory
