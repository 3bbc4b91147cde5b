#include "stats/stats.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "events/event_kind.h"
#include "store/details.h"

namespace factory::stats {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kEventPage = 5000;

// What one attempt's details say about its agent, model, usage and prompt.
struct AttemptUsage {
  std::string agent;
  std::string model;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;
  double cost_usd = 0;
  int64_t prompt_bytes = 0;
};

// REQUIRES: details read by ParseAttemptDetails.
AttemptUsage ReadUsage(const AttemptDetails& details) {
  AttemptUsage usage;
  usage.agent = details.agent;
  usage.prompt_bytes = std::max<int64_t>(details.prompt_bytes.value_or(0), 0);
  if (details.usage) {
    usage.model = details.usage->model;
    usage.input_tokens = details.usage->input_tokens;
    usage.output_tokens = details.usage->output_tokens;
    usage.cached_tokens = details.usage->cached_tokens;
  }
  usage.cost_usd = details.AgentCostUsd();
  return usage;
}

// The key the orchestrator names a task by (orchestrator's TaskKey, without its path checks).
std::string TaskKeyOf(const Task& task, const TaskMetadata& metadata) {
  if (!metadata.backlog_id.empty()) return metadata.backlog_id;
  if (task.idempotency_key && !task.idempotency_key->empty()) return *task.idempotency_key;
  return task.id;
}

// Figures plus the raw samples their distributions are computed from.
struct Accumulator {
  Figures figures;
  std::vector<int64_t> task_times_ms;
  std::vector<int64_t> prompt_bytes;
};

Distribution Summarize(const std::vector<int64_t>& samples) {
  Distribution distribution;
  distribution.count = static_cast<int64_t>(samples.size());
  if (samples.empty()) return distribution;
  double sum = 0;
  for (int64_t sample : samples) sum += static_cast<double>(sample);
  distribution.mean = sum / static_cast<double>(samples.size());
  distribution.p50 = Percentile(samples, 50);
  distribution.p90 = Percentile(samples, 90);
  distribution.max = *std::max_element(samples.begin(), samples.end());
  return distribution;
}

Figures Finish(Accumulator& accumulator) {
  Figures figures = std::move(accumulator.figures);
  if (figures.attempted_tasks > 0) {
    figures.attempts_per_task = static_cast<double>(figures.attempts_of_tasks) /
                                static_cast<double>(figures.attempted_tasks);
  }
  if (figures.first_attempts > 0) {
    figures.first_attempt_success_rate = static_cast<double>(figures.first_attempt_successes) /
                                         static_cast<double>(figures.first_attempts);
  }
  if (figures.tasks > 0)
    figures.cost_per_task_usd = figures.cost_usd / static_cast<double>(figures.tasks);
  figures.task_time_ms = Summarize(accumulator.task_times_ms);
  figures.prompt_bytes = Summarize(accumulator.prompt_bytes);
  return figures;
}

void AddUsage(Figures& figures, int64_t input, int64_t output, int64_t cached, double cost) {
  figures.input_tokens += input;
  figures.output_tokens += output;
  figures.cached_tokens += cached;
  figures.cost_usd += cost;
}

// Everything the report needs, read in one snapshot.
struct Snapshot {
  bool run_exists = false;
  std::vector<Task> tasks;
  std::vector<std::vector<Attempt>> attempts;  // parallel to tasks
  std::map<std::string, int64_t> rebases;      // task id -> task.rebased events
  std::vector<ModelCallRow> calls;
};

Result<Snapshot> ReadSnapshot(Store& store, const StatsQuery& query) {
  Snapshot snapshot;
  FACTORY_RETURN_IF_ERROR(store.Read([&](StoreTxn& txn) -> Status {
    snapshot = Snapshot{};
    if (!query.run_id.empty()) {
      FACTORY_ASSIGN_OR_RETURN(std::optional<Run> run, txn.GetRun(query.run_id));
      snapshot.run_exists = run.has_value();
    }
    FACTORY_ASSIGN_OR_RETURN(snapshot.tasks, txn.ListTasks(TaskQuery{.run_id = query.run_id}));
    for (const Task& task : snapshot.tasks) {
      FACTORY_ASSIGN_OR_RETURN(std::vector<Attempt> attempts, txn.ListAttempts(task.id));
      snapshot.attempts.push_back(std::move(attempts));
    }
    EventQuery events{.after_seq = 0, .run_id = query.run_id, .limit = kEventPage};
    while (true) {
      FACTORY_ASSIGN_OR_RETURN(std::vector<Event> page, txn.ListEvents(events));
      for (const Event& event : page) {
        if (events::KindOf(event) == events::EventKind::kTaskRebased && !event.task_id.empty())
          ++snapshot.rebases[event.task_id];
      }
      if (static_cast<int>(page.size()) < kEventPage) break;
      events.after_seq = page.back().seq;
    }
    FACTORY_ASSIGN_OR_RETURN(snapshot.calls,
                             txn.ListModelCalls(ModelCallQuery{.run_id = query.run_id}));
    return Ok();
  }));
  return snapshot;
}

Json DistributionJson(const Distribution& distribution) {
  auto value = [](const auto& optional) { return optional ? Json(*optional) : Json(nullptr); };
  return Json{{"count", distribution.count},
              {"mean", value(distribution.mean)},
              {"p50", value(distribution.p50)},
              {"p90", value(distribution.p90)},
              {"max", value(distribution.max)}};
}

template <typename T>
Json Nullable(const std::optional<T>& value) {
  return value ? Json(*value) : Json(nullptr);
}

Json FiguresJson(const Figures& figures) {
  return Json{{"key", figures.key},
              {"tasks", figures.tasks},
              {"done", figures.done},
              {"failed", figures.failed},
              {"blocked", figures.blocked},
              {"cancelled", figures.cancelled},
              {"attempted_tasks", figures.attempted_tasks},
              {"attempts_of_tasks", figures.attempts_of_tasks},
              {"attempts_per_task", Nullable(figures.attempts_per_task)},
              {"rebases", figures.rebases},
              {"rebased_tasks", figures.rebased_tasks},
              {"task_time_ms", DistributionJson(figures.task_time_ms)},
              {"attempts", figures.attempts},
              {"first_attempts", figures.first_attempts},
              {"first_attempt_successes", figures.first_attempt_successes},
              {"first_attempt_success_rate", Nullable(figures.first_attempt_success_rate)},
              {"model_calls", figures.model_calls},
              {"input_tokens", figures.input_tokens},
              {"output_tokens", figures.output_tokens},
              {"cached_tokens", figures.cached_tokens},
              {"cost_usd", figures.cost_usd},
              {"cost_per_task_usd", Nullable(figures.cost_per_task_usd)},
              {"prompt_bytes", DistributionJson(figures.prompt_bytes)}};
}

std::string Seconds(const std::optional<double>& ms) {
  return ms ? fmt::format("{:.1f}s", *ms / 1000.0) : "-";
}
std::string Seconds(const std::optional<int64_t>& ms) {
  return ms ? fmt::format("{:.1f}s", static_cast<double>(*ms) / 1000.0) : "-";
}
std::string Bytes(const std::optional<double>& bytes) {
  return bytes ? fmt::format("{:.0f}", *bytes) : "-";
}
std::string Bytes(const std::optional<int64_t>& bytes) {
  return bytes ? std::to_string(*bytes) : "-";
}
std::string Percent(int64_t part, int64_t whole) {
  return whole > 0 ? fmt::format("{}/{} ({:.1f}%)", part, whole,
                                 100.0 * static_cast<double>(part) / static_cast<double>(whole))
                   : "-";
}

std::string GroupTable(const char* title, const std::vector<Figures>& groups) {
  std::string out = fmt::format(
      "\n{:<20} {:>5} {:>5} {:>5} {:>5} {:>8} {:>14} {:>7} {:>10} {:>10} {:>10} {:>8} {:>8} "
      "{:>8}\n",
      title, "TASKS", "DONE", "FAIL", "BLOCK", "ATTEMPTS", "FIRST-OK", "REBASES", "TOKENS-IN",
      "TOKENS-OUT", "COST-USD", "T-MEAN", "T-P90", "PROMPT50");
  for (const Figures& group : groups) {
    out += fmt::format(
        "{:<20} {:>5} {:>5} {:>5} {:>5} {:>8} {:>14} {:>7} {:>10} {:>10} {:>10.4f} {:>8} {:>8} "
        "{:>8}\n",
        group.key.empty() ? "(none)" : group.key, group.tasks, group.done, group.failed,
        group.blocked, group.attempts,
        group.first_attempts > 0
            ? fmt::format("{}/{}", group.first_attempt_successes, group.first_attempts)
            : "-",
        group.rebases, group.input_tokens, group.output_tokens, group.cost_usd,
        Seconds(group.task_time_ms.mean), Seconds(group.task_time_ms.p90),
        Bytes(group.prompt_bytes.p50));
  }
  return out;
}

}  // namespace

