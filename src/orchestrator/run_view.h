#pragma once
// The run's progress display, as a RunObserver:
//  - on a terminal: a live block redrawn in place (ANSI) with one line per active task (key,
//    title, agent, attempt, phase, elapsed), then the counts per state and the total cost;
//    finished attempts scroll above it as permanent lines;
//  - otherwise: plain progress lines, one per event, for logs and CI.
// And the formatting of run summaries, details and lists as text or JSON.

#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "orchestrator/observer.h"
#include "orchestrator/run.h"

namespace factory {

struct RunViewOptions {
  enum class Mode { kAuto, kLive, kPlain };
  Mode mode = Mode::kAuto;       // kAuto: live when `out` is a terminal (isatty)
  bool color = true;             // ANSI colours in live mode
  int64_t refresh_ms = 1000;     // live mode: redraw this often (elapsed times); 0 = only on events
  const Clock* clock = nullptr;  // nullptr: SystemClock()
};

class RunView final : public RunObserver {
 public:
  // `out` is not owned and must outlive the view. Thread-safe.
  explicit RunView(FILE* out, RunViewOptions options = {});
  ~RunView() override;
  RunView(const RunView&) = delete;
  RunView& operator=(const RunView&) = delete;

  bool live() const { return live_; }

  void OnRunStarted(const std::string& run_id, const RunCounts& counts) override;
  void OnAttemptStarted(const AttemptProgress& attempt) override;
  void OnPhase(const AttemptProgress& attempt) override;
  void OnAttemptFinished(const AttemptProgress& attempt, const AttemptEnd& end) override;
  void OnCounts(const RunCounts& counts) override;
  void OnRunFinished(const std::string& run_id, const RunCounts& counts) override;

 private:
  void PrintLocked(const std::string& line);  // a permanent line (above the live block)
  void RedrawLocked();
  void ClearBlockLocked();
  std::string CountsLine() const;
  void StopTicker();

  FILE* out_;
  RunViewOptions options_;
  const Clock& clock_;
  bool live_ = false;
  size_t width_ = 160;  // terminal columns in live mode

  std::mutex mu_;
  std::map<std::string, AttemptProgress> active_;  // guarded by mu_: by task id
  RunCounts counts_;                               // guarded by mu_
  std::string run_id_;                             // guarded by mu_
  int block_lines_ = 0;                            // guarded by mu_: lines of the live block
  bool finished_ = false;                          // guarded by mu_
  std::condition_variable ticker_cv_;
  std::thread ticker_;
};

// The summary as text (several lines, ends with a newline: counts, attempts, first-attempt
// success rate, wall time, cost, the integration branch, how to inspect it, and either how to
// merge it (only a mergeable run) or why it is not mergeable and what to do) or as one JSON
// object (one line + newline) with run_id, integration_branch, base_branch, done, failed,
// blocked, cancelled, unfinished, total, attempts, first_attempt_success_rate, wall_ms, cost_usd
// (planning included), planning_cost_usd, all_done, feature_id and final_gates (null for a backlog
// run), mergeable, merge_blockers (strings) and next_step ("" when mergeable).
std::string FormatSummary(const RunSummary& summary, bool as_json);
nlohmann::json SummaryToJson(const RunSummary& summary);

// `factory run show RUN [--json]`: the run, a table of its tasks (with their scopes), its summary.
std::string FormatRunDetails(const RunDetails& details, bool as_json);
// `factory runs [--json]`.
std::string FormatRunList(const std::vector<RunListEntry>& runs, bool as_json);

}  // namespace factory
