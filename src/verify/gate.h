#pragma once
// The Gate interface: every check an attempt's commit must pass before it merges, whatever it
// is (a command on a clean checkout, a reviewer model), and one registry of gate kinds. The
// pipeline builds the project's gates from config.yaml through the registry and runs them in
// one phase, stage by stage (StageOf): every command gate, then every review gate; the first
// gate that does not pass stops the phase.
//
// A new kind is one class and one GateRegistry::Register; the pipeline does not know the kinds.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "plan/config.h"
#include "verify/gates.h"

namespace factory {

// The attempt's change against where it started, for gates that read it.
struct AttemptDiff {
  std::string diff;  // unified diff
  std::string stat;  // `git diff --stat`
};

// What a gate may ask about the commit under test. The pipeline answers each question once,
// when the first gate asks, and cleans up after the phase.
class GateSubject {
 public:
  virtual ~GateSubject() = default;
  // The absolute path of a clean checkout of the commit (no untracked leftovers of the agent).
  virtual Result<std::string> Checkout() = 0;
  virtual Result<AttemptDiff> Diff() = 0;
};

enum class GateVerdict {
  kPass,
  kFail,       // the builder's work does not pass: `feedback` goes to the next attempt
  kNoVerdict,  // the gate could not judge (a reviewer call failed): not the builder's fault
};

// One gate's outcome.
struct GateReport {
  std::string name;
  std::string kind;
  GateVerdict verdict = GateVerdict::kFail;
  bool cancelled = false;  // stopped by GateContext::cancel
  bool retryable = true;   // kNoVerdict: whether another attempt may get one
  std::string error;       // one line: why it did not pass ("gate 'test' failed (exit 1)")
  std::string feedback;    // kFail: what the next attempt is told
  std::string log;         // what the gate said: a command's output tail, a reviewer's reasons
  double cost_usd = 0;     // model calls the gate made
  // What each kind records about itself, for the attempt's details and events.
  std::optional<GateResult> command;  // a command gate's run
  std::string model;                  // a reviewer's model
  std::vector<std::string> reasons;   // a reviewer's reasons
};

// Everything a gate gets for one attempt. Not owned: valid during Run.
struct GateContext {
  GateSubject* subject = nullptr;  // REQUIRES: non-null
  std::string task_key;
  std::string title;
  std::string spec;  // the current spec version
  std::vector<std::string> acceptance;
  std::string run_id;
  std::string task_id;  // the queue's id
  std::string attempt_id;
  std::vector<GateReport> earlier;  // the reports of the gates that ran before, in order
  std::string logs_dir;             // where gates keep their full output; "" = nowhere
  const std::atomic<bool>* cancel = nullptr;
  DiskQuota* disk_quota = nullptr;  // the attempt's, shared with its other commands; may be null
};

class Gate {
 public:
  virtual ~Gate() = default;
  virtual const std::string& name() const = 0;
  virtual std::string_view kind() const = 0;
  // Judges the attempt. An error only when the gate could not run at all (its checkout or
  // sandbox failed); a failing check is a report with kFail. Thread-safe: one Gate may judge
  // several attempts at once.
  virtual Result<GateReport> Run(const GateContext& context) = 0;
};

// Makes a gate of one kind from its config.yaml entry.
using GateFactory = std::function<Result<std::unique_ptr<Gate>>(const GateConfig&)>;

// Gate kinds by name (GateKindName: "command", "review"). Register is setup, before the
// registry is shared; Make may then be called from any thread.
class GateRegistry {
 public:
  // AlreadyExists when the kind is taken and !replace; InvalidArgument for an empty name or
  // factory.
  Status Register(std::string kind, GateFactory factory, bool replace = false);
  // InvalidArgument "gate 'x': unknown gate kind 'y' (known: command, review)".
  Result<std::unique_ptr<Gate>> Make(const GateConfig& config) const;
  // Every gate of `configs`, in the order they run: by stage, then as configured.
  Result<std::vector<std::unique_ptr<Gate>>> MakeAll(const std::vector<GateConfig>& configs) const;
  std::vector<std::string> Kinds() const;

 private:
  std::map<std::string, GateFactory, std::less<>> factories_;
};

// The stage a gate kind runs in: 0 for command gates (the task is `verifying`), 1 for review
// gates (the task is in `review`, reading the command gates' results). Unknown kinds: 0.
int StageOf(std::string_view kind);

// Command gates: `gate.command` with `sh -c` on the subject's checkout, in the sandbox of
// `options` (logs go to the context's logs_dir, as <n>-<name>.log with n its 1-based position
// among the command gates that ran).
std::unique_ptr<Gate> MakeCommandGate(const GateConfig& config, GateRunOptions options);

// A registry with the command kind; `options` is how its gates run commands. The review kind
// needs the model layer (orchestrator/review.h RegisterReviewGates).
GateRegistry CommandGateRegistry(const GateRunOptions& options);

}  // namespace factory