std::optional<int64_t> Percentile(std::vector<int64_t> samples, double p) {
  if (samples.empty() || !(p > 0) || p > 100) return std::nullopt;
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(samples.size())));
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

Result<StatsReport> ComputeStats(Store& store, const StatsQuery& query) {
  FACTORY_ASSIGN_OR_RETURN(Snapshot snapshot, ReadSnapshot(store, query));
  if (!query.run_id.empty() && !snapshot.run_exists && snapshot.tasks.empty()) {
    return NotFound("no run '" + query.run_id + "' (see `factory runs`)");
  }

  StatsReport report;
  report.run_id = query.run_id;
  Accumulator total;
  std::map<std::string, Accumulator> by_agent;
  std::map<std::string, Accumulator> by_model;
  // Each of these updates the totals and the given agent's and model's figures.
  auto each = [&](const std::string& agent, const std::string& model, auto&& update) {
    update(total);
    by_agent[agent].figures.key = agent;
    update(by_agent[agent]);
    by_model[model].figures.key = model;
    update(by_model[model]);
  };

  // Ledger calls are found by (run, task id | backlog id | idempotency key).
  std::map<std::pair<std::string, std::string>, size_t> task_by_key;
  // Runner calls by attempt id; each call is counted once, by its attempt or as an other call.
  std::map<std::string, std::vector<size_t>> runner_calls;
  std::vector<bool> counted(snapshot.calls.size(), false);
  for (size_t index = 0; index < snapshot.calls.size(); ++index) {
    const ModelCallRow& call = snapshot.calls[index];
    if (!call.attempt_id.empty() &&
        (call.purpose == kRunnerCallPurpose || call.purpose == kGatewayCallPurpose)) {
      runner_calls[call.attempt_id].push_back(index);
    }
  }
  auto add_call = [&](const ModelCallRow& call, TaskFigures* row) {
    each(call.agent, call.model, [&](Accumulator& accumulator) {
      ++accumulator.figures.model_calls;
      AddUsage(accumulator.figures, call.input_tokens, call.output_tokens, call.cached_tokens,
               call.cost_usd);
    });
    if (row == nullptr) return;
    row->input_tokens += call.input_tokens;
    row->output_tokens += call.output_tokens;
    row->cached_tokens += call.cached_tokens;
    row->cost_usd += call.cost_usd;
  };

  for (size_t index = 0; index < snapshot.tasks.size(); ++index) {
    const Task& task = snapshot.tasks[index];
    std::vector<Attempt> attempts;
    for (const Attempt& attempt : snapshot.attempts[index]) {
      if (attempt.status != AttemptStatus::kReleased) attempts.push_back(attempt);
    }
    std::sort(attempts.begin(), attempts.end(),
              [](const Attempt& a, const Attempt& b) { return a.epoch < b.epoch; });
    std::vector<AttemptUsage> usages;
    for (const Attempt& attempt : attempts) {
      auto details = ParseAttemptDetails(attempt.details_json);
      if (!details) return std::unexpected(details.error().Wrap("attempt " + attempt.id));
      usages.push_back(ReadUsage(*details));
    }
    auto metadata = ParseTaskMetadata(task.metadata_json);
    if (!metadata) return std::unexpected(metadata.error().Wrap("task " + task.id));

    TaskFigures row;
    row.id = task.id;
    row.key = TaskKeyOf(task, *metadata);
    row.title = task.title;
    row.state = std::string(TaskStateName(task.state));
    row.agent = usages.empty() ? task.agent : usages.back().agent;
    row.model = usages.empty() ? std::string() : usages.back().model;
    row.attempts = static_cast<int64_t>(attempts.size());
    auto rebases = snapshot.rebases.find(task.id);
    row.rebases = rebases == snapshot.rebases.end() ? 0 : rebases->second;
    task_by_key.emplace(std::make_pair(task.run_id, task.id), index);
    task_by_key.emplace(std::make_pair(task.run_id, row.key), index);
    if (task.idempotency_key)
      task_by_key.emplace(std::make_pair(task.run_id, *task.idempotency_key), index);

    if ((task.state == TaskState::kDone || task.state == TaskState::kFailed) && !attempts.empty()) {
      int64_t finished = 0;
      for (const Attempt& attempt : attempts) finished = std::max(finished, attempt.finished_ms);
      if (finished > 0) row.time_ms = std::max<int64_t>(finished - attempts.front().started_ms, 0);
    }

    // Task figures: to the agent and model of the last attempt.
    each(row.agent, row.model, [&](Accumulator& accumulator) {
      Figures& figures = accumulator.figures;
      ++figures.tasks;
      figures.done += task.state == TaskState::kDone;
      figures.failed += task.state == TaskState::kFailed;
      figures.blocked += task.state == TaskState::kBlocked;
      figures.cancelled += task.state == TaskState::kCancelled;
      if (!attempts.empty()) {
        ++figures.attempted_tasks;
        figures.attempts_of_tasks += row.attempts;
      }
      figures.rebases += row.rebases;
      figures.rebased_tasks += row.rebases > 0;
      if (row.time_ms) accumulator.task_times_ms.push_back(*row.time_ms);
    });

    // The first attempt: to its own agent and model.
    if (!attempts.empty() && attempts.front().status != AttemptStatus::kRunning) {
      const bool succeeded = attempts.front().status == AttemptStatus::kSucceeded;
      row.first_attempt_succeeded = succeeded;
      each(usages.front().agent, usages.front().model, [&](Accumulator& accumulator) {
        ++accumulator.figures.first_attempts;
        accumulator.figures.first_attempt_successes += succeeded;
      });
    }

    // Every attempt: to its own agent and model; its usage from its runner's metered calls
    // when the ledger has any, else from what the runner reported.
    for (size_t attempt_index = 0; attempt_index < attempts.size(); ++attempt_index) {
      const Attempt& attempt = attempts[attempt_index];
      const AttemptUsage& usage = usages[attempt_index];
      std::vector<size_t> metered;
      // The attempt's id; older tool loops used "<backlog key>-<attempt number>".
      for (const std::string& id : {attempt.id, row.key + "-" + std::to_string(attempt.number)}) {
        auto found = runner_calls.find(id);
        if (found == runner_calls.end()) continue;
        for (size_t call_index : found->second) {
          if (!counted[call_index]) metered.push_back(call_index);
          counted[call_index] = true;
        }
      }
      if (usage.prompt_bytes > 0) {
        row.max_prompt_bytes = std::max(row.max_prompt_bytes.value_or(0), usage.prompt_bytes);
      }
      each(usage.agent, usage.model, [&](Accumulator& accumulator) {
        ++accumulator.figures.attempts;
        if (usage.prompt_bytes > 0) accumulator.prompt_bytes.push_back(usage.prompt_bytes);
        if (!metered.empty()) return;
        AddUsage(accumulator.figures, usage.input_tokens, usage.output_tokens, usage.cached_tokens,
                 usage.cost_usd);
      });
      if (metered.empty()) {
        row.input_tokens += usage.input_tokens;
        row.output_tokens += usage.output_tokens;
        row.cached_tokens += usage.cached_tokens;
        row.cost_usd += usage.cost_usd;
      }
      for (size_t call_index : metered) add_call(snapshot.calls[call_index], &row);
    }
    report.tasks.push_back(std::move(row));
  }

  // The other model calls: planning, review, rebase, and runner calls of no known attempt.
  for (size_t index = 0; index < snapshot.calls.size(); ++index) {
    if (counted[index]) continue;
    const ModelCallRow& call = snapshot.calls[index];
    auto owner = task_by_key.find({call.run_id, call.task_id});
    const bool has_owner = !call.task_id.empty() && owner != task_by_key.end();
    add_call(call, has_owner ? &report.tasks[owner->second] : nullptr);
  }

  report.total = Finish(total);
  for (auto& [key, accumulator] : by_agent) report.by_agent.push_back(Finish(accumulator));
  for (auto& [key, accumulator] : by_model) report.by_model.push_back(Finish(accumulator));
  return report;
}

