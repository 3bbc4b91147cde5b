// End-to-end tests of the run pipeline on temporary git repositories with script agents that
// make real edits, a real `check.sh` gate, the real sandbox, queue and merge queue.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/ulid.h"
#include "orchestrator/run_view.h"
#include "run_fixture.h"

namespace factory::testing {
namespace {

using json = nlohmann::json;

// Writes src/<task>.txt after checking that the files named "needs:<path>" in the task file
// exist (a dependency's output), sleeping a little so concurrent tasks overlap.
constexpr char kWriterScript[] = R"SH(#!/bin/sh
set -e
for f in $(grep -o 'needs:[A-Za-z0-9/._-]*' "$FACTORY_TASK_FILE" | cut -d: -f2); do
  if [ ! -f "$f" ]; then echo "dependency output $f is missing"; exit 1; fi
done
sleep 1
echo "ok $FACTORY_TASK_ID" > "src/$FACTORY_TASK_ID.txt"
echo "wrote src/$FACTORY_TASK_ID.txt"
)SH";

// Answers 0 unless the previous attempt's feedback says what the test suite expects.
constexpr char kAnswerScript[] = R"SH(#!/bin/sh
want=$(grep -o 'expected ANSWER=[0-9]*' "$FACTORY_TASK_FILE" | head -n 1 | cut -d= -f2)
if [ -n "$want" ]; then echo "ANSWER=$want" > src/answer.txt; else echo "ANSWER=0" > src/answer.txt; fi
)SH";

// Puts its name in shared.txt: replaces the initial content, or adds a line when another task
// already changed it (that is how a retry resolves the conflict).
constexpr char kSharedScript[] = R"SH(#!/bin/sh
sleep 1
if [ "$(cat shared.txt)" = "base" ]; then echo "$FACTORY_TASK_ID" > shared.txt
else echo "$FACTORY_TASK_ID" >> shared.txt; fi
)SH";

int64_t Overlap(const Attempt& a, const Attempt& b) {
  return std::min(a.finished_ms, b.finished_ms) - std::max(a.started_ms, b.started_ms);
}

std::string CaptureToString(FILE* file) {
  std::fflush(file);
  std::rewind(file);
  std::string text;
  char buffer[4096];
  size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, read);
  return text;
}

class OrchestratorRunTest : public RunFixture {};

