#pragma once
// What the MCP tools and resources do, behind a narrow interface: the protocol layer
// (server.h) validates arguments and shapes answers; a Backend carries out the use cases.
// Results are the JSON objects the tools return to the client (structuredContent).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace factory::mcp {

struct CreateTaskArgs {
  std::string title;
  std::string command;
  std::string spec;
  std::vector<std::string> depends_on;
  int64_t priority = 0;
  std::optional<std::string> idempotency_key;
  std::string run;  // empty: the default run
};

struct ListTasksArgs {
  std::string run;    // empty: every run
  std::string state;  // empty: every state; else a task state name
  int limit = 100;
  std::string cursor;  // next_cursor of the previous page; empty: the first page
};

struct StartRunArgs {
  std::string run_id;      // empty: a new id
  std::string feature;     // markdown; exactly one of feature and backlog
  nlohmann::json backlog;  // {"tasks": [...]}; null when feature is given
};

struct CostsArgs {
  std::string by = "agent";  // agent | model | day | run
  std::string since;         // empty: all time
};

// Errors are Result errors with the store's codes (NotFound for an unknown id,
// InvalidArgument naming the field, FailedPrecondition for an illegal change); the server
// turns each into a tool error carrying its message. Implementations need not be thread-safe:
// the server calls one method at a time.
class Backend {
 public:
  virtual ~Backend() = default;
  // {"task": {...}, "created": bool}: created false when the idempotency key matched.
  virtual Result<nlohmann::json> CreateTask(const CreateTaskArgs& args) = 0;
  // {"tasks": [...], "next_cursor"?}
  virtual Result<nlohmann::json> ListTasks(const ListTasksArgs& args) = 0;
  virtual Result<nlohmann::json> GetTask(const std::string& id) = 0;  // {"task", "attempts"}
  // Starts the run and returns at once: {"run_id", ...}.
  virtual Result<nlohmann::json> StartRun(const StartRunArgs& args) = 0;
  virtual Result<nlohmann::json> RunStatus(const std::string& run) = 0;
  virtual Result<nlohmann::json> CancelRun(const std::string& run) = 0;
  virtual Result<nlohmann::json> RetryTask(const std::string& id) = 0;
  virtual Result<nlohmann::json> Costs(const CostsArgs& args) = 0;
  virtual Result<nlohmann::json> Stats(const std::string& run) = 0;
  // The ids of the most recent runs, newest first, and of tasks (in id order), up to limit.
  virtual Result<std::vector<std::string>> RunIds(int limit) = 0;
  virtual Result<std::vector<std::string>> TaskIds(int limit) = 0;
};

}  // namespace factory::mcp
