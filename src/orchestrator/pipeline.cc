#include "orchestrator/pipeline.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "agents/agent.h"
#include "core/clock.h"
#include "core/redact.h"
#include "core/text_file.h"
#include "events/event_log.h"
#include "orchestrator/rebase.h"
#include "orchestrator/review.h"
#include "orchestrator/task_prompts.h"
#include "plan/glob.h"
#include "plan/scope.h"
#include "stats/stats.h"
#include "store/details.h"
#include "verify/checkout.h"
#include "verify/gates.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kMiB = 1024 * 1024;

std::vector<std::string> ParseStringArray(const std::string& text) {
  std::vector<std::string> values;
  json parsed = json::parse(text.empty() ? "[]" : text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_array()) return values;
  for (const auto& item : parsed) {
    if (item.is_string()) values.push_back(item.get<std::string>());
  }
  return values;
}

std::string JoinPaths(const std::vector<std::string>& paths) {
  std::string joined;
  for (const auto& path : paths) joined += (joined.empty() ? "" : ", ") + path;
  return joined;
}

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

// Keeps the end of a text (the useful part of an output).
std::string Tail(const std::string& text, size_t bytes) {
  if (text.size() <= bytes) return text;
  return "..." + text.substr(text.size() - bytes);
}

int64_t NowMillis(const Queue& queue) { return queue.clock().NowMillis(); }

std::string OneLineTitle(const std::string& title) {
  std::string line = title;
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::replace(line.begin(), line.end(), '\r', ' ');
  return line;
}

// Keeps the attempts' artifacts out of the user's `git status`: adds the folder, when it lies in
// the repository, to the repository's info/exclude (never to a tracked file), as the workspace
// does for its worktrees. Best effort.
void ExcludeFromGit(const WorkspaceManager& workspace, const std::string& dir) {
  std::error_code error;
  const fs::path root = fs::weakly_canonical(workspace.repo_root(), error);
  const fs::path target = fs::weakly_canonical(dir, error);
  const fs::path relative = target.lexically_relative(root);
  if (relative.empty() || relative.native().starts_with("..")) return;
  auto common = workspace.git().CommonDir();
  if (!common) return;
  const fs::path exclude = fs::path(*common) / "info" / "exclude";
  const std::string pattern = "/" + relative.generic_string() + "/";
  std::string content;
  if (std::ifstream in(exclude); in) {
    std::stringstream buffer;
    buffer << in.rdbuf();
    content = buffer.str();
  }
  std::stringstream lines(content);
  for (std::string line; std::getline(lines, line);) {
    if (line == pattern) return;
  }
  fs::create_directories(exclude.parent_path(), error);
  std::ofstream out(exclude, std::ios::app);
  if (!content.empty() && content.back() != '\n') out << '\n';
  out << pattern << '\n';
}

// The values of the environment's secret-looking variables (names ending in _KEY, _TOKEN,
// _SECRET or _PASSWORD, values of kMinSecretLength characters or more), by name.
std::vector<NamedSecret> SecretsFromEnvironment() {
  std::vector<NamedSecret> secrets;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    const std::string_view name = text.substr(0, equals);
    const std::string_view value = text.substr(equals + 1);
    if (IsSecretVariableName(name) && value.size() >= kMinSecretLength) {
      secrets.push_back(NamedSecret{std::string(name), std::string(value)});
    }
  }
  return secrets;
}

}  // namespace

std::string TaskKey(const Task& task) {
  // A task whose metadata cannot be read goes by its other names.
  auto metadata = ParseTaskMetadata(task.metadata_json);
  if (metadata && !metadata->backlog_id.empty() &&
      WorkspaceManager::ValidateId("task id", metadata->backlog_id)) {
    return metadata->backlog_id;
  }
  if (task.idempotency_key && WorkspaceManager::ValidateId("task id", *task.idempotency_key)) {
    return *task.idempotency_key;
  }
  return task.id;
}

Result<std::string> PreviousFeedback(Queue& queue, const std::string& task_id,
                                     int64_t current_epoch) {
  FACTORY_ASSIGN_OR_RETURN(std::vector<Attempt> attempts, queue.ListAttempts(task_id));
  const Attempt* latest = nullptr;
  for (const auto& attempt : attempts) {
    if (attempt.epoch >= current_epoch) continue;
    if (attempt.status != AttemptStatus::kFailed) continue;
    if (latest == nullptr || attempt.epoch > latest->epoch) latest = &attempt;
  }
  if (latest == nullptr) return std::string();
  auto details = ParseAttemptDetails(latest->details_json);
  if (!details) return std::unexpected(details.error().Wrap("attempt " + latest->id));
  return details->feedback.value_or(latest->error);
}

// One attempt of one task: the state shared by the phases.
class PipelineExecutor::AttemptRun {
 public:
  AttemptRun(PipelineExecutor& executor, const ClaimedTask& claimed,
             const std::atomic<bool>& cancel)
      : ex_(executor),
        deps_(executor.deps_),
        options_(executor.options_),
        task_(claimed.task),
        lease_(claimed.lease),
        cancel_(cancel),
        key_(TaskKey(claimed.task)),
        metadata_(ParseTaskMetadata(claimed.task.metadata_json)) {
    progress_.run_id = task_.run_id;
    progress_.task_id = task_.id;
    progress_.task_key = key_;
    progress_.title = task_.title;
    progress_.attempt = lease_.attempt_number;
    progress_.max_attempts = task_.max_attempts;
    progress_.started_ms = NowMillis(*deps_.queue);
    details_.attempt = lease_.attempt_number;
    details_.task_key = key_;
    acceptance_ = ParseStringArray(task_.acceptance_json);
    history_.spec = task_.spec;
  }

  ExecResult Run();