TEST_F(OrchestratorRunTest, DagOrderParallelismTrailersAndUserEditsSurvive) {
  AddScriptAgent("writer", kWriterScript);
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: alpha
    title: Write alpha
    agent: writer
  - id: beta
    title: Write beta
    agent: writer
  - id: gamma
    title: Write gamma after alpha and beta
    description: "needs:src/alpha.txt needs:src/beta.txt"
    agent: writer
    depends_on: [alpha, beta]
    max_attempts: 1
)");
  // The user's own uncommitted work in the main checkout: a tracked edit, a staged edit and an
  // untracked file.
  WriteText(repo_ + "/README.md", "# project\nmy unsaved notes\n");
  WriteText(repo_ + "/src/main.txt", "main, staged edit\n");
  RunGit({"add", "src/main.txt"});
  WriteText(repo_ + "/notes.txt", "untracked\n");
  const std::string status_before = RunGit({"status", "--porcelain"});
  const std::string main_before = Rev("main");

  auto created = runs_->CreateRun(backlog, CreateRunOptions{.run_id = "dag"});
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  EXPECT_TRUE(created->created);
  EXPECT_EQ(created->tasks_created, 3);
  EXPECT_EQ(created->integration_branch, "factory/dag");

  FILE* capture = std::tmpfile();
  ASSERT_NE(capture, nullptr);
  RunView view(capture, RunViewOptions{.mode = RunViewOptions::Mode::kPlain});
  auto summary = runs_->ExecuteRun("dag", ExecuteOptions{.observer = &view});
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  const std::string progress = CaptureToString(capture);
  std::fclose(capture);

  EXPECT_EQ(summary->done, 3);
  EXPECT_EQ(summary->total, 3);
  EXPECT_TRUE(summary->all_done());
  EXPECT_EQ(summary->attempts, 3);
  EXPECT_DOUBLE_EQ(summary->first_attempt_success_rate, 1.0);
  EXPECT_EQ(summary->integration_branch, "factory/dag");
  EXPECT_EQ(summary->base_branch, "main");

  // DAG order: gamma's only attempt started after both dependencies were merged and done.
  const auto alpha = AttemptsOf("dag", "alpha");
  const auto beta = AttemptsOf("dag", "beta");
  const auto gamma = AttemptsOf("dag", "gamma");
  ASSERT_EQ(alpha.size(), 1u);
  ASSERT_EQ(beta.size(), 1u);
  ASSERT_EQ(gamma.size(), 1u);
  EXPECT_GE(gamma[0].started_ms, alpha[0].finished_ms);
  EXPECT_GE(gamma[0].started_ms, beta[0].finished_ms);
  // Independent tasks ran at the same time.
  EXPECT_GT(Overlap(alpha[0], beta[0]), 300) << "alpha and beta did not overlap";

  // Every task merged exactly once with its trailer; the base branch is untouched.
  for (const char* key : {"alpha", "beta", "gamma"}) {
    EXPECT_EQ(MergeCount("factory/dag", key), 1) << key;
    EXPECT_EQ(Trim(RunGit({"show", std::string("factory/dag:src/") + key + ".txt"})),
              std::string("ok ") + key);
  }
  EXPECT_EQ(Rev("main"), main_before);
  // The factory's own commits carry the task trailer too.
  const std::string log = RunGit({"log", "--no-merges", "--format=%s%n%b", "factory/dag"});
  EXPECT_NE(log.find("factory: Write alpha"), std::string::npos) << log;
  EXPECT_NE(log.find("Factory-Task: alpha"), std::string::npos) << log;

  // The user's uncommitted edits are exactly where they were.
  EXPECT_EQ(ReadText(repo_ + "/README.md"), "# project\nmy unsaved notes\n");
  EXPECT_EQ(ReadText(repo_ + "/src/main.txt"), "main, staged edit\n");
  EXPECT_EQ(ReadText(repo_ + "/notes.txt"), "untracked\n");
  EXPECT_EQ(RunGit({"status", "--porcelain"}), status_before);
  EXPECT_FALSE(std::filesystem::exists(repo_ + "/src/alpha.txt"));

  // Worktrees are gone after the merges; only the main checkout remains.
  const std::string worktrees = RunGit({"worktree", "list", "--porcelain"});
  EXPECT_EQ(std::count(worktrees.begin(), worktrees.end(), '\n') > 0, true);
  EXPECT_EQ(worktrees.find(".factory/worktrees"), std::string::npos) << worktrees;

  // Phases were recorded as events, in order.
  auto events =
      queue_->ListEvents(EventQuery{.run_id = "dag", .task_id = TaskByKey("dag", "alpha").id});
  ASSERT_TRUE(events.has_value());
  std::vector<std::string> phases;
  for (const auto& event : *events) {
    if (event.kind == "attempt.phase") phases.push_back(json::parse(event.payload_json)["phase"]);
  }
  EXPECT_EQ(phases, (std::vector<std::string>{"agent", "worktree", "runner", "commit", "protected",
                                              "gates", "merge"}));

  // The progress lines.
  EXPECT_NE(progress.find("start  alpha"), std::string::npos) << progress;
  EXPECT_NE(progress.find("phase  gamma attempt 1/1: gates"), std::string::npos) << progress;
  EXPECT_NE(progress.find("done    gamma"), std::string::npos) << progress;
  EXPECT_NE(progress.find("run dag finished: 3/3 done"), std::string::npos) << progress;
  EXPECT_EQ(progress.find("\x1b["), std::string::npos);

  // run show / runs.
  auto details = runs_->ShowRun("dag");
  ASSERT_TRUE(details.has_value()) << details.error().ToString();
  EXPECT_EQ(details->run.state, "done");
  ASSERT_EQ(details->tasks.size(), 3u);
  for (const auto& task : details->tasks) {
    EXPECT_EQ(task.state, "done");
    EXPECT_EQ(task.agent, "writer");
    EXPECT_FALSE(task.merge_commit.empty());
    if (task.key == "gamma") {
      EXPECT_EQ(task.depends_on, (std::vector<std::string>{"alpha", "beta"}));
    }
  }
  json shown = json::parse(FormatRunDetails(*details, true));
  EXPECT_EQ(shown["summary"]["done"], 3);
  EXPECT_EQ(shown["tasks"].size(), 3u);
  auto listed = runs_->ListRuns();
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].run.id, "dag");
  EXPECT_NE(FormatRunList(*listed, false).find("dag"), std::string::npos);

  // Merging into the base is refused while the user's checkout has tracked changes, and
  // nothing is touched.
  auto merged = runs_->MergeRunIntoBase("dag");
  ASSERT_FALSE(merged.has_value());
  EXPECT_EQ(Rev("main"), main_before);
  EXPECT_EQ(RunGit({"status", "--porcelain"}), status_before);
}

