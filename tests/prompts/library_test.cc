// The prompt library: the shipped defaults (embedded at build time) and project overrides.

#include "prompts/library.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/test_util.h"
#include "plan/backlog.h"

namespace factory::prompts {
namespace {

using testing::TempDir;
using testing::WriteFile;

const char* const kShippedPrompts[] = {
    kPlanSpecPrompt,      kPlanArchitecturePrompt, kPlanQaPrompt, kBacklogPrompt,
    kBacklogRepairPrompt, kImplementPrompt,        kReviewPrompt, kRebasePrompt};

PromptLibrary MustLoad(const std::filesystem::path& dir) {
  auto library = PromptLibrary::Load(dir);
  EXPECT_TRUE(library.has_value()) << library.error().message;
  if (!library) return *PromptLibrary::Builtin();
  return std::move(*library);
}

std::string LoadError(const std::filesystem::path& dir) {
  auto library = PromptLibrary::Load(dir);
  EXPECT_FALSE(library.has_value());
  return library ? "" : library.error().message;
}

// A distinct, recognisable value per variable.
std::map<std::string, std::string> ValuesFor(const PromptTemplate& prompt, bool with_optional) {
  std::map<std::string, std::string> values;
  for (const auto& variable : prompt.variables()) {
    if (variable.required || with_optional)
      values[variable.name] = "<value of " + variable.name + ">";
  }
  return values;
}

// The JSON example of a prompt: from the line starting with `first` to the next line ending
// with `last_suffix`.
nlohmann::json JsonExample(std::string_view body, const std::string& first,
                           const std::string& last_suffix) {
  const size_t start = body.find("\n" + first);
  EXPECT_NE(start, std::string_view::npos) << "no example starting with " << first;
  if (start == std::string_view::npos) return nullptr;
  const size_t end = body.find(last_suffix + "\n", start);
  EXPECT_NE(end, std::string_view::npos);
  return nlohmann::json::parse(body.substr(start + 1, end + last_suffix.size() - start - 1));
}

TEST(PromptLibraryTest, EveryStepHasAShippedDefaultAndNothingElseIsShipped) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value()) << library.error().message;
  std::set<std::string> names;
  for (const PromptEntry* entry : library->List()) {
    names.insert(entry->prompt.name());
    EXPECT_EQ(entry->source, PromptSource::kBuiltin);
    EXPECT_FALSE(entry->overrides_builtin);
    EXPECT_FALSE(entry->prompt.description().empty()) << entry->prompt.name();
    EXPECT_EQ(entry->prompt.file(), "prompts/" + entry->prompt.name() + ".md");
  }
  EXPECT_EQ(names, std::set<std::string>(std::begin(kShippedPrompts), std::end(kShippedPrompts)));
}

TEST(PromptLibraryTest, TheEmbeddedTextIsTheRepositoryFile) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value());
  for (const PromptEntry* entry : library->List()) {
    const std::string on_disk =
        testing::ReadFile(std::filesystem::path(FACTORY_SOURCE_DIR) / entry->prompt.file());
    EXPECT_EQ(entry->prompt.text(), on_disk) << entry->prompt.file();
  }
}

TEST(PromptLibraryTest, EveryDefaultUsesEachVariableAndRendersCleanly) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value());
  for (const PromptEntry* entry : library->List()) {
    const PromptTemplate& prompt = entry->prompt;
    for (bool with_optional : {false, true}) {
      const auto values = ValuesFor(prompt, with_optional);
      auto rendered = prompt.Render(values);
      ASSERT_TRUE(rendered.has_value()) << rendered.error().message;
      // Every provided variable shows up: no declared variable is dead.
      for (const auto& [name, value] : values) {
        EXPECT_NE(rendered->find(value), std::string::npos) << prompt.name() << " ignores " << name;
      }
      EXPECT_EQ(rendered->find("{{"), std::string::npos) << prompt.name();
      // Sections leave no runs of blank lines behind, whichever variables are present.
      EXPECT_EQ(rendered->find("\n\n\n"), std::string::npos)
          << prompt.name() << (with_optional ? " (all variables)" : " (required only)") << ":\n"
          << *rendered;
    }
    // A missing required variable is named.
    for (const auto& variable : prompt.variables()) {
      if (!variable.required) continue;
      auto values = ValuesFor(prompt, true);
      values.erase(variable.name);
      auto rendered = prompt.Render(values);
      ASSERT_FALSE(rendered.has_value());
      EXPECT_NE(rendered.error().message.find(variable.name), std::string::npos);
    }
  }
}

