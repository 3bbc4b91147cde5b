#include "mcp/factory_backend.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <utility>

#include "core/clock.h"
#include "ledger/ledger.h"
#include "orchestrator/run.h"
#include "plan/backlog.h"
#include "queue/queue.h"
#include "stats/stats.h"
#include "workspace/worktree.h"

namespace factory::mcp {
namespace {

using json = nlohmann::json;

// A stored JSON text as a value (kept as a string when it does not parse).
json Parsed(const std::string& text) {
  if (text.empty()) return nullptr;
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? json(text) : value;
}

json TaskJson(const Task& task) {
  json out = {{"id", task.id},
              {"run", task.run_id},
              {"title", task.title},
              {"state", std::string(TaskStateName(task.state))},
              {"priority", task.priority},
              {"depends_on", task.depends_on},
              {"attempts", task.attempts},
              {"max_attempts", task.max_attempts},
              {"created", FormatTimestamp(task.created_ms)},
              {"updated", FormatTimestamp(task.updated_ms)}};
  if (!task.spec.empty()) out["spec"] = task.spec;
  if (!task.command.empty()) out["command"] = task.command;
  if (!task.agent.empty()) out["agent"] = task.agent;
  if (task.idempotency_key) out["idempotency_key"] = *task.idempotency_key;
  if (!task.result_json.empty()) out["result"] = Parsed(task.result_json);
  return out;
}

json AttemptJson(const Attempt& attempt) {
  json out = {{"epoch", attempt.epoch},
              {"status", std::string(AttemptStatusName(attempt.status))},
              {"started", FormatTimestamp(attempt.started_ms)}};
  if (attempt.finished_ms > 0) out["finished"] = FormatTimestamp(attempt.finished_ms);
  if (attempt.exit_code) out["exit_code"] = *attempt.exit_code;
  if (!attempt.error.empty()) out["error"] = attempt.error;
  return out;
}

// Starts `argv` detached (its own session, stdin /dev/null, output appended to log_path) and
// does not wait for it: a grandchild, so no zombie is left behind.
Status SpawnDetached(const std::vector<std::string>& argv, const std::filesystem::path& cwd,
                     const std::filesystem::path& log_path) {
  const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return Unavailable("cannot open " + log_path.string());
  std::vector<char*> cargv;
  std::vector<std::string> args = argv;
  for (auto& arg : args) cargv.push_back(arg.data());
  cargv.push_back(nullptr);
  const pid_t child = fork();
  if (child < 0) {
    close(log);
    return Unavailable("fork failed");
  }
  if (child == 0) {
    setsid();
    if (fork() != 0) _exit(0);
    const int null_in = open("/dev/null", O_RDONLY);
    if (null_in < 0 || chdir(cwd.c_str()) != 0) _exit(127);
    dup2(null_in, 0);
    dup2(log, 1);
    dup2(log, 2);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(log);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Unavailable("cannot start the run");
  return Ok();
}

class FactoryBackend final : public Backend {
 public:
  FactoryBackend(Store& store, FactoryBackendOptions options)
      : store_(store), options_(std::move(options)), queue_(store, QueueOptions{.actor = "mcp"}) {}

  Result<json> CreateTask(const CreateTaskArgs& args) override {
    EnqueueRequest request{.run_id = args.run.empty() ? std::string(kDefaultRunId) : args.run,
                           .title = args.title,
                           .spec = args.spec,
                           .command = args.command,
                           .priority = static_cast<int>(args.priority),
                           .depends_on = args.depends_on,
                           .idempotency_key = args.idempotency_key};
    FACTORY_ASSIGN_OR_RETURN(EnqueueResult result, queue_.Enqueue(request));
    return json{{"task", TaskJson(result.task)}, {"created", result.created}};
  }

  Result<json> ListTasks(const ListTasksArgs& args) override {
    // The cursor is the id of the last task of the previous page (tasks come in id order).
    // Without an id bound in TaskQuery, a later page reads the tasks before it too.
    TaskQuery query{.run_id = args.run, .limit = args.cursor.empty() ? args.limit + 1 : 0};
    if (!args.state.empty()) {
      auto state = ParseTaskState(args.state);
      if (!state) return InvalidArgument("argument 'state': unknown state '" + args.state + "'");
      query.state = *state;
    }
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, queue_.ListTasks(query));
    json out = json::array();
    bool more = false;
    for (const Task& task : tasks) {
      if (!args.cursor.empty() && task.id <= args.cursor) continue;
      if (static_cast<int>(out.size()) == args.limit) {
        more = true;
        break;
      }
      out.push_back(TaskJson(task));
    }
    json page = {{"tasks", out}};
    if (more) page["next_cursor"] = out.back()["id"];
    return page;
  }

  Result<json> GetTask(const std::string& id) override {
    FACTORY_ASSIGN_OR_RETURN(Task task, queue_.GetTask(id));
    FACTORY_ASSIGN_OR_RETURN(std::vector<Attempt> attempts, queue_.ListAttempts(id));
    json out = json::array();
    for (const Attempt& attempt : attempts) out.push_back(AttemptJson(attempt));
    return json{{"task", TaskJson(task)}, {"attempts", std::move(out)}};
  }

  Result<json> StartRun(const StartRunArgs& args) override {
    const std::string run_id = args.run_id.empty() ? NewRunId() : args.run_id;
    FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("argument 'run_id'", run_id));
    FACTORY_ASSIGN_OR_RETURN(std::optional<Run> existing, ReadRun(run_id));
    if (existing) {
      return FailedPrecondition("run " + run_id + " exists already (state " + existing->state +
                                "): choose another run_id");
    }
    const std::filesystem::path dir = options_.factory_dir / "mcp";
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Unavailable("cannot create " + dir.string() + ": " + ec.message());
    std::filesystem::path input;
    std::vector<std::string> argv = {options_.factory_binary.string(), "run"};
    if (!args.feature.empty()) {
      input = dir / (run_id + ".feature.md");
      argv.push_back(input.string());
    } else {
      const std::string text = args.backlog.dump(2);
      // Checked here, so a bad backlog is a tool error rather than a failed background run.
      FACTORY_RETURN_IF_ERROR(ParseBacklogJson(text, "argument 'backlog'"));
      input = dir / (run_id + ".backlog.json");
      argv.insert(argv.end(), {"--backlog", input.string()});
    }
    {
      std::ofstream out(input, std::ios::binary | std::ios::trunc);
      out << (args.feature.empty() ? args.backlog.dump(2) : args.feature);
      if (!out) return Unavailable("cannot write " + input.string());
    }
    argv.insert(argv.end(), {"--run-id", run_id, "--plain", "--db",
                             std::filesystem::absolute(options_.db_path)});
    const std::filesystem::path log = dir / (run_id + ".log");
    FACTORY_RETURN_IF_ERROR(SpawnDetached(argv, options_.project_dir, log));
    return json{{"run_id", run_id},
                {"state", "starting"},
                {"input", input.string()},
                {"log", log.string()}};
  }

