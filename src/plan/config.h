#pragma once
// Project configuration: `.factory/config.yaml`.
//
//   base_branch: main          # optional; default: the repository's current branch (the
//                              # caller resolves it, so it is nullopt here when absent)
//   concurrency: 4             # tasks running at once, >= 1
//   max_attempts: 3            # attempts per task before it fails finally, >= 1
//   gates:                     # command gates run in order on each attempt's commit; review
//     - {name: test, command: "make test", timeout: 10m}   # gates after all of them passed
//     - {name: review, kind: review, model: cloud/mid, timeout: 300}
//   protected: ["tests/**"]    # path globs (plan/glob.h) an attempt may not touch
//   sandbox: {enabled, network, cpu_seconds, memory_mb, file_size_mb, max_processes,
//             output_limit_kb, tmp_mb, disk_mb, read_paths: [abs paths], env: [NAMES]}
//   default_agents: {code: builder}   # task type -> agent
//   budget:                    # hard limits on model spend (BudgetConfig); each key optional
//     usd_per_call: 0.50       # worst case of one call (prompt + max output at its prices)
//     usd_per_task: 2.00       # all attempts of a task; reaching it: `budget_exceeded`
//     tokens_per_task: 2000000 # input + output tokens of a task's calls
//     usd_per_run: 20
//     usd_per_agent_per_day: 10  # UTC day; reaching it pauses the agent
//     global_usd_per_day: 50     # every agent together; reaching it pauses all
//     velocity: {enabled: true, factor: 3, window: 10m, baseline: 1h, min_baseline_usd: 0.10}
//   gateway: {url: "http://127.0.0.1:8788"}  # a running `factory gateway`; cli agents are
//                                             # pointed at it with a per-attempt virtual key
//   rebase: {after_failures: 2, max_per_task: 1, model: cloud/mid}  # RebaseConfig
//   commit: {max_file_mb: 5, exclude: ["*.log"], default_exclude: true}  # CommitConfig
//
// A gate timeout is either a positive integer (seconds) or a duration string: a sequence of
// <integer><unit> with units s, m, h ("90s", "5m", "1h30m"). Default 600 s.
// Unknown keys are warnings; wrong types and values are errors "FILE:LINE: field 'x': ...".

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agents/diagnostics.h"
#include "core/result.h"
#include "plan/glob.h"  // MatchesGlob, the matcher for `protected:`

namespace factory {

class AgentRegistry;

// `kind: command` (the default) runs `command`; `kind: review` asks a reviewer model (an alias
// or a model of models.yaml) to judge the attempt's diff against the acceptance criteria
// (orchestrator/review.h). A review gate has a `model` and no `command`; a command gate has a
// `command` and no `model`. Review gates run after every command gate has passed, whatever
// their position in the list.
enum class GateKind { kCommand, kReview };

struct GateConfig {
  std::string name;
  GateKind kind = GateKind::kCommand;
  std::string command;                // kCommand: run with `sh -c` in the checkout
  std::string model;                  // kReview: the reviewer's alias or model name
  std::chrono::seconds timeout{600};  // kReview: the reviewer call's deadline
  int line = 0;                       // where it is declared, for later messages
  int model_line = 0;                 // where `model` is (kReview)
};

struct SandboxPolicy {
  bool enabled = true;  // use bubblewrap when installed
  // Network for gate commands. Runner commands follow their agent's `network:` instead, so a
  // project can let its build fetch dependencies without giving agents the network.
  bool network = false;
  int64_t cpu_seconds = 600;
  int64_t memory_mb = 4096;
  int64_t file_size_mb = 1024;
  int64_t max_processes = 512;
  int64_t output_limit_kb = 1024;  // per stream; the tail is kept
  int64_t tmp_mb = 512;            // the private /tmp (a tmpfs; HOME lives in it)
  int64_t disk_mb = 2048;          // what one attempt may add to its worktrees and hold in /tmp
  // Host paths readable (read-only) inside the sandbox besides the system directories: a
  // toolchain under /opt, a package cache. Absolute.
  std::vector<std::string> read_paths;
  // Variables of the factory's environment that agents, gates and worker commands get besides
  // PATH, locale, TERM and TZ (agents add their own `env:`).
  std::vector<std::string> env;
};

// The project's budget envelope (`budget:`). Unset = no limit at the project level; an agent's
// own `budget:` (agent.h) overrides usd_per_task, tokens_per_task and usd_per_agent_per_day
// (its usd_per_day) for that agent. Enforced by ledger::BudgetGuard on every model call.
struct BudgetConfig {
  std::optional<double> usd_per_call;
  std::optional<double> usd_per_task;
  std::optional<int64_t> tokens_per_task;
  std::optional<double> usd_per_run;
  std::optional<double> usd_per_agent_per_day;
  std::optional<double> global_usd_per_day;
  // Velocity: an agent spending more than `factor` x its trailing rate (over `baseline`, scaled
  // to `window`) within `window` is paused.
  struct Velocity {
    bool enabled = true;
    double factor = 3.0;
    std::chrono::seconds window{10 * 60};
    std::chrono::seconds baseline{60 * 60};
    double min_baseline_usd = 0;  // per window; see ledger/budget.h
  } velocity;
};

// `gateway:`: where `factory gateway` listens. When set, every attempt of a `cli` agent gets a
// virtual key scoped to the agent, run, task and attempt (revoked when the attempt ends) and
// its SDK base-URL variables pointing there (runners/cli_runner.h), so its model calls are
// routed, metered and capped. `url` is "http://HOST:PORT" (a trailing '/' is dropped); "" =
// no gateway.
struct GatewayConfig {
  std::string url;
  int line = 0;  // where `url` is, for later messages
};

// `rebase:`: a task whose attempts failed a gate (command or review) `after_failures` times
// since its last rebase gets its spec rewritten by the rebase agent before its next attempt,
// at most `max_per_task` times (0 = never). Attempts keep counting against max_attempts, so a
// rebase can only help a task with max_attempts >= after_failures + 1.
// `model`: an alias or model of models.yaml; "" = models.yaml's routing chain for task type
// "rebase". Without models.yaml rebasing is off (the run says so in its log).
struct RebaseConfig {
  int after_failures = 2;
  int max_per_task = 1;
  std::string model;
  int line = 0;        // where `rebase:` is
  int model_line = 0;  // where `model` is
};

// `commit:`: what an attempt's commit may hold, checked on the host before it is accepted
// (workspace/worktree.h CommitPolicy). A file above `max_file_mb` fails the attempt (0 = no
// limit). New files matching a pattern of `exclude` (gitignore syntax) or of the default list of
// build artefacts (`__pycache__/`, `*.pyc`, `node_modules/`, ...; dropped with
// `default_exclude: false`) are left out of the commit and listed in the attempt's details.
struct CommitConfig {
  int64_t max_file_mb = 5;
  std::vector<std::string> exclude;
  bool default_exclude = true;
};

struct ProjectConfig {
  std::optional<std::string> base_branch;
  int concurrency = 4;
  int max_attempts = 3;
  std::vector<GateConfig> gates;
  std::vector<std::string> protected_paths;  // `protected:` globs
  SandboxPolicy sandbox;
  std::map<std::string, std::string> default_agents;  // task type -> agent name
  BudgetConfig budget;
  GatewayConfig gateway;
  RebaseConfig rebase;
  CommitConfig commit;