TEST(PromptLibraryTest, TheBacklogPromptsExampleIsAValidBacklog) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value());
  const PromptEntry* backlog = *library->Find(kBacklogPrompt);
  const nlohmann::json example = JsonExample(backlog->prompt.body(), "{\"tasks\"", "\n]}");
  ASSERT_TRUE(example.is_object());
  auto parsed = ParseBacklogJson(example.dump(), "backlog prompt example");
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  EXPECT_TRUE(parsed->warnings.empty()) << FormatDiagnostics(parsed->warnings);
  // Every field of the schema is shown, and explained.
  const auto& task = example["tasks"][0];
  for (const char* field : {"id", "title", "description", "acceptance", "depends_on", "type",
                            "capabilities", "agent", "priority", "scope"}) {
    EXPECT_TRUE(task.contains(field)) << field;
    EXPECT_NE(backlog->prompt.body().find(std::string("- `") + field + "`"), std::string::npos)
        << field;
  }
}

TEST(PromptLibraryTest, TheReviewAndRebasePromptsAskForTheirJsonShapes) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value());
  const nlohmann::json verdict =
      JsonExample((*library->Find(kReviewPrompt))->prompt.body(), "{\"verdict\"", "]}");
  ASSERT_TRUE(verdict.is_object());
  EXPECT_TRUE(verdict["verdict"] == "pass" || verdict["verdict"] == "fail");
  EXPECT_TRUE(verdict["reasons"].is_array());
  const nlohmann::json rebase =
      JsonExample((*library->Find(kRebasePrompt))->prompt.body(), "{\"spec\"", "]}");
  ASSERT_TRUE(rebase.is_object());
  EXPECT_TRUE(rebase["spec"].is_string());
  EXPECT_TRUE(rebase["changes"].is_array());
}

TEST(PromptLibraryTest, TheImplementationPromptCarriesFeedbackOnlyWhenThereIsSome) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value());
  std::map<std::string, std::string> values{{"TASK_ID", "parser"},
                                            {"TASK_TITLE", "Parse input"},
                                            {"TASK_SPEC", "Write the parser."},
                                            {"ACCEPTANCE", "- parses x\n- rejects y"}};
  auto first = library->Render(kImplementPrompt, values);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_EQ(first->find("previous attempt"), std::string::npos) << *first;
  EXPECT_NE(first->find("- rejects y"), std::string::npos);
  values["FEEDBACK"] = "tests failed: expected 3, got 4";
  auto second = library->Render(kImplementPrompt, values);
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(second->find("previous attempt"), std::string::npos);
  EXPECT_NE(second->find("expected 3, got 4"), std::string::npos);
}

TEST(PromptLibraryTest, AMissingOverrideDirectoryMeansTheDefaults) {
  TempDir dir;
  PromptLibrary library = MustLoad(dir.path() / "no-such-dir");
  EXPECT_EQ(library.List().size(), std::size(kShippedPrompts));
}