TEST_F(OrchestratorRunTest, GateFailureFeedsTheRetryWhichPasses) {
  AddScriptAgent("answerer", kAnswerScript);
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: answer
    title: Give the answer
    agent: answerer
)");
  ASSERT_TRUE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "gate"}).has_value());
  auto summary = runs_->ExecuteRun("gate");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 1);
  EXPECT_EQ(summary->attempts, 2);
  EXPECT_DOUBLE_EQ(summary->first_attempt_success_rate, 0.0);

  const auto attempts = AttemptsOf("gate", "answer");
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].status, AttemptStatus::kFailed);
  EXPECT_NE(attempts[0].error.find("gate 'check' failed"), std::string::npos) << attempts[0].error;
  json first = json::parse(attempts[0].details_json);
  EXPECT_EQ(first["failed_phase"], "gates");
  EXPECT_NE(first["feedback"].get<std::string>().find("expected ANSWER=42"), std::string::npos)
      << first.dump();
  EXPECT_EQ(attempts[1].status, AttemptStatus::kSucceeded);
  json second = json::parse(attempts[1].details_json);
  EXPECT_EQ(second["had_feedback"], true);
  EXPECT_EQ(second["gates_passed"], json::array({"check"}));
  EXPECT_EQ(Trim(RunGit({"show", "factory/gate:src/answer.txt"})), "ANSWER=42");
  EXPECT_EQ(MergeCount("factory/gate", "answer"), 1);
  // The merge commit says which attempt and gates.
  const std::string message = RunGit({"log", "-1", "--format=%B", "factory/gate"});
  EXPECT_NE(message.find("Factory-Attempt: 2"), std::string::npos) << message;
  EXPECT_NE(message.find("Factory-Gates: check"), std::string::npos) << message;
  EXPECT_NE(message.find("Factory-Agent: answerer"), std::string::npos) << message;

  // `factory run merge`: the clean main checkout is fast-forwarded.
  auto merged = runs_->MergeRunIntoBase("gate");
  ASSERT_TRUE(merged.has_value()) << merged.error().ToString();
  EXPECT_EQ(Rev("main"), Rev("factory/gate"));
  EXPECT_EQ(Trim(ReadText(repo_ + "/src/answer.txt")), "ANSWER=42");
}

TEST_F(OrchestratorRunTest, MergeConflictIsResolvedByTheRetryFromTheUpdatedBranch) {
  AddScriptAgent("sharer", kSharedScript);
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: left
    title: Left edits shared.txt
    agent: sharer
  - id: right
    title: Right edits shared.txt
    agent: sharer
)");
  ASSERT_TRUE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "conflict"}).has_value());
  auto summary = runs_->ExecuteRun("conflict");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 2);
  EXPECT_EQ(summary->attempts, 3);

  const auto left = AttemptsOf("conflict", "left");
  const auto right = AttemptsOf("conflict", "right");
  const auto& retried = left.size() == 2 ? left : right;
  const auto& first_try = left.size() == 2 ? right : left;
  ASSERT_EQ(retried.size(), 2u);
  ASSERT_EQ(first_try.size(), 1u);
  EXPECT_EQ(retried[0].status, AttemptStatus::kFailed);
  json failed = json::parse(retried[0].details_json);
  EXPECT_EQ(failed["failed_phase"], "merge") << retried[0].error;
  EXPECT_EQ(failed["conflicts"], json::array({"shared.txt"}));
  EXPECT_NE(failed["feedback"].get<std::string>().find("shared.txt"), std::string::npos);
  // The retry started from the integration tip that already had the other task.
  json succeeded = json::parse(retried[1].details_json);
  json winner = json::parse(first_try[0].details_json);
  EXPECT_EQ(succeeded["start_commit"], winner["merge_commit"]);

  const std::string shared = RunGit({"show", "factory/conflict:shared.txt"});
  EXPECT_NE(shared.find("left"), std::string::npos) << shared;
  EXPECT_NE(shared.find("right"), std::string::npos) << shared;
  EXPECT_EQ(MergeCount("factory/conflict", "left"), 1);
  EXPECT_EQ(MergeCount("factory/conflict", "right"), 1);
}

