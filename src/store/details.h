#pragma once
// Typed views of the JSON columns the orchestrator writes and everyone else reads: an attempt's
// details (Attempt::details_json), a run's metadata (Run::metadata_json) and a task's metadata
// (Task::metadata_json). Each has one codec here, so a key is spelled once and every reader
// agrees on what it means (the cost fields in particular: see AttemptDetails::AgentCostUsd).
//
// The stored format is a JSON object. Absent keys read as "not set" (std::optional, empty
// strings); a present key of the wrong type is InvalidArgument naming the field
// ("attempt details: field 'usage.input_tokens': expected an integer, got string"). Keys this
// build does not know are kept (`extra`) and written back unchanged, so a round trip loses
// nothing that another writer (a newer build, the CLI's shell executor) put there.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace factory {

// The runner's token usage and cost for one attempt (RunnerUsage as stored).
struct AttemptUsageDetails {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;
  std::optional<double> cost_usd;  // set only when the agent reported it
  std::string model;               // "" when unknown
  friend bool operator==(const AttemptUsageDetails&, const AttemptUsageDetails&) = default;
};

// One command gate's result.
struct GateDetails {
  std::string name;
  bool passed = false;
  int exit_code = -1;
  bool timed_out = false;
  int64_t duration_ms = 0;
  std::string log;  // path of the gate's log
  friend bool operator==(const GateDetails&, const GateDetails&) = default;
};

// One review gate's verdict, or why there was none (`error` set, the rest empty).
struct ReviewDetails {
  std::string gate;
  std::string model;
  std::string verdict;  // "pass" or "fail"; "" when `error` is set
  std::vector<std::string> reasons;
  std::string error;
  friend bool operator==(const ReviewDetails&, const ReviewDetails&) = default;
};

// The refs an attempt's removed worktree was saved under.
struct SavedRefsDetails {
  std::string snapshot_ref;
  std::string attempt_ref;
  friend bool operator==(const SavedRefsDetails&, const SavedRefsDetails&) = default;
};

// A rebase done before the attempt: the spec version it produced.
struct RebasedDetails {
  int spec_version = 0;
  int previous_spec_version = 0;
  std::string spec_file;
  friend bool operator==(const RebasedDetails&, const RebasedDetails&) = default;
};

// What the pipeline records about one attempt. Keys in parentheses.
struct AttemptDetails {
  // Who and where.
  std::optional<int> attempt;                  // (attempt) 1-based number
  std::string task_key;                        // (task_key)
  std::string agent;                           // (agent)
  std::string runner;                          // (runner) the agent's runner kind
  std::optional<int> spec_version;             // (spec_version)
  std::string worktree;                        // (worktree)
  std::string start_commit;                    // (start_commit)
  std::string attempt_dir;                     // (attempt_dir)
  std::optional<SavedRefsDetails> saved_refs;  // (saved_refs)

  // The runner.
  std::optional<bool> had_feedback;          // (had_feedback)
  std::optional<AttemptUsageDetails> usage;  // (usage)
  std::optional<int64_t> prompt_bytes;       // (prompt_bytes)
  std::optional<int64_t> runner_ms;          // (runner_ms)
  std::optional<int> runner_exit_code;       // (runner_exit_code)
  std::optional<int64_t> steps;              // (steps) steps the agent reported
  std::string agent_summary;                 // (agent_summary)
  bool budget_exceeded = false;              // (budget_exceeded)

  // The commit and the checks on its paths.
  std::string commit;                                            // (commit)
  std::optional<std::vector<std::string>> changed_paths;         // (changed_paths)
  std::optional<std::vector<std::string>> excluded_paths;        // (excluded_paths)
  std::optional<int64_t> excluded_paths_total;                   // (excluded_paths_total)
  bool tampering = false;                                        // (tampering)
  std::optional<std::vector<std::string>> protected_violations;  // (protected_violations)
  std::optional<std::vector<std::string>> scope_violations;      // (scope_violations)
  std::optional<std::vector<std::string>> shadowing_paths;       // (shadowing_paths)

