#pragma once
// `factory init`: lays out the .factory/ directory with a setup that can run here: the database,
// a config whose gates are the repository's detected build and test commands and whose
// protected paths are its test folders (setup/detect.h), models.yaml, and the one agent that
// can work on this host (setup/agent_choice.h) with examples of the others in agents/examples/.
// Every step is idempotent and never overwrites a file the user may have edited.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.h"
#include "setup/agent_choice.h"
#include "setup/detect.h"
#include "store/store.h"

namespace factory::cli {

struct InitOptions {
  std::filesystem::path factory_dir;  // e.g. <repo>/.factory; its parent is the repository
  std::filesystem::path db_path;      // e.g. <repo>/.factory/factory.db
  SqliteSync sync = SqliteSync::kNormal;
  setup::HostProbe probe = setup::SystemProbe();
  std::string agent_preference;  // setup::ChooseAgent's preference ("" = choose)
};

struct InitReport {
  std::vector<std::string> created;  // paths created by this call (empty: already initialised)
  std::vector<std::string> kept;     // project files that existed and were left as they were
  int schema_version = 0;
  setup::ProjectDetection detected;
  setup::AgentChoice agent;
  bool config_written = false;  // the detection went into config.yaml (it did not exist)
  bool agent_written = false;   // agent.file_name was written (agents/ had no agent file)
  std::vector<std::string> existing_agents;  // agent files already in agents/ (then kept)
  std::vector<std::string> warnings;         // e.g. an existing models.yaml that does not
                                             // route the chosen agent's model
};

// Creates factory_dir, its artifacts/ directory and the database (migrations applied), then the
// project files that do not exist yet. Errors name the path that could not be created (a
// read-only directory, a file that is not an SQLite database...); InvalidArgument or
// FailedPrecondition for an agent preference that is unknown or cannot run here. Nothing
// existing is modified except by migrations.
Result<InitReport> InitFactoryDir(const InitOptions& options);

// The report as `factory init --json` prints it.
nlohmann::json InitReportToJson(const InitReport& report, const std::filesystem::path& factory_dir);

}  // namespace factory::cli
