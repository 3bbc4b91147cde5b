// `factory run push RUN` and `factory run pr RUN`: a run's integration branch on the user's
// remote, and a pull (merge) request for it (src/forge).

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cli/cli.h"
#include "cli/json_format.h"
#include "cli/service_glue.h"
#include "events/audit.h"
#include "feature/feature_run.h"
#include "forge/pull_request.h"
#include "forge/push.h"
#include "forge/remote.h"
#include "orchestrator/environment.h"
#include "store/details.h"

namespace factory::cli {
namespace {

namespace fs = std::filesystem;

struct PrArgs {
  std::string run_id;
  std::string remote;  // empty: ResolveRemote's default
  std::string repo = ".";
  bool draft = false;
  bool force = false;
  bool json = false;
};

// What both commands did before the request: the run, where it went, and where it can be
// reviewed.
struct Pushed {
  OpenedService opened;
  RunEnvironment* env = nullptr;  // the service's
  RunDetails details;
  forge::PushOutcome push;
  std::optional<forge::RemoteLocation> location;  // nullopt: not a forge's URL
  std::optional<std::string> compare_url;         // nullopt: why in no_compare_url
  std::string no_compare_url;
  std::vector<std::string> forced_blockers;  // non-empty: pushed with --force
};

// Opens the run, refuses one that is not mergeable unless forced (the rule of `run merge`),
// pushes its integration branch and records a `run.pushed` event. Errors are reported here;
// the return is the exit code when nothing was pushed.
std::variant<Pushed, int> PushRun(const CliContext& ctx, const PrArgs& args,
                                  const std::string& command) {
  Pushed pushed;
  auto opened = OpenService(ctx, service::ServiceOptions{.repo_path = args.repo});
  if (!opened) return ReportError(opened.error());
  pushed.opened = std::move(*opened);
  std::vector<std::string> warnings;
  auto env = pushed.opened.service->Environment(&warnings);
  if (!env) return ReportError(env.error());
  pushed.env = *env;
  for (const auto& warning : warnings) std::cerr << warning << "\n";
  auto run = pushed.opened.service->GetRun(args.run_id);
  if (!run) return ReportServiceError(run.error(), {{"run_id", ""}});
  pushed.details = RunDetails{std::move(run->run), std::move(run->summary), std::move(run->tasks)};
  const RunSummary& summary = pushed.details.summary;

  const std::vector<std::string> blockers = summary.MergeBlockers();
  if (!blockers.empty()) {
    if (!args.force) {
      std::string message = "run " + args.run_id + " is not mergeable: ";
      for (size_t index = 0; index < blockers.size(); ++index) {
        message += (index > 0 ? "; " : "") + blockers[index];
      }
      message += ". " + summary.NextStep() + " (`factory run " + command + " " + args.run_id +
                 " --force` pushes it anyway, recorded in the audit log)";
      return ReportError(message, kExitPrecondition);
    }
    pushed.forced_blockers = blockers;
  }

  const Git& git = pushed.env->workspace().git();
  auto target = forge::ResolveRemote(git, args.remote, summary.base_branch);
  if (!target) return ReportError(target.error());
  auto push = forge::PushBranch(git, *target, summary.integration_branch);
  if (!push) return ReportError(push.error());
  pushed.push = std::move(*push);
  if (auto location = forge::ParseRemoteUrl(target->url); location) {
    pushed.location = std::move(*location);
    auto compare =
        forge::CompareUrl(*pushed.location, summary.base_branch, summary.integration_branch);
    if (compare) {
      pushed.compare_url = std::move(*compare);
    } else {
      pushed.no_compare_url = compare.error().message;
    }
  } else {
    pushed.no_compare_url = location.error().message;
  }
  nlohmann::json payload = {
      {"remote", pushed.push.remote},         {"remote_url", pushed.push.remote_url},
      {"branch", pushed.push.branch},         {"commit", pushed.push.commit},
      {"up_to_date", pushed.push.up_to_date}, {"forced", !pushed.forced_blockers.empty()}};
  if (!pushed.forced_blockers.empty()) payload["overridden"] = pushed.forced_blockers;
  // The branch is on the remote already: a failed record is a warning, not a failed push.
  if (auto recorded = pushed.env->queue().events().Append(
          {.kind = events::EventKind::kRunPushed,
           .run_id = args.run_id,
           .actor = "cli",
           .payload_json = payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
      !recorded) {
    std::cerr << "factory: warning: cannot record the push in the event log: "
              << recorded.error().message << "\n";
  }
  return pushed;
}

Json PushJson(const PrArgs& args, const Pushed& pushed) {
  Json json;
  json["run_id"] = args.run_id;
  json["remote"] = pushed.push.remote;
  json["remote_url"] = pushed.push.remote_url;
  json["branch"] = pushed.push.branch;
  json["base_branch"] = pushed.details.summary.base_branch;
  json["commit"] = pushed.push.commit;
  json["up_to_date"] = pushed.push.up_to_date;
  json["forced"] = !pushed.forced_blockers.empty();
  json["forge"] = std::string(
      forge::ForgeName(pushed.location ? pushed.location->kind : forge::ForgeKind::kUnknown));
  json["compare_url"] = pushed.compare_url ? Json(*pushed.compare_url) : Json(nullptr);
  return json;
}

void PrintPushed(const Pushed& pushed) {
  const forge::PushOutcome& push = pushed.push;
  if (push.up_to_date) {
    std::cout << "factory: " << push.remote << " (" << push.remote_url << ") already has "
              << push.branch << " at " << push.commit.substr(0, 12) << "\n";
  } else {
    std::cout << "factory: pushed " << push.branch << " (" << push.commit.substr(0, 12) << ") to "
              << push.remote << " (" << push.remote_url << ")\n";
  }
}

int PushCommand(const CliContext& ctx, const PrArgs& args) {
  auto result = PushRun(ctx, args, "push");
  if (std::holds_alternative<int>(result)) return std::get<int>(result);
  const Pushed& pushed = std::get<Pushed>(result);
  if (args.json) {
    std::cout << DumpJson(PushJson(args, pushed)) << "\n";
    return kExitOk;
  }
  PrintPushed(pushed);
  if (pushed.compare_url) std::cout << "  pull request: " << *pushed.compare_url << "\n";
  return kExitOk;
}

// The spec folder (.factory/specs/<feature>/) whose current version `run_id` built, if any.
std::optional<fs::path> SpecDirOf(const fs::path& repo_root, const std::string& run_id) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(repo_root / ".factory" / "specs", error)) {
    if (!entry.is_directory(error)) continue;
    auto metadata = nlohmann::json::parse(feature::ReadSpecMetadata(entry.path()), nullptr, false);
    if (metadata.is_object() && metadata.value("run_id", "") == run_id) return entry.path();
  }
  return std::nullopt;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The feature request as PLAN.md keeps it: between "## Feature request" and the first
// planner's document ("## Specification").
std::string RequestFromPlan(const std::string& plan) {
  const std::string start_marker = "\n## Feature request\n\n";
  const size_t start = plan.find(start_marker);
  if (start == std::string::npos) return "";
  const size_t begin = start + start_marker.size();
  size_t end = plan.find("\n## Specification\n", begin);
  if (end == std::string::npos) end = plan.size();
  std::string request = plan.substr(begin, end - begin);
  while (!request.empty() && request.back() == '\n') request.pop_back();
  return request;
}

// The first Markdown heading of the request ("# Greetings" -> "Greetings"); "" when none.
std::string HeadingOf(const std::string& request) {
  size_t start = 0;
  while (start < request.size()) {
    size_t end = request.find('\n', start);
    if (end == std::string::npos) end = request.size();
    std::string line = request.substr(start, end - start);
    if (line.starts_with("#")) {
      const size_t text = line.find_first_not_of("# ");
      if (text != std::string::npos) return line.substr(text);
    }
    start = end + 1;
  }
  return "";
}

std::vector<std::string> Strings(const nlohmann::json& value) {
  std::vector<std::string> items;
  if (!value.is_array()) return items;
  for (const auto& item : value) {
    if (item.is_string()) items.push_back(item.get<std::string>());
  }
  return items;
}

// The gates of the attempt that succeeded (else the last one): command gates and reviewers.
std::vector<forge::GateOutcome> GatesOf(const std::vector<Attempt>& attempts) {
  const Attempt* chosen = nullptr;
  for (const auto& attempt : attempts) {
    if (attempt.status == AttemptStatus::kSucceeded || chosen == nullptr ||
        chosen->status != AttemptStatus::kSucceeded) {
      chosen = &attempt;
    }
  }
  std::vector<forge::GateOutcome> gates;
  if (chosen == nullptr) return gates;
  auto details = ParseAttemptDetails(chosen->details_json);
  if (!details) return gates;
  for (const GateDetails& gate : details->gates.value_or(std::vector<GateDetails>{})) {
    gates.push_back({gate.name, gate.passed ? "passed" : "failed"});
  }
  for (const ReviewDetails& review : details->reviews.value_or(std::vector<ReviewDetails>{})) {
    gates.push_back({review.gate, "review " + (review.verdict.empty() ? "error" : review.verdict)});
  }
  return gates;
}

// Everything the request says, from the run, its spec folder and the event log.
forge::PullRequestContent GatherContent(const Pushed& pushed) {
  const RunSummary& summary = pushed.details.summary;
  forge::PullRequestContent content;
  content.run_id = summary.run_id;
  content.feature = summary.feature;
  // A backlog run's title is its backlog's file name; a feature's request has a better one.
  content.headline = "factory run " + summary.run_id +
                     (pushed.details.run.title.empty() ? "" : ": " + pushed.details.run.title);
  content.base_branch = summary.base_branch;
  content.head_branch = summary.integration_branch;
  content.tasks_done = summary.done;
  content.gates_configured = summary.gates;
  content.final_gates = summary.final_gates;
  content.final_gates_detail = summary.final_gates_detail;
  content.build_cost_usd = summary.cost_usd;
  content.merge_blockers = pushed.forced_blockers;
  if (auto spec_dir = SpecDirOf(pushed.env->workspace().repo_root(), summary.run_id)) {
    content.request = RequestFromPlan(ReadText(*spec_dir / "PLAN.md"));
    if (std::string heading = HeadingOf(content.request); !heading.empty()) {
      content.headline = heading;
    }
    auto metadata = nlohmann::json::parse(feature::ReadSpecMetadata(*spec_dir), nullptr, false);
    if (metadata.is_object() && metadata.contains("cost_usd") && metadata["cost_usd"].is_number()) {
      content.planning_cost_usd = metadata["cost_usd"].get<double>();
    }
  }
  Queue& queue = pushed.env->queue();
  for (const auto& view : pushed.details.tasks) {
    forge::TaskReport task;
    task.key = view.key;
    task.title = view.title;
    task.state = view.state;
    task.agent = view.agent;
    task.attempts = view.attempts;
    task.cost_usd = view.cost_usd;
    task.scope = view.scope;
    if (auto stored = queue.GetTask(view.task_id)) {
      task.acceptance = Strings(nlohmann::json::parse(stored->acceptance_json, nullptr, false));
    }
    if (auto attempts = queue.ListAttempts(view.task_id)) task.gates = GatesOf(*attempts);
    content.tasks.push_back(std::move(task));
  }
  if (auto audit = VerifyChain(*pushed.opened.store)) {
    content.audit_events = audit->events_checked;
    if (audit->ok) {
      content.audit_head = audit->head_hash;
    } else {
      content.audit_problem = "broken at event seq " +
                              std::to_string(audit->broken_seq.value_or(0)) + ": " + audit->problem;
    }
  } else {
    content.audit_problem = "cannot be read: " + audit.error().message;
  }
  return content;
}

std::string PathVariable() {
  const char* path = std::getenv("PATH");
  return path != nullptr ? path : "";
}

int PullRequestCommand(const CliContext& ctx, const PrArgs& args) {
  auto result = PushRun(ctx, args, "pr");
  if (std::holds_alternative<int>(result)) return std::get<int>(result);
  const Pushed& pushed = std::get<Pushed>(result);
  if (!args.json) PrintPushed(pushed);
  Json json = PushJson(args, pushed);

  const forge::PullRequestContent content = GatherContent(pushed);
  std::optional<forge::PrClient> client;
  if (pushed.location) client = forge::FindPrClient(pushed.location->kind, PathVariable());
  json["title"] = forge::PullRequestTitle(content);
  json["client"] = client ? Json(client->name) : Json(nullptr);
  json["url"] = nullptr;

  if (!client) {
    if (!pushed.compare_url) {
      if (args.json) std::cout << DumpJson(json) << "\n";
      return ReportError(
          "cannot open a pull request for " + pushed.push.branch + ": " + pushed.no_compare_url,
          kExitPrecondition);
    }
    if (args.json) {
      std::cout << DumpJson(json) << "\n";
      return kExitOk;
    }
    const std::string wanted = pushed.location->kind == forge::ForgeKind::kGitHub   ? "gh"
                               : pushed.location->kind == forge::ForgeKind::kGitLab ? "glab"
                                                                                    : "";
    std::cout << "factory: "
              << (wanted.empty() ? "no command-line client opens requests on this forge"
                                 : "no `" + wanted + "` on PATH to open the request")
              << "; open it on the web:\n"
              << "  branch:       " << pushed.push.branch << " into "
              << pushed.details.summary.base_branch << "\n"
              << "  pull request: " << *pushed.compare_url << "\n";
    return kExitOk;
  }

  forge::PullRequestRequest request;
  request.remote = *pushed.location;
  request.base_branch = pushed.details.summary.base_branch;
  request.head_branch = pushed.push.branch;
  request.title = forge::PullRequestTitle(content);
  request.body = forge::PullRequestBody(content);
  request.draft = args.draft;
  request.repo_dir = pushed.env->workspace().repo_root();
  auto opened = forge::OpenPullRequest(*client, request);
  if (!opened) {
    if (args.json) std::cout << DumpJson(json) << "\n";
    std::string message = opened.error().message;
    if (pushed.compare_url) message += "\nopen it on the web instead: " + *pushed.compare_url;
    return ReportError(message, kExitFailed);
  }
  nlohmann::json payload = {{"client", opened->client},
                            {"url", opened->url},
                            {"remote", pushed.push.remote},
                            {"branch", pushed.push.branch},
                            {"base_branch", request.base_branch},
                            {"commit", pushed.push.commit},
                            {"draft", args.draft}};
  if (auto recorded = pushed.env->queue().events().Append(
          {.kind = events::EventKind::kRunPullRequestOpened,
           .run_id = args.run_id,
           .actor = "cli",
           .payload_json = payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
      !recorded) {
    std::cerr << "factory: warning: cannot record the pull request in the event log: "
              << recorded.error().message << "\n";
  }
  json["url"] = opened->url;
  if (args.json) {
    std::cout << DumpJson(json) << "\n";
  } else {
    std::cout << "factory: opened " << (args.draft ? "draft " : "") << "pull request "
              << opened->url << " (" << opened->client << ")\n";
  }
  return kExitOk;
}

void AddPrOptions(CLI::App* cmd, PrArgs& args) {
  cmd->add_option("RUN", args.run_id, "Run id")->required();
  cmd->add_option("--remote", args.remote,
                  "The remote to push to (default: the base branch's upstream remote, else "
                  "origin, else the only remote)");
  cmd->add_flag("--force", args.force,
                "Push although the run is not mergeable (tasks not done, or a feature whose "
                "final gates did not pass); recorded in the audit log and said in the request");
  cmd->add_option("--repo", args.repo, "The git repository (default: the current directory)");
  cmd->add_flag("--json", args.json, "Print JSON");
}

}  // namespace

void AddPushCommands(CLI::App& run, CliContext& ctx) {
  static PrArgs args;
  auto* push = run.add_subcommand(
      "push",
      "Push a run's integration branch (factory/<run>) to a remote with your git credentials; "
      "only a run that `factory run merge` would merge, unless --force. Exit 4 naming why not");
  AddPrOptions(push, args);
  push->callback([&ctx] { ctx.action = [&ctx] { return PushCommand(ctx, args); }; });

  auto* pr = run.add_subcommand(
      "pr",
      "Push a run's integration branch, then open a pull request (GitHub, with `gh`) or merge "
      "request (GitLab, with `glab`) whose text says what the run did: tasks, acceptance "
      "criteria, gates, cost, the audit head. Without the client: print the branch and the "
      "page that opens one (exit 0), or why there is none (exit 4)");
  AddPrOptions(pr, args);
  pr->add_flag("--draft", args.draft, "Open it as a draft");
  pr->callback([&ctx] { ctx.action = [&ctx] { return PullRequestCommand(ctx, args); }; });
}

}  // namespace factory::cli