 private:
  // Marks a phase: an `attempt.phase` event and an observer notification.
  void Phase(const char* phase, json extra = json::object());
  ExecResult Fail(const std::string& phase, const std::string& error, const std::string& feedback,
                  bool retryable = true);
  ExecResult Cancelled();
  ExecResult Succeed();
  void RecordEvent(events::EventKind kind, json payload);
  void Cleanup(bool final);
  // Removes worktrees earlier attempts left behind (a crash), saving their state to refs.
  void RemoveLeftoverWorktrees();
  // Removes gate checkouts of attempts before `below_attempt` (left by a crash mid-gates).
  void RemoveLeftoverCheckouts(int below_attempt);
  std::string CheckoutPath(int attempt) const;

  Status AcquireAgent();
  // The task's current spec and feedback (ReadTaskHistory); rebases first when due.
  void PrepareSpec();
  void Rebase();
  // The task's files (metadata "files") as RELEVANT_FILES lines; "" when it names none.
  std::string RelevantFiles() const;
  // The task's scope globs (metadata "scope"); empty: the whole repository.
  std::vector<std::string> Scope() const;
  const prompts::PromptLibrary* Prompts() const;
  std::optional<ExecResult> RunRunner();
  std::optional<ExecResult> Commit();
  std::optional<ExecResult> CheckProtected();
  // The gates, in one phase: each of the project's gates (PipelineExecutor::gates_) in order,
  // the task `verifying` for the command gates and in `review` for the review gates.
  std::optional<ExecResult> Verify();
  void ReviewEvent(const GateReport& report);
  class Subject;
  std::optional<ExecResult> Merge();

  PipelineExecutor& ex_;
  const PipelineDeps& deps_;
  const PipelineOptions& options_;
  const Task& task_;
  const Lease& lease_;
  const std::atomic<bool>& cancel_;
  const std::string key_;
  // The task's backlog fields; an error fails the attempt before it starts.
  const Result<TaskMetadata> metadata_;

  AttemptProgress progress_;
  AttemptDetails details_;
  const AgentSpec* agent_ = nullptr;
  bool agent_acquired_ = false;
  std::optional<AttemptWorkspace> workspace_;
  // What the attempt may write (sandbox.disk_mb), across its agent's commands and its gates.
  std::unique_ptr<DiskQuota> disk_quota_;
  std::string attempt_dir_;
  std::string commit_;
  std::vector<std::string> gates_passed_;
  double cost_usd_ = 0;  // reported by the runner (model calls of the pipeline are apart)
  std::vector<std::string> acceptance_;
  TaskHistory history_;   // spec versions and failures, as of this attempt
  std::string feedback_;  // for the runner: the latest failure's since the latest rebase

 public:
  ~AttemptRun() {
    if (agent_acquired_) deps_.agents->Release(agent_->name);
  }
};

void PipelineExecutor::AttemptRun::RecordEvent(events::EventKind kind, json payload) {
  payload["attempt"] = lease_.attempt_number;
  deps_.queue->events().AppendOrWarn(
      {.kind = kind,
       .run_id = task_.run_id,
       .task_id = task_.id,
       .actor = options_.actor,
       .payload_json = payload.dump(-1, ' ', false, json::error_handler_t::replace)});
}

void PipelineExecutor::AttemptRun::Phase(const char* phase, json extra) {
  progress_.phase = phase;
  progress_.phase_started_ms = NowMillis(*deps_.queue);
  if (agent_ != nullptr) progress_.agent = agent_->name;
  extra["phase"] = phase;
  RecordEvent(events::EventKind::kAttemptPhase, std::move(extra));
  ex_.UpdateProgress(progress_, /*started=*/false);
}

std::string PipelineExecutor::AttemptRun::CheckoutPath(int attempt) const {
  return deps_.workspace->RunWorktreesDir(task_.run_id) + "/_check/" + key_ + "-" +
         std::to_string(attempt);
}

void PipelineExecutor::AttemptRun::RemoveLeftoverCheckouts(int below_attempt) {
  for (int attempt = 1; attempt < below_attempt; ++attempt) {
    const std::string path = CheckoutPath(attempt);
    std::error_code error;
    if (!fs::exists(path, error)) continue;
    // Only ever a detached checkout of a commit: nothing to save.
    std::lock_guard lock(ex_.worktree_mu_);
    const Git& git = deps_.workspace->git();
    if (auto removed = git.WorktreeRemove(path, /*force=*/true); !removed) {
      fs::remove_all(path, error);
      (void)git.WorktreePrune();
    }
  }
}

void PipelineExecutor::AttemptRun::Cleanup(bool final) {
  if (!final) return;
  RemoveLeftoverCheckouts(lease_.attempt_number + 1);
  if (!workspace_ || options_.keep_worktrees) return;
  auto removed = [&] {
    std::lock_guard lock(ex_.worktree_mu_);
    return deps_.workspace->RemoveAttempt(*workspace_);
  }();
  if (!removed) {
    spdlog::warn("task {}: cannot remove worktree {}: {}", key_, workspace_->path,
                 removed.error().ToString());
    return;
  }
  if (removed->snapshot_ref || removed->attempt_ref) {
    details_.saved_refs =
        SavedRefsDetails{removed->snapshot_ref.value_or(""), removed->attempt_ref.value_or("")};
  }
}

void PipelineExecutor::AttemptRun::RemoveLeftoverWorktrees() {
  if (options_.keep_worktrees) return;
  for (int attempt = 1; attempt <= lease_.attempt_number; ++attempt) {
    AttemptWorkspace leftover;
    leftover.run_id = task_.run_id;
    leftover.task_id = key_;
    leftover.attempt = attempt;
    leftover.branch = WorkspaceManager::TaskBranch(task_.run_id, key_);
    leftover.path =
        deps_.workspace->RunWorktreesDir(task_.run_id) + "/" + key_ + "-" + std::to_string(attempt);
    std::error_code error;
    if (!fs::exists(leftover.path, error)) continue;
    std::lock_guard lock(ex_.worktree_mu_);
    auto removed = deps_.workspace->RemoveAttempt(leftover);
    if (!removed) {
      spdlog::warn("task {}: cannot remove leftover worktree {}: {}", key_, leftover.path,
                   removed.error().ToString());
    }
  }
}

