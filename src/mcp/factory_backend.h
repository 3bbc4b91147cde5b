#pragma once
// The Backend over the factory's own modules on one database: the queue for tasks, the store
// for runs, the ledger for costs, stats for figures. A run is started as a detached
// `factory run` process, so it outlives the MCP session and writes its progress to a log.

#include <filesystem>
#include <memory>
#include <string>

#include "mcp/backend.h"
#include "store/store.h"

namespace factory::mcp {

struct FactoryBackendOptions {
  std::filesystem::path db_path;         // passed to the `factory run` it starts
  std::filesystem::path factory_dir;     // .factory: the run inputs and logs go in mcp/
  std::filesystem::path project_dir;     // the repository: cwd of the runs it starts
  std::filesystem::path factory_binary;  // the `factory` executable
};

// REQUIRES: store outlives the backend.
std::unique_ptr<Backend> NewFactoryBackend(Store& store, FactoryBackendOptions options);

}  // namespace factory::mcp