std::string StatsReportJson(const StatsReport& report) {
  Json out{{"run", report.run_id.empty() ? Json(nullptr) : Json(report.run_id)},
           {"total", FiguresJson(report.total)},
           {"by_agent", Json::array()},
           {"by_model", Json::array()},
           {"tasks", Json::array()}};
  for (const Figures& group : report.by_agent) out["by_agent"].push_back(FiguresJson(group));
  for (const Figures& group : report.by_model) out["by_model"].push_back(FiguresJson(group));
  for (const TaskFigures& task : report.tasks) {
    out["tasks"].push_back(Json{{"id", task.id},
                                {"key", task.key},
                                {"title", task.title},
                                {"state", task.state},
                                {"agent", task.agent},
                                {"model", task.model},
                                {"attempts", task.attempts},
                                {"first_attempt_succeeded", Nullable(task.first_attempt_succeeded)},
                                {"rebases", task.rebases},
                                {"input_tokens", task.input_tokens},
                                {"output_tokens", task.output_tokens},
                                {"cached_tokens", task.cached_tokens},
                                {"cost_usd", task.cost_usd},
                                {"time_ms", Nullable(task.time_ms)},
                                {"max_prompt_bytes", Nullable(task.max_prompt_bytes)}});
  }
  return out.dump(2, ' ', false, Json::error_handler_t::replace);
}