  Result<json> RunStatus(const std::string& run) override {
    FACTORY_ASSIGN_OR_RETURN(std::optional<Run> found, ReadRun(run));
    if (!found) return NotFound("run " + run + " does not exist");
    FACTORY_ASSIGN_OR_RETURN(auto counts, queue_.Stats(run));
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, queue_.ListTasks(TaskQuery{.run_id = run}));
    json task_states = json::array();
    for (const Task& task : tasks) {
      task_states.push_back({{"id", task.id},
                             {"title", task.title},
                             {"state", std::string(TaskStateName(task.state))}});
    }
    return json{{"run",
                 {{"id", found->id},
                  {"title", found->title},
                  {"state", found->state},
                  {"created", FormatTimestamp(found->created_ms)},
                  {"updated", FormatTimestamp(found->updated_ms)}}},
                {"counts", counts},
                {"tasks", std::move(task_states)}};
  }

  Result<json> CancelRun(const std::string& run) override {
    FACTORY_ASSIGN_OR_RETURN(std::optional<Run> found, ReadRun(run));
    if (!found) return NotFound("run " + run + " does not exist");
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, queue_.ListTasks(TaskQuery{.run_id = run}));
    int cancelled = 0;
    for (const Task& task : tasks) {
      if (task.state == TaskState::kDone || task.state == TaskState::kCancelled ||
          task.state == TaskState::kFailed) {
        continue;
      }
      Status status = queue_.Cancel(task.id, "cancelled over MCP");
      // A dependency's cancellation may have moved it on meanwhile (blocked is still open).
      if (status) ++cancelled;
    }
    FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(std::optional<Run> current, txn.GetRun(run));
      if (!current) return NotFound("run " + run + " does not exist");
      current->state = "cancelled";
      current->updated_ms = SystemClock().NowMillis();
      return txn.UpdateRun(*current);
    }));
    return json{{"run_id", run}, {"state", "cancelled"}, {"tasks_cancelled", cancelled}};
  }

  Result<json> RetryTask(const std::string& id) override {
    FACTORY_RETURN_IF_ERROR(queue_.Retry(id));
    FACTORY_ASSIGN_OR_RETURN(Task task, queue_.GetTask(id));
    return json{{"task", TaskJson(task)}};
  }

  Result<json> Costs(const CostsArgs& args) override {
    auto group = ledger::ParseCostGroup(args.by);
    if (!group) return std::unexpected(group.error().Wrap("argument 'by'"));
    int64_t since_ms = 0;
    if (!args.since.empty()) {
      auto parsed = ledger::ParseSince(args.since, SystemClock().NowMillis());
      if (!parsed) return std::unexpected(parsed.error().Wrap("argument 'since'"));
      since_ms = *parsed;
    }
    ledger::Ledger ledger(store_);
    FACTORY_ASSIGN_OR_RETURN(auto report, ledger.Costs(*group, since_ms));
    return json::parse(ledger::CostReportJson(report, *group, since_ms));
  }

  Result<json> Stats(const std::string& run) override {
    if (!run.empty()) {
      FACTORY_ASSIGN_OR_RETURN(std::optional<Run> found, ReadRun(run));
      if (!found) return NotFound("run " + run + " does not exist");
    }
    FACTORY_ASSIGN_OR_RETURN(stats::StatsReport report,
                             stats::ComputeStats(store_, stats::StatsQuery{.run_id = run}));
    return json::parse(stats::StatsReportJson(report));
  }

  Result<std::vector<std::string>> RunIds(int limit) override {
    std::vector<std::string> ids;
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(std::vector<Run> runs, txn.ListRuns(limit));
      for (const Run& run : runs) ids.push_back(run.id);
      return Ok();
    }));
    return ids;
  }

  Result<std::vector<std::string>> TaskIds(int limit) override {
    FACTORY_ASSIGN_OR_RETURN(std::vector<Task> tasks, queue_.ListTasks(TaskQuery{.limit = limit}));
    std::vector<std::string> ids;
    for (const Task& task : tasks) ids.push_back(task.id);
    return ids;
  }

 private:
  Result<std::optional<Run>> ReadRun(const std::string& id) {
    std::optional<Run> run;
    FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(run, txn.GetRun(id));
      return Ok();
    }));
    return run;
  }

  Store& store_;
  FactoryBackendOptions options_;
  Queue queue_;
};

}  // namespace

std::unique_ptr<Backend> NewFactoryBackend(Store& store, FactoryBackendOptions options) {
  return std::make_unique<FactoryBackend>(store, std::move(options));
}

}  // namespace factory::mcp
