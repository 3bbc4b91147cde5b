#include "orchestrator/run_view.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "core/redact.h"
#include "store/details.h"

namespace factory {
namespace {

using json = nlohmann::json;

constexpr char kClearLine[] = "\x1b[2K";
constexpr char kReset[] = "\x1b[0m";
constexpr char kGreen[] = "\x1b[32m";
constexpr char kRed[] = "\x1b[31m";
constexpr char kYellow[] = "\x1b[33m";
constexpr char kDim[] = "\x1b[2m";

std::string FormatDuration(int64_t ms) {
  if (ms < 0) ms = 0;
  char buffer[32];
  if (ms < 60'000) {
    std::snprintf(buffer, sizeof(buffer), "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(buffer, sizeof(buffer), "%dm%02ds", static_cast<int>(ms / 60'000),
                  static_cast<int>((ms / 1000) % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%dh%02dm", static_cast<int>(ms / 3'600'000),
                  static_cast<int>((ms / 60'000) % 60));
  }
  return buffer;
}

std::string FormatCost(double usd) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "$%.4f", usd);
  return buffer;
}

std::string Percent(double rate) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "%.0f%%", rate * 100.0);
  return buffer;
}

// Cuts a string to `width` bytes (UTF-8 aware enough not to split a character).
std::string Clip(const std::string& text, size_t width) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() <= width) return line;
  size_t cut = width > 3 ? width - 3 : 0;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  return line.substr(0, cut) + "...";
}

std::string Pad(const std::string& text, size_t width) {
  std::string clipped = Clip(text, width);
  if (clipped.size() < width) clipped.append(width - clipped.size(), ' ');
  return clipped;
}

int64_t CountOf(const RunCounts& counts, const char* state) {
  auto it = counts.by_state.find(state);
  return it == counts.by_state.end() ? 0 : it->second;
}

std::string AttemptLabel(const AttemptProgress& attempt) {
  return std::to_string(attempt.attempt) + "/" + std::to_string(attempt.max_attempts);
}

}  // namespace

RunView::RunView(FILE* out, RunViewOptions options)
    : out_(out),
      options_(options),
      clock_(options.clock != nullptr ? *options.clock : SystemClock()) {
  switch (options_.mode) {
    case RunViewOptions::Mode::kLive:
      live_ = true;
      break;
    case RunViewOptions::Mode::kPlain:
      live_ = false;
      break;
    case RunViewOptions::Mode::kAuto:
      live_ = out_ != nullptr && isatty(fileno(out_)) == 1;
      break;
  }
  // Lines longer than the terminal would wrap and break the in-place redraw: clip them.
  struct winsize size {};
  if (live_ && out_ != nullptr && ioctl(fileno(out_), TIOCGWINSZ, &size) == 0 && size.ws_col > 20) {
    width_ = size.ws_col;
  }
}

RunView::~RunView() { StopTicker(); }