ExecResult PipelineExecutor::AttemptRun::Fail(const std::string& phase, const std::string& error,
                                              const std::string& feedback, bool retryable) {
  const bool final = !retryable || lease_.attempt_number >= task_.max_attempts;
  details_.failed_phase = phase;
  details_.feedback = feedback;
  if (cost_usd_ > 0) details_.cost_usd = cost_usd_;
  Cleanup(final);
  ExecResult result;
  result.success = false;
  result.retryable = retryable;
  result.error = error;
  result.details_json = AttemptDetailsJson(details_);
  spdlog::info("task {} attempt {}: failed in {}: {}", key_, lease_.attempt_number, phase,
               FirstLine(error));
  return result;
}

ExecResult PipelineExecutor::AttemptRun::Cancelled() {
  ExecResult result;
  result.cancelled = true;
  result.error = "cancelled";
  details_.cancelled_in = progress_.phase;
  result.details_json = AttemptDetailsJson(details_);
  return result;
}

ExecResult PipelineExecutor::AttemptRun::Succeed() {
  if (cost_usd_ > 0) details_.cost_usd = cost_usd_;
  Cleanup(/*final=*/true);
  ExecResult result;
  result.success = true;
  json summary{{"task_key", key_}, {"attempt", lease_.attempt_number}};
  if (!details_.merge_commit.empty()) summary["merge_commit"] = details_.merge_commit;
  if (agent_ != nullptr) summary["agent"] = agent_->name;
  result.result_json = summary.dump(-1, ' ', false, json::error_handler_t::replace);
  result.details_json = AttemptDetailsJson(details_);
  return result;
}

Status PipelineExecutor::AttemptRun::AcquireAgent() {
  AgentRequest request;
  request.type = task_.type;
  request.capabilities = ParseStringArray(task_.capabilities_json);
  request.agent = task_.agent;
  int64_t wait_ms = std::max<int64_t>(options_.agent_wait_initial_ms, 1);
  bool logged_wait = false;
  while (true) {
    auto acquired = deps_.agents->Acquire(request);
    if (acquired) {
      agent_ = *acquired;
      agent_acquired_ = true;
      details_.agent = agent_->name;
      details_.runner = std::string(RunnerKindName(agent_->runner));
      return Ok();
    }
    if (acquired.error().code != ErrorCode::kUnavailable) return std::unexpected(acquired.error());
    if (!logged_wait) {
      logged_wait = true;
      spdlog::debug("task {}: waiting for an agent: {}", key_, acquired.error().message);
    }
    // Sleep in small slices so a cancel is honoured promptly.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (std::chrono::steady_clock::now() < until) {
      if (cancel_.load()) return Aborted("cancelled while waiting for an agent");
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(wait_ms, 20)));
    }
    wait_ms = std::min(wait_ms * 2, std::max<int64_t>(options_.agent_wait_max_ms, 1));
  }
}

const prompts::PromptLibrary* PipelineExecutor::AttemptRun::Prompts() const {
  if (deps_.prompts != nullptr) return deps_.prompts;
  return ex_.builtin_prompts_ ? &*ex_.builtin_prompts_ : nullptr;
}

std::vector<std::string> PipelineExecutor::AttemptRun::Scope() const {
  return metadata_ ? metadata_->scope : std::vector<std::string>{};
}

std::string PipelineExecutor::AttemptRun::RelevantFiles() const {
  std::string lines;
  if (!metadata_) return lines;
  for (const auto& path : metadata_->files) lines += "- " + path + "\n";
  return lines;
}

void PipelineExecutor::AttemptRun::PrepareSpec() {
  auto history = ReadTaskHistory(*deps_.queue, task_, lease_.epoch);
  if (!history) {
    // The attempt can still go on: with the backlog's spec and the last attempt's feedback.
    spdlog::warn("task {}: cannot read the task's history: {}", key_, history.error().ToString());
    auto feedback = PreviousFeedback(*deps_.queue, task_.id, lease_.epoch);
    if (feedback) feedback_ = *feedback;
    return;
  }
  history_ = std::move(*history);
  feedback_ = history_.Feedback();
  const RebaseConfig& rebase = deps_.config->rebase;
  if (rebase.max_per_task > 0 && history_.rebases < rebase.max_per_task &&
      history_.gate_failures >= rebase.after_failures && !deps_.rebase_targets.empty() &&
      deps_.router != nullptr) {
    Rebase();
  }
  details_.spec_version = history_.spec_version;
}

