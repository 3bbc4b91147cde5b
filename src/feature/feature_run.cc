#include "feature/feature_run.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "agents/registry.h"
#include "core/clock.h"
#include "core/sha256.h"
#include "core/text_file.h"
#include "feature/internal/spec_files.h"
#include "feature/planned_backlog.h"
#include "feature/repo_map.h"
#include "toolloop/workspace_fs.h"

namespace factory::feature {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxRequestBytes = 256 * 1024;

using internal::kBacklogFile;
using internal::kMetadataFile;
using internal::ReadText;
using internal::UtcTimestamp;
using internal::WriteAtomically;

const char* PromptFor(std::string_view planner) {
  if (planner == "spec") return prompts::kPlanSpecPrompt;
  if (planner == "architecture") return prompts::kPlanArchitecturePrompt;
  return prompts::kPlanQaPrompt;
}

const char* DocumentTitle(std::string_view planner) {
  if (planner == "spec") return "Specification";
  if (planner == "architecture") return "Architecture";
  return "Test plan";
}

// The AGENTS variable: one line per agent with what it can do.
std::string DescribeAgents(const AgentRegistry& agents, const ProjectConfig* config) {
  std::map<std::string, std::vector<std::string>> defaults;  // agent -> task types
  if (config != nullptr) {
    for (const auto& [type, agent] : config->default_agents) defaults[agent].push_back(type);
  }
  std::string text;
  for (const AgentSpec* agent : agents.agents()) {
    text += "- " + agent->name + ": capabilities [";
    for (size_t index = 0; index < agent->capabilities.size(); ++index) {
      text += (index == 0 ? "" : ", ") + agent->capabilities[index];
    }
    text += "]";
    if (!agent->role.empty()) text += "; " + agent->role;
    if (auto it = defaults.find(agent->name); it != defaults.end()) {
      text += "; default for task types:";
      for (const auto& type : it->second) text += " " + type;
    }
    text += "\n";
  }
  if (text.empty()) text = "(no agents are configured)\n";
  return text;
}

std::string DescribeTaskTypes(const ProjectConfig* config) {
  std::string text;
  if (config == nullptr) return text;
  for (const auto& [type, agent] : config->default_agents) {
    text += "- " + type + " (agent " + agent + ")\n";
  }
  return text;
}

std::string DescribeGates(const ProjectConfig* config) {
  std::string text;
  if (config == nullptr) return text;
  for (const auto& gate : config->gates) {
    text += gate.kind == GateKind::kReview
                ? "- " + gate.name + ": a reviewer (" + gate.model +
                      ") judges each task's diff against its acceptance criteria\n"
                : "- " + gate.name + ": `" + gate.command + "`\n";
  }
  return text;
}

// The spec folder's state, shared by the planner threads.
class SpecFolder {
 public:
  SpecFolder(fs::path dir, json metadata) : dir_(std::move(dir)), metadata_(std::move(metadata)) {}

  const fs::path& dir() const { return dir_; }

  // Applies `change` to the metadata and writes it; nothing once interrupted. Thread-safe.
  template <typename Change>
  Status Update(Change&& change) {
    std::lock_guard lock(mu_);
    if (frozen_) return Ok();
    change(metadata_);
    metadata_["last_generated"] = UtcTimestamp(SystemClock().NowMillis());
    return WriteAtomically(dir_ / kMetadataFile, metadata_.dump(2) + "\n");
  }
  json Snapshot() const {
    std::lock_guard lock(mu_);
    return metadata_;
  }
  bool frozen() const {
    std::lock_guard lock(mu_);
    return frozen_;
  }

