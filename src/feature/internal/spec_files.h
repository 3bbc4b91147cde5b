#pragma once
// Reading and writing the spec folder's files (.factory/specs/<feature>/), shared by planning,
// the final gates and regeneration. Not part of the module's public API.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/result.h"

namespace factory::feature::internal {

inline constexpr char kMetadataFile[] = "metadata.json";
inline constexpr char kBacklogFile[] = "BACKLOG.yaml";

// "2026-11-21T10:00:00Z".
std::string UtcTimestamp(int64_t ms);

// The whole file; "" when it cannot be read.
std::string ReadText(const std::filesystem::path& path);

// Written to a temporary file then renamed: a reader (or a resumed run) sees the old file or
// the new one, never half of one. Creates the parent folder.
Status WriteAtomically(const std::filesystem::path& path, std::string_view content);

// spec_dir/metadata.json parsed. NotFound when absent, DataLoss when it is not a JSON object.
Result<nlohmann::json> ReadMetadata(const std::filesystem::path& spec_dir);

// Reads metadata.json, applies `change`, stamps last_generated and writes it back atomically.
// Errors as ReadMetadata, or the write's. Not synchronised: one writer per spec folder.
Status UpdateMetadata(const std::filesystem::path& spec_dir,
                      const std::function<void(nlohmann::json&)>& change);

// Moves the files of version `version` (PLAN.md, BACKLOG.yaml, context.md, metadata.json,
// planners/, final-gates/) to spec_dir/history/v<version>/.
Status ArchiveVersion(const std::filesystem::path& spec_dir, int version);

}  // namespace factory::feature::internal