void PipelineExecutor::AttemptRun::Rebase() {
  const int previous_version = history_.spec_version;
  Phase(kPhaseRebase,
        json{{"spec_version", previous_version}, {"gate_failures", history_.gate_failures}});
  std::string reason = std::to_string(history_.gate_failures) +
                       " attempts failed their gates since spec version " +
                       std::to_string(previous_version) + " (attempts";
  for (const auto& failure : history_.failures) {
    if (IsGateFailurePhase(failure.phase)) reason += " " + std::to_string(failure.number);
  }
  reason += ")";
  const prompts::PromptLibrary* library = Prompts();
  llm::CallContext context;
  context.run_id = task_.run_id;
  context.task_id = task_.id;
  context.attempt_id = lease_.attempt_id;
  context.agent = kRebaseAgent;
  context.purpose = kRebasePurpose;
  double cost = 0;
  Result<RebaseResult> result =
      library == nullptr
          ? Result<RebaseResult>(FailedPrecondition("no prompt templates: " + ex_.prompts_problem_))
          : RequestRebase(*deps_.router, *library, deps_.rebase_targets,
                          RebaseInput{.task_key = key_,
                                      .title = task_.title,
                                      .acceptance = acceptance_,
                                      .relevant_files = RelevantFiles(),
                                      .history = history_},
                          context, &cost);
  details_.rebase_cost_usd = cost;
  ex_.AddCost(task_.id, cost);  // the run's cost; details.cost_usd stays the agent's
  auto failed = [&](const std::string& why) {
    spdlog::warn("task {}: the rebase failed, going on with spec version {}: {}", key_,
                 previous_version, why);
    details_.rebase_failed = why;
    RecordEvent(events::EventKind::kTaskRebaseFailed, json{{"reason", why},
                                                           {"agent", kRebaseAgent},
                                                           {"spec_version", previous_version},
                                                           {"cost_usd", cost},
                                                           {"epoch", lease_.epoch}});
  };
  if (!result) return failed(result.error().message);

  const std::string spec_file =
      attempt_dir_ + "/spec.v" + std::to_string(result->spec_version) + ".md";
  if (Status written = WriteTextFile(spec_file, result->spec); !written) {
    return failed(written.error().message);
  }
  json payload{{"spec_version", result->spec_version},
               {"previous_spec_version", previous_version},
               {"agent", kRebaseAgent},
               {"model", result->model},
               {"reason", reason},
               {"changes", result->changes},
               {"spec", result->spec},
               {"cost_usd", result->cost_usd},
               {"attempt", lease_.attempt_number},
               {"epoch", lease_.epoch}};
  // The event is the spec's history: without it the new version would not exist.
  auto recorded = deps_.queue->events().Append(
      {.kind = events::EventKind::kTaskRebased,
       .run_id = task_.run_id,
       .task_id = task_.id,
       .actor = options_.actor,
       .payload_json = payload.dump(-1, ' ', false, json::error_handler_t::replace)});
  if (!recorded) return failed("cannot record the new spec: " + recorded.error().message);
  spdlog::info("task {}: rebased to spec version {} ({})", key_, result->spec_version, reason);
  details_.rebased = RebasedDetails{.spec_version = result->spec_version,
                                    .previous_spec_version = previous_version,
                                    .spec_file = spec_file};
  // A clean context: the new spec, nothing of the attempts before it.
  ++history_.rebases;
  history_.spec_version = result->spec_version;
  history_.spec = result->spec;
  history_.rebased_at_epoch = lease_.epoch;
  history_.failures.clear();
  history_.gate_failures = 0;
  feedback_.clear();
}

std::optional<ExecResult> PipelineExecutor::AttemptRun::RunRunner() {
  Phase(kPhaseRunner, json{{"agent", agent_->name}});
  auto runner = ex_.RunnerFor(*agent_);
  if (!runner) {
    // A runner that cannot be made for this agent never will be (llm before the model layer,
    // an unknown preset): no point retrying.
    const bool retryable = runner.error().code == ErrorCode::kUnavailable;
    std::string error = "agent " + agent_->name + ": " + runner.error().message;
    return Fail(kPhaseRunner, error, error, retryable);
  }

  AttemptInput input;
  input.run_id = task_.run_id;
  input.task_id = key_;
  input.title = task_.title;
  input.spec = history_.spec;
  input.acceptance = acceptance_;
  input.type = task_.type;
  input.attempt = lease_.attempt_number;
  input.max_attempts = task_.max_attempts;
  input.queue_task_id = task_.id;
  input.attempt_id = lease_.attempt_id;
  // The feedback quotes earlier attempts' output: what the agent (and its provider) reads of it
  // never holds a known secret, whatever missed redaction on the way in.
  input.feedback = ProcessRedactor().Redact(feedback_);
  details_.had_feedback = !input.feedback.empty();

  // The implementation prompt: the only text the agent gets about its task.
  const prompts::PromptLibrary* library = Prompts();
  if (library == nullptr) {
    const std::string error = "no prompt templates: " + ex_.prompts_problem_;
    return Fail(kPhaseRunner, error, error, /*retryable=*/false);
  }
  auto prompt =
      RenderImplementPrompt(*library, ImplementPromptInput{.task_key = key_,
                                                           .title = task_.title,
                                                           .spec = input.spec,
                                                           .acceptance = acceptance_,
                                                           .attempt = input.attempt,
                                                           .max_attempts = input.max_attempts,
                                                           .feedback = input.feedback,
                                                           .relevant_files = RelevantFiles(),
                                                           .scope = Scope()});
  if (!prompt) {
    // A broken template stays broken: no point retrying.
    const std::string error = "cannot render the implementation prompt: " + prompt.error().message;
    return Fail(kPhaseRunner, error, error, /*retryable=*/false);
  }
  input.prompt = ProcessRedactor().Redact(*prompt);
  const int64_t prompt_bytes = static_cast<int64_t>(input.prompt.size());
  const std::string prompt_file = attempt_dir_ + "/prompt.md";
  if (Status written = WriteTextFile(prompt_file, input.prompt); !written) {
    return Fail(kPhaseRunner, written.error().message, "");
  }

  const SandboxPolicy& policy = deps_.config->sandbox;
  RunnerContext context;
  context.input = std::move(input);
  context.worktree = workspace_->path;
  context.attempt_dir = attempt_dir_;
  context.sandbox = deps_.sandbox;
  context.limits.cpu_seconds = policy.cpu_seconds;
  context.limits.memory_bytes = policy.memory_mb * kMiB;
  context.limits.file_size_bytes = policy.file_size_mb * kMiB;
  context.limits.max_processes = policy.max_processes;
  context.timeout_ms = options_.runner_timeout_ms;
  context.output_tail_bytes = 4096;
  context.cancel = &cancel_;
  context.disk_quota = disk_quota_.get();
  context.extra_env["FACTORY_PROMPT_FILE"] = prompt_file;

  auto outcome = (*runner)->Run(context);
  if (!outcome) {
    std::string error = "agent " + agent_->name + " could not start: " + outcome.error().message;
    const bool retryable = outcome.error().code != ErrorCode::kInvalidArgument &&
                           outcome.error().code != ErrorCode::kNotFound;
    return Fail(kPhaseRunner, error, error, retryable);
  }
  const RunnerOutcome& run = *outcome;
  size_t recorded = 0;
  for (const auto& step : run.steps) {
    if (recorded >= options_.max_step_events) break;
    RecordEvent(events::EventKind::kAgentStep, json{{"agent", agent_->name},
                                                    {"index", recorded},
                                                    {"kind", step.kind},
                                                    {"summary", step.summary}});
    ++recorded;
  }
  details_.usage = AttemptUsageDetails{.input_tokens = run.usage.input_tokens,
                                       .output_tokens = run.usage.output_tokens,
                                       .cached_tokens = run.usage.cached_tokens,
                                       .cost_usd = run.usage.cost_usd,
                                       .model = run.usage.model};
  if (run.usage.cost_usd) {
    cost_usd_ += *run.usage.cost_usd;
    ex_.AddCost(task_.id, *run.usage.cost_usd);
  }
  // What reached the agent when its runner knows (the llm runner: system and task messages; a
  // cli agent: its prompt file), else the rendered implementation prompt.
  details_.prompt_bytes = run.prompt_bytes > 0 ? run.prompt_bytes : prompt_bytes;
  details_.runner_ms = run.duration_ms;
  details_.runner_exit_code = run.exit_code;
  details_.steps = static_cast<int64_t>(run.steps.size());
  if (!run.summary.empty()) details_.agent_summary = Tail(run.summary, 2000);

  if (run.cancelled || cancel_.load()) return Cancelled();
  if (!run.success) {
    std::string error = run.timed_out ? "the agent timed out" : run.error;
    if (error.empty()) error = "the agent exited with code " + std::to_string(run.exit_code);
    std::string feedback = "The agent " + agent_->name + " failed: " + error;
    if (!run.output_tail.empty() && run.error.find(run.output_tail) == std::string::npos) {
      feedback += "\n\nOutput (tail):\n" + Tail(run.output_tail, 4096);
    }
    // A task's budget only shrinks: another attempt would be refused as well.
    if (run.error.starts_with(kBudgetExceeded)) {
      details_.budget_exceeded = true;
      return Fail(kPhaseRunner, error, feedback, /*retryable=*/false);
    }
    return Fail(kPhaseRunner, error, feedback);
  }
  return std::nullopt;
}