void RunView::StopTicker() {
  {
    std::lock_guard lock(mu_);
    finished_ = true;
  }
  ticker_cv_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

std::string RunView::CountsLine() const {
  std::string line;
  line += std::to_string(CountOf(counts_, "done")) + "/" + std::to_string(counts_.total) + " done";
  const int64_t active = CountOf(counts_, "claimed") + CountOf(counts_, "running") +
                         CountOf(counts_, "verifying") + CountOf(counts_, "review");
  line += ", " + std::to_string(active) + " active";
  line += ", " + std::to_string(CountOf(counts_, "ready")) + " ready";
  line += ", " + std::to_string(CountOf(counts_, "pending")) + " pending";
  line += ", " + std::to_string(CountOf(counts_, "failed")) + " failed";
  line += ", " + std::to_string(CountOf(counts_, "blocked")) + " blocked";
  if (CountOf(counts_, "cancelled") > 0) {
    line += ", " + std::to_string(CountOf(counts_, "cancelled")) + " cancelled";
  }
  line += "  cost " + FormatCost(counts_.cost_usd);
  return line;
}

void RunView::ClearBlockLocked() {
  if (!live_ || block_lines_ == 0) return;
  std::fprintf(out_, "\x1b[%dA\r\x1b[J", block_lines_);
  block_lines_ = 0;
}

void RunView::RedrawLocked() {
  if (!live_ || out_ == nullptr) return;
  ClearBlockLocked();
  const int64_t now_ms = clock_.NowMillis();
  int lines = 0;
  for (const auto& [task_id, attempt] : active_) {
    std::string line = "  ";
    line += Pad(attempt.task_key, 18) + " ";
    line += Pad(ProcessRedactor().Redact(attempt.title), 32) + " ";
    line += Pad(attempt.agent.empty() ? "-" : attempt.agent, 12) + " ";
    line += "#" + Pad(AttemptLabel(attempt), 5) + " ";
    line += Pad(attempt.phase.empty() ? "starting" : attempt.phase, 9) + " ";
    line += FormatDuration(now_ms - attempt.started_ms);
    std::fprintf(out_, "%s%s\n", kClearLine, Clip(line, width_ - 1).c_str());
    ++lines;
  }
  const std::string counts = Clip(CountsLine(), width_ - 1);
  if (options_.color) {
    std::fprintf(out_, "%s%s%s%s\n", kClearLine, kDim, counts.c_str(), kReset);
  } else {
    std::fprintf(out_, "%s%s\n", kClearLine, counts.c_str());
  }
  ++lines;
  block_lines_ = lines;
  std::fflush(out_);
}

void RunView::PrintLocked(const std::string& raw_line) {
  if (out_ == nullptr) return;
  const std::string line = ProcessRedactor().Redact(raw_line);
  if (live_) {
    ClearBlockLocked();
    std::fprintf(out_, "%s\n", line.c_str());
    RedrawLocked();
    return;
  }
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void RunView::OnRunStarted(const std::string& run_id, const RunCounts& counts) {
  {
    std::lock_guard lock(mu_);
    run_id_ = run_id;
    counts_ = counts;
    finished_ = false;
    PrintLocked("run " + run_id + ": " + std::to_string(counts.total) + " task(s)");
  }
  if (live_ && options_.refresh_ms > 0 && !ticker_.joinable()) {
    ticker_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!finished_) {
        ticker_cv_.wait_for(lock, std::chrono::milliseconds(options_.refresh_ms));
        if (!finished_) RedrawLocked();
      }
    });
  }
}

void RunView::OnAttemptStarted(const AttemptProgress& attempt) {
  std::lock_guard lock(mu_);
  active_[attempt.task_id] = attempt;
  if (live_) {
    RedrawLocked();
  } else {
    PrintLocked("start  " + attempt.task_key + " \"" + Clip(attempt.title, 60) + "\" attempt " +
                AttemptLabel(attempt));
  }
}

void RunView::OnPhase(const AttemptProgress& attempt) {
  std::lock_guard lock(mu_);
  active_[attempt.task_id] = attempt;
  if (live_) {
    RedrawLocked();
  } else {
    std::string line =
        "phase  " + attempt.task_key + " attempt " + AttemptLabel(attempt) + ": " + attempt.phase;
    if (!attempt.agent.empty()) line += " (" + attempt.agent + ")";
    PrintLocked(line);
  }
}

void RunView::OnAttemptFinished(const AttemptProgress& attempt, const AttemptEnd& end) {
  std::lock_guard lock(mu_);
  active_.erase(attempt.task_id);
  std::string label;
  const char* color = "";
  switch (end.kind) {
    case AttemptEndKind::kSucceeded:
      label = "done   ";
      color = kGreen;
      break;
    case AttemptEndKind::kFailed:
      label = end.will_retry ? "retry  " : "FAILED ";
      color = end.will_retry ? kYellow : kRed;
      break;
    case AttemptEndKind::kReleased:
      label = "stopped";
      color = kYellow;
      break;
    case AttemptEndKind::kLeaseLost:
      label = "lost   ";
      color = kYellow;
      break;
    case AttemptEndKind::kError:
      label = "error  ";
      color = kRed;
      break;
  }
  std::string line =
      attempt.task_key + " \"" + Clip(attempt.title, 60) + "\" attempt " + AttemptLabel(attempt);
  if (!attempt.agent.empty()) line += " by " + attempt.agent;
  line += " in " + FormatDuration(end.duration_ms);
  if (end.cost_usd > 0) line += ", " + FormatCost(end.cost_usd);
  if (end.kind != AttemptEndKind::kSucceeded && !end.message.empty()) {
    // Redacted before clipping: a clip could cut a secret and leave a part of it unmatched.
    line += ": " + Clip(ProcessRedactor().Redact(end.message), 160);
  }
  if (live_ && options_.color) {
    PrintLocked(std::string(color) + label + kReset + " " + line);
  } else {
    PrintLocked(label + " " + line);
  }
}

