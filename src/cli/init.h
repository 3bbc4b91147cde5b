#pragma once
// `factory init`: lays out the .factory/ directory. Later features (config, agents/,
// models.yaml) add their steps to InitFactoryDir; each step must be idempotent and must never
// overwrite a file the user may have edited.

#include <filesystem>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/store.h"

namespace factory::cli {

struct InitOptions {
  std::filesystem::path factory_dir;  // e.g. <repo>/.factory
  std::filesystem::path db_path;      // e.g. <repo>/.factory/factory.db
  SqliteSync sync = SqliteSync::kNormal;
};

struct InitReport {
  std::vector<std::string> created;  // paths created by this call (empty: already initialised)
  int schema_version = 0;
};

// Creates factory_dir, its artifacts/ directory and the database (migrations applied).
// Idempotent. Errors name the path that could not be created (a read-only directory, a file
// that is not an SQLite database...). Nothing existing is modified except by migrations.
Result<InitReport> InitFactoryDir(const InitOptions& options);

}  // namespace factory::cli
