#include "toolloop/llm_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>
#include <vector>

#include "llm/redact.h"
#include "toolloop/tools.h"
#include "toolloop/workspace_fs.h"

namespace factory::toolloop {
namespace {

using nlohmann::json;

constexpr size_t kStepSummaryBytes = 200;
constexpr size_t kElideArgumentBytes = 256;  // string arguments above this are elided
constexpr int kKeyFileLines = 8;
constexpr char kElidedPrefix[] = "[elided to save context:";
// How a budget refusal ends an attempt (the pipeline's kBudgetExceeded).
constexpr char kBudgetExceededTag[] = "budget_exceeded";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t WallNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Shorten(std::string_view text, size_t max_bytes) {
  std::string out;
  for (char c : text.substr(0, max_bytes)) out += (c == '\n' || c == '\r') ? ' ' : c;
  if (text.size() > max_bytes) out += "...";
  return SanitizeUtf8(out);
}

// Appends redacted JSON lines to the transcript file.
class TranscriptWriter {
 public:
  TranscriptWriter(const std::string& path, std::vector<std::string> secrets)
      : out_(path, std::ios::binary | std::ios::trunc), secrets_(std::move(secrets)) {}
  bool ok() const { return out_.good(); }

  void Write(json record) {
    record["ts_ms"] = WallNowMs();
    out_ << llm::Redact(record.dump(-1, ' ', false, json::error_handler_t::replace), secrets_)
         << '\n';
    out_.flush();
  }

  void WriteMessage(int turn, const llm::Message& message) {
    json record = {{"type", "message"},
                   {"turn", turn},
                   {"role", std::string(llm::RoleName(message.role))},
                   {"content", message.content}};
    if (!message.tool_calls.empty()) {
      json calls = json::array();
      for (const auto& call : message.tool_calls) {
        calls.push_back({{"id", call.id}, {"name", call.name}, {"arguments", call.arguments_json}});
      }
      record["tool_calls"] = std::move(calls);
    }
    if (!message.tool_call_id.empty()) record["tool_call_id"] = message.tool_call_id;
    Write(std::move(record));
  }