std::optional<ExecResult> PipelineExecutor::AttemptRun::Commit() {
  Phase(kPhaseCommit);
  const std::string message = "factory: " + OneLineTitle(task_.title) +
                              "\n\nFactory-Task: " + key_ + "\nFactory-Run: " + task_.run_id +
                              "\nFactory-Attempt: " + std::to_string(lease_.attempt_number) +
                              "\nFactory-Agent: " + agent_->name + "\n";
  CommitPolicy policy;
  const CommitConfig& commit_config = deps_.config->commit;
  if (!commit_config.default_exclude) policy.exclude.clear();
  policy.exclude.insert(policy.exclude.end(), commit_config.exclude.begin(),
                        commit_config.exclude.end());
  policy.max_file_bytes = commit_config.max_file_mb * kMiB;
  policy.secrets = options_.commit_secrets;
  for (auto& secret : SecretsFromEnvironment()) policy.secrets.push_back(std::move(secret));
  std::vector<std::string> excluded;
  auto commit = deps_.workspace->CommitAttempt(*workspace_, message, policy, &excluded);
  if (!excluded.empty()) {
    constexpr size_t kMaxListed = 100;
    details_.excluded_paths = std::vector<std::string>(
        excluded.begin(),
        excluded.begin() + static_cast<std::ptrdiff_t>(std::min(excluded.size(), kMaxListed)));
    if (excluded.size() > kMaxListed) {
      details_.excluded_paths_total = static_cast<int64_t>(excluded.size());
    }
  }
  if (!commit) {
    const std::string& why = commit.error().message;
    if (commit.error().code == ErrorCode::kFailedPrecondition) {
      // Tampering or a refused change: the agent's doing, so the message is its feedback.
      const bool tampering = why.rfind(kTamperingPrefix, 0) == 0;
      if (tampering) details_.tampering = true;
      return Fail(kPhaseCommit, why,
                  why + (tampering ? ". The worktree's .git file links it to the factory's "
                                     "repository: leave .git alone (no git init, no edits in "
                                     ".git, no commits of your own) and only change project files."
                                   : ". Fix or remove these files; the factory commits the "
                                     "worktree as you leave it."));
    }
    std::string error = "cannot commit the attempt: " + why;
    return Fail(kPhaseCommit, error, error);
  }
  if (!commit->has_value()) {
    const std::string error = "the attempt changed nothing";
    return Fail(kPhaseCommit, error,
                "The previous attempt changed nothing in the repository. Make the changes the "
                "task asks for.");
  }
  commit_ = **commit;
  details_.commit = commit_;
  return std::nullopt;
}

