#pragma once
// The prompt library: the templates every planning, building, review and rebase step renders.
//
// Shipped defaults live in the repository's top-level prompts/ folder and are embedded into the
// binary at build time (an installed factory needs no data files). A project overrides one by
// writing `<repo>/.factory/prompts/NAME.md`; a file there with a name no default has adds a new
// prompt. README.md files are documentation and never templates.
//
// An override of a default may use only variables the default declares (the factory provides
// nothing else for that step), and may not make required a variable the default has optional
// (the factory does not always provide it): both are load errors naming the override's
// file and line, so `factory prompts` catches them before a run does.

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "prompts/template.h"

namespace factory::prompts {

// Names of the shipped prompts (one per step), for the code that renders them.
inline constexpr char kPlanSpecPrompt[] = "plan-spec";                  // planning: product spec
inline constexpr char kPlanArchitecturePrompt[] = "plan-architecture";  // planning: design
inline constexpr char kPlanQaPrompt[] = "plan-qa";                      // planning: test plan
inline constexpr char kBacklogPrompt[] = "backlog";                     // plans -> task graph JSON
inline constexpr char kBacklogRepairPrompt[] = "backlog-repair";        // invalid JSON + errors
inline constexpr char kImplementPrompt[] = "implement";                 // one build attempt
inline constexpr char kReviewPrompt[] = "review";                       // diff -> verdict JSON
inline constexpr char kRebasePrompt[] = "rebase";                       // failures -> better spec

enum class PromptSource { kBuiltin, kProject };
std::string_view PromptSourceName(PromptSource source);  // "builtin" or "project"

struct PromptEntry {
  PromptTemplate prompt;
  PromptSource source = PromptSource::kBuiltin;
  bool overrides_builtin = false;  // a project file replacing a shipped default
};

// True for prompt names: [a-z0-9][a-z0-9-]*, at most 64 characters.
bool IsValidPromptName(std::string_view name);

// Immutable once loaded; safe to share between threads.
class PromptLibrary {
 public:
  // The shipped defaults only. Never fails on a correct build (the defaults are parsed by the
  // tests); an error here means a broken default was embedded.
  static Result<PromptLibrary> Builtin();

  // The defaults plus the project's overrides from `override_dir` (normally
  // <repo>/.factory/prompts); a missing directory means no overrides. The first broken file
  // fails the load with InvalidArgument naming FILE:LINE.
  static Result<PromptLibrary> Load(const std::filesystem::path& override_dir);

  // Every prompt, by name.
  std::vector<const PromptEntry*> List() const;
  // NotFound naming the known prompts when there is no prompt `name`.
  Result<const PromptEntry*> Find(std::string_view name) const;
  // Find(name) then PromptTemplate::Render(values).
  Result<std::string> Render(std::string_view name,
                             const std::map<std::string, std::string>& values) const;

 private:
  std::map<std::string, PromptEntry, std::less<>> entries_;
};

}  // namespace factory::prompts