TEST_F(OrchestratorRunTest, FinalFailuresBlockDependentsAndProtectedPathsAreEnforced) {
  AddScriptAgent("buggy", "echo BUG > src/bad.txt\n");
  AddScriptAgent("writer", kWriterScript);
  AddScriptAgent("sneaky", "echo 'exit 0' > check.sh\n");
  AddScriptAgent("lazy", "echo 'I thought about it'\n");
  AddScriptAgent("tester", "echo new > tests/new.txt\n");
  config_.concurrency = 3;
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: bad
    title: Always fails the gate
    agent: buggy
    max_attempts: 2
  - id: after-bad
    title: Depends on bad
    agent: writer
    depends_on: [bad]
  - id: after-after
    title: Depends on after-bad
    agent: writer
    depends_on: [after-bad]
  - id: fine
    title: Independent and fine
    agent: writer
  - id: sneaky
    title: Touches the test suite
    agent: sneaky
    max_attempts: 1
  - id: lazy
    title: Changes nothing
    agent: lazy
    max_attempts: 1
  - id: allowed
    title: May add tests
    agent: tester
    allow_protected: ["tests/**"]
)");
  ASSERT_TRUE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "fails"}).has_value());
  auto summary = runs_->ExecuteRun("fails");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 2);     // fine, allowed
  EXPECT_EQ(summary->failed, 3);   // bad, sneaky, lazy
  EXPECT_EQ(summary->blocked, 2);  // after-bad, after-after
  EXPECT_FALSE(summary->all_done());

  EXPECT_EQ(TaskByKey("fails", "bad").state, TaskState::kFailed);
  EXPECT_EQ(TaskByKey("fails", "after-bad").state, TaskState::kBlocked);
  EXPECT_EQ(TaskByKey("fails", "after-after").state, TaskState::kBlocked);
  EXPECT_TRUE(AttemptsOf("fails", "after-bad").empty());
  const auto bad = AttemptsOf("fails", "bad");
  ASSERT_EQ(bad.size(), 2u);
  json bad_details = json::parse(bad[1].details_json);
  EXPECT_NE(bad_details["feedback"].get<std::string>().find("contains BUG"), std::string::npos);
  // The final failure's worktree is removed, its work kept in a ref.
  EXPECT_FALSE(std::filesystem::exists(bad_details["worktree"].get<std::string>()));
  EXPECT_NE(RunGit({"for-each-ref", "refs/factory/attempts/fails/"}).find("bad-2"),
            std::string::npos);

  const auto sneaky = AttemptsOf("fails", "sneaky");
  ASSERT_EQ(sneaky.size(), 1u);
  EXPECT_NE(sneaky[0].error.find("protected paths: check.sh"), std::string::npos)
      << sneaky[0].error;
  const auto lazy = AttemptsOf("fails", "lazy");
  ASSERT_EQ(lazy.size(), 1u);
  EXPECT_EQ(lazy[0].error, "the attempt changed nothing");
  EXPECT_EQ(TaskByKey("fails", "allowed").state, TaskState::kDone);
  EXPECT_EQ(Trim(RunGit({"show", "factory/fails:tests/new.txt"})), "new");

  EXPECT_EQ(MergeCount("factory/fails", "bad"), 0);
  EXPECT_EQ(MergeCount("factory/fails", "fine"), 1);
  auto details = runs_->ShowRun("fails");
  ASSERT_TRUE(details.has_value());
  EXPECT_EQ(details->run.state, "failed");
  json out = json::parse(FormatSummary(details->summary, true));
  EXPECT_EQ(out["failed"], 3);
  EXPECT_EQ(out["blocked"], 2);
  EXPECT_EQ(out["all_done"], false);
}

