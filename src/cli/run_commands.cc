// `factory run --backlog FILE`, `factory run FEATURE.md [--plan-only] [--new-version]`,
// `factory run --spec FEATURE`, `factory run resume|show|merge RUN`, `factory runs` and
// `factory regenerate FEATURE`: the planning and final gates (src/feature) and execution
// pipeline (src/orchestrator) behind the CLI.

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cli.h"
#include "cli/service_glue.h"
#include "cli/signals.h"
#include "cli/validate.h"
#include "core/redact.h"
#include "core/sha256.h"
#include "feature/feature_run.h"
#include "feature/final_gates.h"
#include "feature/planned_backlog.h"
#include "feature/regenerate.h"
#include "orchestrator/environment.h"
#include "orchestrator/run_view.h"
#include "setup/agent_choice.h"

namespace factory::cli {
namespace {

struct RunArgs {
  std::string backlog;
  std::string feature;  // FEATURE.md
  int max_repairs = 2;
  std::string run_id;
  std::string repo = ".";
  std::string base_branch;
  int concurrency = 0;
  bool keep_worktrees = false;
  bool json = false;
  bool plain = false;
  bool no_sandbox = false;
  std::string target_run;  // resume/show/merge
  bool force = false;      // merge: a run that is not mergeable
  std::string reason;      // merge --force: why (audit log)
  bool plan_only = false;  // plan, store and print the backlog; no build
  std::string spec;        // --spec FEATURE: build the stored plan
  bool new_version = false;
};

// A command interrupted by Ctrl-C (128 + SIGINT), as shells report it.
constexpr int kExitInterrupted = 130;

// The store, the service over it, and the service's run environment (config, agents,
// repository), which the feature's planning and final gates use directly.
struct Opened {
  OpenedService opened;
  RunEnvironment* env = nullptr;  // owned by the service
  service::Service& svc() { return *opened.service; }
};

// The database must exist: only `factory init` creates one.
Result<Opened> OpenEverything(const CliContext& ctx, const RunArgs& args) {
  service::ServiceOptions options;
  options.repo_path = args.repo;
  options.base_branch = args.base_branch;
  if (args.no_sandbox) options.use_sandbox = false;
  Opened opened;
  FACTORY_ASSIGN_OR_RETURN(opened.opened, OpenService(ctx, std::move(options)));
  std::vector<std::string> warnings;
  FACTORY_ASSIGN_OR_RETURN(opened.env, opened.svc().Environment(&warnings));
  for (const auto& warning : warnings) std::cerr << warning << "\n";
  // Building anything needs an agent: say how to get one before planning spends anything.
  if ((!args.backlog.empty() || !args.feature.empty()) && opened.env->agents().size() == 0) {
    return NotFound(setup::NoAgentMessage(
        std::filesystem::path(opened.env->workspace().repo_root()) / ".factory" / "agents"));
  }
  return opened;
}

int FinishWithSummary(const Result<RunSummary>& summary, bool json) {
  if (!summary) return ReportError(summary.error());
  std::cout << FormatSummary(*summary, json);
  if (!json) std::cout.flush();
  return summary->all_done() ? kExitOk : kExitFailed;
}

// Executes the run in the service's run executor with a live view (on stderr when --json keeps
// stdout for the summary) and Ctrl-C handling: the first signal stops claiming and lets running
// attempts finish, the second cancels them; `factory run resume` continues either way. `resume`
// expires dead workers' leases first (said on stderr when there were any).
Result<RunSummary> ExecuteWithLiveView(Opened& opened, const RunArgs& args,
                                       const std::string& run_id, bool resume,
                                       bool say_expired = true) {
  RunEnvironment& env = *opened.env;
  RunViewOptions view_options;
  if (args.plain) view_options.mode = RunViewOptions::Mode::kPlain;
  RunView view(args.json ? stderr : stdout, view_options);
  service::ExecuteRequest request;
  request.concurrency = args.concurrency;
  request.keep_worktrees = args.keep_worktrees;
  request.observer = &view;
  // A paused agent takes no task until resumed: say so before the run seems to hang.
  if (auto pauses = env.SyncPauses(); pauses) {
    for (const auto& pause : *pauses) {
      const bool all = pause.agent == ledger::kAllAgents;
      std::cerr << "factory: warning: " << (all ? "every agent is" : "agent " + pause.agent + " is")
                << " paused (" << pause.reason << "); its tasks wait until `factory agents resume "
                << (all ? "'*'" : pause.agent) << "`\n";
    }
  }
  service::Service& svc = opened.svc();
  SignalWatcher signals(
      [&svc, run_id](int) { (void)svc.StopRun(run_id, service::StopMode::kGraceful); },
      [&svc, run_id](int) { (void)svc.StopRun(run_id, service::StopMode::kNow); });
  int dead_leases_expired = 0;
  if (resume) {
    auto resumed = svc.ResumeRun(run_id, request);
    if (!resumed) return std::unexpected(resumed.error());
    dead_leases_expired = resumed->report.dead_leases_expired;
  } else if (auto started = svc.ExecuteRun(run_id, request); !started) {
    return std::unexpected(started.error());
  }
  auto summary = svc.WaitRun(run_id);
  if (summary && say_expired && dead_leases_expired > 0) {
    std::cerr << "factory: expired " << dead_leases_expired << " lease(s) held by dead processes\n";
  }
  return summary;
}

// ExecuteWithLiveView, then the run's summary on stdout; exit 0 when every task is done.
int ExecuteWithView(Opened& opened, const RunArgs& args, const std::string& run_id, bool resume) {
  return FinishWithSummary(ExecuteWithLiveView(opened, args, run_id, resume), args.json);
}

// After a feature's build: records it in the spec folder and, when every task is done, runs
// the final gates on the integration branch (feature/final_gates.h). Ctrl-C interrupts them; the
// feature stays `verifying` and the next run of it runs them again.
Result<feature::FeatureBuildOutcome> FinishFeature(RunEnvironment& env,
                                                   const std::filesystem::path& spec_dir,
                                                   const RunSummary& summary) {
  if (summary.all_done()) {
    std::cerr << "factory: final gates on " << summary.integration_branch << "\n";
  }
  std::atomic<bool> cancel{false};
  SignalWatcher signals([&cancel](int) { cancel = true; }, [&cancel](int) { cancel = true; });
  feature::FinalGatesDeps deps;
  deps.workspace = &env.workspace();
  deps.sandbox = &env.sandbox();
  deps.config = &env.config();
  deps.events = &env.queue().events();
  deps.cancel = &cancel;
  return feature::FinishFeatureBuild(deps, spec_dir, summary);
}

// The summary of a feature's run read again after its final gates, which decide whether it may
// be merged; the wall time stays that of the execution.
void RefreshAfterFinalGates(RunEnvironment& env, RunSummary& summary) {
  auto fresh = env.runs().Summarize(summary.run_id);
  if (!fresh) return;  // the summary printed then lacks only the final gates' outcome
  fresh->wall_ms = summary.wall_ms;
  summary = std::move(*fresh);
}

std::string FinalGatesStatus(const feature::FeatureBuildOutcome& outcome) {
  if (outcome.final_gates_reused) return "passed";
  if (outcome.final_gates) return outcome.final_gates->status();
  return "skipped";
}

// One line on stderr about the final gates that ran or were reused.
void ReportFinalGates(const feature::FeatureBuildOutcome& outcome, const std::string& branch) {
  if (outcome.final_gates_reused) {
    std::cerr << "factory: final gates passed on " << branch
              << " before (same tip); not run again\n";
  } else if (outcome.final_gates && outcome.final_gates->passed()) {
    std::cerr << "factory: final gates passed on " << branch << " ("
              << outcome.final_gates->results.size() << " gate(s), "
              << outcome.final_gates->commit.substr(0, 12) << ")\n";
  }
}

int RunBacklog(const CliContext& ctx, const RunArgs& args) {
  if (args.backlog.empty()) {
    return ReportError(
        "give a feature request or a backlog: factory run FEATURE.md, factory run --backlog "
        "BACKLOG.yaml (or a subcommand)",
        kExitUsage);
  }
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  service::StartRunRequest request;
  if (!args.run_id.empty()) request.run_id = args.run_id;
  request.backlog_path = args.backlog;
  auto created = opened->svc().CreateRun(request);
  if (!created) return ReportServiceError(created.error(), {{"run_id", ""}});
  for (const auto& warning : created->warnings) std::cerr << warning << "\n";
  std::cerr << "factory: run " << created->created.run_id << " on "
            << created->created.integration_branch << " (" << created->created.tasks_created
            << " new tasks, " << created->created.tasks_existing << " already there)\n";
  return ExecuteWithView(*opened, args, created->created.run_id, /*resume=*/false);
}

// The planners' router: the environment's when an llm agent or a review gate made it build one,
// else one over the same models.yaml, ledger and budgets.
Result<llm::Router*> PlanningRouter(RunEnvironment& env, std::unique_ptr<llm::Router>& own) {
  if (env.router() != nullptr) return env.router();
  const std::filesystem::path models_path =
      std::filesystem::path(env.workspace().repo_root()) / ".factory" / "models.yaml";
  auto models = llm::LoadModelsConfig(models_path);
  if (!models) {
    if (models.error().code != ErrorCode::kNotFound) return std::unexpected(models.error());
    return FailedPrecondition("planning a feature needs models: " + models_path.string() +
                              " does not exist (`factory init` writes the default)");
  }
  llm::RouterOptions router_options;
  router_options.observer = &env.ledger();
  router_options.admission = &env.budget();
  FACTORY_ASSIGN_OR_RETURN(own, llm::Router::Create(std::move(*models), router_options));
  return own.get();
}

// Before the first paid call: the models the planners and the review gates will call must each
// resolve to a deployment whose provider is usable (key variable set). Unknown names were
// refused when the environment opened; this finds the unusable ones.
Status CheckModelsBeforePaying(RunEnvironment& env, const llm::Router& router) {
  std::string problems;
  auto chain = router.config().ChainFor("plan", "");
  if (!chain) {
    problems += "planning: no model for task type 'plan': " + chain.error().message +
                " (add a routing rule for task_type 'plan' to models.yaml)\n";
  } else if (auto resolved = router.Resolve(*chain); !resolved) {
    problems += "planning: " + resolved.error().message + "\n";
  }
  for (const GateConfig& gate : env.config().GatesOfKind(GateKind::kReview)) {
    const llm::Router* reviewer = env.router() != nullptr ? env.router() : &router;
    if (auto resolved = reviewer->Resolve({gate.model}); !resolved) {
      problems += "review gate '" + gate.name + "' (model " + gate.model +
                  "): " + resolved.error().message + "\n";
    }
  }
  // Rebasing without a usable model is off, not an error (as when models.yaml has none for it):
  // said now rather than when a task first needs it.
  if (!env.rebase_targets().empty() && env.router() != nullptr) {
    auto resolved = env.router()->Resolve(env.rebase_targets());
    if (!resolved && problems.empty()) {
      std::cerr << "factory: warning: the rebase agent cannot call a model ("
                << resolved.error().message
                << "); a task that keeps failing its gates keeps its spec\n";
    }
  }
  if (problems.empty()) return Ok();
  problems.pop_back();
  return FailedPrecondition("the models cannot be used (nothing was called):\n" + problems);
}

std::string FormatMs(int64_t ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1fs", static_cast<double>(std::max<int64_t>(ms, 0)) / 1000);
  return text;
}

std::string FormatUsd(double usd) {
  char text[32];
  std::snprintf(text, sizeof(text), "$%.4f", usd);
  return text;
}

// The planning part of the progress display: one line per planner state change, on the stream
// the run's live view uses.
class PlanningLines final : public feature::PlanningObserver {
 public:
  explicit PlanningLines(FILE* out) : out_(out) {}
  void OnPlanner(const feature::PlannerProgress& progress) override {
    std::string line = "plan   " + progress.name;
    if (progress.name == "backlog" && progress.attempt > 1) {
      line += " (repair " + std::to_string(progress.attempt - 1) + ")";
    }
    line += " " + progress.state;
    if (progress.state == "done" || progress.state == "failed" || progress.state == "invalid") {
      line += " in " + FormatMs(progress.elapsed_ms);
    }
    if (progress.state == "done" || progress.state == "invalid" || progress.state == "reused") {
      line += ", " + FormatUsd(progress.cost_usd);
      if (!progress.model.empty()) line += " (" + progress.model + ")";
    }
    if (progress.state == "reused") line += " saved before; not called again";
    std::lock_guard lock(mu_);
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }

 private:
  FILE* out_;
  std::mutex mu_;
};

// Where the run's progress goes: stderr when --json keeps stdout for the result.
FILE* ViewStream(const RunArgs& args) { return args.json ? stderr : stdout; }

// One line per final gate that ran, on the view's stream.
void PrintFinalGates(const RunArgs& args, const feature::FeatureBuildOutcome& outcome) {
  if (!outcome.final_gates) return;
  FILE* out = ViewStream(args);
  for (const GateResult& gate : outcome.final_gates->results) {
    std::string line = "final  " + gate.name + (gate.passed ? " passed" : " FAILED");
    if (!gate.passed) {
      line += gate.timed_out ? " (timed out)" : " (exit " + std::to_string(gate.exit_code) + ")";
    }
    line += " in " + FormatMs(gate.duration_ms) + " on " + outcome.final_gates->branch;
    std::fprintf(out, "%s\n", line.c_str());
  }
  std::fflush(out);
}

// `factory run FEATURE --spec` and --plan-only's build command.
std::string BuildCommand(const std::string& feature_id) {
  return "factory run --spec " + feature_id;
}

// --plan-only's output: the backlog for review, then how to build it.
void PrintPlan(const RunArgs& args, const std::string& feature_id, int version,
               const std::string& run_id, const std::filesystem::path& spec_dir,
               const std::filesystem::path& backlog_path, const Backlog& backlog) {
  if (args.json) {
    nlohmann::json tasks = nlohmann::json::array();
    for (const BacklogTask& task : backlog.tasks) {
      tasks.push_back({{"id", task.id},
                       {"title", task.title},
                       {"description", task.description},
                       {"type", task.type},
                       {"agent", task.agent},
                       {"capabilities", task.capabilities},
                       {"priority", task.priority},
                       {"depends_on", task.depends_on},
                       {"scope", task.scope},
                       {"acceptance", task.acceptance}});
    }
    nlohmann::json out{{"feature", feature_id},
                       {"version", version},
                       {"run_id", run_id},
                       {"spec_dir", spec_dir.string()},
                       {"backlog", backlog_path.string()},
                       {"tasks", tasks},
                       {"build_command", BuildCommand(feature_id)}};
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::string text = "Feature " + feature_id + ", version " + std::to_string(version) + ", run " +
                     run_id + ": " + std::to_string(backlog.tasks.size()) + " task(s)\n";
  for (const BacklogTask& task : backlog.tasks) {
    text += "\n" + task.id + ": " + task.title + "\n";
    if (!task.type.empty() || !task.agent.empty()) {
      text += "  type: " + (task.type.empty() ? std::string("-") : task.type) +
              "   agent: " + (task.agent.empty() ? std::string("(by capabilities)") : task.agent) +
              "\n";
    }
    text += "  depends on: ";
    if (task.depends_on.empty()) text += "-";
    for (size_t index = 0; index < task.depends_on.size(); ++index) {
      text += (index > 0 ? ", " : "") + task.depends_on[index];
    }
    text += "\n  scope: ";
    for (size_t index = 0; index < task.scope.size(); ++index) {
      text += (index > 0 ? ", " : "") + task.scope[index];
    }
    text += "\n  acceptance:\n";
    for (const auto& criterion : task.acceptance) text += "    - " + criterion + "\n";
  }
  text += "\nReview or edit " + backlog_path.string() + ", then build it with:\n  " +
          BuildCommand(feature_id) + "\n";
  std::cout << ProcessRedactor().Redact(text);
  std::cout.flush();
}

// The feature's current version is done: said instead of planning another one.
int ReportAlreadyDone(const RunArgs& args, const std::string& feature_id,
                      const nlohmann::json& metadata, const std::string& request_file) {
  const std::string run_id = metadata.value("run_id", "");
  const int version = metadata.value("version", 1);
  if (args.json) {
    nlohmann::json out{{"feature",
                        {{"id", feature_id},
                         {"version", version},
                         {"status", "done"},
                         {"run_id", run_id},
                         {"already_done", true}}}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "factory: feature " << feature_id << " is already done (version " << version
              << ", run " << run_id << "; `factory run merge " << run_id
              << "` merges it); `factory run " << request_file
              << " --new-version` plans a new version\n";
  }
  return kExitOk;
}

// The build half of a feature run, from the spec folder's BACKLOG.yaml: the run's tasks, their
// execution (ResumeRun when the run was building, so a dead process's leases expire at once),
// then the final gates. Exit 0 when the feature is done.
int BuildFeature(Opened& opened, const RunArgs& args, const std::string& feature_id,
                 const std::filesystem::path& spec_dir, const std::string& run_id, int version) {
  RunEnvironment& env = *opened.env;
  const std::filesystem::path backlog_path = spec_dir / "BACKLOG.yaml";
  auto backlog = env.LoadBacklog(backlog_path);
  if (!backlog) return ReportError(backlog.error());
  for (const auto& warning : backlog->warnings) std::cerr << warning.ToString() << "\n";
  const std::string status =
      nlohmann::json::parse(feature::ReadSpecMetadata(spec_dir), nullptr, false)
          .value("status", "");
  const bool was_building = status == "building" || status == "verifying";
  CreateRunOptions create;
  create.run_id = run_id;
  create.title = "feature " + feature_id;
  create.feature = feature_id;
  auto created = env.runs().CreateRun(backlog->value, create);
  if (!created) return ReportError(created.error());
  std::cerr << "factory: run " << created->run_id << " on " << created->integration_branch << " ("
            << created->tasks_created << " new tasks, " << created->tasks_existing
            << " already there)\n";
  (void)feature::SetSpecStatus(spec_dir, "building");
  auto summary = ExecuteWithLiveView(opened, args, run_id, /*resume=*/was_building);
  if (!summary) return ReportError(summary.error());
  auto outcome = FinishFeature(env, spec_dir, *summary);
  if (!outcome) return ReportError(outcome.error());
  PrintFinalGates(args, *outcome);
  RefreshAfterFinalGates(env, *summary);
  if (args.json) {
    nlohmann::json out = SummaryToJson(*summary);
    out["feature"] = {{"id", feature_id},
                      {"version", version},
                      {"status", outcome->status},
                      {"spec_dir", spec_dir.string()},
                      {"final_gates", FinalGatesStatus(*outcome)},
                      {"message", outcome->message}};
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << FormatSummary(*summary, false);
    std::cout.flush();
  }
  ReportFinalGates(*outcome, summary->integration_branch);
  if (outcome->status == "done") return kExitOk;
  return ReportError("feature " + feature_id + ": " + outcome->message, kExitFailed);
}

// Plans the feature under `run_id` (re-using what an earlier execution of that run saved), then,
// unless --plan-only, builds it. The run exists in the store before the first planning call.
// Ctrl-C while planning marks the planners interrupted and ends the process (exit 130).
int PlanAndBuildFeature(Opened& opened, const RunArgs& args, const feature::FeatureRequest& request,
                        const std::string& run_id) {
  RunEnvironment& env = *opened.env;
  const std::filesystem::path repo_root = env.workspace().repo_root();
  std::unique_ptr<llm::Router> own_router;
  auto router = PlanningRouter(env, own_router);
  if (!router) return ReportError(router.error());
  if (auto checked = CheckModelsBeforePaying(env, **router); !checked) {
    return ReportError(checked.error());
  }
  CreateRunOptions open;
  open.run_id = run_id;
  open.title = "feature " + request.id;
  open.feature = request.id;
  open.feature_request = std::filesystem::absolute(request.source).lexically_normal().string();
  if (auto opened = env.runs().OpenRun(open); !opened) return ReportError(opened.error());

  feature::PlanningDeps deps;
  deps.router = *router;
  deps.prompts = &env.prompts();  // the project's templates, loaded (and checked) with the run
  deps.agents = &env.agents();
  deps.config = &env.config();
  deps.events = &env.queue().events();
  PlanningLines lines(ViewStream(args));
  feature::PlanningInterrupt interrupt;
  feature::PlanningOptions planning;
  planning.run_id = run_id;
  planning.repo_root = repo_root;
  planning.spec_dir = repo_root / ".factory" / "specs" / request.id;
  planning.max_repairs = args.max_repairs;
  planning.observer = &lines;
  planning.interrupt = &interrupt;
  std::cerr << "factory: feature " << request.id << ", run " << run_id << ": planning (spec in "
            << planning.spec_dir.string() << ")\n";
  Result<feature::FeaturePlan> plan = [&] {
    // The planners' calls cannot be taken back: on Ctrl-C what is saved stays, the planners
    // still waiting are marked, and the process ends without waiting for their answers.
    auto on_signal = [&](int) {
      const std::vector<std::string> marked = interrupt.Interrupt();
      (void)env.runs().SetRunState(run_id, "interrupted");
      std::string names;
      for (const auto& name : marked) names += (names.empty() ? "" : ", ") + name;
      std::cout.flush();
      std::cerr << "factory: planning of feature " << request.id << " interrupted"
                << (names.empty() ? "" : " (" + names + " marked interrupted)")
                << "; finished planners are kept. Resume with: factory run resume " << run_id
                << "\n";
      std::cerr.flush();
      std::_Exit(kExitInterrupted);
    };
    SignalWatcher signals(on_signal, on_signal);
    return feature::PlanFeature(request, deps, planning);
  }();
  if (!plan) {
    (void)env.runs().SetRunState(run_id, "planning_failed");
    return ReportError(plan.error());
  }
  (void)env.runs().SetRunState(run_id, "planned");
  int reused = 0;
  for (const auto& planner : plan->planners) reused += planner.reused ? 1 : 0;
  std::cerr << "factory: planned " << plan->backlog.value.tasks.size() << " tasks (version "
            << plan->version << "; " << reused << " planner output(s) reused"
            << (plan->reused_backlog ? ", backlog reused" : "") << "; backlog answers "
            << plan->backlog_attempts << ")\n";
  if (args.plan_only) {
    PrintPlan(args, request.id, plan->version, run_id, planning.spec_dir, plan->backlog_path,
              plan->backlog.value);
    return kExitOk;
  }
  return BuildFeature(opened, args, request.id, planning.spec_dir, run_id, plan->version);
}

// `factory run FEATURE.md`: plan (feature/feature_run.h), then build the planned backlog as
// `--backlog` does. Re-running with the same --run-id resumes: saved planner outputs and a
// saved backlog are used again, the run's tasks continue where they were. Without --run-id, an
// unfinished current version of the same request continues; a done one is reported, not planned
// again (--new-version plans a new version).
int RunFeature(const CliContext& ctx, const RunArgs& args) {
  if (!args.backlog.empty()) {
    return ReportError("give either a feature request (FEATURE.md) or --backlog, not both",
                       kExitUsage);
  }
  auto request = feature::LoadFeatureRequest(args.feature);
  if (!request) return ReportError(request.error());
  if (!args.run_id.empty()) {
    if (auto valid = WorkspaceManager::ValidateId("run id", args.run_id); !valid) {
      return ReportError(valid.error().message, kExitUsage);
    }
  }
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  const std::filesystem::path spec_dir =
      std::filesystem::path(env.workspace().repo_root()) / ".factory" / "specs" / request->id;

  std::string run_id = args.run_id;
  const nlohmann::json metadata =
      nlohmann::json::parse(feature::ReadSpecMetadata(spec_dir), nullptr, false);
  if (metadata.is_object() && !args.new_version) {
    const std::string current_run = metadata.value("run_id", "");
    const std::string status = metadata.value("status", "");
    if (run_id.empty() || run_id != current_run) {
      if (status == "done") return ReportAlreadyDone(args, request->id, metadata, args.feature);
      // An unfinished version of this very request continues rather than paying again.
      const bool unfinished = feature::NeedsPlanning(status) || status == "planned" ||
                              status == "building" || status == "verifying";
      if (run_id.empty() && unfinished && status != "backlog_invalid" &&
          status != "planning_failed" && !current_run.empty() &&
          metadata.value("request_sha256", "") == Sha256Hex(request->text)) {
        run_id = current_run;
        std::cerr << "factory: continuing version " << metadata.value("version", 1)
                  << " of feature " << request->id << " (run " << run_id << ", " << status
                  << "); --new-version plans a new one\n";
      }
    }
  }
  if (run_id.empty()) run_id = NewRunId();
  return PlanAndBuildFeature(*opened, args, *request, run_id);
}

// `factory run --spec FEATURE`: builds the stored plan of the feature's current version (its
// BACKLOG.yaml, perhaps edited since planning: checked again as a planned backlog), no planning.
int RunSpec(const CliContext& ctx, const RunArgs& args) {
  if (!args.backlog.empty() || !args.feature.empty()) {
    return ReportError("--spec builds a stored plan: give no FEATURE.md and no --backlog with it",
                       kExitUsage);
  }
  if (args.new_version) {
    return ReportError(
        "--new-version plans a new version: give the request (factory run FEATURE.md "
        "--new-version); `factory regenerate FEATURE` builds the stored spec as a new version",
        kExitUsage);
  }
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  auto found = feature::ResolveFeature(env.workspace().repo_root(), args.spec);
  if (!found) return ReportError(found.error());
  const nlohmann::json metadata =
      nlohmann::json::parse(feature::ReadSpecMetadata(found->spec_dir), nullptr, false);
  if (!metadata.is_object()) {
    return ReportError((found->spec_dir / "metadata.json").string() + " is damaged", kExitFailed);
  }
  const std::string run_id = metadata.value("run_id", "");
  const std::string status = metadata.value("status", "");
  const std::string request_file = metadata.value("request_file", found->id + ".md");
  if (!args.run_id.empty() && args.run_id != run_id) {
    return ReportError("--run-id " + args.run_id + " is not the run of feature " + found->id +
                           "'s current version (" + run_id + ")",
                       kExitUsage);
  }
  if (feature::NeedsPlanning(status)) {
    return ReportError("feature " + found->id + " has no validated plan yet (status " + status +
                           "): `factory run resume " + run_id + "` finishes its planning, " +
                           "`factory run " + request_file + " --plan-only` plans it again",
                       kExitPrecondition);
  }
  if (status == "done") return ReportAlreadyDone(args, found->id, metadata, request_file);
  feature::PlannedBacklogOptions check_options;
  check_options.agents = &env.agents();
  const std::filesystem::path backlog_path = found->spec_dir / "BACKLOG.yaml";
  feature::PlannedBacklogCheck check =
      feature::CheckPlannedBacklogFile(backlog_path, check_options);
  if (!check.ok()) {
    std::string message = backlog_path.string() + " is not a valid plan (" +
                          std::to_string(check.errors.size()) + " problem(s)):";
    for (const auto& error : check.errors) message += "\n  " + error;
    return ReportError(message, kExitUsage);
  }
  if (args.plan_only) {  // the stored plan, checked, for review
    PrintPlan(args, found->id, metadata.value("version", 1), run_id, found->spec_dir, backlog_path,
              check.backlog->value);
    return kExitOk;
  }
  std::cerr << "factory: feature " << found->id << ": building the stored plan of version "
            << metadata.value("version", 1) << " (run " << run_id << "; "
            << check.backlog->value.tasks.size() << " tasks)\n";
  return BuildFeature(*opened, args, found->id, found->spec_dir, run_id,
                      metadata.value("version", 1));
}

// `factory regenerate FEATURE`: the stored spec built again as a new version on a fresh
// integration branch (no planning), then compared with the previous version. Exit codes: 0 the
// build and its final gates passed and the code was compared; 1 they did not pass; 4 they passed
// but the previous version has no integration branch to compare with, or there is no stored
// backlog to build from; 3 unknown feature; 2 bad arguments.
int RegenerateCommand(const CliContext& ctx, const RunArgs& args) {
  if (!args.run_id.empty()) {
    if (auto valid = WorkspaceManager::ValidateId("run id", args.run_id); !valid) {
      return ReportError(valid.error().message, kExitUsage);
    }
  }
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  const std::filesystem::path repo_root = env.workspace().repo_root();
  auto found = feature::ResolveFeature(repo_root, args.feature);
  if (!found) return ReportError(found.error());
  auto start = feature::StartRegeneration(found->spec_dir, args.run_id);
  if (!start) return ReportError(start.error());
  std::cerr << "factory: feature " << start->feature_id << ": "
            << (start->resumed ? "continuing" : "building") << " version " << start->version
            << " (run " << start->run_id << ") from the stored spec of version "
            << start->previous_version << " (run "
            << (start->previous_run_id.empty() ? "none" : start->previous_run_id)
            << "); no planning\n";

  auto backlog = env.LoadBacklog(start->backlog_path);
  if (!backlog) return ReportError(backlog.error());
  for (const auto& warning : backlog->warnings) std::cerr << warning.ToString() << "\n";
  CreateRunOptions create;
  create.run_id = start->run_id;
  create.title =
      "feature " + start->feature_id + " v" + std::to_string(start->version) + " (regenerated)";
  create.feature = start->feature_id;
  auto created = env.runs().CreateRun(backlog->value, create);
  if (!created) return ReportError(created.error());
  std::cerr << "factory: run " << created->run_id << " on " << created->integration_branch << " ("
            << created->tasks_created << " new tasks, " << created->tasks_existing
            << " already there)\n";
  const std::string run_id = start->run_id;
  auto summary = ExecuteWithLiveView(*opened, args, run_id, /*resume=*/start->resumed,
                                     /*say_expired=*/false);
  if (!summary) return ReportError(summary.error());
  auto outcome = FinishFeature(env, found->spec_dir, *summary);
  if (!outcome) return ReportError(outcome.error());
  ReportFinalGates(*outcome, summary->integration_branch);

  // The comparison with the previous version.
  feature::RegenerationReport report;
  report.feature_id = start->feature_id;
  report.before.version = start->previous_version;
  report.before.run_id = start->previous_run_id;
  report.before.status = start->previous_status;
  report.after.version = start->version;
  report.after.run_id = run_id;
  report.after.status = outcome->status;
  report.final_gates = FinalGatesStatus(*outcome);
  report.message = outcome->message;
  std::optional<RunDetails> before;
  if (!start->previous_run_id.empty()) {
    auto shown = env.runs().ShowRun(start->previous_run_id);
    if (shown) {
      before = std::move(*shown);
    } else if (shown.error().code != ErrorCode::kNotFound) {
      return ReportError(shown.error());
    }
  }
  auto after = env.runs().ShowRun(run_id);
  if (!after) return ReportError(after.error());
  if (before) {
    report.before.run_known = true;
    report.before.summary = before->summary;
  }
  report.after.run_known = true;
  report.after.summary = after->summary;
  report.tasks = feature::CompareTasks(before ? &*before : nullptr, *after);
  auto code = feature::CompareCode(env.workspace().git(), start->previous_run_id, run_id);
  if (!code) return ReportError(code.error());
  report.code = std::move(*code);
  std::cout << feature::FormatRegenerationReport(report, args.json);
  std::cout.flush();

  if (outcome->status != "done") {
    return ReportError("feature " + start->feature_id + " version " +
                           std::to_string(start->version) + ": " + outcome->message,
                       kExitFailed);
  }
  if (!report.code.compared) {
    return ReportError("version " + std::to_string(start->version) +
                           " is built, but its code was not compared: " + report.code.reason,
                       kExitPrecondition);
  }
  return kExitOk;
}

// `factory run resume RUN`. A feature's run continues from the stage it stopped at: planning
// (re-using the planners that finished), building, or its final gates.
int ResumeRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  auto shown = env.runs().ShowRun(args.target_run);
  if (!shown) return ReportError(shown.error());
  const nlohmann::json run_metadata =
      nlohmann::json::parse(shown->run.metadata_json, nullptr, false);
  const std::string feature_id =
      run_metadata.is_object() ? run_metadata.value("feature", "") : std::string();
  if (!feature_id.empty()) {
    const std::filesystem::path spec_dir =
        std::filesystem::path(env.workspace().repo_root()) / ".factory" / "specs" / feature_id;
    const nlohmann::json metadata =
        nlohmann::json::parse(feature::ReadSpecMetadata(spec_dir), nullptr, false);
    const bool current = metadata.is_object() && metadata.value("run_id", "") == args.target_run;
    const std::string status = current ? metadata.value("status", "") : "";
    if ((current && feature::NeedsPlanning(status)) ||
        (!metadata.is_object() && shown->tasks.empty())) {
      // Killed while planning: the request again, from where it was read.
      std::string request_path = current ? metadata.value("request_path", "") : std::string();
      if (request_path.empty()) request_path = run_metadata.value("feature_request", "");
      if (request_path.empty()) {
        return ReportError("run " + args.target_run + " of feature " + feature_id +
                               " does not say which request file it plans",
                           kExitPrecondition);
      }
      auto request = feature::LoadFeatureRequest(request_path);
      if (!request) return ReportError(request.error());
      std::cerr << "factory: run " << args.target_run << ": continuing the planning of feature "
                << feature_id << "\n";
      return PlanAndBuildFeature(*opened, args, *request, args.target_run);
    }
    if (current) {
      return BuildFeature(*opened, args, feature_id, spec_dir, args.target_run,
                          metadata.value("version", 1));
    }
  }
  return ExecuteWithView(*opened, args, args.target_run, /*resume=*/true);
}

int ShowRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  auto run = opened->svc().GetRun(args.target_run);
  if (!run) return ReportServiceError(run.error(), {{"run_id", ""}});
  RunDetails details{std::move(run->run), std::move(run->summary), std::move(run->tasks)};
  std::cout << FormatRunDetails(details, args.json);
  return kExitOk;
}

// Who runs the command, for the audit log of a forced merge.
std::string UserName() {
  if (const passwd* entry = getpwuid(geteuid()); entry != nullptr && entry->pw_name != nullptr) {
    return entry->pw_name;
  }
  return "uid " + std::to_string(geteuid());
}

int MergeRunCommand(const CliContext& ctx, const RunArgs& args) {
  if (!args.reason.empty() && !args.force) {
    return ReportError("--reason goes with --force (it is recorded with the forced merge)",
                       kExitUsage);
  }
  if (args.force && args.reason.find_first_not_of(" \t\r\n") == std::string::npos) {
    return ReportError("--force needs --reason WHY: a forced merge is recorded in the audit log",
                       kExitUsage);
  }
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  service::MergeRunRequest request;
  request.run_id = args.target_run;
  request.force = args.force;
  request.reason = args.reason;
  request.user = UserName();
  auto merged = opened->svc().MergeRun(request);
  if (!merged) return ReportServiceError(merged.error(), {{"run_id", ""}});
  if (merged->up_to_date) {
    std::cout << "factory: " << merged->base_branch << " already contains run " << args.target_run
              << "\n";
  } else {
    std::cout << "factory: merged run " << args.target_run << " into " << merged->base_branch
              << " (" << merged->old_tip.substr(0, 12) << " -> " << merged->new_tip.substr(0, 12)
              << (merged->fast_forward ? ", fast-forward" : "") << ")\n";
  }
  return kExitOk;
}

int ListRunsCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  auto page = opened->svc().ListRuns(service::ListRunsRequest{.limit = 100});
  if (!page) return ReportServiceError(page.error());
  std::vector<RunListEntry> runs;
  for (auto& info : page->runs) runs.push_back({std::move(info.run), std::move(info.summary)});
  std::cout << FormatRunList(runs, args.json);
  return kExitOk;
}

void AddCommonRunOptions(CLI::App* cmd, RunArgs& args) {
  cmd->add_option("--repo", args.repo, "The git repository (default: the current directory)");
  cmd->add_flag("--json", args.json, "Print JSON");
}

}  // namespace