  // Marks the running planners (and a running backlog agent) interrupted, writes that, and
  // freezes the folder. Returns the planners marked. Thread-safe.
  std::vector<std::string> Interrupt() {
    std::lock_guard lock(mu_);
    std::vector<std::string> marked;
    if (frozen_) return marked;
    frozen_ = true;
    const std::string status = metadata_.value("status", "");
    if (status != "planning" && status != "backlog") return marked;
    for (auto& [name, planner] : metadata_["planners"].items()) {
      if (planner.is_object() && planner.value("status", "") == "running") {
        planner["status"] = "interrupted";
        marked.push_back(name);
      }
    }
    if (status == "backlog") marked.push_back("backlog");
    metadata_["status"] = "interrupted";
    metadata_["last_generated"] = UtcTimestamp(SystemClock().NowMillis());
    (void)WriteAtomically(dir_ / kMetadataFile, metadata_.dump(2) + "\n");
    return marked;
  }

 private:
  const fs::path dir_;
  mutable std::mutex mu_;
  json metadata_;        // guarded by mu_
  bool frozen_ = false;  // guarded by mu_
};

class Planning {
 public:
  Planning(const FeatureRequest& request, const PlanningDeps& deps, const PlanningOptions& options,
           SpecFolder& folder)
      : request_(request), deps_(deps), options_(options), folder_(folder) {}

  void Progress(PlannerProgress progress) {
    if (options_.observer != nullptr) options_.observer->OnPlanner(progress);
  }

  // The plan itself is saved in the spec folder; a lost event must not fail it.
  void Event(events::EventKind kind, const std::string& actor, const json& payload) {
    if (deps_.events == nullptr) return;
    deps_.events->AppendOrWarn(
        {.kind = kind,
         .run_id = options_.run_id,
         .actor = actor,
         .payload_json = payload.dump(-1, ' ', false, json::error_handler_t::replace)});
  }

  llm::CallContext Context(const std::string& agent, const std::string& purpose) const {
    llm::CallContext context;
    context.run_id = options_.run_id;
    context.agent = agent;
    context.purpose = purpose;
    return context;
  }

  llm::ChatRequest Request(std::string system_prompt, std::string instruction) const {
    llm::ChatRequest request;
    request.messages.push_back(llm::Message::System(std::move(system_prompt)));
    request.messages.push_back(llm::Message::User(std::move(instruction)));
    request.max_tokens = options_.max_output_tokens;
    return request;
  }