void RunView::OnCounts(const RunCounts& counts) {
  std::lock_guard lock(mu_);
  counts_ = counts;
  if (live_) RedrawLocked();
}

void RunView::OnRunFinished(const std::string& run_id, const RunCounts& counts) {
  {
    std::lock_guard lock(mu_);
    counts_ = counts;
    active_.clear();
    if (live_) ClearBlockLocked();
    if (out_ != nullptr) {
      std::fprintf(out_, "run %s finished: %s\n", run_id.c_str(), CountsLine().c_str());
      std::fflush(out_);
    }
  }
  StopTicker();
}

json SummaryToJson(const RunSummary& summary) {
  return json{
      {"run_id", summary.run_id},
      {"integration_branch", summary.integration_branch},
      {"base_branch", summary.base_branch},
      {"done", summary.done},
      {"failed", summary.failed},
      {"blocked", summary.blocked},
      {"cancelled", summary.cancelled},
      {"unfinished", summary.unfinished},
      {"total", summary.total},
      {"attempts", summary.attempts},
      {"first_attempt_success_rate", summary.first_attempt_success_rate},
      {"wall_ms", summary.wall_ms},
      {"cost_usd", summary.cost_usd},
      {"planning_cost_usd", summary.planning_cost_usd},
      {"gates", summary.gates},
      {"no_gates", summary.gates == 0},
      {"all_done", summary.all_done()},
      {"feature_id", summary.feature.empty() ? json(nullptr) : json(summary.feature)},
      {"final_gates", summary.final_gates.empty() ? json(nullptr) : json(summary.final_gates)},
      {"mergeable", summary.mergeable()},
      {"merge_blockers", summary.MergeBlockers()},
      {"next_step", summary.NextStep()}};
}

std::string FormatSummary(const RunSummary& summary, bool as_json) {
  if (as_json) return SummaryToJson(summary).dump() + "\n";
  std::string text;
  text += "Run " + summary.run_id + ": " + std::to_string(summary.done) + "/" +
          std::to_string(summary.total) + " done, " + std::to_string(summary.failed) + " failed, " +
          std::to_string(summary.blocked) + " blocked";
  if (summary.cancelled > 0) text += ", " + std::to_string(summary.cancelled) + " cancelled";
  if (summary.unfinished > 0) text += ", " + std::to_string(summary.unfinished) + " unfinished";
  text += "\n";
  text += "  attempts: " + std::to_string(summary.attempts) + " (first-attempt success rate " +
          Percent(summary.first_attempt_success_rate) + ")\n";
  text += "  wall time: " + FormatDuration(summary.wall_ms) +
          "   cost: " + FormatCost(summary.cost_usd);
  if (!summary.feature.empty()) text += " (planning " + FormatCost(summary.planning_cost_usd) + ")";
  text += "\n";
  if (summary.gates == 0) {
    text +=
        "  gates: none configured (.factory/config.yaml): no task was checked before it "
        "merged\n";
  }
  text += "  integration branch: " + summary.integration_branch;
  if (!summary.base_branch.empty()) text += " (from " + summary.base_branch + ")";
  text += "\n";
  if (!summary.feature.empty() && !summary.final_gates.empty()) {
    text += "  final gates: " + summary.final_gates + "\n";
  }
  text += "  inspect: git log --oneline --graph " + summary.integration_branch + "\n";
  // Merging is suggested only for a run that may be merged; otherwise why not, and what to do.
  if (summary.mergeable()) {
    text += "  merge:   factory run merge " + summary.run_id + "   (into " +
            (summary.base_branch.empty() ? std::string("the base branch") : summary.base_branch) +
            ")\n";
    return text;
  }
  for (const auto& blocker : summary.MergeBlockers()) text += "  not mergeable: " + blocker + "\n";
  text += "  next:    " + summary.NextStep() + "\n";
  return text;
}

