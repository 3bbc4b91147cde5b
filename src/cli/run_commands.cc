// `factory run --backlog FILE`, `factory run FEATURE.md`, `factory run resume|show|merge RUN`,
// `factory runs` and `factory regenerate FEATURE`: the planning and final gates (src/feature)
// and execution pipeline (src/orchestrator) behind the CLI.

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cli.h"
#include "cli/signals.h"
#include "cli/validate.h"
#include "feature/feature_run.h"
#include "feature/final_gates.h"
#include "feature/regenerate.h"
#include "orchestrator/environment.h"
#include "orchestrator/run_view.h"

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
};

// Opens the store, then the run environment (config, agents, repository).
struct Opened {
  std::unique_ptr<Store> store;
  std::unique_ptr<RunEnvironment> env;
};

// The database must exist: only `factory init` creates one.
Result<Opened> OpenEverything(const CliContext& ctx, const RunArgs& args) {
  Opened opened;
  FACTORY_ASSIGN_OR_RETURN(opened.store, ctx.OpenStore(/*create_if_missing=*/false));
  RunEnvironmentOptions options;
  options.repo_path = args.repo;
  options.base_branch = args.base_branch;
  if (args.no_sandbox) options.use_sandbox = false;
  FACTORY_ASSIGN_OR_RETURN(opened.env, RunEnvironment::Open(*opened.store, options));
  for (const auto& warning : opened.env->warnings()) std::cerr << warning.ToString() << "\n";
  return opened;
}

int FinishWithSummary(const Result<RunSummary>& summary, bool json) {
  if (!summary) return ReportError(summary.error());
  std::cout << FormatSummary(*summary, json);
  if (!json) std::cout.flush();
  return summary->all_done() ? kExitOk : kExitFailed;
}

// Runs `execute` with a live view (on stderr when --json keeps stdout for the summary) and
// Ctrl-C handling: the first signal stops claiming and lets running attempts finish, the second
// cancels them; `factory run resume` continues either way.
template <typename Execute>
Result<RunSummary> ExecuteWithLiveView(RunEnvironment& env, const RunArgs& args,
                                       Execute&& execute) {
  RunViewOptions view_options;
  if (args.plain) view_options.mode = RunViewOptions::Mode::kPlain;
  RunView view(args.json ? stderr : stdout, view_options);
  ExecuteOptions options;
  options.concurrency = args.concurrency;
  options.keep_worktrees = args.keep_worktrees;
  options.observer = &view;
  options.make_runner = env.runner_factory();
  // A paused agent takes no task until resumed: say so before the run seems to hang.
  if (auto pauses = env.SyncPauses(); pauses) {
    for (const auto& pause : *pauses) {
      const bool all = pause.agent == ledger::kAllAgents;
      std::cerr << "factory: warning: " << (all ? "every agent is" : "agent " + pause.agent + " is")
                << " paused (" << pause.reason << "); its tasks wait until `factory agents resume "
                << (all ? "'*'" : pause.agent) << "`\n";
    }
  }
  SignalWatcher signals([&env](int) { env.runs().RequestStop(); },
                        [&env](int) { env.runs().RequestCancel(); });
  return execute(options);
}

// ExecuteWithLiveView, then the run's summary on stdout; exit 0 when every task is done.
template <typename Execute>
int ExecuteWithView(RunEnvironment& env, const RunArgs& args, Execute&& execute) {
  return FinishWithSummary(ExecuteWithLiveView(env, args, std::forward<Execute>(execute)),
                           args.json);
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
  deps.queue = &env.queue();
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
  RunEnvironment& env = *opened->env;
  auto backlog = env.LoadBacklog(args.backlog);
  if (!backlog) return ReportError(backlog.error());
  for (const auto& warning : backlog->warnings) std::cerr << warning.ToString() << "\n";
  CreateRunOptions create;
  if (!args.run_id.empty()) create.run_id = args.run_id;
  create.title = args.backlog;
  auto created = env.runs().CreateRun(backlog->value, create);
  if (!created) return ReportError(created.error());
  std::cerr << "factory: run " << created->run_id << " on " << created->integration_branch << " ("
            << created->tasks_created << " new tasks, " << created->tasks_existing
            << " already there)\n";
  const std::string run_id = created->run_id;
  return ExecuteWithView(env, args, [&](const ExecuteOptions& options) {
    return env.runs().ExecuteRun(run_id, options);
  });
}

