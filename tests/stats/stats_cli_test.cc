// `factory stats` through the real binary: a worker runs real shell tasks, the test adds what
// the pipeline and the ledger would record, and every --json figure must equal what the store
// holds (recomputed here from the store's own rows).

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "cli/cli_test_util.h"
#include "queue/queue.h"
#include "stats/stats.h"
#include "store/store.h"

namespace factory::cli {
namespace {

using nlohmann::json;
using testing::CliSandbox;

TEST(StatsCliTest, JsonFiguresEqualWhatTheStoreHolds) {
  CliSandbox sandbox;
  sandbox.Ok({"init"});
  const std::string ok = sandbox.AddTask({"--title", "ok", "--command", "true", "--run", "r1"});
  const std::string bad = sandbox.AddTask(
      {"--title", "bad", "--command", "exit 3", "--max-attempts", "2", "--run", "r1"});
  const std::string after = sandbox.AddTask(
      {"--title", "after", "--depends-on", bad, "--command", "true", "--run", "r1"});
  sandbox.AddTask({"--title", "elsewhere", "--command", "true", "--run", "r2"});
  // `bad` fails finally, so the worker exits 1.
  EXPECT_EQ(sandbox.Run({"worker", "--until-idle", "--run", "r1", "--quiet"}).exit_code, 1);

  // What the pipeline records for agents (usage, prompt size) and what the ledger and a rebase
  // add, written into the real store.
  {
    auto store = OpenSqliteStore(SqliteOptions{.path = sandbox.DbPath().string()});
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    Queue queue(**store);
    auto written = (*store)->Write([&](StoreTxn& txn) -> Status {
      for (const std::string& task : {ok, bad}) {
        FACTORY_ASSIGN_OR_RETURN(std::vector<Attempt> attempts, txn.ListAttempts(task));
        for (Attempt& attempt : attempts) {
          json details = json::parse(attempt.details_json);
          details["agent"] = task == ok ? "builder" : "coder";
          details["usage"] = {{"input_tokens", 1000 * attempt.number},
                              {"output_tokens", 100},
                              {"cached_tokens", 10},
                              {"cost_usd", 0.25 * attempt.number},
                              {"model", "m-" + std::to_string(attempt.number)}};
          details["prompt_bytes"] = 3000 + attempt.number;
          attempt.details_json = details.dump();
          FACTORY_RETURN_IF_ERROR(txn.UpdateAttempt(attempt));
        }
      }
      ModelCallRow review{.ts_ms = 1,
                          .run_id = "r1",
                          .task_id = bad,
                          .agent = "reviewer",
                          .provider = "p",
                          .model = "m-review",
                          .input_tokens = 500,
                          .output_tokens = 50,
                          .cost_usd = 0.125,
                          .status = "ok",
                          .purpose = "review"};
      FACTORY_ASSIGN_OR_RETURN(int64_t id, txn.InsertModelCall(review));
      (void)id;
      return Ok();
    });
    ASSERT_TRUE(written.has_value()) << written.error().ToString();
    ASSERT_TRUE(queue.events()
                    .Append({.kind = events::EventKind::kTaskRebased,
                             .run_id = "r1",
                             .task_id = bad,
                             .actor = "test",
                             .payload_json = R"({"spec_version":2,"previous_spec_version":1})"})
                    .has_value());
  }

  const json out = sandbox.Ok({"stats", "--run", "r1", "--json"}).Json();

  // Recompute from the store's rows.
  auto store = OpenSqliteStore(SqliteOptions{.path = sandbox.DbPath().string()});
  ASSERT_TRUE(store.has_value());
  Queue queue(**store);
  auto tasks = queue.ListTasks(TaskQuery{.run_id = "r1"});
  ASSERT_TRUE(tasks.has_value());
  ASSERT_EQ(tasks->size(), 3u);
  int64_t done = 0, failed = 0, blocked = 0, attempts = 0, first_ok = 0, first = 0;
  int64_t input = 500, output = 50;
  double cost = 0;
  std::vector<int64_t> prompt_sizes;
  std::map<std::string, int64_t> time_ms;
  for (const Task& task : *tasks) {
    done += task.state == TaskState::kDone;
    failed += task.state == TaskState::kFailed;
    blocked += task.state == TaskState::kBlocked;
    auto rows = queue.ListAttempts(task.id);
    ASSERT_TRUE(rows.has_value());
    if (rows->empty()) continue;
    std::sort(rows->begin(), rows->end(),
              [](const Attempt& a, const Attempt& b) { return a.epoch < b.epoch; });
    attempts += static_cast<int64_t>(rows->size());
    ++first;
    first_ok += rows->front().status == AttemptStatus::kSucceeded;
    int64_t finished = 0;
    for (const Attempt& attempt : *rows) {
      const json details = json::parse(attempt.details_json);
      input += details["usage"]["input_tokens"].get<int64_t>();
      output += details["usage"]["output_tokens"].get<int64_t>();
      cost += details["usage"]["cost_usd"].get<double>();
      prompt_sizes.push_back(details["prompt_bytes"].get<int64_t>());
      finished = std::max(finished, attempt.finished_ms);
    }
    time_ms[task.id] = finished - rows->front().started_ms;
  }
  cost += 0.125;
  const json& total = out["total"];
  EXPECT_EQ(out["run"], "r1");
  EXPECT_EQ(total["tasks"], 3);
  EXPECT_EQ(total["done"], done);
  EXPECT_EQ(total["failed"], failed);
  EXPECT_EQ(total["blocked"], blocked);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(blocked, 1);
  EXPECT_EQ(total["attempts"], attempts);
  EXPECT_EQ(attempts, 3);  // ok once, bad twice, after never
  EXPECT_EQ(total["first_attempts"], first);
  EXPECT_EQ(total["first_attempt_successes"], first_ok);
  EXPECT_EQ(total["first_attempt_success_rate"].get<double>(), 0.5);
  EXPECT_EQ(total["attempts_per_task"].get<double>(), 1.5);
  EXPECT_EQ(total["rebases"], 1);
  EXPECT_EQ(total["model_calls"], 1);
  EXPECT_EQ(total["input_tokens"], input);
  EXPECT_EQ(total["output_tokens"], output);
  EXPECT_DOUBLE_EQ(total["cost_usd"].get<double>(), cost);
  EXPECT_DOUBLE_EQ(total["cost_per_task_usd"].get<double>(), cost / 3);
  EXPECT_EQ(total["prompt_bytes"]["count"], static_cast<int64_t>(prompt_sizes.size()));
  EXPECT_EQ(total["prompt_bytes"]["max"],
            *std::max_element(prompt_sizes.begin(), prompt_sizes.end()));
  EXPECT_EQ(total["task_time_ms"]["count"], 2);
  EXPECT_EQ(total["task_time_ms"]["max"], std::max(time_ms.at(ok), time_ms.at(bad)));
  EXPECT_DOUBLE_EQ(total["task_time_ms"]["mean"].get<double>(),
                   static_cast<double>(time_ms.at(ok) + time_ms.at(bad)) / 2);
  for (const json& task : out["tasks"]) {
    if (task["id"] == bad) {
      EXPECT_EQ(task["agent"], "coder");
      EXPECT_EQ(task["model"], "m-2");  // its last attempt's
      EXPECT_EQ(task["rebases"], 1);
      EXPECT_EQ(task["time_ms"], time_ms.at(bad));
    }
    if (task["id"] == after) {
      EXPECT_TRUE(task["time_ms"].is_null());
    }
  }
  // Per agent: the reviewer's call is its own; per model, the first attempts ran on m-1.
  std::map<std::string, json> agents, models;
  for (const json& group : out["by_agent"]) agents[group["key"]] = group;
  for (const json& group : out["by_model"]) models[group["key"]] = group;
  EXPECT_EQ(agents.at("reviewer")["cost_usd"].get<double>(), 0.125);
  EXPECT_EQ(agents.at("coder")["attempts"], 2);
  EXPECT_EQ(agents.at("builder")["first_attempt_successes"], 1);
  EXPECT_EQ(models.at("m-1")["first_attempts"], 2);
  EXPECT_EQ(models.at("m-2")["attempts"], 1);

  // Every run: r2's task was never run.
  const json all = sandbox.Ok({"stats", "--json"}).Json();
  EXPECT_TRUE(all["run"].is_null());
  EXPECT_EQ(all["total"]["tasks"], 4);
  // The table says the same.
  const std::string text = sandbox.Ok({"stats", "--run", "r1"}).out;
  EXPECT_NE(text.find("first-attempt success 1/2 (50.0%)"), std::string::npos) << text;
  EXPECT_NE(text.find("reviewer"), std::string::npos) << text;
}

TEST(StatsCliTest, ErrorsAndHelp) {
  CliSandbox sandbox;
  EXPECT_EQ(sandbox.Run({"stats"}).exit_code, kExitNotFound);  // no database yet
  sandbox.Ok({"init"});
  auto missing = sandbox.Run({"stats", "--run", "nope"});
  EXPECT_EQ(missing.exit_code, kExitNotFound);
  EXPECT_NE(missing.err.find("no run 'nope'"), std::string::npos) << missing.err;
  EXPECT_EQ(sandbox.Run({"stats", "--bogus"}).exit_code, kExitUsage);
  EXPECT_NE(sandbox.Ok({"stats", "--help"}).out.find("--run"), std::string::npos);
  const json empty = sandbox.Ok({"stats", "--json"}).Json();
  EXPECT_EQ(empty["total"]["tasks"], 0);
  EXPECT_TRUE(empty["total"]["first_attempt_success_rate"].is_null());
}

}  // namespace
}  // namespace factory::cli