std::optional<ExecResult> PipelineExecutor::AttemptRun::CheckProtected() {
  Phase(kPhaseProtected);
  auto changed = deps_.workspace->ChangedPaths(*workspace_);
  if (!changed) {
    std::string error = "cannot list the attempt's changes: " + changed.error().message;
    return Fail(kPhaseProtected, error, error);
  }
  details_.changed_paths = *changed;
  const std::vector<std::string> allow =
      metadata_ ? metadata_->allow_protected : std::vector<std::string>{};
  std::vector<std::string> violations = ProtectedViolations(*deps_.config, *changed, allow);
  if (!violations.empty()) {
    details_.protected_violations = violations;
    const std::string error = "the attempt changed protected paths: " + JoinPaths(violations);
    return Fail(kPhaseProtected, error,
                error +
                    ". These paths are protected by the project configuration; leave them "
                    "unchanged and solve the task in other files.");
  }
  const std::vector<std::string> scope = Scope();
  if (std::vector<std::string> outside = OutsideScope(scope, *changed); !outside.empty()) {
    details_.scope_violations = outside;
    const std::string error = "the attempt changed paths outside the task's scope (" +
                              JoinPaths(scope) + "): " + JoinPaths(outside);
    return Fail(kPhaseProtected, error,
                error +
                    ". This task may only change paths its scope matches; undo the other "
                    "changes and solve the task inside the scope.");
  }
  // Gate gaming, with or without a scope: a new top-level module named like one of Python's
  // would run instead of the real one in a gate (`python3 -m unittest` puts the checkout first
  // on sys.path). Files the repository already had are the project's choice, as are paths the
  // task's allow_protected names.
  std::vector<ShadowingPath> shadowing = PythonShadowingCandidates(*changed);
  std::erase_if(shadowing, [&](const ShadowingPath& item) {
    return std::any_of(allow.begin(), allow.end(),
                       [&](const std::string& glob) { return MatchesGlob(glob, item.path); });
  });
  if (!shadowing.empty()) {
    std::vector<std::string> args = {
        "ls-tree", "-z", "--name-only", "--full-tree", workspace_->start_commit, "--"};
    for (const auto& item : shadowing) args.push_back(item.path);
    auto existing = deps_.workspace->git().Run(args);
    if (!existing) {
      const std::string error = "cannot list the attempt's start tree: " + existing.error().message;
      return Fail(kPhaseProtected, error, error);
    }
    std::set<std::string, std::less<>> had;
    for (std::string_view rest = *existing; !rest.empty();) {
      const size_t end = rest.find('\0');
      had.emplace(rest.substr(0, end));
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    }
    std::erase_if(shadowing, [&](const ShadowingPath& item) { return had.contains(item.path); });
  }
  if (!shadowing.empty()) {
    std::vector<std::string> named;
    for (const auto& item : shadowing) {
      named.push_back(item.path + " (shadows '" + item.module + "')");
    }
    details_.shadowing_paths = named;
    const std::string error =
        "the attempt adds top-level Python modules named like standard ones: " + JoinPaths(named);
    return Fail(kPhaseProtected, error,
                error +
                    ". A gate running Python would import them instead of the real modules, so "
                    "they are refused; give them other names or move them into the project's "
                    "package.");
  }
  return std::nullopt;
}

// The commit under test, as the gates see it: a clean checkout made when the first gate asks
// for one and removed when the command stage ends, and the attempt's diff.
class PipelineExecutor::AttemptRun::Subject final : public GateSubject {
 public:
  explicit Subject(AttemptRun& attempt) : attempt_(attempt) {}
  ~Subject() override { RemoveCheckout(); }

  Result<std::string> Checkout() override {
    if (checkout_) return checkout_->path();
    attempt_.RemoveLeftoverCheckouts(attempt_.lease_.attempt_number);
    Git repo = attempt_.deps_.workspace->git();
    auto made = [&] {
      std::lock_guard lock(attempt_.ex_.worktree_mu_);
      return MakeCleanCheckout(repo, attempt_.commit_,
                               attempt_.CheckoutPath(attempt_.lease_.attempt_number));
    }();
    if (!made) {
      return MakeError(made.error().code, "cannot check out the attempt's commit for the gates: " +
                                              made.error().message);
    }
    checkout_.emplace(std::move(*made));
    return checkout_->path();
  }

  Result<AttemptDiff> Diff() override {
    const Git& git = attempt_.deps_.workspace->git();
    const std::string& start = attempt_.workspace_->start_commit;
    auto diff = git.Run({"diff", "--no-color", "--no-ext-diff", start, attempt_.commit_});
    auto stat = git.Run({"diff", "--no-color", "--stat", start, attempt_.commit_});
    if (!diff || !stat) {
      const Error& error = diff ? stat.error() : diff.error();
      return MakeError(error.code,
                       "cannot compute the attempt's diff for the review: " + error.message);
    }
    return AttemptDiff{.diff = std::move(*diff), .stat = std::move(*stat)};
  }

  void RemoveCheckout() {
    if (!checkout_) return;
    auto removed = [&] {
      std::lock_guard lock(attempt_.ex_.worktree_mu_);
      return checkout_->Remove();
    }();
    if (!removed) {
      spdlog::warn("task {}: cannot remove the gate checkout: {}", attempt_.key_,
                   removed.error().ToString());
    }
    checkout_.reset();
  }

 private:
  AttemptRun& attempt_;
  std::optional<CleanCheckout> checkout_;
};

