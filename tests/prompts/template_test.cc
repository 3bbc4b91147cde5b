// The prompt template language: front matter, placeholders, sections, and errors that name the
// file and line.

#include "prompts/template.h"

#include <gtest/gtest.h>

#include <string>

namespace factory::prompts {
namespace {

// Parses or fails the test.
PromptTemplate MustParse(const std::string& text, const std::string& file = "t.md") {
  auto parsed = PromptTemplate::Parse(text, "t", file);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().message;
  if (!parsed) return *PromptTemplate::Parse("---\ndescription: x\n---\n", "t", file);
  return std::move(*parsed);
}

// The error message of a parse that must fail.
std::string ParseError(const std::string& text, const std::string& file = "t.md") {
  auto parsed = PromptTemplate::Parse(text, "t", file);
  EXPECT_FALSE(parsed.has_value()) << "parsed: " << text;
  if (parsed) return "";
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  return parsed.error().message;
}

constexpr char kTemplate[] =
    "---\n"                               // 1
    "description: Greets someone.\n"      // 2
    "required:\n"                         // 3
    "  NAME: who to greet\n"              // 4
    "  PLACE: where they are\n"           // 5
    "optional:\n"                         // 6
    "  NOTE: an extra note\n"             // 7
    "---\n"                               // 8
    "Hello {{NAME}} in {{ PLACE }}!\n"    // 9
    "{{#NOTE}}Note: {{NOTE}}\n{{/NOTE}}"  // 10-11
    "{{^NOTE}}No note.\n{{/NOTE}}"        // 11-12
    "Bye {{NAME}}.\n";                    // 12

TEST(PromptTemplateTest, ParsesFrontMatterAndDeclaredVariables) {
  PromptTemplate prompt = MustParse(kTemplate, "greet.md");
  EXPECT_EQ(prompt.description(), "Greets someone.");
  EXPECT_EQ(prompt.file(), "greet.md");
  ASSERT_EQ(prompt.variables().size(), 3u);
  EXPECT_EQ(prompt.variables()[0].name, "NAME");
  EXPECT_TRUE(prompt.variables()[0].required);
  EXPECT_EQ(prompt.variables()[0].description, "who to greet");
  EXPECT_EQ(prompt.variables()[0].line, 4);
  EXPECT_EQ(prompt.variables()[1].name, "PLACE");
  EXPECT_EQ(prompt.variables()[1].line, 5);
  EXPECT_EQ(prompt.variables()[2].name, "NOTE");
  EXPECT_FALSE(prompt.variables()[2].required);
  EXPECT_EQ(prompt.variables()[2].line, 7);
  EXPECT_EQ(prompt.body().substr(0, 6), "Hello ");
  EXPECT_EQ(prompt.text(), kTemplate);
}

TEST(PromptTemplateTest, RendersVariablesAndSections) {
  PromptTemplate prompt = MustParse(kTemplate);
  auto with_note = prompt.Render({{"NAME", "Ada"}, {"PLACE", "London"}, {"NOTE", "bring tea"}});
  ASSERT_TRUE(with_note.has_value()) << with_note.error().message;
  EXPECT_EQ(*with_note, "Hello Ada in London!\nNote: bring tea\nBye Ada.\n");
  // An optional variable that is absent, empty or only whitespace renders the inverted section.
  for (const char* note : {"", " \n"}) {
    auto rendered = prompt.Render({{"NAME", "Ada"}, {"PLACE", "London"}, {"NOTE", note}});
    ASSERT_TRUE(rendered.has_value());
    EXPECT_EQ(*rendered, "Hello Ada in London!\nNo note.\nBye Ada.\n");
  }
  auto without = prompt.Render({{"NAME", "Ada"}, {"PLACE", "London"}});
  ASSERT_TRUE(without.has_value());
  EXPECT_EQ(*without, "Hello Ada in London!\nNo note.\nBye Ada.\n");
}

TEST(PromptTemplateTest, ValuesAreVerbatimWithoutTrailingWhitespaceAndNeverRescanned) {
  PromptTemplate prompt = MustParse(kTemplate);
  auto rendered =
      prompt.Render({{"NAME", "{{PLACE}}"}, {"PLACE", "a\n  b\n\n"}, {"UNUSED_EXTRA", "ignored"}});
  ASSERT_TRUE(rendered.has_value()) << rendered.error().message;
  EXPECT_EQ(*rendered, "Hello {{PLACE}} in a\n  b!\nNo note.\nBye {{PLACE}}.\n");
}

TEST(PromptTemplateTest, AMissingRequiredVariableNamesItAndItsDeclaration) {
  PromptTemplate prompt = MustParse(kTemplate, "prompts/greet.md");
  auto rendered = prompt.Render({{"NAME", "Ada"}});
  ASSERT_FALSE(rendered.has_value());
  EXPECT_EQ(rendered.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(rendered.error().message.find("prompts/greet.md:5:"), std::string::npos)
      << rendered.error().message;
  EXPECT_NE(rendered.error().message.find("PLACE"), std::string::npos);
  // An empty value is provided, not missing.
  EXPECT_TRUE(prompt.Render({{"NAME", ""}, {"PLACE", ""}}).has_value());
}

TEST(PromptTemplateTest, AnUndeclaredVariableIsAnErrorAtItsLine) {
  const std::string message = ParseError(
      "---\ndescription: d\nrequired:\n  A: a\n---\nline one {{A}}\nline two {{TASK_SPEC}}\n",
      "p.md");
  EXPECT_NE(message.find("p.md:7:"), std::string::npos) << message;
  EXPECT_NE(message.find("TASK_SPEC"), std::string::npos) << message;
  // Also inside a section, and as a section name.
  EXPECT_NE(ParseError("---\ndescription: d\noptional:\n  A: a\n---\n{{#A}}\n{{B}}{{/A}}\n")
                .find("t.md:7: variable B"),
            std::string::npos);
  EXPECT_NE(ParseError("---\ndescription: d\n---\nx\n{{#B}}y{{/B}}\n").find("t.md:5: variable B"),
            std::string::npos);
}

TEST(PromptTemplateTest, MalformedPlaceholdersAndSectionsNameTheLine) {
  const std::string head = "---\ndescription: d\noptional:\n  A: a\n  B: b\n---\n";  // body: line 7
  struct Case {
    std::string body;
    std::string expected;
  };
  const Case cases[] = {
      {"ok\n{{task}}\n", "t.md:8: invalid placeholder '{{task}}'"},
      {"{{}}\n", "t.md:7: invalid placeholder"},
      {"x\ny {{A\n}}\n", "t.md:8: '{{' is not closed"},
      {"{{#A}}\nnever closed\n", "t.md:7: section A is never closed"},
      {"{{#A}}\n{{/B}}\n", "t.md:8: '{{/B}}' does not close the section A opened on line 7"},
      {"a\n\n{{/A}}\n", "t.md:9: '{{/A}}' closes no open section"},
  };
  for (const Case& c : cases) {
    const std::string message = ParseError(head + c.body);
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "body: " << c.body << "\nmessage: " << message;
  }
}

TEST(PromptTemplateTest, FrontMatterErrorsNameTheLine) {
  struct Case {
    std::string text;
    std::string expected;
  };
  const Case cases[] = {
      {"no front matter\n", "t.md:1: a prompt template must start with a '---' line"},
      {"---\ndescription: d\nbody\n", "t.md:1: the front matter is not closed"},
      {"---\nrequired:\n  A: a\n---\n{{A}}\n", "t.md:2: the front matter needs a description"},
      {"---\ndescription: d\nvariables:\n  A: a\n---\n", "t.md:3: unknown field 'variables'"},
      {"---\ndescription: d\nrequired:\n  A: a\noptional:\n  task_spec: t\n---\n",
       "t.md:6: optional: invalid variable name 'task_spec'"},
      {"---\ndescription: d\nrequired:\n  A: a\noptional:\n  A: again\n---\n",
       "t.md:6: variable A is declared twice (first on line 4)"},
      {"---\ndescription: d\nrequired:\n  A:\n---\n", "t.md:4: required: variable A needs a"},
      {"---\ndescription: d\nrequired: [A, B]\n---\n", "t.md:3: required: must be a mapping"},
      {"---\ndescription: d\nrequired:\n  A: [unclosed\n---\n", "t.md:5: invalid YAML"},
      {"---\n- a list\n---\n", "t.md:2: the front matter must be a YAML mapping"},
      {"---\ndescription: d\n---\nok\nbad \xff byte\n", "t.md:5: invalid UTF-8"},
  };
  for (const Case& c : cases) {
    const std::string message = ParseError(c.text);
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "text: " << c.text << "\nmessage: " << message;
  }
}

TEST(PromptTemplateTest, CrlfFilesParse) {
  PromptTemplate prompt =
      MustParse("---\r\ndescription: d\r\nrequired:\r\n  A: a\r\n---\r\nx {{A}}\r\n");
  auto rendered = prompt.Render({{"A", "1"}});
  ASSERT_TRUE(rendered.has_value());
  EXPECT_EQ(*rendered, "x 1\r\n");
}

TEST(PromptTemplateTest, VariableNames) {
  EXPECT_TRUE(IsValidVariableName("TASK_SPEC"));
  EXPECT_TRUE(IsValidVariableName("A1"));
  EXPECT_FALSE(IsValidVariableName(""));
  EXPECT_FALSE(IsValidVariableName("1A"));
  EXPECT_FALSE(IsValidVariableName("_A"));
  EXPECT_FALSE(IsValidVariableName("task"));
  EXPECT_FALSE(IsValidVariableName("A-B"));
}

}  // namespace
}  // namespace factory::prompts