void AddRunCommands(CLI::App& app, CliContext& ctx) {
  static RunArgs args;
  auto* run = app.add_subcommand(
      "run",
      "Plan a feature request (FEATURE.md) into a task graph, or take a given backlog, and "
      "execute it with agents: worktrees, sandbox, gates, merge queue");
  run->add_option("FEATURE", args.feature,
                  "Feature request (a .md file): planned by agents into .factory/specs/<feature>/ "
                  "(PLAN.md, BACKLOG.yaml, context.md, metadata.json), then built");
  run->add_option("--backlog", args.backlog, "Backlog file (YAML, or JSON by extension)");
  run->add_flag("--plan-only", args.plan_only,
                "Feature runs: plan, validate and store the spec folder, print the backlog "
                "(tasks, dependencies, scopes, acceptance) and the command that builds it; no "
                "build. With --spec: the stored plan, checked");
  run->add_option("--spec", args.spec,
                  "Build the stored plan of a feature (its id or request file): "
                  ".factory/specs/<feature>/BACKLOG.yaml, checked again (it may have been "
                  "edited); no planning");
  run->add_flag("--new-version", args.new_version,
                "Feature runs: plan a new version even when the current one is done");
  run->add_option("--max-repairs", args.max_repairs,
                  "Feature runs: times an invalid backlog goes back to the backlog agent")
      ->check(NumberIn(0, 10));
  run->add_option("--run-id", args.run_id,
                  "Run id; running again with the same id resumes and never duplicates");
  run->add_option("--base-branch", args.base_branch, "Base branch (default: config, then HEAD)");
  run->add_option("--concurrency", args.concurrency, "Parallel tasks (default: config)")
      ->check(NumberIn(1, 256));
  run->add_flag("--keep-worktrees", args.keep_worktrees, "Keep worktrees after merge/failure");
  run->add_flag("--plain", args.plain, "Plain progress lines even on a terminal");
  run->add_flag("--no-sandbox", args.no_sandbox, "Do not use bubblewrap (rlimits only)");
  AddCommonRunOptions(run, args);

  auto* resume = run->add_subcommand(
      "resume",
      "Continue a run after a crash or Ctrl-C; a feature's run continues from where it stopped: "
      "planning (finished planners are re-used), building or its final gates");
  resume->add_option("RUN", args.target_run, "Run id")->required();
  resume->add_option("--concurrency", args.concurrency, "Parallel tasks (default: config)")
      ->check(NumberIn(1, 256));
  resume->add_flag("--plain", args.plain, "Plain progress lines even on a terminal");
  AddCommonRunOptions(resume, args);
  resume->callback([&ctx] { ctx.action = [&ctx] { return ResumeRunCommand(ctx, args); }; });

  auto* show = run->add_subcommand("show", "A run's tasks, states, agents and summary");
  show->add_option("RUN", args.target_run, "Run id")->required();
  AddCommonRunOptions(show, args);
  show->callback([&ctx] { ctx.action = [&ctx] { return ShowRunCommand(ctx, args); }; });

  auto* merge = run->add_subcommand(
      "merge",
      "Merge a run's integration branch into the base branch: only a run whose tasks are all "
      "done (and, for a feature, whose final gates passed on the branch's tip); exit 4 naming "
      "why otherwise. Never touches a dirty checkout");
  merge->add_option("RUN", args.target_run, "Run id")->required();
  merge->add_flag("--force", args.force,
                  "Merge although the run is not mergeable (tasks not done, or a feature whose "
                  "final gates did not pass); needs --reason, recorded as run.merge_forced");
  merge->add_option("--reason", args.reason, "Why the merge is forced (the audit log keeps it)");
  AddCommonRunOptions(merge, args);
  merge->callback([&ctx] { ctx.action = [&ctx] { return MergeRunCommand(ctx, args); }; });
  AddPushCommands(*run, ctx);

  run->callback([&ctx, run] {
    if (!run->get_subcommands().empty()) return;  // a subcommand set its own action
    ctx.action = [&ctx] {
      if (!args.spec.empty()) return RunSpec(ctx, args);
      if (args.feature.empty() && (args.plan_only || args.new_version)) {
        return ReportError(std::string(args.plan_only ? "--plan-only" : "--new-version") +
                               " goes with a feature request: factory run FEATURE.md " +
                               (args.plan_only ? "--plan-only" : "--new-version"),
                           kExitUsage);
      }
      return args.feature.empty() ? RunBacklog(ctx, args) : RunFeature(ctx, args);
    };
  });

  static RunArgs regenerate_args;
  auto* regenerate = app.add_subcommand(
      "regenerate",
      "Build a feature again from its stored spec (BACKLOG.yaml; no planning) as a new version on "
      "a fresh integration branch, and report how the result differs from the previous "
      "version's: tasks (state, attempts, cost) and code (git diff --stat). Exit 0 built and "
      "final gates passed, 1 failed, 2 bad arguments, 3 unknown feature, 4 built but nothing to "
      "compare with (or no stored backlog)");
  regenerate
      ->add_option("FEATURE", regenerate_args.feature,
                   "A feature id (a folder under .factory/specs/) or its request file (.md)")
      ->required();
  regenerate->add_option("--run-id", regenerate_args.run_id,
                         "The new run's id (default: <feature>-r<version>); the current "
                         "version's id continues an interrupted regeneration");
  regenerate->add_option("--base-branch", regenerate_args.base_branch,
                         "Base branch (default: config, then HEAD)");
  regenerate
      ->add_option("--concurrency", regenerate_args.concurrency, "Parallel tasks (default: config)")
      ->check(NumberIn(1, 256));
  regenerate->add_flag("--keep-worktrees", regenerate_args.keep_worktrees,
                       "Keep worktrees after merge/failure");
  regenerate->add_flag("--plain", regenerate_args.plain, "Plain progress lines even on a terminal");
  regenerate->add_flag("--no-sandbox", regenerate_args.no_sandbox,
                       "Do not use bubblewrap (rlimits only)");
  regenerate->add_option("--repo", regenerate_args.repo,
                         "The git repository (default: the current directory)");
  regenerate->add_flag("--json", regenerate_args.json,
                       "Print the comparison as JSON (the live view goes to stderr)");
  regenerate->callback(
      [&ctx] { ctx.action = [&ctx] { return RegenerateCommand(ctx, regenerate_args); }; });

  auto* runs = app.add_subcommand("runs", "List runs with their summaries");
  AddCommonRunOptions(runs, args);
  runs->callback([&ctx] { ctx.action = [&ctx] { return ListRunsCommand(ctx, args); }; });
}

}  // namespace factory::cli