std::optional<ExecResult> PipelineExecutor::AttemptRun::Verify() {
  if (!ex_.gates_) {
    const std::string error = "cannot set up the gates: " + ex_.gates_.error().message;
    return Fail(kPhaseGates, error, "", /*retryable=*/false);
  }
  details_.gates = std::vector<GateDetails>{};
  Subject subject(*this);
  GateContext context{.subject = &subject,
                      .task_key = key_,
                      .title = task_.title,
                      .spec = history_.spec,
                      .acceptance = acceptance_,
                      .run_id = task_.run_id,
                      .task_id = task_.id,
                      .attempt_id = lease_.attempt_id,
                      .logs_dir = attempt_dir_ + "/gates",
                      .cancel = &cancel_,
                      .disk_quota = disk_quota_.get()};
  // Stage by stage (verify/gate.h StageOf): the command gates with the task `verifying`, even
  // when there are none; then the review gates, when there are any, with the task in `review`.
  struct Stage {
    TaskState state;
    const char* phase;        // the attempt.phase it runs in
    const char* error_phase;  // the failed_phase of an attempt the stage could not judge
  };
  constexpr Stage kStages[] = {{TaskState::kVerifying, kPhaseGates, kPhaseGates},
                               {TaskState::kReview, kPhaseReview, kFailedPhaseReviewError}};
  for (int stage_index = 0; stage_index < 2; ++stage_index) {
    const Stage& stage = kStages[stage_index];
    std::vector<Gate*> gates;
    for (const auto& gate : *ex_.gates_) {
      if (StageOf(gate->kind()) == stage_index) gates.push_back(gate.get());
    }
    if (stage_index > 0 && gates.empty()) break;
    subject.RemoveCheckout();  // a later stage reads the diff, not the checkout
    Status advanced = deps_.queue->Advance(
        lease_, stage.state,
        json{{"commit", commit_}}.dump(-1, ' ', false, json::error_handler_t::replace));
    if (!advanced) {
      // Aborted: the lease is stale; the worker learns it when it records the outcome.
      return Fail(stage.error_phase,
                  std::string("cannot move the task to ") +
                      std::string(TaskStateName(stage.state)) + ": " + advanced.error().message,
                  "");
    }
    Phase(stage.phase, json{{"gates", gates.size()}});
    for (Gate* gate : gates) {
      if (cancel_.load()) return Cancelled();
      auto report = gate->Run(context);
      if (!report) {
        const std::string& error = report.error().message;
        return Fail(stage.error_phase, error, stage_index == 0 ? error : "");
      }
      if (report->command) {
        const GateResult& result = *report->command;
        details_.gates->push_back(GateDetails{.name = result.name,
                                              .passed = result.passed,
                                              .exit_code = result.exit_code,
                                              .timed_out = result.timed_out,
                                              .duration_ms = result.duration_ms,
                                              .log = result.log_path});
      } else {
        // A reviewer: its cost is the run's, apart from the agent's (details.cost_usd).
        details_.review_cost_usd = details_.review_cost_usd.value_or(0) + report->cost_usd;
        ex_.AddCost(task_.id, report->cost_usd);
        if (!details_.reviews) details_.reviews = std::vector<ReviewDetails>{};
        ReviewDetails review{.gate = report->name};
        if (report->verdict == GateVerdict::kNoVerdict) {
          review.error = report->log;
        } else {
          review.model = report->model;
          review.verdict = report->verdict == GateVerdict::kPass ? "pass" : "fail";
          review.reasons = report->reasons;
        }
        details_.reviews->push_back(std::move(review));
      }
      if (report->cancelled || cancel_.load()) return Cancelled();
      switch (report->verdict) {
        case GateVerdict::kPass:
          if (!report->command) ReviewEvent(*report);
          gates_passed_.push_back(report->name);
          break;
        case GateVerdict::kFail:
          if (report->command) {
            RecordEvent(events::EventKind::kGateFailed,
                        json{{"gate", report->name},
                             {"exit_code", report->command->exit_code},
                             {"timed_out", report->command->timed_out}});
          } else {
            ReviewEvent(*report);
          }
          return Fail(stage.phase, report->error, report->feedback);
        case GateVerdict::kNoVerdict:
          RecordEvent(events::EventKind::kReviewFailed, json{{"gate", report->name},
                                                             {"model", report->model},
                                                             {"error", report->log},
                                                             {"cost_usd", report->cost_usd}});
          return Fail(stage.error_phase, report->error, "", report->retryable);
      }
      context.earlier.push_back(std::move(*report));
    }
  }
  return std::nullopt;
}

void PipelineExecutor::AttemptRun::ReviewEvent(const GateReport& report) {
  RecordEvent(events::EventKind::kReviewVerdict,
              json{{"gate", report.name},
                   {"model", report.model},
                   {"verdict", report.verdict == GateVerdict::kPass ? "pass" : "fail"},
                   {"reasons", report.reasons},
                   {"cost_usd", report.cost_usd}});
}

std::optional<ExecResult> PipelineExecutor::AttemptRun::Merge() {
  Phase(kPhaseMerge);
  MergeRequest request;
  request.run_id = task_.run_id;
  request.task_id = key_;
  request.title = task_.title;
  request.agent = agent_->name;
  request.attempt = lease_.attempt_number;
  request.gates = gates_passed_;
  request.source = commit_;
  std::vector<std::string> conflicts;
  auto merged = [&] {
    std::lock_guard lock(ex_.worktree_mu_);
    return deps_.merges->Merge(request, &conflicts);
  }();
  if (!merged) {
    if (!conflicts.empty()) {
      details_.conflicts = conflicts;
      RecordEvent(events::EventKind::kMergeConflict, json{{"paths", conflicts}});
      const std::string error =
          "merge conflict with the integration branch in: " + JoinPaths(conflicts);
      return Fail(kPhaseMerge, error,
                  error +
                      ". The integration branch changed since this attempt started (another "
                      "task was merged). The next attempt starts from the updated "
                      "integration branch: redo the change on top of it, keeping what the "
                      "other task added.");
    }
    std::string error = "merge failed: " + merged.error().message;
    return Fail(kPhaseMerge, error, error);
  }
  details_.merge_commit = merged->merge_commit;
  details_.already_merged = merged->already_merged;
  details_.gates_passed = gates_passed_;
  RecordEvent(events::EventKind::kTaskMerged, json{{"merge_commit", merged->merge_commit},
                                                   {"already_merged", merged->already_merged},
                                                   {"agent", agent_->name}});
  return std::nullopt;
}