  // One planner, on its own thread: call, save the output, record the timestamps.
  Result<PlannerOutcome> RunPlanner(const std::string& name, const std::string& repo_map,
                                    const std::vector<std::string>& targets) {
    std::map<std::string, std::string> values = {{"FEATURE_REQUEST", request_.text},
                                                 {"REPO_MAP", repo_map},
                                                 {"FEATURE_ID", request_.id},
                                                 {"GATES", DescribeGates(deps_.config)}};
    FACTORY_ASSIGN_OR_RETURN(std::string system_prompt,
                             deps_.prompts->Render(PromptFor(name), values));
    const std::string agent = name + "-planner";
    PlannerOutcome outcome;
    outcome.name = name;
    outcome.started_ms = SystemClock().NowMillis();
    Event(events::EventKind::kFeaturePlannerStarted, agent,
          {{"planner", name}, {"started_ms", outcome.started_ms}});
    (void)folder_.Update([&](json& metadata) {
      metadata["planners"][name] = {{"status", "running"}, {"started_ms", outcome.started_ms}};
    });
    Progress({.name = name, .state = "running"});
    auto response = deps_.router->Chat(
        targets,
        Request(std::move(system_prompt),
                std::string("Write the ") + DocumentTitle(name) +
                    " document for this feature now, following the sections above."),
        Context(agent, PromptFor(name)));
    outcome.ended_ms = SystemClock().NowMillis();
    if (folder_.frozen()) return Aborted("planning was interrupted");
    if (!response) {
      Progress(
          {.name = name, .state = "failed", .elapsed_ms = outcome.ended_ms - outcome.started_ms});
      Event(events::EventKind::kFeaturePlannerFailed, agent,
            {{"planner", name}, {"error", response.error().message}});
      (void)folder_.Update([&](json& metadata) {
        metadata["planners"][name]["status"] = "failed";
        metadata["planners"][name]["error"] = response.error().message;
      });
      return std::unexpected(response.error().ToError().Wrap("the " + name + " planner"));
    }
    outcome.output = toolloop::SanitizeUtf8(response->text);
    outcome.model = response->model_name;
    outcome.cost_usd = response->cost_usd;
    if (outcome.output.find_first_not_of(" \t\r\n") == std::string::npos) {
      (void)folder_.Update([&](json& metadata) {
        metadata["planners"][name]["status"] = "failed";
        metadata["planners"][name]["error"] = "empty answer";
      });
      Progress({.name = name,
                .state = "failed",
                .elapsed_ms = outcome.ended_ms - outcome.started_ms,
                .cost_usd = outcome.cost_usd,
                .model = outcome.model});
      return Unavailable("the " + name + " planner answered with an empty document");
    }
    // The output first, then the metadata that says it is complete: a kill between the two
    // only costs this planner's call again.
    FACTORY_RETURN_IF_ERROR(
        WriteAtomically(folder_.dir() / "planners" / (name + ".md"), outcome.output));
    FACTORY_RETURN_IF_ERROR(folder_.Update([&](json& metadata) {
      metadata["planners"][name] = {{"status", "done"},
                                    {"started_ms", outcome.started_ms},
                                    {"ended_ms", outcome.ended_ms},
                                    {"model", outcome.model},
                                    {"input_tokens", response->usage.input_tokens},
                                    {"output_tokens", response->usage.output_tokens},
                                    {"cost_usd", outcome.cost_usd}};
      metadata["cost_usd"] = metadata.value("cost_usd", 0.0) + outcome.cost_usd;
    }));
    Progress({.name = name,
              .state = "done",
              .elapsed_ms = outcome.ended_ms - outcome.started_ms,
              .cost_usd = outcome.cost_usd,
              .model = outcome.model});
    Event(events::EventKind::kFeaturePlannerFinished, agent,
          {{"planner", name},
           {"started_ms", outcome.started_ms},
           {"ended_ms", outcome.ended_ms},
           {"model", outcome.model},
           {"cost_usd", outcome.cost_usd}});
    return outcome;
  }

