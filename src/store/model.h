#pragma once
// The stored records: plain value types shared by every Store backend and the modules above.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace factory {

enum class TaskState {
  kPending,    // waiting for dependencies
  kReady,      // may be claimed (once not_before has passed)
  kClaimed,    // leased to a worker, not yet started
  kRunning,    // the worker is executing it
  kVerifying,  // gates are running on the result
  kReview,     // waiting for approval or a reviewer
  kDone,       // finished successfully (terminal)
  kFailed,     // failed finally (terminal until `task retry`)
  kBlocked,    // a dependency failed finally or was cancelled
  kCancelled,  // cancelled by a user (terminal)
};
inline constexpr TaskState kAllTaskStates[] = {
    TaskState::kPending,   TaskState::kReady,    TaskState::kClaimed, TaskState::kRunning,
    TaskState::kVerifying, TaskState::kReview,   TaskState::kDone,    TaskState::kFailed,
    TaskState::kBlocked,   TaskState::kCancelled};

std::string_view TaskStateName(TaskState state);
std::optional<TaskState> ParseTaskState(std::string_view name);
// States in which a lease is held (claimed, running, verifying, review).
bool IsLeasedState(TaskState state);

// A task's identity: what an event about it needs.
struct TaskKey {
  std::string id;
  std::string run_id;
  friend bool operator==(const TaskKey&, const TaskKey&) = default;
};

struct Task {
  std::string id;  // ULID
  std::string run_id;
  std::string title;
  std::string spec;
  std::string acceptance_json = "[]";    // JSON array of strings
  std::string type;                      // task type (code, test, docs...); may be empty
  std::string capabilities_json = "[]";  // JSON array of strings
  std::string agent;                     // explicit agent, may be empty
  std::string command;                   // shell command for command tasks, may be empty
  int priority = 0;                      // higher first
  TaskState state = TaskState::kPending;
  std::optional<std::string> idempotency_key;
  int attempts = 0;  // attempts started (claims), reset by `task retry`
  int max_attempts = 3;
  // Attempts ended by the death of their worker (its lease expired or its owner was found
  // dead): given back to `attempts` and counted here instead; failed finally at max_crashes.
  // Reset by `task retry`.
  int crashes = 0;
  int max_crashes = 5;
  int64_t not_before_ms = 0;  // earliest claim time (retry backoff)
  std::string lease_owner;    // empty when not leased
  int64_t lease_expires_ms = 0;
  int64_t lease_epoch = 0;  // fencing token: bumped by every claim, never reset
  std::string result_json;  // free-form result of the last attempt
  std::string metadata_json = "{}";
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::vector<std::string> depends_on;  // task ids
  // The attempt started by the latest claim: its id (ULID) and start. Its row in `attempts` is
  // written when it ends; until then the store reports it from here (StoreTxn::ListAttempts).
  std::string attempt_id;
  int64_t attempt_started_ms = 0;
};

enum class AttemptStatus { kRunning, kSucceeded, kFailed, kExpired, kReleased, kCancelled };
std::string_view AttemptStatusName(AttemptStatus status);
std::optional<AttemptStatus> ParseAttemptStatus(std::string_view name);

struct Attempt {
  std::string id;  // ULID
  std::string task_id;
  int64_t epoch = 0;  // the task's lease_epoch when this attempt was claimed
  int number = 0;     // 1-based within the task (since its last reset)
  std::string owner;  // lease owner (worker id)
  AttemptStatus status = AttemptStatus::kRunning;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;  // 0 while running
  std::optional<int> exit_code;
  std::string error;
  std::string details_json = "{}";  // runner, agent, gates, usage...
};

struct Run {
  std::string id;
  std::string title;
  std::string state = "active";
  std::string metadata_json = "{}";
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// One entry of the append-only, hash-chained event log.
struct Event {
  int64_t seq = 0;  // position in the chain, assigned by the store
  std::string id;   // ULID
  int64_t ts_ms = 0;
  std::string run_id;   // may be empty
  std::string task_id;  // may be empty
  std::string kind;     // e.g. "task.created", "task.claimed"
  std::string actor;    // who caused it: "cli", "worker:<id>", "reaper"...
  std::string payload_json = "{}";
  std::string prev_hash;  // hash of the previous event ("" for the first)
  std::string hash;       // SHA-256 over this event's content and prev_hash
};

// SHA-256 (hex) over the event's content (id, ts, run, task, kind, actor, payload) and its
// prev_hash. The same function writes and verifies the chain, whatever the backend.
std::string ComputeEventHash(const Event& event);

// --- model-call ledger and budgets (schema v2)

// One routed model call, as the ledger stores it.
struct ModelCallRow {
  int64_t id = 0;     // assigned by the store
  int64_t ts_ms = 0;  // when the call started
  std::string run_id;
  std::string task_id;
  std::string attempt_id;
  std::string agent;
  std::string provider;
  std::string model;
  std::string alias;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cached_tokens = 0;  // cache reads
  double cost_usd = 0;
  int64_t latency_ms = 0;
  std::string status;  // "ok" or an error code name
  int http_status = 0;
  int retries = 0;
  bool cache_hit = false;
  std::string error;
  std::string purpose;
  // What the call cost above its budget reservation (llm::CallRecord::overrun_usd); 0 when it
  // settled within it or was not reserved.
  double overrun_usd = 0;
};

// A budget reservation: a worst-case amount held before a model call, settled with the actual
// cost after it. Scope keys may be empty (not applicable).
struct ReservationRow {
  int64_t id = 0;  // assigned by the store
  int64_t ts_ms = 0;
  std::string run_id;
  std::string task_id;
  std::string agent;
  std::string day;  // UTC "YYYY-MM-DD" of ts_ms
  double amount_usd = 0;
  bool settled = false;
  double actual_usd = 0;  // meaningful once settled
};

// A paused agent. agent "*" pauses every agent (the global daily cap).
struct AgentPause {
  std::string agent;
  std::string reason;
  int64_t since_ms = 0;
  std::string by;  // who paused it: "budget", "velocity", a user...
};

// --- gateway virtual keys (schema v3)

// A virtual API key of `factory gateway`, issued to one agent. The key itself is shown once, when
// it is created; only its SHA-256 is stored (keys are long random tokens, so a plain hash cannot
// be reversed by guessing).
struct VirtualKey {
  std::string id;        // ULID; what `factory keys list` shows and `keys revoke` takes
  std::string agent;     // whose calls the key's requests are ledgered and budgeted as
  std::string key_hash;  // lower-case hex SHA-256 of the key
  std::string prefix;    // the key's first characters, to recognise it in a listing
  std::string label;     // free text ("" = none)
  // Optional scope: a key issued for one attempt of a task (the cli runner's) ledgers and
  // budgets its calls under that run, task and attempt. "" = none.
  std::string run_id;
  std::string task_id;
  std::string attempt_id;
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;  // 0 = active
};

// A bearer token of `factory serve`'s API (schema v8). Scopes nest: admin > operator > read.
struct ApiToken {
  std::string id;          // ULID
  std::string name;        // unique; what access logs show and `tokens revoke` takes
  std::string scope;       // "read" | "operator" | "admin"
  std::string token_hash;  // lower-case hex SHA-256 of the token
  std::string prefix;      // the token's first characters, to recognise it in a listing
  int64_t created_ms = 0;
  int64_t expires_ms = 0;  // 0 = never
  int64_t revoked_ms = 0;  // 0 = active
};

}  // namespace factory
