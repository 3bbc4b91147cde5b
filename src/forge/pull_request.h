#pragma once
// A pull (merge) request for a run: its text, built from what the run did, and opening it with
// the forge's own command-line client (`gh` for GitHub, `glab` for GitLab) when one is on PATH.
// The clients run as the user, with the user's environment and their own stored login; the
// factory passes everything as arguments (and the body on `gh`'s stdin), never through a shell.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "forge/remote.h"

namespace factory::forge {

struct GateOutcome {
  std::string name;
  std::string result;  // "passed", "failed", or a reviewer's verdict
};

struct TaskReport {
  std::string key;  // the backlog id
  std::string title;
  std::string state;
  std::string agent;
  int attempts = 0;
  double cost_usd = 0;
  std::vector<std::string> acceptance;
  std::vector<std::string> scope;
  std::vector<GateOutcome> gates;  // of the attempt that merged (or the last one)
};

// Everything the request's text says, gathered by the caller from the run, its spec and the
// event log.
struct PullRequestContent {
  std::string run_id;
  std::string feature;   // the feature id; "" for a backlog run
  std::string headline;  // the feature request's title, or the run's title
  std::string request;   // the feature request's text ("" for a backlog run)
  std::string base_branch;
  std::string head_branch;
  std::vector<TaskReport> tasks;
  int64_t tasks_done = 0;
  int64_t gates_configured = 0;    // command and review gates every task passed through
  std::string final_gates;         // feature runs: "passed", "failed", "not run"; "" otherwise
  std::string final_gates_detail;  // why, when not passed
  double build_cost_usd = 0;       // agents, reviewers, rebases
  double planning_cost_usd = 0;    // feature runs: the planners and the backlog agent
  std::string audit_head;          // the event log's head hash ("" when empty)
  int64_t audit_events = 0;
  std::string audit_problem;                // "" when the chain verified
  std::vector<std::string> merge_blockers;  // non-empty: pushed with --force although these hold
};

// One line: the headline, else "Run <id>". Redacted (core/redact.h).
std::string PullRequestTitle(const PullRequestContent& content);
// Markdown: the request, the tasks (state, agent, attempts, cost, scope, gates, acceptance
// criteria), the gates, the cost and the audit head. At most kMaxBodyBytes (forges cap the
// body; GitHub at 65536 characters), cut with a note. Redacted (core/redact.h).
inline constexpr size_t kMaxBodyBytes = 60'000;
std::string PullRequestBody(const PullRequestContent& content);

// The client that opens requests on `kind` ("gh" for GitHub, "glab" for GitLab) as an absolute
// path when it is an executable file in one of `path_env`'s directories; nullopt otherwise
// (other forges, or not installed).
struct PrClient {
  std::string name;  // "gh" | "glab"
  std::string path;
};
std::optional<PrClient> FindPrClient(ForgeKind kind, const std::string& path_env);

struct PullRequestRequest {
  RemoteLocation remote;
  std::string base_branch;
  std::string head_branch;
  std::string title;
  std::string body;
  bool draft = false;
  std::string repo_dir;  // the clients' working directory
  int64_t timeout_ms = 120'000;
};

struct OpenedPullRequest {
  std::string client;  // "gh" | "glab"
  std::string url;     // the request's page, as the client printed it
};

// Runs `gh pr create` / `glab mr create` non-interactively. Unavailable with the client's
// output tail when it fails or prints no URL.
Result<OpenedPullRequest> OpenPullRequest(const PrClient& client,
                                          const PullRequestRequest& request);

}  // namespace factory::forge