  // The backlog agent with up to max_repairs repairs. Returns the validated backlog.
  Result<Backlog> RunBacklog(const std::vector<PlannerOutcome>& planners,
                             const std::vector<std::string>& targets, int& attempts, double& cost) {
    const std::string agents_text = DescribeAgents(*deps_.agents, deps_.config);
    std::map<std::string, std::string> values = {{"FEATURE_REQUEST", request_.text},
                                                 {"AGENTS", agents_text},
                                                 {"TASK_TYPES", DescribeTaskTypes(deps_.config)},
                                                 {"MAX_TASKS", std::to_string(options_.max_tasks)}};
    for (const auto& planner : planners) {
      const std::string key = planner.name == "spec"           ? "SPEC_PLAN"
                              : planner.name == "architecture" ? "ARCHITECTURE_PLAN"
                                                               : "QA_PLAN";
      values[key] = planner.output;
    }
    FACTORY_ASSIGN_OR_RETURN(std::string system_prompt,
                             deps_.prompts->Render(prompts::kBacklogPrompt, values));
    llm::ChatRequest request =
        Request(std::move(system_prompt), "Answer with the backlog JSON object now.");
    (void)folder_.Update([](json& metadata) { metadata["status"] = "backlog"; });

    PlannedBacklogOptions check_options;
    check_options.agents = deps_.agents;
    check_options.max_tasks = options_.max_tasks;
    std::vector<std::string> errors;
    for (int attempt = 1; attempt <= options_.max_repairs + 1; ++attempt) {
      const bool repair = attempt > 1;
      if (folder_.frozen()) return Aborted("planning was interrupted");
      Progress({.name = "backlog", .state = "running", .attempt = attempt});
      const int64_t started_ms = SystemClock().NowMillis();
      auto response =
          deps_.router->Chat(targets, request,
                             Context("backlog-planner", repair ? prompts::kBacklogRepairPrompt
                                                               : prompts::kBacklogPrompt));
      const int64_t elapsed_ms = SystemClock().NowMillis() - started_ms;
      if (folder_.frozen()) return Aborted("planning was interrupted");
      if (!response) {
        Progress(
            {.name = "backlog", .state = "failed", .elapsed_ms = elapsed_ms, .attempt = attempt});
        return std::unexpected(response.error().ToError().Wrap("the backlog agent"));
      }
      ++attempts;
      cost += response->cost_usd;
      const std::string answer = toolloop::SanitizeUtf8(response->text);
      const fs::path saved = folder_.dir() / "planners" / ("backlog." + std::to_string(attempt));
      FACTORY_RETURN_IF_ERROR(WriteAtomically(saved.string() + ".txt", answer));
      PlannedBacklogCheck check = CheckPlannedBacklog(answer, check_options);
      errors = check.errors;
      Progress({.name = "backlog",
                .state = check.ok() ? "done" : "invalid",
                .elapsed_ms = elapsed_ms,
                .cost_usd = response->cost_usd,
                .model = response->model_name,
                .attempt = attempt});
      FACTORY_RETURN_IF_ERROR(folder_.Update([&](json& metadata) {
        metadata["attempts"] = attempts;
        metadata["cost_usd"] = metadata.value("cost_usd", 0.0) + response->cost_usd;
        metadata["backlog_errors"] = errors;
      }));
      if (check.ok()) {
        Event(events::EventKind::kFeatureBacklogAccepted, "backlog-planner",
              {{"attempt", attempt}, {"tasks", check.backlog->value.tasks.size()}});
        return std::move(check.backlog->value);
      }
      std::string joined;
      for (const auto& error : errors) joined += error + "\n";
      FACTORY_RETURN_IF_ERROR(WriteAtomically(saved.string() + ".errors.txt", joined));
      Event(events::EventKind::kFeatureBacklogInvalid, "backlog-planner",
            {{"attempt", attempt}, {"errors", errors}});
      if (attempt > options_.max_repairs) break;
      // Repair in the same conversation: the model keeps the plans it worked from.
      std::map<std::string, std::string> repair_values = {{"PREVIOUS_OUTPUT", answer},
                                                          {"VALIDATION_ERRORS", joined},
                                                          {"AGENTS", agents_text},
                                                          {"ATTEMPT", std::to_string(attempt)}};
      FACTORY_ASSIGN_OR_RETURN(std::string repair_prompt,
                               deps_.prompts->Render(prompts::kBacklogRepairPrompt, repair_values));
      request.messages.push_back(llm::Message::Assistant(answer));
      request.messages.push_back(llm::Message::User(std::move(repair_prompt)));
    }
    (void)folder_.Update([](json& metadata) { metadata["status"] = "backlog_invalid"; });
    std::string report = "the backlog agent's task graph is still invalid after " +
                         std::to_string(options_.max_repairs) + " repair" +
                         (options_.max_repairs == 1 ? "" : "s") + " (answers in " +
                         (folder_.dir() / "planners").string() + "):";
    for (const auto& error : errors) report += "\n  " + error;
    return Aborted(report);
  }

 private:
  const FeatureRequest& request_;
  const PlanningDeps& deps_;
  const PlanningOptions& options_;
  SpecFolder& folder_;
};

std::string PlanMarkdown(const FeatureRequest& request, const std::vector<PlannerOutcome>& planners,
                         const std::string& run_id, int version) {
  std::string text = "# Plan: " + request.id + "\n\n";
  text += "Version " + std::to_string(version) + ", run " + run_id + ", from " + request.source +
          ".\n\n## Feature request\n\n" + request.text;
  if (!request.text.ends_with('\n')) text += "\n";
  for (const auto& planner : planners) {
    text += "\n## " + std::string(DocumentTitle(planner.name)) + "\n\n" + planner.output;
    if (!planner.output.ends_with('\n')) text += "\n";
  }
  return text;
}

}  // namespace