ExecResult PipelineExecutor::AttemptRun::Run() {
  ex_.UpdateProgress(progress_, /*started=*/true);

  // A merge already on the integration branch (a crash between merge and completion): done.
  auto existing = deps_.merges->FindMerge(task_.run_id, key_);
  if (!existing) {
    std::string error = "cannot read the integration branch: " + existing.error().message;
    return Fail(kPhaseMerge, error, "");
  }
  if (existing->has_value()) {
    Phase(kPhaseMerge, json{{"already_merged", true}});
    details_.merge_commit = **existing;
    details_.already_merged = true;
    RecordEvent(events::EventKind::kTaskMerged,
                json{{"merge_commit", **existing}, {"already_merged", true}});
    RemoveLeftoverWorktrees();
    return Succeed();
  }

  Phase(kPhaseAgent);
  if (!metadata_) {
    // The task's scope and exemptions are unknown: running it could break them.
    return Fail(kPhaseAgent, "cannot read the task: " + metadata_.error().message, "",
                /*retryable=*/false);
  }
  Status acquired = AcquireAgent();
  if (!acquired) {
    if (cancel_.load()) return Cancelled();
    // NotFound / FailedPrecondition: no agent can ever take this task.
    return Fail(kPhaseAgent, "no agent for the task: " + acquired.error().message, "",
                /*retryable=*/false);
  }
  progress_.agent = agent_->name;

  Phase(kPhaseWorktree);
  auto workspace = [&] {
    std::lock_guard lock(ex_.worktree_mu_);
    return deps_.workspace->CreateAttempt(task_.run_id, key_, lease_.attempt_number);
  }();
  if (!workspace) {
    std::string error = "cannot create the attempt's worktree: " + workspace.error().message;
    const bool retryable = workspace.error().code != ErrorCode::kInvalidArgument;
    return Fail(kPhaseWorktree, error, "", retryable);
  }
  workspace_ = *workspace;
  disk_quota_ =
      std::make_unique<DiskQuota>(deps_.sandbox != nullptr ? deps_.sandbox->disk_quota_mb() : 0);
  disk_quota_->Track(workspace_->path);
  details_.worktree = workspace_->path;
  details_.start_commit = workspace_->start_commit;
  attempt_dir_ = options_.artifacts_dir + "/" + task_.run_id + "/" + key_ + "-" +
                 std::to_string(lease_.attempt_number);
  std::error_code fs_error;
  fs::remove_all(attempt_dir_, fs_error);  // a leftover of a crashed attempt with this number
  fs::create_directories(attempt_dir_, fs_error);
  if (fs_error) {
    std::string error = "cannot create " + attempt_dir_ + ": " + fs_error.message();
    return Fail(kPhaseWorktree, error, "");
  }
  details_.attempt_dir = attempt_dir_;

  if (cancel_.load()) return Cancelled();
  PrepareSpec();
  if (cancel_.load()) return Cancelled();
  if (auto failed = RunRunner()) return std::move(*failed);
  if (cancel_.load()) return Cancelled();
  if (disk_quota_->exceeded()) {
    // Whatever the runner concluded, an attempt past its quota is not committed.
    const std::string error = disk_quota_->Message();
    return Fail(kPhaseRunner, error, "The agent failed: " + error);
  }
  if (auto failed = Commit()) return std::move(*failed);
  if (auto failed = CheckProtected()) return std::move(*failed);
  if (cancel_.load()) return Cancelled();
  if (auto failed = Verify()) return std::move(*failed);
  if (cancel_.load()) return Cancelled();
  if (auto failed = Merge()) return std::move(*failed);
  return Succeed();
}

PipelineExecutor::PipelineExecutor(PipelineDeps deps, PipelineOptions options)
    : deps_(deps), options_(std::move(options)) {
  if (!options_.make_runner) {
    options_.make_runner = [](const AgentSpec& agent) { return MakeRunner(agent); };
  }
  if (options_.artifacts_dir.empty())
    options_.artifacts_dir = deps_.workspace->FactoryDir() + "/runs";
  ExcludeFromGit(*deps_.workspace, options_.artifacts_dir);
  if (deps_.prompts == nullptr) {
    auto builtin = prompts::PromptLibrary::Builtin();
    if (builtin) {
      builtin_prompts_ = std::move(*builtin);
    } else {
      prompts_problem_ = builtin.error().message;
    }
  }
  // The project's gates, made once: a Gate may judge several attempts at once.
  GateRunOptions gate_options = GateOptionsFromPolicy(deps_.config->sandbox, deps_.sandbox);
  gate_options.tail_bytes = 4096;
  GateRegistry gates = CommandGateRegistry(gate_options);
  const prompts::PromptLibrary* library =
      deps_.prompts != nullptr ? deps_.prompts : (builtin_prompts_ ? &*builtin_prompts_ : nullptr);
  RegisterReviewGates(gates, deps_.router, library, prompts_problem_);
  gates_ = gates.MakeAll(deps_.config->gates);
}

PipelineExecutor::~PipelineExecutor() = default;

ExecResult PipelineExecutor::Execute(const ClaimedTask& claimed, const std::atomic<bool>& cancel) {
  try {
    AttemptRun attempt(*this, claimed, cancel);
    return attempt.Run();
  } catch (const std::exception& e) {
    ExecResult result;
    result.error = std::string("pipeline error: ") + e.what();
    return result;
  }
}

Result<Runner*> PipelineExecutor::RunnerFor(const AgentSpec& agent) {
  std::lock_guard lock(mu_);
  auto it = runners_.find(agent.name);
  if (it != runners_.end()) return it->second.get();
  FACTORY_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner, options_.make_runner(agent));
  Runner* raw = runner.get();
  runners_.emplace(agent.name, std::move(runner));
  return raw;
}

void PipelineExecutor::UpdateProgress(const AttemptProgress& progress, bool started) {
  {
    std::lock_guard lock(mu_);
    auto& entry = attempts_[progress.task_id];
    if (started) entry.cost_usd = 0;
    entry.progress = progress;
  }
  if (options_.observer == nullptr) return;
  if (started) {
    options_.observer->OnAttemptStarted(progress);
  } else {
    options_.observer->OnPhase(progress);
  }
}

void PipelineExecutor::AddCost(const std::string& task_id, double cost_usd) {
  std::lock_guard lock(mu_);
  attempts_[task_id].cost_usd += cost_usd;
  total_cost_usd_ += cost_usd;
}

std::optional<PipelineExecutor::FinishedAttempt> PipelineExecutor::TakeAttempt(
    const std::string& task_id) {
  std::lock_guard lock(mu_);
  auto it = attempts_.find(task_id);
  if (it == attempts_.end()) return std::nullopt;
  FinishedAttempt finished = std::move(it->second);
  attempts_.erase(it);
  return finished;
}

double PipelineExecutor::total_cost_usd() const {
  std::lock_guard lock(mu_);
  return total_cost_usd_;
}

}  // namespace factory