std::string FormatRunDetails(const RunDetails& details, bool as_json) {
  if (as_json) {
    json tasks = json::array();
    for (const auto& task : details.tasks) {
      tasks.push_back(json{{"task_id", task.task_id},
                           {"key", task.key},
                           {"title", task.title},
                           {"state", task.state},
                           {"agent", task.agent},
                           {"attempts", task.attempts},
                           {"max_attempts", task.max_attempts},
                           {"depends_on", task.depends_on},
                           {"merge_commit", task.merge_commit},
                           {"last_error", task.last_error},
                           {"scope", task.scope},
                           {"cost_usd", task.cost_usd}});
    }
    // Through the codec: the keys it knows come out typed, the others as they were stored.
    auto run_metadata = ParseRunMetadata(details.run.metadata_json);
    const json metadata =
        run_metadata ? json::parse(RunMetadataJson(*run_metadata)) : json::object();
    json out{{"run", json{{"id", details.run.id},
                          {"title", details.run.title},
                          {"state", details.run.state},
                          {"created_at", FormatTimestamp(details.run.created_ms)},
                          {"updated_at", FormatTimestamp(details.run.updated_ms)},
                          {"metadata", metadata}}},
             {"summary", SummaryToJson(details.summary)},
             {"tasks", tasks}};
    return out.dump() + "\n";
  }
  std::string text;
  text += "run " + details.run.id + "  " + details.run.state;
  if (!details.run.title.empty()) text += "  " + details.run.title;
  text += "\n  created " + FormatTimestamp(details.run.created_ms) + "\n\n";
  text += "  " + Pad("TASK", 18) + " " + Pad("STATE", 10) + " " + Pad("AGENT", 12) + " " +
          Pad("ATTEMPTS", 8) + " " + "TITLE\n";
  for (const auto& task : details.tasks) {
    text += "  " + Pad(task.key, 18) + " " + Pad(task.state, 10) + " " +
            Pad(task.agent.empty() ? "-" : task.agent, 12) + " " +
            Pad(std::to_string(task.attempts) + "/" + std::to_string(task.max_attempts), 8) + " " +
            Clip(task.title, 50) + "\n";
    if (!task.scope.empty()) {
      std::string globs;
      for (const auto& glob : task.scope) globs += (globs.empty() ? "" : ", ") + glob;
      text += "      scope: " + Clip(globs, 120) + "\n";
    }
    if (!task.last_error.empty() && task.state != "done") {
      text += "      last error: " + Clip(task.last_error, 120) + "\n";
    }
  }
  text += "\n" + FormatSummary(details.summary, false);
  return text;
}

std::string FormatRunList(const std::vector<RunListEntry>& runs, bool as_json) {
  if (as_json) {
    json out = json::array();
    for (const auto& entry : runs) {
      json item = SummaryToJson(entry.summary);
      item["state"] = entry.run.state;
      item["title"] = entry.run.title;
      item["created_at"] = FormatTimestamp(entry.run.created_ms);
      out.push_back(item);
    }
    return out.dump() + "\n";
  }
  if (runs.empty()) return "no runs\n";
  std::string text = Pad("RUN", 16) + " " + Pad("STATE", 15) + " " + Pad("DONE", 9) + " " +
                     Pad("FAILED", 6) + " " + Pad("BLOCKED", 7) + " " + Pad("CREATED", 24) +
                     " TITLE\n";
  for (const auto& entry : runs) {
    text += Pad(entry.run.id, 16) + " " + Pad(entry.run.state, 15) + " " +
            Pad(std::to_string(entry.summary.done) + "/" + std::to_string(entry.summary.total), 9) +
            " " + Pad(std::to_string(entry.summary.failed), 6) + " " +
            Pad(std::to_string(entry.summary.blocked), 7) + " " +
            Pad(FormatTimestamp(entry.run.created_ms), 24) + " " + Clip(entry.run.title, 40) + "\n";
  }
  return text;
}

}  // namespace factory