std::string FeatureIdFor(const fs::path& path) {
  const std::string stem = path.stem().string();
  std::string id;
  for (char raw : stem) {
    const unsigned char c = static_cast<unsigned char>(raw);
    if (std::isalnum(c) && c < 0x80) {
      id += static_cast<char>(std::tolower(c));
    } else if (!id.empty() && id.back() != '-') {
      id += '-';
    }
  }
  while (!id.empty() && id.back() == '-') id.pop_back();
  if (id.size() > 64) id.resize(64);
  while (!id.empty() && id.back() == '-') id.pop_back();
  return id.empty() ? "feature" : id;
}

Result<FeatureRequest> LoadFeatureRequest(const fs::path& path) {
  if (path.extension() != ".md") {
    return InvalidArgument(path.string() + ": a feature request is a Markdown file (.md)");
  }
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    return NotFound("cannot read feature request " + path.string());
  }
  if (fs::file_size(path, error) > kMaxRequestBytes) {
    return InvalidArgument(path.string() + ": the feature request is larger than " +
                           std::to_string(kMaxRequestBytes / 1024) + " KiB");
  }
  FeatureRequest request;
  // Invalid UTF-8 and NUL bytes are refused here, naming the line ("PATH:LINE: NUL byte").
  FACTORY_ASSIGN_OR_RETURN(request.text,
                           ReadTextFile(path, ReadTextOptions{.max_bytes = kMaxRequestBytes}));
  request.source = path.string();
  request.id = FeatureIdFor(path);
  if (request.text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return InvalidArgument(path.string() + ": the feature request is empty");
  }
  if (!toolloop::IsValidUtf8(request.text)) {
    return InvalidArgument(path.string() + ": the feature request is not valid UTF-8");
  }
  return request;
}

std::vector<std::string> PlanningInterrupt::Interrupt() {
  std::lock_guard lock(mu_);
  if (interrupted_) return {};
  interrupted_ = true;
  return interrupt_ ? interrupt_() : std::vector<std::string>{};
}

bool PlanningInterrupt::interrupted() const {
  std::lock_guard lock(mu_);
  return interrupted_;
}

void PlanningInterrupt::Attach(std::function<std::vector<std::string>()> interrupt) {
  std::lock_guard lock(mu_);
  interrupt_ = std::move(interrupt);
}

void PlanningInterrupt::Detach() {
  std::lock_guard lock(mu_);
  interrupt_ = nullptr;
}

bool NeedsPlanning(std::string_view status) {
  return status == "planning" || status == "backlog" || status == "backlog_invalid" ||
         status == "planning_failed" || status == "interrupted";
}

std::string ReadSpecMetadata(const fs::path& spec_dir) {
  return ReadText(spec_dir / kMetadataFile);
}

Status SetSpecStatus(const fs::path& spec_dir, std::string_view status,
                     std::string_view build_json) {
  json build = json::parse(build_json, nullptr, false);
  return internal::UpdateMetadata(spec_dir, [&](json& metadata) {
    metadata["status"] = status;
    if (build.is_object() && !build.empty()) metadata["build"] = build;
  });
}