 private:
  std::ofstream out_;
  std::vector<std::string> secrets_;
};

// Values of every configured API key variable: never written anywhere.
std::vector<std::string> ProviderSecrets(const llm::ModelsConfig& config) {
  std::vector<std::string> secrets;
  for (const auto& provider : config.providers) {
    if (provider.api_key_env.empty()) continue;
    if (const char* value = std::getenv(provider.api_key_env.c_str()); value && *value) {
      secrets.emplace_back(value);
    }
  }
  return secrets;
}

// Elides long string values of a tool call's arguments, keeping them valid JSON.
std::string CompactArguments(const std::string& arguments_json) {
  if (arguments_json.size() <= kElideArgumentBytes) return arguments_json;
  json arguments = json::parse(arguments_json, nullptr, /*allow_exceptions=*/false);
  if (arguments.is_discarded() || !arguments.is_object()) return "{}";
  for (auto& [key, value] : arguments.items()) {
    if (value.is_string() && value.get_ref<const std::string&>().size() > kElideArgumentBytes) {
      value = std::string(kElidedPrefix) + " " +
              std::to_string(value.get_ref<const std::string&>().size()) + " bytes]";
    }
  }
  return arguments.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Replaces old tool results and long tool-call arguments with placeholders. Messages 0 (system)
// and 1 (task) and everything from the keep_recent_turns-th last assistant message on are kept.
// Returns the number of bytes saved.
int64_t Compact(std::vector<llm::Message>& messages, int keep_recent_turns) {
  size_t keep_from = messages.size();
  int assistants = 0;
  while (keep_from > 2 && assistants < keep_recent_turns) {
    --keep_from;
    if (messages[keep_from].role == llm::Role::kAssistant) ++assistants;
  }
  int64_t saved = 0;
  for (size_t index = 2; index < keep_from; ++index) {
    llm::Message& message = messages[index];
    if (message.role == llm::Role::kTool && !message.content.starts_with(kElidedPrefix)) {
      const size_t before = message.content.size();
      std::string placeholder = std::string(kElidedPrefix) + " tool output of " +
                                std::to_string(before) + " bytes; run the tool again if needed]";
      if (placeholder.size() < before) {
        saved += static_cast<int64_t>(before - placeholder.size());
        message.content = std::move(placeholder);
      }
    }
    for (auto& call : message.tool_calls) {
      const size_t before = call.arguments_json.size();
      call.arguments_json = CompactArguments(call.arguments_json);
      saved += static_cast<int64_t>(before) - static_cast<int64_t>(call.arguments_json.size());
    }
  }
  return saved;
}

bool IsKeyFile(const std::string& relative) {
  static constexpr std::string_view kNames[] = {
      "README.md",    "README",         "README.txt", "CMakeLists.txt", "Makefile",
      "package.json", "pyproject.toml", "setup.py",   "Cargo.toml",     "go.mod",
      "pom.xml",      "build.gradle",   "AGENTS.md",  "CLAUDE.md",      "CONTRIBUTING.md"};
  for (auto name : kNames) {
    if (relative == name) return true;
  }
  return false;
}

}  // namespace

std::string ModelChoice::Describe() const {
  std::string text;
  if (!alias.empty()) {
    text = alias + " (cost pyramid step " + std::to_string(step + 1) + " of ";
    for (size_t index = 0; index < ladder.size(); ++index) {
      text += (index == 0 ? "" : " > ") + ladder[index];
    }
    text += ")";
    if (targets.size() > 1) {
      text += ", then";
      for (size_t index = 1; index < targets.size(); ++index) {
        text += (index == 1 ? " " : ", ") + targets[index];
      }
    }
    return text;
  }
  for (const auto& target : targets) text += (text.empty() ? "" : ", ") + target;
  if (!why_no_pyramid.empty()) text += " (no cost pyramid: " + why_no_pyramid + ")";
  return text;
}

ModelChoice ChooseModels(const llm::Router& router, const AgentSpec& agent,
                         std::string_view task_type, int attempt_number) {
  ModelChoice choice;
  auto add = [&](const std::string& target) {
    if (target.empty()) return;
    if (std::find(choice.targets.begin(), choice.targets.end(), target) != choice.targets.end()) {
      return;
    }
    choice.targets.push_back(target);
  };
  if (agent.model.empty()) {
    choice.why_no_pyramid = "the agent names no model";
  } else if (router.config().FindAlias(agent.model) == nullptr) {
    choice.why_no_pyramid = "'" + agent.model + "' is a model, not an alias";
  } else {
    // Complexity is not known per task yet: "" matches the rules that do not ask for one.
    auto picked = router.ChooseAlias(task_type, "", std::max(1, attempt_number), agent.model);
    if (picked) {
      choice.alias = picked->alias;
      choice.step = picked->step;
      choice.ladder = picked->ladder;
      add(picked->alias);
    } else {
      choice.why_no_pyramid = picked.error().message;
    }
  }
  if (choice.alias.empty()) add(agent.model);
  for (const auto& fallback : agent.fallbacks) add(fallback);
  return choice;
}

std::string BuildRepoMap(const std::string& worktree, size_t max_bytes) {
  auto fs = WorkspaceFs::Open(worktree);
  if (!fs) return "(the worktree cannot be listed)\n";
  // The tree gets three quarters of the budget, key files the rest (and what the tree left).
  const size_t tree_budget = max_bytes * 3 / 4;
  std::string tree;
  size_t omitted = 0;
  std::vector<std::string> key_files;
  auto walked = fs->Walk("", [&](const DirEntry& entry) {
    if (entry.name == ".factory" || entry.name.starts_with(".factory/")) return true;
    if (entry.type == DirEntry::Type::kFile && IsKeyFile(entry.name)) {
      key_files.push_back(entry.name);
    }
    std::string line = entry.name;
    if (entry.type == DirEntry::Type::kDirectory) line += "/";
    if (entry.type == DirEntry::Type::kFile) line += " (" + std::to_string(entry.size) + " B)";
    if (entry.type == DirEntry::Type::kSymlink) line += " (symlink)";
    line += "\n";
    if (tree.size() + line.size() > tree_budget) {
      ++omitted;
    } else {
      tree += line;
    }
    return omitted < 100'000;
  });
  (void)walked;
  std::string map = "### Files\n" + tree;
  if (omitted > 0) map += "[" + std::to_string(omitted) + " more entries not shown]\n";
  for (const auto& file : key_files) {
    auto content = fs->ReadFile(file, kMaxReadBytes);
    if (!content) continue;
    std::string head;
    size_t pos = 0;
    for (int line = 0; line < kKeyFileLines && pos < content->size(); ++line) {
      size_t newline = content->find('\n', pos);
      if (newline == std::string::npos) newline = content->size();
      head += content->substr(pos, std::min<size_t>(newline - pos, 200)) + "\n";
      pos = newline + 1;
    }
    std::string section = "\n### " + file + " (first lines)\n" + head;
    if (map.size() + section.size() > max_bytes) break;
    map += section;
  }
  if (map.size() > max_bytes) map.resize(max_bytes);
  return SanitizeUtf8(map);
}

LlmRunner::LlmRunner(llm::Router& router, AgentSpec agent, LlmRunnerOptions options)
    : router_(router), agent_(std::move(agent)), options_(options) {}

Result<RunnerOutcome> LlmRunner::Run(const RunnerContext& context) {
  const int64_t started_ms = NowMs();
  FACTORY_ASSIGN_OR_RETURN(WorkspaceFs fs, WorkspaceFs::Open(context.worktree));
  const std::vector<std::string> secrets = ProviderSecrets(router_.config());
  TranscriptWriter transcript(context.attempt_dir + "/transcript.jsonl", secrets);
  if (!transcript.ok()) {
    return FailedPrecondition("cannot create " + context.attempt_dir + "/transcript.jsonl");
  }

  RunnerOutcome outcome;
  const ModelChoice models =
      ChooseModels(router_, agent_, context.input.type, context.input.attempt);
  const std::vector<std::string>& targets = models.targets;
  outcome.steps.push_back({"model", Shorten(models.Describe(), kStepSummaryBytes)});
  const int max_turns = agent_.max_turns.value_or(options_.default_max_turns);

  // The prompt. From a pipeline: the rendered implementation prompt as the task message, the
  // tool rules with the agent's body in the system message. Otherwise (no rendered prompt) the
  // task is built here, with a repo map.
  static constexpr char kToolRules[] =
      "- Use the tools to inspect and change files and to run commands; paths are relative to "
      "the worktree root.\n"
      "- When the task is done, call finish(summary).\n";
  std::string system = agent_.system_prompt.empty()
                           ? "You are a careful software engineer working in a git worktree."
                           : agent_.system_prompt;
  std::string task;
  if (!context.input.prompt.empty()) {
    task = context.input.prompt;
    while (!system.empty() && (system.back() == '\n' || system.back() == ' ')) system.pop_back();
    system += "\n\n## Tools\n\n";
    system += kToolRules;
  } else {
    AgentSpec without_body = agent_;
    without_body.system_prompt.clear();
    task = BuildPrompt(without_body, context.input) + kToolRules + "\n## Repository map\n\n" +
           BuildRepoMap(context.worktree, options_.repo_map_bytes);
  }
  std::vector<llm::Message> messages = {llm::Message::System(SanitizeUtf8(system)),
                                        llm::Message::User(SanitizeUtf8(task))};
  outcome.prompt_bytes =
      static_cast<int64_t>(messages[0].content.size() + messages[1].content.size());
  transcript.Write({{"type", "start"},
                    {"agent", agent_.name},
                    {"task_id", context.input.task_id},
                    {"attempt", context.input.attempt},
                    {"targets", targets},
                    {"alias", models.alias},
                    {"pyramid_step", models.step + 1},
                    {"ladder", models.ladder},
                    {"models", models.Describe()},
                    {"max_turns", max_turns},
                    {"prompt_bytes", outcome.prompt_bytes}});
  transcript.WriteMessage(0, messages[0]);
  transcript.WriteMessage(0, messages[1]);

  int64_t context_window = 0;
  if (auto limits = router_.LimitsFor(targets); limits) context_window = limits->context_window;

  // The attempt's disk quota when the pipeline gives one; else this run is the attempt.
  DiskQuota own_quota(context.disk_quota == nullptr && context.sandbox != nullptr
                          ? context.sandbox->disk_quota_mb()
                          : 0);
  DiskQuota& disk_quota = context.disk_quota != nullptr ? *context.disk_quota : own_quota;
  disk_quota.Track(context.worktree);

  ToolEnv env;
  env.fs = &fs;
  env.sandbox = context.sandbox;
  env.disk_quota = &disk_quota;
  env.network = agent_.network;
  env.limits = context.limits;
  env.command_tail_bytes = options_.command_tail_bytes;
  env.cancel = context.cancel;
  env.allowed = agent_.tools;
  env.command_env = CommandEnvironment(context.extra_env);
  env.pass_env = agent_.env;
  const std::vector<llm::ToolSpec> tools = ToolSpecs(agent_.tools);

  llm::CallContext call_context;
  call_context.run_id = context.input.run_id;
  call_context.task_id =
      context.input.queue_task_id.empty() ? context.input.task_id : context.input.queue_task_id;
  call_context.attempt_id =
      context.input.attempt_id.empty()
          ? context.input.task_id + "-" + std::to_string(context.input.attempt)
          : context.input.attempt_id;
  call_context.agent = agent_.name;
  call_context.purpose = "tool_loop";
  if (context.timeout_ms > 0) call_context.deadline_ms = WallNowMs() + context.timeout_ms;

  auto cancelled = [&] { return context.cancel != nullptr && context.cancel->load(); };
  int64_t paused_total_ms = 0;  // time spent waiting for a pause to be lifted: not timed
  // After a budget refusal: true when the agent was paused and the pause has been lifted (call
  // again); false when the refusal stands or the attempt was cancelled while waiting.
  auto wait_while_paused = [&](int turn_number, const std::string& refusal) {
    if (!options_.agent_paused) return false;
    auto paused = options_.agent_paused(agent_.name);
    if (!paused || !*paused) return false;
    const int64_t wait_started = NowMs();
    outcome.steps.push_back({"paused", Shorten(refusal, kStepSummaryBytes)});
    transcript.Write({{"type", "paused"}, {"turn", turn_number}, {"reason", refusal}});
    const int64_t poll_ms = std::max<int64_t>(options_.pause_poll_ms, 1);
    while (true) {
      for (int64_t slept = 0; slept < poll_ms && !cancelled(); slept += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(50, poll_ms)));
      }
      if (cancelled()) return false;
      auto still = options_.agent_paused(agent_.name);
      if (still && !*still) break;
    }
    const int64_t waited = NowMs() - wait_started;
    paused_total_ms += waited;
    if (call_context.deadline_ms > 0) call_context.deadline_ms += waited;
    transcript.Write({{"type", "resumed"}, {"turn", turn_number}, {"waited_ms", waited}});
    return true;
  };