  // Gates.
  std::optional<std::vector<GateDetails>> gates;         // (gates) command gates run
  std::optional<std::vector<ReviewDetails>> reviews;     // (reviews)
  std::optional<std::vector<std::string>> gates_passed;  // (gates_passed) command and review

  // Costs, kept apart: the agent's spending, and the pipeline's own model calls.
  std::optional<double> cost_usd;         // (cost_usd) the agent's, summed over its usage
  std::optional<double> review_cost_usd;  // (review_cost_usd)
  std::optional<double> rebase_cost_usd;  // (rebase_cost_usd)
  std::string rebase_failed;              // (rebase_failed) why the rebase failed
  std::optional<RebasedDetails> rebased;  // (rebased)

  // The outcome.
  std::string failed_phase;  // (failed_phase) "" unless the attempt failed
  // (feedback) for the next attempt. Set but empty: the failure was not the builder's (a
  // review_error), so the next attempt gets none, not the attempt's error.
  std::optional<std::string> feedback;
  std::optional<std::string> cancelled_in;            // (cancelled_in) the phase a cancel stopped
  std::string merge_commit;                           // (merge_commit)
  std::optional<bool> already_merged;                 // (already_merged)
  std::optional<std::vector<std::string>> conflicts;  // (conflicts)

  // Keys this build does not know, each with its JSON text; written back as they were.
  std::map<std::string, std::string> extra;

  // The agent's cost: usage.cost_usd when the runner reported one, else cost_usd. The pipeline
  // writes both (cost_usd is their sum over the attempt); add only this one.
  double AgentCostUsd() const;
  // The attempt's whole cost: the agent's plus the reviewers' and the rebase agent's.
  double TotalCostUsd() const;

  friend bool operator==(const AttemptDetails&, const AttemptDetails&) = default;
};

// "" and "{}" are empty details. InvalidArgument "attempt details: ..." when the text is not a
// JSON object or a known field has the wrong type.
Result<AttemptDetails> ParseAttemptDetails(std::string_view json_text);
// A JSON object with the fields that are set, then `extra`. Invalid UTF-8 is replaced.
std::string AttemptDetailsJson(const AttemptDetails& details);

// A run's metadata, written when the run is created.
struct RunMetadata {
  std::string base_branch;         // (base_branch) the branch the run started from
  std::string integration_branch;  // (integration_branch)
  std::string backlog;             // (backlog) where the backlog came from
  std::string repo;                // (repo) the repository's root
  std::string feature;             // (feature) the feature's spec folder; "" for a backlog run
  std::string feature_request;     // (feature_request) the request file
  std::map<std::string, std::string> extra;
  friend bool operator==(const RunMetadata&, const RunMetadata&) = default;
};
Result<RunMetadata> ParseRunMetadata(std::string_view json_text);
std::string RunMetadataJson(const RunMetadata& metadata);

// A task's metadata: what its backlog entry said beyond the queue's own columns.
struct TaskMetadata {
  std::string backlog_id;                    // (backlog_id) the task's key in its backlog
  std::vector<std::string> allow_protected;  // (allow_protected) globs exempt from `protected:`
  std::vector<std::string> scope;            // (scope) globs; empty: the whole repository
  std::vector<std::string> files;            // (files) the task's relevant files
  std::string agent;                         // (agent)
  std::string type;                          // (type)
  std::vector<std::string> capabilities;     // (capabilities)
  std::optional<int> backlog_line;           // (backlog_line)
  std::map<std::string, std::string> extra;
  friend bool operator==(const TaskMetadata&, const TaskMetadata&) = default;
};
Result<TaskMetadata> ParseTaskMetadata(std::string_view json_text);
std::string TaskMetadataJson(const TaskMetadata& metadata);

}  // namespace factory