TEST_F(OrchestratorRunTest, CreateRunIsIdempotentPerRunId) {
  AddScriptAgent("writer", kWriterScript);
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: one
    title: One
    agent: writer
  - id: two
    title: Two
    agent: writer
    depends_on: [one]
)");
  auto first = runs_->CreateRun(backlog, CreateRunOptions{.run_id = "same"});
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  auto second = runs_->CreateRun(backlog, CreateRunOptions{.run_id = "same"});
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->tasks_created, 0);
  EXPECT_EQ(second->tasks_existing, 2);
  EXPECT_EQ(first->integration_tip, second->integration_tip);
  auto tasks = queue_->ListTasks(TaskQuery{.run_id = "same"});
  ASSERT_TRUE(tasks.has_value());
  EXPECT_EQ(tasks->size(), 2u);
  EXPECT_EQ(TaskByKey("same", "two").state, TaskState::kPending);
  EXPECT_EQ(TaskByKey("same", "two").depends_on,
            (std::vector<std::string>{TaskByKey("same", "one").id}));
  json metadata = json::parse(TaskByKey("same", "one").metadata_json);
  EXPECT_EQ(metadata["backlog_id"], "one");
  EXPECT_EQ(metadata["agent"], "writer");

  // A generated id is short and safe for branch names.
  auto fresh = runs_->CreateRun(backlog);
  ASSERT_TRUE(fresh.has_value()) << fresh.error().ToString();
  EXPECT_EQ(fresh->run_id.size(), 14u);
  EXPECT_TRUE(WorkspaceManager::ValidateId("run", fresh->run_id).has_value());
  EXPECT_NE(fresh->run_id, "same");

  // Wrong inputs.
  EXPECT_FALSE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "bad id"}).has_value());
  auto other_base =
      runs_->CreateRun(backlog, CreateRunOptions{.run_id = "x", .base_branch = "develop"});
  ASSERT_FALSE(other_base.has_value());
  EXPECT_EQ(other_base.error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(runs_->CreateRun(Backlog{}, CreateRunOptions{.run_id = "empty"}).has_value());
  EXPECT_FALSE(runs_->ExecuteRun("nope").has_value());
  EXPECT_EQ(runs_->ShowRun("nope").error().code, ErrorCode::kNotFound);
}

// A worker that crashed after merging a task, before completing it: resume expires its lease
// at once (its pid is gone), and the task is completed without running or merging again.
TEST_F(OrchestratorRunTest, ResumeAfterCrashCompletesWithoutMergingTwice) {
  AddScriptAgent("writer", kWriterScript);
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: merged
    title: Merged before the crash
    agent: writer
    priority: 5
  - id: next
    title: Runs after the resume
    agent: writer
    depends_on: [merged]
)");
  ASSERT_TRUE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "crash"}).has_value());

  // A dead process id on this host.
  SubprocessOptions spawn;
  spawn.argv = {"true"};
  auto exited = RunSubprocess(spawn);
  ASSERT_TRUE(exited.has_value());
  ASSERT_NE(kill(exited->pid, 0), 0);
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  const std::string owner = std::string(host) + ":" + std::to_string(exited->pid) + ":" + NewUlid();

  auto claimed = queue_->Claim(owner, 600'000, 1, ClaimFilter{.run_id = "crash"});
  ASSERT_TRUE(claimed.has_value());
  ASSERT_EQ(claimed->size(), 1u);
  ASSERT_EQ((*claimed)[0].task.idempotency_key, "merged");
  ASSERT_TRUE(queue_->Start((*claimed)[0].lease).has_value());
  // What the crashed worker did before dying: its attempt, committed and merged.
  auto workspace = workspace_->CreateAttempt("crash", "merged", 1);
  ASSERT_TRUE(workspace.has_value()) << workspace.error().ToString();
  WriteText(workspace->path + "/src/merged.txt", "ok merged\n");
  ASSERT_TRUE(
      workspace_->CommitAttempt(*workspace, "factory: Merged before the crash").has_value());
  MergeRequest request{.run_id = "crash",
                       .task_id = "merged",
                       .title = "Merged before the crash",
                       .agent = "writer",
                       .attempt = 1,
                       .gates = {"check"}};
  ASSERT_TRUE(merges_->Merge(request).has_value());

  ResumeReport report;
  const int64_t started = SystemClock().NowMillis();
  auto summary = runs_->ResumeRun("crash", ExecuteOptions{}, &report);
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_LT(SystemClock().NowMillis() - started, 30'000);  // not the 10-minute lease
  EXPECT_EQ(report.dead_leases_expired, 1);
  EXPECT_EQ(summary->done, 2);
  EXPECT_EQ(MergeCount("factory/crash", "merged"), 1);
  EXPECT_EQ(MergeCount("factory/crash", "next"), 1);
  const auto attempts = AttemptsOf("crash", "merged");
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].status, AttemptStatus::kExpired);
  EXPECT_EQ(attempts[1].status, AttemptStatus::kSucceeded);
  json details = json::parse(attempts[1].details_json);
  EXPECT_EQ(details["already_merged"], true);
  EXPECT_FALSE(details.contains("agent"));  // no agent ran again

  // A lease held by a live process (this one) is left alone.
  EXPECT_EQ(runs_->ExpireDeadLeases("crash")->dead_leases_expired, 0);
}

