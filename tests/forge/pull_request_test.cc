// The text of a run's pull request: what the run did, in a form a reviewer reads.

#include "forge/pull_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/redact.h"

namespace factory::forge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

PullRequestContent Content() {
  PullRequestContent content;
  content.run_id = "r1";
  content.feature = "greetings";
  content.headline = "Greetings";
  content.request = "# Greetings\n\nGreet the user, then say goodbye.\n";
  content.base_branch = "main";
  content.head_branch = "factory/r1";
  TaskReport hello;
  hello.key = "hello";
  hello.title = "Say hello";
  hello.state = "done";
  hello.agent = "builder";
  hello.attempts = 2;
  hello.cost_usd = 0.0125;
  hello.acceptance = {"prints hello", "exits 0"};
  hello.scope = {"src/**"};
  hello.gates = {{"check", "passed"}, {"review", "review approve"}};
  content.tasks.push_back(hello);
  TaskReport bye;
  bye.key = "bye";
  bye.title = "Say goodbye";
  bye.state = "done";
  bye.agent = "builder";
  bye.attempts = 1;
  content.tasks.push_back(bye);
  content.tasks_done = 2;
  content.gates_configured = 2;
  content.final_gates = "passed";
  content.build_cost_usd = 0.25;
  content.planning_cost_usd = 0.5;
  content.audit_head = std::string(64, 'a');
  content.audit_events = 42;
  return content;
}

TEST(PullRequestTextTest, SaysWhatTheRunDid) {
  const std::string body = PullRequestBody(Content());
  EXPECT_EQ(PullRequestTitle(Content()), "Greetings");
  EXPECT_THAT(body, HasSubstr("run `r1`, feature `greetings`, branch `factory/r1` into `main`; "
                              "2 of 2 tasks done"));
  EXPECT_THAT(body, HasSubstr("## Request\n\n# Greetings\n\nGreet the user, then say goodbye.\n"));
  EXPECT_THAT(body, HasSubstr("### `hello` Say hello\n\ndone · agent `builder` · 2 attempts · "
                              "$0.0125 · scope `src/**`\n"));
  EXPECT_THAT(body, HasSubstr("Gates: `check` passed, `review` review approve\n"));
  EXPECT_THAT(body, HasSubstr("Acceptance criteria:\n- prints hello\n- exits 0\n"));
  EXPECT_THAT(body, HasSubstr("### `bye` Say goodbye\n\ndone · agent `builder` · 1 attempt · "));
  EXPECT_THAT(body, HasSubstr("- Every task: 2 gates on a clean checkout of its commit\n"));
  EXPECT_THAT(body, HasSubstr("- Final gates on the integration branch's tip: passed\n"));
  EXPECT_THAT(body, HasSubstr("$0.7500 in total: $0.2500 building, $0.5000 planning."));
  EXPECT_THAT(body, HasSubstr("Event log head `" + std::string(64, 'a') + "` (42 events"));
  EXPECT_THAT(body, Not(HasSubstr("Not mergeable")));
}

TEST(PullRequestTextTest, AForcedRunSaysWhyItIsNotMergeable) {
  PullRequestContent content = Content();
  content.merge_blockers = {"1 of 2 tasks are not done: bye (failed)"};
  content.final_gates = "not run";
  content.final_gates_detail = "tasks are not all done";
  EXPECT_THAT(PullRequestBody(content), HasSubstr("> **Not mergeable**, pushed with `--force`:\n"
                                                  "> - 1 of 2 tasks are not done: bye (failed)\n"));
  EXPECT_THAT(PullRequestBody(content), HasSubstr("tip: not run (tasks are not all done)\n"));
}

TEST(PullRequestTextTest, ABrokenAuditChainIsSaid) {
  PullRequestContent content = Content();
  content.audit_head.clear();
  content.audit_problem = "broken at event seq 7: hash mismatch";
  EXPECT_THAT(PullRequestBody(content),
              HasSubstr("The event log does **not** verify: broken at event seq 7: hash "
                        "mismatch."));
}

TEST(PullRequestTextTest, ABacklogRunHasNoRequestNorPlanningAndATitleFromTheRun) {
  PullRequestContent content = Content();
  content.feature.clear();
  content.request.clear();
  content.headline.clear();
  content.final_gates.clear();
  const std::string body = PullRequestBody(content);
  EXPECT_EQ(PullRequestTitle(content), "Run r1");
  EXPECT_THAT(body, Not(HasSubstr("## Request")));
  EXPECT_THAT(body, Not(HasSubstr("Final gates")));
  EXPECT_THAT(body, Not(HasSubstr("planning")));
}

TEST(PullRequestTextTest, LinesCannotBreakOutOfTheirPlace) {
  PullRequestContent content = Content();
  content.headline = "Title\nwith a second line";
  content.tasks[0].title = "two\nlines";
  content.tasks[0].agent = "a`b";
  const std::string body = PullRequestBody(content);
  EXPECT_EQ(PullRequestTitle(content), "Title with a second line");
  EXPECT_THAT(body, HasSubstr("### `hello` two lines\n"));
  EXPECT_THAT(body, HasSubstr("agent `a'b`"));
}

TEST(PullRequestTextTest, ALongTaskListIsCutAtAWholeTaskAndTheRestStays) {
  PullRequestContent content = Content();
  for (int index = 0; index < 2000; ++index) {
    TaskReport task = content.tasks[0];
    task.key = "task-" + std::to_string(index);
    content.tasks.push_back(task);
  }
  const std::string body = PullRequestBody(content);
  EXPECT_LE(body.size(), kMaxBodyBytes);
  EXPECT_THAT(body, HasSubstr("The task list is cut here: `factory run show r1` has all of it."));
  EXPECT_THAT(body, HasSubstr("## Audit"));
  const size_t cut = body.find("_The task list is cut here");
  EXPECT_EQ(body.substr(cut - 2, 2), "\n\n");  // after a whole task's section
}

TEST(PullRequestTextTest, SecretsAreRedacted) {
  ProcessRedactor().Add("PR_TEST_KEY", "sk-pr-test-SECRET-1234567890");
  PullRequestContent content = Content();
  content.request = "use the key sk-pr-test-SECRET-1234567890 here\n";
  content.headline = "with sk-pr-test-SECRET-1234567890";
  EXPECT_THAT(PullRequestBody(content), Not(HasSubstr("sk-pr-test-SECRET-1234567890")));
  EXPECT_THAT(PullRequestTitle(content), Not(HasSubstr("sk-pr-test-SECRET-1234567890")));
}

}  // namespace
}  // namespace factory::forge
