#include "feature/repo_map.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <system_error>
#include <vector>

#include "toolloop/workspace_fs.h"
#include "workspace/git.h"

namespace factory::feature {

namespace fs = std::filesystem;

namespace {

std::string HumanSize(uintmax_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const double kib = static_cast<double>(bytes) / 1024.0;
  char text[32];
  if (kib < 1024) {
    std::snprintf(text, sizeof(text), "%.1f KiB", kib);
  } else {
    std::snprintf(text, sizeof(text), "%.1f MiB", kib / 1024.0);
  }
  return text;
}

// The first `lines` lines of a file, each cut at max_line_bytes; "" when unreadable.
std::string FirstLines(const fs::path& path, int lines, int max_line_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::string head;
  std::string line;
  for (int count = 0; count < lines && std::getline(in, line); ++count) {
    if (line.size() > static_cast<size_t>(max_line_bytes)) line.resize(max_line_bytes);
    head += line + "\n";
  }
  return head;
}

// Cuts `text` to at most `max_bytes` without splitting a UTF-8 sequence.
void CutAtCharBoundary(std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
}

}  // namespace

bool IsKeyFile(std::string_view path) {
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  // Top-level and one level down only: deeper READMEs describe details, not the project.
  const auto depth = std::count(path.begin(), path.end(), '/');
  static constexpr std::array<std::string_view, 14> kExact = {
      "CMakeLists.txt", "Makefile",        "package.json",    "pyproject.toml", "setup.py",
      "Cargo.toml",     "go.mod",          "build.gradle",    "pom.xml",        "meson.build",
      "DESIGN.md",      "ARCHITECTURE.md", "CONTRIBUTING.md", "STYLE.md"};
  if (std::find(kExact.begin(), kExact.end(), name) != kExact.end()) return depth <= 1;
  if (name.starts_with("README")) return depth <= 1;
  return false;
}

Result<std::string> BuildRepoMap(const fs::path& repo_root, const RepoMapOptions& options) {
  Git git(repo_root.string());
  FACTORY_ASSIGN_OR_RETURN(std::string listing, git.Run({"ls-files", "-z"}));
  std::vector<std::string> files;
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\0', start);
    if (end == std::string::npos) end = listing.size();
    std::string path = listing.substr(start, end - start);
    start = end + 1;
    if (path.empty() || path == ".factory" || path.starts_with(".factory/")) continue;
    files.push_back(std::move(path));
  }
  std::sort(files.begin(), files.end());

  // Sizes from the work tree (a deleted but still tracked file shows as "deleted").
  std::vector<std::string> lines;
  uintmax_t total_bytes = 0;
  std::vector<std::string> key_files;
  for (const auto& path : files) {
    std::error_code error;
    const fs::path full = repo_root / path;
    const bool regular = fs::is_regular_file(full, error);
    const uintmax_t size = regular ? fs::file_size(full, error) : 0;
    std::string line = path;
    if (!regular) {
      line += fs::is_symlink(full, error) ? " (symlink)" : " (deleted)";
    } else {
      line += " (" + HumanSize(size) + ")";
      total_bytes += size;
      if (IsKeyFile(path)) key_files.push_back(path);
    }
    lines.push_back(std::move(line));
  }

  std::string map =
      "### Files (" + std::to_string(files.size()) + " tracked, " + HumanSize(total_bytes) + ")\n";
  const size_t tree_budget = options.max_bytes * 3 / 4;
  size_t shown = 0;
  for (const auto& line : lines) {
    // Room is kept for the "[N more files not shown]" line.
    if (map.size() + line.size() + 1 + 40 > tree_budget) break;
    map += line + "\n";
    ++shown;
  }
  if (shown < lines.size()) {
    map += "[" + std::to_string(lines.size() - shown) + " more files not shown]\n";
  }
  for (const auto& path : key_files) {
    const std::string head =
        FirstLines(repo_root / path, options.key_file_lines, options.max_line_bytes);
    if (head.empty()) continue;
    std::string section = "\n### " + path + " (first lines)\n" + head;
    if (map.size() + section.size() > options.max_bytes) continue;  // a smaller one may fit
    map += section;
  }
  map = toolloop::SanitizeUtf8(map);
  CutAtCharBoundary(map, options.max_bytes);
  return map;
}

}  // namespace factory::feature