TEST_F(OrchestratorRunTest, TasksWaitForABusyAgentInsteadOfFailing) {
  AddScriptAgent("solo", kWriterScript, {"code"}, /*concurrency=*/1);
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: first
    title: First
    capabilities: [code]
  - id: second
    title: Second
    capabilities: [code]
)");
  ASSERT_TRUE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "busy"}).has_value());
  auto summary = runs_->ExecuteRun("busy");
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 2);
  EXPECT_EQ(summary->attempts, 2);
  const auto first = AttemptsOf("busy", "first");
  const auto second = AttemptsOf("busy", "second");
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  // One slot: the agent's runs did not overlap (the second attempt waited for it).
  json a = json::parse(first[0].details_json);
  json b = json::parse(second[0].details_json);
  EXPECT_EQ(a["agent"], "solo");
  EXPECT_EQ(b["agent"], "solo");
  EXPECT_EQ(agents_.StatusOf("solo")->in_use, 0);
  // One slot: the later attempt's agent started only after the earlier attempt had merged.
  auto phase_ts = [&](const std::string& key, const std::string& phase) -> int64_t {
    auto events =
        queue_->ListEvents(EventQuery{.run_id = "busy", .task_id = TaskByKey("busy", key).id});
    if (!events) return -1;
    for (const auto& event : *events) {
      if (event.kind == "attempt.phase" && json::parse(event.payload_json)["phase"] == phase) {
        return event.ts_ms;
      }
    }
    return -1;
  };
  const bool first_ran_first = phase_ts("first", "runner") < phase_ts("second", "runner");
  const std::string earlier = first_ran_first ? "first" : "second";
  const std::string later = first_ran_first ? "second" : "first";
  EXPECT_GE(phase_ts(later, "runner"), phase_ts(earlier, "merge"));
}

// Ctrl-C: the run stops, its in-flight attempts are given back; `run resume` finishes the work.
TEST_F(OrchestratorRunTest, StoppedRunResumesWithNothingLostOrMergedTwice) {
  AddScriptAgent("slow", "sleep 2\necho \"ok\" > \"src/$FACTORY_TASK_ID.txt\"\n");
  Open();
  const Backlog backlog = ParseBacklog(R"(tasks:
  - id: s1
    title: Slow one
    agent: slow
  - id: s2
    title: Slow two
    agent: slow
  - id: s3
    title: Slow three
    agent: slow
    depends_on: [s1]
)");
  ASSERT_TRUE(runs_->CreateRun(backlog, CreateRunOptions{.run_id = "stop"}).has_value());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    runs_->RequestCancel();
  });
  auto stopped = runs_->ExecuteRun("stop");
  stopper.join();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().ToString();
  EXPECT_EQ(stopped->done, 0);
  EXPECT_EQ(stopped->unfinished, 3);
  EXPECT_EQ(runs_->ShowRun("stop")->run.state, "stopped");
  EXPECT_EQ(FormatSummary(*stopped, false).find("factory run resume stop") != std::string::npos,
            true);

  auto resumed = runs_->ResumeRun("stop");
  ASSERT_TRUE(resumed.has_value()) << resumed.error().ToString();
  EXPECT_EQ(resumed->done, 3);
  EXPECT_EQ(resumed->attempts, 3);  // released attempts do not count
  for (const char* key : {"s1", "s2", "s3"}) EXPECT_EQ(MergeCount("factory/stop", key), 1) << key;
  EXPECT_EQ(runs_->ShowRun("stop")->run.state, "done");
}