std::string StatsReportText(const StatsReport& report, bool with_tasks) {
  const Figures& t = report.total;
  std::string out = report.run_id.empty() ? "all runs\n" : "run " + report.run_id + "\n";
  out += fmt::format("tasks     {} (done {}, failed {}, blocked {}, cancelled {}, other {})\n",
                     t.tasks, t.done, t.failed, t.blocked, t.cancelled,
                     t.tasks - t.done - t.failed - t.blocked - t.cancelled);
  out += fmt::format("attempts  {} ({} per attempted task); first-attempt success {}\n", t.attempts,
                     t.attempts_per_task ? fmt::format("{:.2f}", *t.attempts_per_task) : "-",
                     Percent(t.first_attempt_successes, t.first_attempts));
  out += fmt::format("rebases   {} ({} tasks)\n", t.rebases, t.rebased_tasks);
  out += fmt::format("tokens    in {}, out {}, cached {} ({} other model calls)\n", t.input_tokens,
                     t.output_tokens, t.cached_tokens, t.model_calls);
  out += fmt::format("cost      ${:.4f} total, {} per task\n", t.cost_usd,
                     t.cost_per_task_usd ? fmt::format("${:.4f}", *t.cost_per_task_usd) : "-");
  out +=
      fmt::format("task time mean {}, p90 {} ({} finished tasks)\n", Seconds(t.task_time_ms.mean),
                  Seconds(t.task_time_ms.p90), t.task_time_ms.count);
  if (t.prompt_bytes.count == 0) {
    out += "prompts   none recorded\n";
  } else {
    out += fmt::format("prompts   mean {} B, p50 {} B, p90 {} B, max {} B ({} attempts)\n",
                       Bytes(t.prompt_bytes.mean), Bytes(t.prompt_bytes.p50),
                       Bytes(t.prompt_bytes.p90), Bytes(t.prompt_bytes.max), t.prompt_bytes.count);
  }
  out += GroupTable("AGENT", report.by_agent);
  out += GroupTable("MODEL", report.by_model);
  if (with_tasks) {
    out +=
        fmt::format("\n{:<26} {:<16} {:<9} {:<14} {:>8} {:>7} {:>10} {:>10} {:>8}\n", "TASK", "KEY",
                    "STATE", "AGENT", "ATTEMPTS", "REBASES", "TOKENS", "COST-USD", "TIME");
    for (const TaskFigures& task : report.tasks) {
      out +=
          fmt::format("{:<26} {:<16} {:<9} {:<14} {:>8} {:>7} {:>10} {:>10.4f} {:>8}\n", task.id,
                      task.key == task.id ? "-" : task.key, task.state,
                      task.agent.empty() ? "-" : task.agent, task.attempts, task.rebases,
                      task.input_tokens + task.output_tokens, task.cost_usd, Seconds(task.time_ms));
    }
  }
  return out;
}

}  // namespace factory::stats