  std::string source;                               // file it was loaded from, if any
  std::map<std::string, int> default_agents_lines;  // task type -> line, for messages

  // The first protected glob `path` matches, or nullopt. A task's `allow_protected` globs
  // exempt the paths they match.
  [[nodiscard]] std::optional<std::string> ProtectedMatch(
      std::string_view path, const std::vector<std::string>& allow = {}) const;

  // The gates of one kind, in configured order.
  [[nodiscard]] std::vector<GateConfig> GatesOfKind(GateKind kind) const;
  [[nodiscard]] bool HasReviewGate() const;
};

std::string_view GateKindName(GateKind kind);  // "command" or "review"

// Parses config text; `file` names it in diagnostics. Empty text gives the defaults. Every
// error is reported (one per line in the error message); unknown keys come back as warnings.
Result<Loaded<ProjectConfig>> ParseProjectConfig(std::string_view text, const std::string& file);

// Reads and parses a config file. NotFound when it does not exist (callers that accept a
// missing config use ProjectConfig{} then).
Result<Loaded<ProjectConfig>> LoadProjectConfig(const std::filesystem::path& path);

// Checks `default_agents` against the loaded agents: every named agent must exist.
// InvalidArgument listing each unknown one as "FILE:LINE: field 'default_agents.T': ...".
Status ValidateDefaultAgents(const ProjectConfig& config, const AgentRegistry& agents);

// Parses a gate timeout: "90", "90s", "5m", "1h30m". nullopt when malformed or not positive.
std::optional<std::chrono::seconds> ParseDuration(std::string_view text);

// What `factory init` fills into its commented config: the gates it detected (and a review
// gate when it found a model for one), the test folders it protects besides `.factory/**`, and
// whether the gates need the network (a step that fetches dependencies).
struct ConfigScaffold {
  struct Gate {
    std::string name;
    std::string command;  // a command gate ...
    std::string model;    // ... or a review gate on this model (alias or model of models.yaml)
    std::string note;     // a comment line above it (where it was detected); "" = none
  };
  std::vector<Gate> gates;
  std::vector<std::string> protected_paths;
  bool gate_network = false;
  std::string network_note;  // why, when gate_network
};

// The commented config text for `scaffold`; it parses with no error or warning (tested).
std::string RenderDefaultConfig(const ConfigScaffold& scaffold);

// RenderDefaultConfig of an empty scaffold: the defaults above plus `.factory/**` protected.
extern const std::string_view kDefaultConfigYaml;

// Writes RenderDefaultConfig(scaffold) to `path` (parents created). AlreadyExists when the file
// is there: a user's config is never overwritten.
Status WriteDefaultConfig(const std::filesystem::path& path, const ConfigScaffold& scaffold = {});

}  // namespace factory