TEST(PromptLibraryTest, AProjectOverrideTakesPrecedenceAndNewPromptsAreAdded) {
  TempDir dir;
  WriteFile(dir.path() / "implement.md",
            "---\ndescription: terse\nrequired:\n  TASK_TITLE: t\noptional:\n  FEEDBACK: f\n---\n"
            "Do {{TASK_TITLE}}.{{#FEEDBACK}} Fix: {{FEEDBACK}}{{/FEEDBACK}}\n");
  WriteFile(dir.path() / "changelog.md",
            "---\ndescription: our own step\nrequired:\n  DIFF: d\n---\nSummarise {{DIFF}}\n");
  WriteFile(dir.path() / "README.md", "not a template {{");
  WriteFile(dir.path() / "notes.txt", "ignored");
  PromptLibrary library = MustLoad(dir.path());
  EXPECT_EQ(library.List().size(), std::size(kShippedPrompts) + 1);

  const PromptEntry* implement = *library.Find(kImplementPrompt);
  EXPECT_EQ(implement->source, PromptSource::kProject);
  EXPECT_TRUE(implement->overrides_builtin);
  EXPECT_EQ(implement->prompt.file(), (dir.path() / "implement.md").string());
  // The caller passes everything it has; the override uses what it declares.
  auto rendered = library.Render(kImplementPrompt, {{"TASK_ID", "a"},
                                                    {"TASK_TITLE", "the parser"},
                                                    {"TASK_SPEC", "spec"},
                                                    {"ACCEPTANCE", ""},
                                                    {"FEEDBACK", "it crashed"}});
  ASSERT_TRUE(rendered.has_value()) << rendered.error().message;
  EXPECT_EQ(*rendered, "Do the parser. Fix: it crashed\n");

  const PromptEntry* custom = *library.Find("changelog");
  EXPECT_EQ(custom->source, PromptSource::kProject);
  EXPECT_FALSE(custom->overrides_builtin);
  // The other defaults are untouched.
  EXPECT_EQ((*library.Find(kReviewPrompt))->source, PromptSource::kBuiltin);
}

TEST(PromptLibraryTest, AnOverrideMayOnlyUseWhatTheFactoryProvides) {
  TempDir dir;
  WriteFile(
      dir.path() / "review.md",
      "---\ndescription: d\nrequired:\n  DIFF: d\n  TICKET_URL: u\n---\n{{DIFF}} {{TICKET_URL}}\n");
  std::string message = LoadError(dir.path());
  EXPECT_NE(message.find((dir.path() / "review.md").string() + ":5:"), std::string::npos)
      << message;
  EXPECT_NE(message.find("TICKET_URL is not provided for prompt review"), std::string::npos)
      << message;
  EXPECT_NE(message.find("DIFF"), std::string::npos) << message;  // lists what is provided

  // An optional variable of the default cannot become required.
  WriteFile(dir.path() / "review.md",
            "---\ndescription: d\nrequired:\n  DIFF: d\n  GATE_RESULTS: "
            "g\n---\n{{DIFF}}{{GATE_RESULTS}}\n");
  message = LoadError(dir.path());
  EXPECT_NE(message.find("review.md:5: variable GATE_RESULTS is optional"), std::string::npos)
      << message;
}

TEST(PromptLibraryTest, BrokenOverrideFilesAreErrorsNamingThem) {
  {
    TempDir dir;
    WriteFile(dir.path() / "rebase.md", "---\ndescription: d\n---\n\nuses {{UNDECLARED}}\n");
    const std::string message = LoadError(dir.path());
    EXPECT_NE(message.find((dir.path() / "rebase.md").string() + ":5: variable UNDECLARED"),
              std::string::npos)
        << message;
  }
  {
    TempDir dir;
    WriteFile(dir.path() / "Bad_Name.md", "---\ndescription: d\n---\n");
    const std::string message = LoadError(dir.path());
    EXPECT_NE(message.find("Bad_Name.md: invalid prompt name 'Bad_Name'"), std::string::npos)
        << message;
  }
  {
    TempDir dir;
    WriteFile(dir.path() / "file", "x");
    auto library = PromptLibrary::Load(dir.path() / "file");
    ASSERT_FALSE(library.has_value());
    EXPECT_NE(library.error().message.find("is not a directory"), std::string::npos);
  }
}

TEST(PromptLibraryTest, AnUnknownPromptIsNotFoundAndListsTheKnownOnes) {
  auto library = PromptLibrary::Builtin();
  ASSERT_TRUE(library.has_value());
  auto missing = library->Find("implementation");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("implement, plan-architecture"), std::string::npos)
      << missing.error().message;
  EXPECT_FALSE(library->Render("nope", {}).has_value());
}

TEST(PromptLibraryTest, PromptNames) {
  EXPECT_TRUE(IsValidPromptName("plan-spec"));
  EXPECT_TRUE(IsValidPromptName("v2"));
  EXPECT_FALSE(IsValidPromptName(""));
  EXPECT_FALSE(IsValidPromptName("-x"));
  EXPECT_FALSE(IsValidPromptName("Plan"));
  EXPECT_FALSE(IsValidPromptName("a_b"));
  EXPECT_FALSE(IsValidPromptName("../x"));
}

}  // namespace
}  // namespace factory::prompts
