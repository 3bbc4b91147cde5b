// `factory run --backlog FILE`, `factory run resume|show|merge RUN` and `factory runs`: the
// execution pipeline (src/orchestrator) behind the CLI.

#include <cstdio>
#include <iostream>
#include <optional>

#include "cli/cli.h"
#include "cli/signals.h"
#include "orchestrator/environment.h"
#include "orchestrator/run_view.h"

namespace factory::cli {
namespace {

struct RunArgs {
  std::string backlog;
  std::string run_id;
  std::string repo = ".";
  std::string base_branch;
  int concurrency = 0;
  bool keep_worktrees = false;
  bool json = false;
  bool plain = false;
  bool no_sandbox = false;
  std::string target_run;  // resume/show/merge
};

// Opens the store, then the run environment (config, agents, repository).
struct Opened {
  std::unique_ptr<Store> store;
  std::unique_ptr<RunEnvironment> env;
};

Result<Opened> OpenEverything(const CliContext& ctx, const RunArgs& args, bool create_db) {
  Opened opened;
  FACTORY_ASSIGN_OR_RETURN(opened.store, ctx.OpenStore(create_db));
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
int ExecuteWithView(RunEnvironment& env, const RunArgs& args, Execute&& execute) {
  RunViewOptions view_options;
  if (args.plain) view_options.mode = RunViewOptions::Mode::kPlain;
  RunView view(args.json ? stderr : stdout, view_options);
  ExecuteOptions options;
  options.concurrency = args.concurrency;
  options.keep_worktrees = args.keep_worktrees;
  options.observer = &view;
  Result<RunSummary> summary = [&] {
    SignalWatcher signals([&env](int) { env.runs().RequestStop(); },
                          [&env](int) { env.runs().RequestCancel(); });
    return execute(options);
  }();
  return FinishWithSummary(summary, args.json);
}

int RunBacklog(const CliContext& ctx, const RunArgs& args) {
  if (args.backlog.empty()) {
    return ReportError("give a backlog: factory run --backlog BACKLOG.yaml (or a subcommand)",
                       kExitUsage);
  }
  auto opened = OpenEverything(ctx, args, /*create_db=*/true);
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

int ResumeRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args, /*create_db=*/false);
  if (!opened) return ReportError(opened.error());
  RunEnvironment& env = *opened->env;
  return ExecuteWithView(env, args, [&](const ExecuteOptions& options) {
    ResumeReport report;
    auto summary = env.runs().ResumeRun(args.target_run, options, &report);
    if (summary && report.dead_leases_expired > 0) {
      std::cerr << "factory: expired " << report.dead_leases_expired
                << " lease(s) held by dead processes\n";
    }
    return summary;
  });
}

int ShowRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args, /*create_db=*/false);
  if (!opened) return ReportError(opened.error());
  auto details = opened->env->runs().ShowRun(args.target_run);
  if (!details) return ReportError(details.error());
  std::cout << FormatRunDetails(*details, args.json);
  return kExitOk;
}

int MergeRunCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args, /*create_db=*/false);
  if (!opened) return ReportError(opened.error());
  auto merged = opened->env->runs().MergeRunIntoBase(args.target_run);
  if (!merged) return ReportError(merged.error());
  if (merged->up_to_date) {
    std::cout << "factory: " << merged->base_branch << " already contains run "
              << args.target_run << "\n";
  } else {
    std::cout << "factory: merged run " << args.target_run << " into " << merged->base_branch
              << " (" << merged->old_tip.substr(0, 12) << " -> " << merged->new_tip.substr(0, 12)
              << (merged->fast_forward ? ", fast-forward" : "") << ")\n";
  }
  return kExitOk;
}

int ListRunsCommand(const CliContext& ctx, const RunArgs& args) {
  auto opened = OpenEverything(ctx, args, /*create_db=*/false);
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
      "run", "Execute a backlog (a task graph) with agents: worktrees, sandbox, gates, merge queue");
  run->add_option("--backlog", args.backlog, "Backlog file (YAML, or JSON by extension)");
  run->add_option("--run-id", args.run_id,
                  "Run id; running again with the same id resumes and never duplicates");
  run->add_option("--base-branch", args.base_branch, "Base branch (default: config, then HEAD)");
  run->add_option("--concurrency", args.concurrency, "Parallel tasks (default: config)")
      ->check(CLI::Range(1, 256));
  run->add_flag("--keep-worktrees", args.keep_worktrees, "Keep worktrees after merge/failure");
  run->add_flag("--plain", args.plain, "Plain progress lines even on a terminal");
  run->add_flag("--no-sandbox", args.no_sandbox, "Do not use bubblewrap (rlimits only)");
  AddCommonRunOptions(run, args);

  auto* resume = run->add_subcommand("resume", "Continue a run after a crash or Ctrl-C");
  resume->add_option("RUN", args.target_run, "Run id")->required();
  resume->add_option("--concurrency", args.concurrency, "Parallel tasks (default: config)")
      ->check(CLI::Range(1, 256));
  resume->add_flag("--plain", args.plain, "Plain progress lines even on a terminal");
  AddCommonRunOptions(resume, args);
  resume->callback([&ctx] { ctx.action = [&ctx] { return ResumeRunCommand(ctx, args); }; });

  auto* show = run->add_subcommand("show", "A run's tasks, states, agents and summary");
  show->add_option("RUN", args.target_run, "Run id")->required();
  AddCommonRunOptions(show, args);
  show->callback([&ctx] { ctx.action = [&ctx] { return ShowRunCommand(ctx, args); }; });

  auto* merge = run->add_subcommand(
      "merge", "Merge a run's integration branch into the base branch (never touches a dirty "
               "checkout)");
  merge->add_option("RUN", args.target_run, "Run id")->required();
  AddCommonRunOptions(merge, args);
  merge->callback([&ctx] { ctx.action = [&ctx] { return MergeRunCommand(ctx, args); }; });

  run->callback([&ctx, run] {
    if (!run->get_subcommands().empty()) return;  // a subcommand set its own action
    ctx.action = [&ctx] { return RunBacklog(ctx, args); };
  });

  auto* runs = app.add_subcommand("runs", "List runs with their summaries");
  AddCommonRunOptions(runs, args);
  runs->callback([&ctx] { ctx.action = [&ctx] { return ListRunsCommand(ctx, args); }; });
}

}  // namespace factory::cli