// A process running the run is killed with SIGKILL mid-run; ResumeRun in another process
// completes it, every task merged exactly once.
TEST_F(OrchestratorRunTest, KilledRunResumesAndMergesEveryTaskExactlyOnce) {
  AddScriptAgent("writer", kWriterScript);
  const std::string backlog_yaml = R"(tasks:
  - id: k1
    title: K one
    agent: writer
  - id: k2
    title: K two
    agent: writer
  - id: k3
    title: K three
    agent: writer
    depends_on: [k1]
  - id: k4
    title: K four
    agent: writer
    depends_on: [k3, k2]
)";
  // The child opens its own store and repository handles (nothing is shared across fork).
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Open();
    const Backlog backlog = ParseBacklog(backlog_yaml);
    if (!runs_->CreateRun(backlog, CreateRunOptions{.run_id = "kill"})) _exit(2);
    (void)runs_->ExecuteRun("kill");
    _exit(0);
  }
  // Kill it once something was merged and more is in flight.
  bool merged_some = false;
  for (int poll = 0; poll < 300 && !merged_some; ++poll) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    SubprocessOptions log;
    log.argv = {"git", "log", "--merges", "--format=%H", "factory/kill", "--"};
    log.cwd = repo_;
    auto out = RunSubprocess(log);
    merged_some = out && out->exit_code == 0 && !out->stdout_tail.empty();
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(merged_some) << "the child never merged anything";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it was killed";

  Open();
  ResumeReport report;
  auto summary = runs_->ResumeRun("kill", ExecuteOptions{}, &report);
  ASSERT_TRUE(summary.has_value()) << summary.error().ToString();
  EXPECT_EQ(summary->done, 4);
  for (const char* key : {"k1", "k2", "k3", "k4"}) {
    EXPECT_EQ(MergeCount("factory/kill", key), 1) << key;
  }
  const std::string worktrees = RunGit({"worktree", "list", "--porcelain"});
  EXPECT_EQ(worktrees.find(".factory/worktrees"), std::string::npos) << worktrees;
}

