#include "feature/internal/spec_files.h"

#include <time.h>

#include <fstream>
#include <sstream>
#include <system_error>

#include "core/clock.h"
#include "core/redact.h"

namespace factory::feature::internal {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Replaced on a new version; moved to history/vN/ first.
constexpr const char* kVersionedEntries[] = {"PLAN.md",       "BACKLOG.yaml", "context.md",
                                             "metadata.json", "planners",     "final-gates"};

}  // namespace

std::string UtcTimestamp(int64_t ms) {
  const time_t seconds = static_cast<time_t>(ms / 1000);
  struct tm utc {};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Status WriteAtomically(const fs::path& path, std::string_view content) {
  std::error_code error;
  fs::create_directories(path.parent_path(), error);
  if (error)
    return Internal("cannot create " + path.parent_path().string() + ": " + error.message());
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) return Internal("cannot write " + temporary.string());
    out << ProcessRedactor().Redact(content);  // specs and their metadata quote gate output
    out.flush();
    if (!out) return Internal("cannot write " + temporary.string());
  }
  fs::rename(temporary, path, error);
  if (error) return Internal("cannot rename " + temporary.string() + ": " + error.message());
  return Ok();
}

Result<json> ReadMetadata(const fs::path& spec_dir) {
  const fs::path path = spec_dir / kMetadataFile;
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return NotFound("no " + path.string());
  json metadata = json::parse(ReadText(path), nullptr, false);
  if (!metadata.is_object()) return DataLoss(path.string() + " is damaged (not a JSON object)");
  return metadata;
}

Status UpdateMetadata(const fs::path& spec_dir, const std::function<void(json&)>& change) {
  FACTORY_ASSIGN_OR_RETURN(json metadata, ReadMetadata(spec_dir));
  change(metadata);
  metadata["last_generated"] = UtcTimestamp(SystemClock().NowMillis());
  return WriteAtomically(spec_dir / kMetadataFile, metadata.dump(2) + "\n");
}

Status ArchiveVersion(const fs::path& spec_dir, int version) {
  const fs::path target = spec_dir / "history" / ("v" + std::to_string(version));
  std::error_code error;
  fs::create_directories(target, error);
  if (error) return Internal("cannot create " + target.string() + ": " + error.message());
  for (const char* entry : kVersionedEntries) {
    const fs::path from = spec_dir / entry;
    if (!fs::exists(from, error)) continue;
    fs::rename(from, target / entry, error);
    if (error) return Internal("cannot move " + from.string() + ": " + error.message());
  }
  return Ok();
}

}  // namespace factory::feature::internal