  double cost_usd = 0;
  bool done = false;
  int turn = 0;
  for (; turn < max_turns && !done; ++turn) {
    if (cancelled()) {
      outcome.cancelled = true;
      outcome.error = "cancelled";
      break;
    }
    const int64_t elapsed_ms = NowMs() - started_ms - paused_total_ms;
    if (context.timeout_ms > 0 && elapsed_ms >= context.timeout_ms) {
      outcome.timed_out = true;
      outcome.error = "timed out after " + std::to_string(context.timeout_ms) + " ms";
      break;
    }
    env.max_command_timeout_ms = context.timeout_ms > 0 ? context.timeout_ms - elapsed_ms : 0;

    llm::ChatRequest request;
    request.messages = messages;
    request.tools = tools;
    request.temperature = agent_.temperature;
    request.cache_prompt = true;
    if (context_window > 0) {
      const int64_t estimated = llm::EstimatePromptTokens(request);
      const auto threshold =
          static_cast<int64_t>(options_.compact_threshold * static_cast<double>(context_window));
      if (estimated > threshold) {
        const int64_t saved = Compact(messages, options_.keep_recent_turns);
        request.messages = messages;
        const int64_t after = llm::EstimatePromptTokens(request);
        transcript.Write({{"type", "compaction"},
                          {"turn", turn},
                          {"estimated_tokens_before", estimated},
                          {"estimated_tokens_after", after},
                          {"context_window", context_window},
                          {"bytes_saved", saved}});
      }
    }

    auto response = router_.Chat(targets, request, call_context);
    while (!response && response.error().code == ErrorCode::kResourceExhausted &&
           wait_while_paused(turn, response.error().message)) {
      response = router_.Chat(targets, request, call_context);
    }
    if (!response && cancelled()) {
      outcome.cancelled = true;
      outcome.error = "cancelled";
      break;
    }
    if (!response) {
      const llm::CallError& error = response.error();
      if (error.code == ErrorCode::kResourceExhausted) {
        // The guard's task refusal already says "budget_exceeded: "; say it once, first.
        std::string why = error.message;
        const std::string tag = std::string(kBudgetExceededTag) + ": ";
        if (auto at = why.find(tag); at != std::string::npos) why.erase(at, tag.size());
        outcome.error = tag + why;
      } else {
        outcome.error = "model call failed: " + error.ToString();
      }
      transcript.Write({{"type", "call"}, {"turn", turn}, {"ok", false}, {"error", outcome.error}});
      break;
    }
    outcome.usage.input_tokens += response->usage.input_tokens;
    outcome.usage.output_tokens += response->usage.output_tokens;
    outcome.usage.cached_tokens += response->usage.cached_read_tokens;
    outcome.usage.model = response->model_name;
    cost_usd += response->cost_usd;
    transcript.Write({{"type", "call"},
                      {"turn", turn},
                      {"ok", true},
                      {"provider", response->provider},
                      {"model", response->model_name},
                      {"alias", response->alias},
                      {"finish_reason", response->finish_reason},
                      {"input_tokens", response->usage.input_tokens},
                      {"output_tokens", response->usage.output_tokens},
                      {"cached_tokens", response->usage.cached_read_tokens},
                      {"cost_usd", response->cost_usd},
                      {"latency_ms", response->latency_ms}});

    messages.push_back(llm::Message::Assistant(response->text, response->tool_calls));
    transcript.WriteMessage(turn + 1, messages.back());
    if (response->tool_calls.empty()) {
      messages.push_back(llm::Message::User(
          "Continue with the tools. When the task is done, call finish with a summary."));
      transcript.WriteMessage(turn + 1, messages.back());
      continue;
    }
    for (const auto& call : response->tool_calls) {
      ToolResult result = ExecuteTool(env, call);
      outcome.steps.push_back(
          {"tool_use", Shorten(call.name + " " + call.arguments_json, kStepSummaryBytes) +
                           (result.ok ? "" : " -> error: " + Shorten(result.output, 120))});
      messages.push_back(llm::Message::ToolResult(call.id, result.output));
      transcript.WriteMessage(turn + 1, messages.back());
      if (disk_quota.exceeded()) {
        // Whatever the model does next, the attempt holds more than it may: it ends here.
        outcome.error = disk_quota.Message();
        done = true;
        break;
      }
      if (result.finished) {
        outcome.success = true;
        outcome.summary = result.summary;
        done = true;
        break;
      }
    }
  }
  if (!done && outcome.error.empty() && !outcome.cancelled && !outcome.timed_out) {
    outcome.error = "turn limit reached (" + std::to_string(max_turns) + " turns)";
  }
  outcome.usage.cost_usd = cost_usd;
  // The outcome becomes events and feedback: redacted like the transcript.
  outcome.summary = llm::Redact(outcome.summary, secrets);
  outcome.error = llm::Redact(outcome.error, secrets);
  for (auto& step : outcome.steps) step.summary = llm::Redact(step.summary, secrets);
  outcome.exit_code = outcome.success ? 0 : 1;
  outcome.duration_ms = NowMs() - started_ms;
  outcome.output_tail = outcome.success ? outcome.summary : outcome.error;
  transcript.Write({{"type", "outcome"},
                    {"success", outcome.success},
                    {"turns", turn},
                    {"error", outcome.error},
                    {"summary", outcome.summary},
                    {"input_tokens", outcome.usage.input_tokens},
                    {"output_tokens", outcome.usage.output_tokens},
                    {"cost_usd", cost_usd},
                    {"duration_ms", outcome.duration_ms}});
  return outcome;
}

}  // namespace factory::toolloop