TEST(RunViewTest, LiveModeRedrawsInPlaceAndPlainModePrintsLines) {
  FakeClock clock(1'000'000);
  AttemptProgress attempt{.run_id = "r",
                          .task_id = "01ABC",
                          .task_key = "parser",
                          .title = "Parse the input",
                          .agent = "builder",
                          .attempt = 2,
                          .max_attempts = 3,
                          .phase = "gates",
                          .started_ms = 1'000'000 - 65'000};
  RunCounts counts{
      .by_state = {{"done", 1}, {"running", 1}, {"pending", 2}}, .total = 4, .cost_usd = 0.25};
  for (const auto mode : {RunViewOptions::Mode::kLive, RunViewOptions::Mode::kPlain}) {
    FILE* capture = std::tmpfile();
    ASSERT_NE(capture, nullptr);
    {
      RunView view(capture,
                   RunViewOptions{.mode = mode, .color = false, .refresh_ms = 0, .clock = &clock});
      view.OnRunStarted("r", counts);
      view.OnAttemptStarted(attempt);
      view.OnPhase(attempt);
      view.OnCounts(counts);
      view.OnAttemptFinished(attempt, AttemptEnd{.kind = AttemptEndKind::kFailed,
                                                 .will_retry = true,
                                                 .message = "gate 'test' failed",
                                                 .duration_ms = 1500});
      view.OnRunFinished("r", counts);
    }
    const std::string text = CaptureToString(capture);
    std::fclose(capture);
    if (mode == RunViewOptions::Mode::kLive) {
      EXPECT_NE(text.find("\x1b[2K"), std::string::npos);
      EXPECT_NE(text.find("parser"), std::string::npos);
      EXPECT_NE(text.find("builder"), std::string::npos);
      EXPECT_NE(text.find("#2/3"), std::string::npos) << text;
      EXPECT_NE(text.find("1m05s"), std::string::npos) << text;
      EXPECT_NE(text.find("1/4 done, 1 active"), std::string::npos) << text;
      EXPECT_NE(text.find("$0.2500"), std::string::npos) << text;
    } else {
      EXPECT_EQ(text.find("\x1b["), std::string::npos) << text;
      EXPECT_NE(text.find("phase  parser attempt 2/3: gates (builder)"), std::string::npos) << text;
    }
    EXPECT_NE(text.find("retry   parser \"Parse the input\" attempt 2/3 by builder in 1.5s: "
                        "gate 'test' failed"),
              std::string::npos)
        << text;
  }
}

TEST(RunViewTest, SummaryAsTextAndJson) {
  RunSummary summary{.run_id = "r1",
                     .integration_branch = "factory/r1",
                     .base_branch = "main",
                     .done = 4,
                     .failed = 1,
                     .blocked = 1,
                     .total = 6,
                     .attempts = 8,
                     .first_attempt_success_rate = 0.5,
                     .wall_ms = 12'300,
                     .cost_usd = 1.5};
  json out = json::parse(FormatSummary(summary, true));
  EXPECT_EQ(out["run_id"], "r1");
  EXPECT_EQ(out["integration_branch"], "factory/r1");
  EXPECT_EQ(out["done"], 4);
  EXPECT_EQ(out["failed"], 1);
  EXPECT_EQ(out["blocked"], 1);
  EXPECT_DOUBLE_EQ(out["first_attempt_success_rate"].get<double>(), 0.5);
  EXPECT_EQ(out["all_done"], false);
  const std::string text = FormatSummary(summary, false);
  EXPECT_NE(text.find("4/6 done, 1 failed, 1 blocked"), std::string::npos) << text;
  EXPECT_NE(text.find("first-attempt success rate 50%"), std::string::npos) << text;
  EXPECT_NE(text.find("git log --oneline --graph factory/r1"), std::string::npos) << text;
  EXPECT_NE(text.find("12.3s"), std::string::npos) << text;
  EXPECT_EQ(text.find("factory run merge"), std::string::npos) << "a failed run: " << text;
}

TEST(RunViewTest, MergingIsSuggestedOnlyForAMergeableRun) {
  RunSummary failed{
      .run_id = "r1", .integration_branch = "factory/r1", .done = 1, .failed = 1, .total = 2};
  failed.not_done = {{"01TASK", "parser", "failed"}};
  EXPECT_FALSE(failed.mergeable());
  EXPECT_EQ(failed.MergeBlockers(),
            std::vector<std::string>{"1 of 2 tasks are not done: parser (failed)"});
  std::string text = FormatSummary(failed, false);
  EXPECT_EQ(text.find("factory run merge"), std::string::npos) << text;
  EXPECT_NE(text.find("`factory task retry 01TASK` (parser)), then `factory run resume r1`"),
            std::string::npos)
      << text;
  json out = json::parse(FormatSummary(failed, true));
  EXPECT_EQ(out["mergeable"], false);
  EXPECT_EQ(out["merge_blockers"].size(), 1u);
  EXPECT_TRUE(out["feature_id"].is_null());

  // A feature whose tasks are all done but whose final gates failed.
  RunSummary feature{.run_id = "f1", .integration_branch = "factory/f1", .done = 2, .total = 2};
  feature.feature = "greetings";
  feature.final_gates = "failed";
  feature.final_gates_detail = "the feature's final gate 'whole' failed (exit 3) on factory/f1";
  EXPECT_FALSE(feature.mergeable());
  text = FormatSummary(feature, false);
  EXPECT_EQ(text.find("factory run merge"), std::string::npos) << text;
  EXPECT_NE(text.find("not mergeable: the feature's final gate 'whole' failed"), std::string::npos)
      << text;
  EXPECT_NE(text.find("factory regenerate greetings"), std::string::npos) << text;
  EXPECT_EQ(json::parse(FormatSummary(feature, true))["final_gates"], "failed");

  feature.final_gates = "passed";
  EXPECT_TRUE(feature.mergeable());
  text = FormatSummary(feature, false);
  EXPECT_NE(text.find("merge:   factory run merge f1"), std::string::npos) << text;
  EXPECT_EQ(text.find("not mergeable"), std::string::npos) << text;
}

TEST(RunViewTest, SummarySaysWhenNoGateCheckedTheRun) {
  RunSummary summary{.run_id = "r1", .done = 1, .total = 1};
  EXPECT_EQ(json::parse(FormatSummary(summary, true))["no_gates"], true);
  EXPECT_NE(FormatSummary(summary, false).find("gates: none configured"), std::string::npos);
  summary.gates = 2;
  json out = json::parse(FormatSummary(summary, true));
  EXPECT_EQ(out["no_gates"], false);
  EXPECT_EQ(out["gates"], 2);
  EXPECT_EQ(FormatSummary(summary, false).find("gates: none"), std::string::npos);
}

}  // namespace
}  // namespace factory::testing