// `factory run FEATURE.md`: plan (feature/feature_run.h), then build the planned backlog as
// `--backlog` does. Re-running with the same --run-id resumes: saved planner outputs and a
// saved backlog are used again, the run's tasks continue where they were.
int RunFeature(const CliContext& ctx, const RunArgs& args) {
  if (!args.backlog.empty()) {
    return ReportError("give either a feature request (FEATURE.md) or --backlog, not both",
                       kExitUsage);
  }
  auto request = feature::LoadFeatureRequest(args.feature);
  if (!request) return ReportError(request.error());
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  const std::filesystem::path repo_root = env.workspace().repo_root();

  // The planners' router: the environment's when an llm agent made it build one, else one over
  // the same models.yaml, ledger and budgets.
  std::unique_ptr<llm::Router> own_router;
  llm::Router* router = env.router();
  if (router == nullptr) {
    const std::filesystem::path models_path = repo_root / ".factory" / "models.yaml";
    auto models = llm::LoadModelsConfig(models_path);
    if (!models) {
      if (models.error().code != ErrorCode::kNotFound) return ReportError(models.error());
      return ReportError("planning a feature needs models: " + models_path.string() +
                             " does not exist (`factory init` writes the default)",
                         kExitPrecondition);
    }
    llm::RouterOptions router_options;
    router_options.observer = &env.ledger();
    router_options.admission = &env.budget();
    auto created = llm::Router::Create(std::move(*models), router_options);
    if (!created) return ReportError(created.error());
    own_router = std::move(*created);
    router = own_router.get();
  }
  const std::string run_id = args.run_id.empty() ? NewRunId() : args.run_id;
  if (auto valid = WorkspaceManager::ValidateId("run id", run_id); !valid) {
    return ReportError(valid.error());
  }
  feature::PlanningDeps deps;
  deps.router = router;
  deps.prompts = &env.prompts();  // the project's templates, loaded (and checked) with the run
  deps.agents = &env.agents();
  deps.config = &env.config();
  deps.queue = &env.queue();
  feature::PlanningOptions planning;
  planning.run_id = run_id;
  planning.repo_root = repo_root;
  planning.spec_dir = repo_root / ".factory" / "specs" / request->id;
  planning.max_repairs = args.max_repairs;
  std::cerr << "factory: feature " << request->id << ", run " << run_id << ": planning (spec in "
            << planning.spec_dir.string() << ")\n";
  auto plan = feature::PlanFeature(*request, deps, planning);
  if (!plan) return ReportError(plan.error());
  int reused = 0;
  for (const auto& planner : plan->planners) reused += planner.reused ? 1 : 0;
  std::cerr << "factory: planned " << plan->backlog.value.tasks.size() << " tasks (version "
            << plan->version << "; " << reused << " planner output(s) reused"
            << (plan->reused_backlog ? ", backlog reused" : "") << "; backlog answers "
            << plan->backlog_attempts << ")\n";

  // Build: the same path as --backlog, from the spec folder's BACKLOG.yaml.
  auto backlog = env.LoadBacklog(plan->backlog_path);
  if (!backlog) return ReportError(backlog.error());
  for (const auto& warning : backlog->warnings) std::cerr << warning.ToString() << "\n";
  const bool was_building =
      nlohmann::json::parse(feature::ReadSpecMetadata(planning.spec_dir), nullptr, false)
          .value("status", "") == "building";
  CreateRunOptions create;
  create.run_id = run_id;
  create.title = "feature " + request->id;
  create.feature = request->id;
  auto created = env.runs().CreateRun(backlog->value, create);
  if (!created) return ReportError(created.error());
  std::cerr << "factory: run " << created->run_id << " on " << created->integration_branch << " ("
            << created->tasks_created << " new tasks, " << created->tasks_existing
            << " already there)\n";
  (void)feature::SetSpecStatus(planning.spec_dir, "building");
  auto summary = ExecuteWithLiveView(env, args, [&](const ExecuteOptions& options) {
    // A run that was building when it stopped may hold leases of a dead process.
    return was_building ? env.runs().ResumeRun(run_id, options)
                        : env.runs().ExecuteRun(run_id, options);
  });
  if (!summary) return ReportError(summary.error());
  auto outcome = FinishFeature(env, planning.spec_dir, *summary);
  if (!outcome) return ReportError(outcome.error());
  RefreshAfterFinalGates(env, *summary);
  if (args.json) {
    nlohmann::json out = SummaryToJson(*summary);
    out["feature"] = {{"id", request->id},
                      {"version", plan->version},
                      {"status", outcome->status},
                      {"spec_dir", planning.spec_dir.string()},
                      {"final_gates", FinalGatesStatus(*outcome)},
                      {"message", outcome->message}};
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << FormatSummary(*summary, false);
    std::cout.flush();
  }
  ReportFinalGates(*outcome, summary->integration_branch);
  if (outcome->status == "done") return kExitOk;
  return ReportError("feature " + request->id + ": " + outcome->message, kExitFailed);
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
  auto summary = ExecuteWithLiveView(env, args, [&](const ExecuteOptions& options) {
    return start->resumed ? env.runs().ResumeRun(run_id, options)
                          : env.runs().ExecuteRun(run_id, options);
  });
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

// The spec folder (.factory/specs/<feature>/) whose current version was built by `run_id`, if
// the run is a feature's.
std::optional<std::filesystem::path> SpecDirOfRun(const std::filesystem::path& repo_root,
                                                  const std::string& run_id) {
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(repo_root / ".factory" / "specs", error)) {
    if (!entry.is_directory(error)) continue;
    auto metadata = nlohmann::json::parse(feature::ReadSpecMetadata(entry.path()), nullptr, false);
    if (metadata.is_object() && metadata.value("run_id", "") == run_id) return entry.path();
  }
  return std::nullopt;
}

int ResumeRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  auto summary = ExecuteWithLiveView(env, args, [&](const ExecuteOptions& options) {
    ResumeReport report;
    auto resumed = env.runs().ResumeRun(args.target_run, options, &report);
    if (resumed && report.dead_leases_expired > 0) {
      std::cerr << "factory: expired " << report.dead_leases_expired
                << " lease(s) held by dead processes\n";
    }
    return resumed;
  });
  auto spec_dir = SpecDirOfRun(env.workspace().repo_root(), args.target_run);
  if (!summary || !spec_dir) return FinishWithSummary(summary, args.json);
  // A feature's run: its build is recorded and its final gates run, as `factory run FEATURE.md`
  // does at the end.
  auto outcome = FinishFeature(env, *spec_dir, *summary);
  if (outcome) RefreshAfterFinalGates(env, *summary);
  const int code = FinishWithSummary(summary, args.json);
  if (!outcome) return ReportError(outcome.error());
  ReportFinalGates(*outcome, summary->integration_branch);
  if (outcome->status == "done") return code;
  return ReportError("feature " + spec_dir->filename().string() + ": " + outcome->message,
                     kExitFailed);
}

int ShowRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args);
  if (!opened) return ReportError(opened.error());
  auto details = opened->env->runs().ShowRun(args.target_run);
  if (!details) return ReportError(details.error());
  std::cout << FormatRunDetails(*details, args.json);
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
  RunMergeOptions options;
  options.force = args.force;
  options.reason = args.reason;
  options.user = UserName();
  auto merged = opened->env->runs().MergeRunIntoBase(args.target_run, options);
  if (!merged) return ReportError(merged.error());
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
  auto runs = opened->env->runs().ListRuns();
  if (!runs) return ReportError(runs.error());
  std::cout << FormatRunList(*runs, args.json);
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

  auto* resume = run->add_subcommand("resume", "Continue a run after a crash or Ctrl-C");
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