Result<FeaturePlan> PlanFeature(const FeatureRequest& request, const PlanningDeps& deps,
                                const PlanningOptions& options) {
  if (deps.router == nullptr || deps.prompts == nullptr || deps.agents == nullptr) {
    return Internal("PlanFeature needs a router, the prompts and the agents");
  }
  if (options.run_id.empty() || options.spec_dir.empty() || options.repo_root.empty()) {
    return Internal("PlanFeature needs a run id, a repository and a spec folder");
  }
  std::vector<std::string> targets = options.targets;
  if (targets.empty()) {
    auto chain = deps.router->config().ChainFor("plan", "");
    if (!chain) {
      return FailedPrecondition("no model for planning: " + chain.error().message +
                                " (add a routing rule for task_type 'plan' to models.yaml)");
    }
    targets = *chain;
  }
  if (auto resolved = deps.router->Resolve(targets); !resolved) {
    return std::unexpected(resolved.error().Wrap("no usable model for planning"));
  }

  // Resume, new version, or first plan.
  const std::string request_hash = Sha256Hex(request.text);
  json metadata = json::parse(ReadSpecMetadata(options.spec_dir), nullptr, false);
  bool resuming = false;
  int version = 1;
  if (metadata.is_object()) {
    version = metadata.value("version", 1);
    if (metadata.value("run_id", "") == options.run_id) {
      if (metadata.value("request_sha256", "") != request_hash) {
        return FailedPrecondition("run " + options.run_id + " was planned from another text of " +
                                  request.source + "; start a new run (another --run-id)");
      }
      resuming = true;
    } else {
      FACTORY_RETURN_IF_ERROR(internal::ArchiveVersion(options.spec_dir, version));
      ++version;
    }
  }
  if (!resuming) {
    metadata = json{{"feature_id", request.id},
                    {"version", version},
                    {"status", "planning"},
                    {"run_id", options.run_id},
                    {"request_file", request.source},
                    {"request_path", fs::absolute(request.source).lexically_normal().string()},
                    {"request_sha256", request_hash},
                    {"attempts", 0},
                    {"cost_usd", 0.0},
                    {"planners", json::object()}};
  }
  SpecFolder folder(options.spec_dir, metadata);
  Planning planning(request, deps, options, folder);
  FACTORY_RETURN_IF_ERROR(folder.Update([](json&) {}));
  // Detached on every return: the folder dies with this call.
  struct Attachment {
    PlanningInterrupt* interrupt;
    ~Attachment() {
      if (interrupt != nullptr) interrupt->Detach();
    }
  } attachment{options.interrupt};
  if (options.interrupt != nullptr) {
    options.interrupt->Attach([&folder, &planning] {
      std::vector<std::string> marked = folder.Interrupt();
      planning.Event(events::EventKind::kFeaturePlanningInterrupted, "orchestrator",
                     {{"planners", marked}});
      for (const auto& name : marked) planning.Progress({.name = name, .state = "interrupted"});
      return marked;
    });
    if (options.interrupt->interrupted()) return Aborted("planning was interrupted");
  }

  FeaturePlan plan;
  plan.version = version;
  plan.backlog_path = options.spec_dir / kBacklogFile;
  planning.Event(events::EventKind::kFeaturePlanningStarted, "orchestrator",
                 {{"feature", request.id}, {"version", version}, {"resumed", resuming}});

  // A saved backlog of this run: planning is over.
  if (resuming && !NeedsPlanning(metadata.value("status", "")) && fs::exists(plan.backlog_path)) {
    BacklogOptions backlog_options;
    backlog_options.agents = deps.agents;
    FACTORY_ASSIGN_OR_RETURN(plan.backlog, LoadBacklog(plan.backlog_path, backlog_options));
    plan.reused_backlog = true;
    for (const char* name : kPlannerNames) {
      plan.planners.push_back(
          {.name = name,
           .output = ReadText(options.spec_dir / "planners" / (std::string(name) + ".md")),
           .reused = true});
    }
    return plan;
  }

  // Intake: the saved map when resuming (the planners that are done read that one).
  const fs::path map_path = options.spec_dir / "planners" / "repo-map.md";
  std::string repo_map = resuming ? ReadText(map_path) : "";
  if (repo_map.empty()) {
    RepoMapOptions map_options;
    map_options.max_bytes = options.repo_map_bytes;
    FACTORY_ASSIGN_OR_RETURN(repo_map, BuildRepoMap(options.repo_root, map_options));
    FACTORY_RETURN_IF_ERROR(WriteAtomically(map_path, repo_map));
    FACTORY_RETURN_IF_ERROR(
        WriteAtomically(options.spec_dir / "context.md",
                        "# Context: " + request.id + "\n\nThe repository map the planners of run " +
                            options.run_id + " read (" + std::to_string(repo_map.size()) +
                            " bytes).\n\n" + repo_map + (repo_map.ends_with('\n') ? "" : "\n")));
  }

  // Planning: the planners without a saved output, in parallel.
  const size_t planner_count = std::size(kPlannerNames);
  std::vector<std::optional<Result<PlannerOutcome>>> results(planner_count);
  std::vector<std::thread> threads;
  const json saved = folder.Snapshot()["planners"];
  for (size_t index = 0; index < planner_count; ++index) {
    const std::string name = kPlannerNames[index];
    const fs::path output_path = options.spec_dir / "planners" / (name + ".md");
    if (resuming && saved.contains(name) && saved[name].value("status", "") == "done" &&
        fs::exists(output_path)) {
      PlannerOutcome outcome;
      outcome.name = name;
      outcome.output = ReadText(output_path);
      outcome.reused = true;
      outcome.started_ms = saved[name].value("started_ms", int64_t{0});
      outcome.ended_ms = saved[name].value("ended_ms", int64_t{0});
      outcome.model = saved[name].value("model", "");
      outcome.cost_usd = saved[name].value("cost_usd", 0.0);
      planning.Event(events::EventKind::kFeaturePlannerReused, name + "-planner",
                     {{"planner", name}});
      planning.Progress({.name = name,
                         .state = "reused",
                         .elapsed_ms = outcome.ended_ms - outcome.started_ms,
                         .cost_usd = outcome.cost_usd,
                         .model = outcome.model});
      results[index] = std::move(outcome);
      continue;
    }
    threads.emplace_back(
        [&, index, name] { results[index] = planning.RunPlanner(name, repo_map, targets); });
  }
  for (auto& thread : threads) thread.join();
  if (folder.frozen()) return Aborted("planning was interrupted");
  for (auto& result : results) {
    if (!result->has_value()) {
      (void)folder.Update([](json& data) { data["status"] = "planning_failed"; });
      return std::unexpected(result->error());
    }
    if (!(*result)->reused) plan.cost_usd += (*result)->cost_usd;
    plan.planners.push_back(std::move(**result));
  }
  FACTORY_RETURN_IF_ERROR(WriteAtomically(
      options.spec_dir / "PLAN.md", PlanMarkdown(request, plan.planners, options.run_id, version)));

  // Backlog.
  double backlog_cost = 0;
  auto backlog = planning.RunBacklog(plan.planners, targets, plan.backlog_attempts, backlog_cost);
  plan.cost_usd += backlog_cost;
  if (!backlog) return std::unexpected(backlog.error());
  if (folder.frozen()) return Aborted("planning was interrupted");
  const std::string yaml = BacklogToYaml(
      *backlog, "The task graph of feature " + request.id + " (version " + std::to_string(version) +
                    ", run " + options.run_id + "), validated; generated by the backlog agent.");
  FACTORY_RETURN_IF_ERROR(WriteAtomically(plan.backlog_path, yaml));
  BacklogOptions backlog_options;
  backlog_options.agents = deps.agents;
  FACTORY_ASSIGN_OR_RETURN(plan.backlog,
                           ParseBacklogYaml(yaml, plan.backlog_path.string(), backlog_options));
  FACTORY_RETURN_IF_ERROR(folder.Update([](json& data) { data["status"] = "planned"; }));
  return plan;
}

}  // namespace factory::feature
