// `factory task add|list|show|cancel|retry`.

#include <fmt/format.h>

#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/json_format.h"
#include "cli/service_glue.h"
#include "cli/validate.h"
#include "core/clock.h"
#include "core/ulid.h"
#include "queue/queue.h"
#include "store/details.h"

namespace factory::cli {
namespace {

// Task commands work on the database alone: no repository is opened.
service::ServiceOptions CliServiceOptions() {
  service::ServiceOptions options;
  options.actor = "cli";
  return options;
}

std::string Ellipsize(const std::string& text, size_t max_chars) {
  if (text.size() <= max_chars) return text;
  return text.substr(0, max_chars - 3) + "...";
}

// --- add

struct AddArgs {
  std::string title;
  std::string spec;
  std::string spec_file;
  int priority = 0;
  std::vector<std::string> depends_on;
  std::string idempotency_key;
  int max_attempts = 3;
  int max_crashes = 5;
  std::string command;
  std::string run = kDefaultRunId;
  bool json = false;
};

int RunAdd(const CliContext& ctx, AddArgs& args, const CLI::App& cmd) {
  service::AddTaskRequest request;
  request.title = args.title;
  if (!args.spec_file.empty()) {
    auto spec = ReadSpecFile(args.spec_file);
    if (!spec) return ReportError(spec.error());
    request.spec = std::move(*spec);
  } else {
    request.spec = args.spec;
  }
  if (cmd.count("--command") > 0) request.command = args.command;
  if (cmd.count("--idempotency-key") > 0) request.idempotency_key = args.idempotency_key;
  request.run = args.run;
  request.priority = args.priority;
  request.max_attempts = args.max_attempts;
  request.max_crashes = args.max_crashes;
  request.depends_on = args.depends_on;

  auto opened = OpenService(ctx, CliServiceOptions());
  if (!opened) return ReportError(opened.error());
  auto result = opened->service->AddTask(request);
  if (!result) return ReportServiceError(result.error());
  if (args.json) {
    Json json = TaskToJson(result->task);
    json["created"] = result->created;
    std::cout << DumpJson(json) << "\n";
  } else {
    std::cout << result->task.id << "\n";
  }
  return kExitOk;
}

// --- list

struct ListArgs {
  std::string state;
  std::string run;
  int limit = 0;
  bool json = false;
};

int RunList(const CliContext& ctx, const ListArgs& args) {
  auto opened = OpenService(ctx, CliServiceOptions());
  if (!opened) return ReportError(opened.error());
  auto page = opened->service->ListTasks(
      service::ListTasksRequest{.run = args.run, .state = args.state, .limit = args.limit});
  if (!page) return ReportServiceError(page.error());
  const std::vector<Task>* tasks = &page->tasks;

  if (args.json) {
    Json json = Json::array();
    for (const auto& task : *tasks) json.push_back(TaskToJson(task));
    std::cout << DumpJson(json) << "\n";
    return kExitOk;
  }
  if (tasks->empty()) {
    std::cout << "no tasks\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<26}  {:<9}  {:>4}  {:>8}  {}\n", "ID", "STATE", "PRI", "ATTEMPTS",
                           "TITLE");
  for (const auto& task : *tasks) {
    std::cout << fmt::format(
        "{:<26}  {:<9}  {:>4}  {:>8}  {}\n", task.id, TaskStateName(task.state), task.priority,
        fmt::format("{}/{}", task.attempts, task.max_attempts), Ellipsize(task.title, 80));
  }
  return kExitOk;
}

// --- show

int RunShow(const CliContext& ctx, const std::string& id, bool json_output) {
  auto opened = OpenService(ctx, CliServiceOptions());
  if (!opened) return ReportError(opened.error());
  auto details = opened->service->GetTask(id);
  if (!details) return ReportServiceError(details.error());
  const Task* task = &details->task;
  const std::vector<Attempt>* attempts = &details->attempts;
  const std::vector<Event>* events = &details->events;

  if (json_output) {
    Json json = TaskToJson(*task);
    json["attempt_history"] = Json::array();
    for (const auto& attempt : *attempts) json["attempt_history"].push_back(AttemptToJson(attempt));
    json["events"] = Json::array();
    for (const auto& event : *events) json["events"].push_back(EventToJson(event));
    std::cout << DumpJson(json) << "\n";
    return kExitOk;
  }

  std::cout << fmt::format("id:              {}\n", task->id);
  std::cout << fmt::format("title:           {}\n", task->title);
  std::cout << fmt::format("state:           {}\n", TaskStateName(task->state));
  std::cout << fmt::format("run:             {}\n", task->run_id);
  std::cout << fmt::format("priority:        {}\n", task->priority);
  std::cout << fmt::format("attempts:        {}/{}\n", task->attempts, task->max_attempts);
  std::cout << fmt::format("crashes:         {}/{} (attempts ended by their worker's death)\n",
                           task->crashes, task->max_crashes);
  std::cout << fmt::format("idempotency key: {}\n", task->idempotency_key.value_or("-"));
  std::cout << fmt::format(
      "depends on:      {}\n",
      task->depends_on.empty() ? "-" : fmt::format("{}", fmt::join(task->depends_on, ", ")));
  if (!task->command.empty()) std::cout << fmt::format("command:         {}\n", task->command);
  if (auto metadata = ParseTaskMetadata(task->metadata_json);
      metadata && (!metadata->backlog_id.empty() || !metadata->scope.empty())) {
    // A backlog task's paths; without any it may change the whole repository.
    const std::vector<std::string>& globs = metadata->scope;
    std::cout << fmt::format(
        "scope:           {}\n",
        globs.empty() ? "(whole repository)" : fmt::format("{}", fmt::join(globs, ", ")));
  }
  if (!task->lease_owner.empty()) {
    std::cout << fmt::format("lease:           {} until {}\n", task->lease_owner,
                             FormatTimestamp(task->lease_expires_ms));
  }
  std::cout << fmt::format("created:         {}\n", FormatTimestamp(task->created_ms));
  std::cout << fmt::format("updated:         {}\n", FormatTimestamp(task->updated_ms));
  if (!task->spec.empty()) std::cout << "spec:\n" << task->spec << "\n";
  if (!attempts->empty()) {
    std::cout << "attempts:\n";
    for (const auto& attempt : *attempts) {
      std::cout << fmt::format(
          "  #{} {} {} started {}{}{}\n", attempt.number, AttemptStatusName(attempt.status),
          attempt.owner, FormatTimestamp(attempt.started_ms),
          attempt.exit_code ? fmt::format(" exit {}", *attempt.exit_code) : std::string(),
          attempt.error.empty() ? std::string() : ": " + Ellipsize(attempt.error, 200));
    }
  }
  if (!events->empty()) {
    std::cout << "events:\n";
    for (const auto& event : *events) {
      std::cout << fmt::format("  {} {:<20} {}\n", FormatTimestamp(event.ts_ms), event.kind,
                               event.actor);
    }
  }
  return kExitOk;
}

// --- cancel / retry

int RunCancel(const CliContext& ctx, const std::string& id, const std::string& reason) {
  auto opened = OpenService(ctx, CliServiceOptions());
  if (!opened) return ReportError(opened.error());
  if (auto cancelled = opened->service->CancelTask(id, reason); !cancelled) {
    return ReportServiceError(cancelled.error());
  }
  std::cout << "cancelled " << id << "\n";
  return kExitOk;
}

int RunRetry(const CliContext& ctx, const std::string& id) {
  auto opened = OpenService(ctx, CliServiceOptions());
  if (!opened) return ReportError(opened.error());
  auto task = opened->service->RetryTask(id);
  if (!task) return ReportServiceError(task.error());
  std::cout << "retrying " << id << " (now " << TaskStateName(task->state) << ")\n";
  return kExitOk;
}

}  // namespace

void AddTaskCommands(CLI::App& app, CliContext& ctx) {
  auto* task = app.add_subcommand("task", "Add, list, show, cancel and retry tasks");
  task->require_subcommand(1);

  {
    auto args = std::make_shared<AddArgs>();
    auto* cmd = task->add_subcommand(
        "add", "Add a task; prints its id (the existing id when the idempotency key matched)");
    cmd->add_option("--title", args->title, "Short title")->required();
    auto* spec = cmd->add_option("--spec", args->spec, "What to do (text)");
    auto* spec_file =
        cmd->add_option("--spec-file", args->spec_file, "Read the spec from this file");
    spec->excludes(spec_file);
    cmd->add_option("--priority", args->priority, "Higher runs first; may be negative")
        ->check(NumberIn(-1'000'000, 1'000'000))
        ->capture_default_str();
    cmd->add_option("--depends-on", args->depends_on,
                    "Id of a task that must be done first (repeatable, or comma-separated)")
        ->delimiter(',');
    cmd->add_option("--idempotency-key", args->idempotency_key,
                    "Adding again with the same key (in the same run) returns the existing task");
    cmd->add_option("--max-attempts", args->max_attempts, "Attempts before failing finally")
        ->check(NumberIn(1, 1000))
        ->capture_default_str();
    cmd->add_option("--max-crashes", args->max_crashes,
                    "Attempts ended by the death of their worker (not counted as attempts) "
                    "before failing finally")
        ->check(NumberIn(1, 1000))
        ->capture_default_str();
    cmd->add_option("--command", args->command, "Shell command run by `factory worker`");
    cmd->add_option("--run", args->run, "Run the task belongs to")->capture_default_str();
    cmd->add_flag("--json", args->json, "Print the task as JSON");
    cmd->callback(
        [&ctx, args, cmd] { ctx.action = [&ctx, args, cmd] { return RunAdd(ctx, *args, *cmd); }; });
  }
  {
    auto args = std::make_shared<ListArgs>();
    auto* cmd = task->add_subcommand("list", "List tasks (oldest first)");
    cmd->add_option("--state", args->state, "Only tasks in this state");
    cmd->add_option("--run", args->run, "Only tasks of this run");
    cmd->add_option("--limit", args->limit, "At most this many (0: all)")
        ->check(NumberIn(0, std::numeric_limits<int>::max()));
    cmd->add_flag("--json", args->json, "Print a JSON array");
    cmd->callback([&ctx, args] { ctx.action = [&ctx, args] { return RunList(ctx, *args); }; });
  }
  {
    struct ShowArgs {
      std::string id;
      bool json = false;
    };
    auto args = std::make_shared<ShowArgs>();
    auto* cmd = task->add_subcommand("show", "Show a task with its attempts and events");
    cmd->add_option("id", args->id, "Task id")->required();
    cmd->add_flag("--json", args->json, "Print JSON (attempt_history and events included)");
    cmd->callback(
        [&ctx, args] { ctx.action = [&ctx, args] { return RunShow(ctx, args->id, args->json); }; });
  }
  {
    struct CancelArgs {
      std::string id;
      std::string reason;
    };
    auto args = std::make_shared<CancelArgs>();
    auto* cmd = task->add_subcommand("cancel",
                                     "Cancel a task; its dependents become blocked (transitively)");
    cmd->add_option("id", args->id, "Task id")->required();
    cmd->add_option("--reason", args->reason, "Recorded in the event log");
    cmd->callback([&ctx, args] {
      ctx.action = [&ctx, args] { return RunCancel(ctx, args->id, args->reason); };
    });
  }
  {
    auto id = std::make_shared<std::string>();
    auto* cmd = task->add_subcommand(
        "retry",
        "Put a failed or blocked task back to ready (attempts reset); unblocks dependents");
    cmd->add_option("id", *id, "Task id")->required();
    cmd->callback([&ctx, id] { ctx.action = [&ctx, id] { return RunRetry(ctx, *id); }; });
  }
}

}  // namespace factory::cli
