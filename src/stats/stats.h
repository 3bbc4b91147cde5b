#pragma once
// `factory stats`: how a run (or every run) went, computed from what the store holds: tasks,
// attempts, events and the model-call ledger. Read-only; one consistent snapshot.
//
// Definitions (the figures are exactly these, so they can be checked against the store):
//  - Attempts are the attempt rows of the tasks, except `released` ones (a worker shutting down
//    handed the task back; the queue does not count those). A task's first attempt is its
//    counted attempt with the lowest epoch; a first attempt counts for the success rate once it
//    has finished (any status but `running`) and succeeds when its status is `succeeded`.
//  - attempts_per_task = attempts of the tasks that have any / the number of those tasks.
//  - Rebases are events of kind events::EventKind::kTaskRebased ("task.rebased") on the tasks.
//  - Tokens and cost come from the ledger and the attempt details, each call or attempt counted
//    once. An attempt whose runner's calls are in the ledger (purpose kRunnerCallPurpose or
//    kGatewayCallPurpose, attempt_id = the attempt's id) gets its usage from those metered
//    calls; any other attempt from what its runner reported in the details (`usage`
//    {input_tokens, output_tokens, cached_tokens, cost_usd, model}; a top-level `cost_usd`
//    when `usage` has none). Every other ledger call (planning, review, rebase, runner calls of
//    no known attempt) is added as well, to its task when its task_id is the task's id, backlog
//    id or idempotency key. model_calls = the ledger calls counted. cost_per_task = cost / tasks.
//  - Task time: for `done` and `failed` tasks with a finished attempt, from the start of the
//    first attempt to the latest finish of any attempt (retry backoff included).
//  - Prompt sizes: `prompt_bytes` of the attempts that recorded one (> 0).
//  - Percentiles are nearest-rank: the value at rank ceil(p/100 * n) of the sorted samples.
//  - Per agent / per model: attempt figures (attempts, first attempts, prompt sizes, and the
//    usage reported in the details) go to the agent (`details.agent`) and model
//    (`details.usage.model`) of each attempt; ledger calls go to their own agent and model.
//    Task figures (tasks, states, attempts per task, rebases, task time) go to the agent and
//    model of the task's last counted attempt; a task without one goes to its explicit agent,
//    else to "" (none).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/store.h"

namespace factory::stats {

// The purposes (llm::CallContext::purpose) of the calls an attempt's runner makes: the built-in
// tool loop's, and an external CLI agent's through the gateway. They are the metered truth of
// the attempt's usage (see above).
inline constexpr char kRunnerCallPurpose[] = "tool_loop";
inline constexpr char kGatewayCallPurpose[] = "gateway";

struct StatsQuery {
  std::string run_id;  // empty: every run
};

// Summary of samples (milliseconds or bytes); every value is nullopt when count is 0.
struct Distribution {
  int64_t count = 0;
  std::optional<double> mean;
  std::optional<int64_t> p50;
  std::optional<int64_t> p90;
  std::optional<int64_t> max;
};

// The figures of the whole selection, or of one agent or model.
struct Figures {
  std::string key;  // agent or model name; "" = none (and for the totals)
  // Task figures.
  int64_t tasks = 0;
  int64_t done = 0;
  int64_t failed = 0;
  int64_t blocked = 0;
  int64_t cancelled = 0;
  int64_t attempted_tasks = 0;              // tasks with at least one counted attempt
  int64_t attempts_of_tasks = 0;            // their counted attempts
  std::optional<double> attempts_per_task;  // attempts_of_tasks / attempted_tasks
  int64_t rebases = 0;
  int64_t rebased_tasks = 0;
  Distribution task_time_ms;
  // Attempt and model-call figures.
  int64_t attempts = 0;
  int64_t first_attempts = 0;  // finished first attempts
  int64_t first_attempt_successes = 0;
  std::optional<double> first_attempt_success_rate;  // successes / first_attempts
  int64_t model_calls = 0;                           // ledger calls counted (see above)
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;
  double cost_usd = 0;
  std::optional<double> cost_per_task_usd;  // cost_usd / tasks
  Distribution prompt_bytes;
};

// One task's own figures.
struct TaskFigures {
  std::string id;
  std::string key;  // backlog id, else idempotency key, else id
  std::string title;
  std::string state;
  std::string agent;  // as attributed above
  std::string model;
  int64_t attempts = 0;
  std::optional<bool> first_attempt_succeeded;  // nullopt: no finished first attempt
  int64_t rebases = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;
  double cost_usd = 0;
  std::optional<int64_t> time_ms;
  std::optional<int64_t> max_prompt_bytes;
};

struct StatsReport {
  std::string run_id;  // "" = every run
  Figures total;
  std::vector<Figures> by_agent;   // ordered by key
  std::vector<Figures> by_model;   // ordered by key
  std::vector<TaskFigures> tasks;  // in task id order
};

// Computes the report on one read snapshot. NotFound when query.run_id names no run and no
// task; store errors otherwise.
Result<StatsReport> ComputeStats(Store& store, const StatsQuery& query);

// The nearest-rank percentile (0 < p <= 100) of samples; nullopt when empty.
std::optional<int64_t> Percentile(std::vector<int64_t> samples, double p);

// The report as JSON text (for `factory stats --json`):
// {"run": RUN|null, "total": FIGURES, "by_agent": [FIGURES...], "by_model": [...],
//  "tasks": [TASK...]} where FIGURES is {"key", "tasks", "done", "failed", "blocked",
// "cancelled", "attempted_tasks", "attempts_of_tasks", "attempts_per_task", "rebases",
// "rebased_tasks", "task_time_ms": {"count", "mean", "p50", "p90", "max"}, "attempts",
// "first_attempts", "first_attempt_successes", "first_attempt_success_rate", "model_calls",
// "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "cost_per_task_usd",
// "prompt_bytes": {"count", "mean", "p50", "p90", "max"}} (undefined ratios and empty
// distributions are null) and TASK is {"id", "key", "title", "state", "agent", "model",
// "attempts", "first_attempt_succeeded", "rebases", "input_tokens", "output_tokens",
// "cached_tokens", "cost_usd", "time_ms", "max_prompt_bytes"}.
std::string StatsReportJson(const StatsReport& report);

// The report as the human-readable text `factory stats` prints (with_tasks adds a per-task
// table).
std::string StatsReportText(const StatsReport& report, bool with_tasks);

}  // namespace factory::stats
