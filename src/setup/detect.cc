#include "setup/detect.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

namespace factory::setup {
namespace {

namespace fs = std::filesystem;

// Build files are small; a file larger than this is not one we can learn from.
constexpr std::uintmax_t kMaxReadBytes = 1 << 20;
// How deep the walk for test files and nested test folders goes, and how many entries it
// looks at: enough for a project's layout, bounded for a monorepo.
constexpr int kMaxWalkDepth = 4;
constexpr int kMaxWalkEntries = 20000;

std::optional<std::string> Read(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  const auto size = fs::file_size(path, ec);
  if (ec || size > kMaxReadBytes) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool Exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

bool Contains(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

// One ecosystem's offer: the command of each step it can provide, and what must run first.
struct Offer {
  std::map<std::string, DetectedGate> steps;  // build | lint | test
  std::optional<DetectedGate> install;        // runs before any of its steps
  std::string network_reason;                 // non-empty: its steps fetch dependencies
};

void Add(Offer& offer, const std::string& step, std::string command, std::string source) {
  offer.steps.emplace(step, DetectedGate{step, std::move(command), std::move(source)});
}

// Explicit rule targets of a Makefile ("name:" or "a b:", not "x := y", not patterns).
std::set<std::string> MakeTargets(const std::string& text) {
  std::set<std::string> targets;
  for (const std::string& line : Lines(text)) {
    if (line.empty() || line[0] == '\t' || line[0] == ' ' || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) continue;
    if (colon + 1 < line.size() && line[colon + 1] == '=') continue;  // x := y
    const std::string left = line.substr(0, colon);
    if (left.find_first_of("=$%") != std::string::npos) continue;
    std::istringstream words(left);
    for (std::string word; words >> word;) {
      if (word[0] != '.') targets.insert(word);
    }
  }
  return targets;
}

Offer DetectMake(const fs::path& root) {
  Offer offer;
  for (const char* name : {"GNUmakefile", "makefile", "Makefile"}) {
    auto text = Read(root / name);
    if (!text) continue;
    const std::set<std::string> targets = MakeTargets(*text);
    const std::string file(name);
    if (targets.contains("build")) Add(offer, "build", "make build", file + " target build");
    if (targets.contains("test")) {
      Add(offer, "test", "make test", file + " target test");
    } else if (targets.contains("check")) {
      Add(offer, "test", "make check", file + " target check");
    }
    break;  // make reads the first of these names only
  }
  return offer;
}

Offer DetectNode(const fs::path& root) {
  Offer offer;
  auto text = Read(root / "package.json");
  if (!text) return offer;
  const nlohmann::json package = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!package.is_object()) return offer;
  struct Manager {
    const char* lock;
    const char* name;
    const char* install;
    const char* run;   // prefix of "run a script"
    const char* test;  // the test script
  };
  static constexpr Manager kManagers[] = {
      {"pnpm-lock.yaml", "pnpm", "pnpm install --frozen-lockfile", "pnpm run ", "pnpm test"},
      {"yarn.lock", "yarn", "yarn install --frozen-lockfile", "yarn run ", "yarn test"},
      {"bun.lockb", "bun", "bun install --frozen-lockfile", "bun run ", "bun run test"},
      {"bun.lock", "bun", "bun install --frozen-lockfile", "bun run ", "bun run test"},
      {"package-lock.json", "npm", "npm ci", "npm run ", "npm test"},
  };
  const Manager* manager = nullptr;
  for (const Manager& candidate : kManagers) {
    if (Exists(root / candidate.lock)) {
      manager = &candidate;
      break;
    }
  }
  static constexpr Manager kNoLock = {"", "npm", "npm install", "npm run ", "npm test"};
  if (manager == nullptr) manager = &kNoLock;

  const nlohmann::json scripts = package.value("scripts", nlohmann::json::object());
  auto script = [&](const char* name) -> std::optional<std::string> {
    if (!scripts.is_object() || !scripts.contains(name) || !scripts[name].is_string()) {
      return std::nullopt;
    }
    return scripts[name].get<std::string>();
  };
  const std::string where = std::string("package.json script ");
  if (script("build")) Add(offer, "build", std::string(manager->run) + "build", where + "build");
  if (script("lint")) Add(offer, "lint", std::string(manager->run) + "lint", where + "lint");
  // `npm init`'s placeholder fails by design: it is no test command.
  if (auto test = script("test"); test && !Contains(*test, "no test specified")) {
    Add(offer, "test", manager->test, where + "test");
  }
  const bool has_dependencies = [&] {
    for (const char* key : {"dependencies", "devDependencies", "optionalDependencies"}) {
      if (package.contains(key) && package[key].is_object() && !package[key].empty()) return true;
    }
    return false;
  }();
  if (has_dependencies) {
    const std::string lock = manager->lock;
    offer.install = DetectedGate{"install", manager->install,
                                 lock.empty() ? std::string("package.json dependencies (no lock "
                                                            "file: consider committing one)")
                                              : lock};
    offer.network_reason = std::string(manager->name) + " fetches the dependencies";
  }
  return offer;
}

// Whether a TOML-ish file has an entry in a section whose name ends with `dependencies]`.
bool HasDependencyEntries(const std::string& text) {
  bool in_dependencies = false;
  for (const std::string& raw : Lines(text)) {
    const size_t first = raw.find_first_not_of(" \t");
    if (first == std::string::npos || raw[first] == '#') continue;
    const std::string line = raw.substr(first);
    if (line[0] == '[') {
      in_dependencies = Contains(line, "dependencies") && line.back() == ']';
      continue;
    }
    if (in_dependencies && Contains(line, "=")) return true;
  }
  return false;
}

Offer DetectCargo(const fs::path& root) {
  Offer offer;
  auto text = Read(root / "Cargo.toml");
  if (!text) return offer;
  Add(offer, "build", "cargo build", "Cargo.toml");
  Add(offer, "test", "cargo test", "Cargo.toml");
  if (HasDependencyEntries(*text)) offer.network_reason = "cargo fetches the crates";
  return offer;
}

Offer DetectGo(const fs::path& root) {
  Offer offer;
  auto text = Read(root / "go.mod");
  if (!text) return offer;
  Add(offer, "build", "go build ./...", "go.mod");
  Add(offer, "test", "go test ./...", "go.mod");
  if (Contains(*text, "require")) offer.network_reason = "go fetches the modules";
  return offer;
}

Offer DetectCMake(const fs::path& root) {
  Offer offer;
  auto text = Read(root / "CMakeLists.txt");
  if (!text) return offer;
  Add(offer, "build", "cmake -S . -B build && cmake --build build", "CMakeLists.txt");
  if (Contains(*text, "enable_testing") || Contains(*text, "include(CTest)") ||
      Contains(*text, "add_test")) {
    Add(offer, "test", "ctest --test-dir build --output-on-failure", "CMakeLists.txt with CTest");
  }
  return offer;
}

bool Skipped(const std::string& name) {
  static const std::set<std::string> kSkipped = {"node_modules", "venv",   "build",      "dist",
                                                 "target",       "vendor", "__pycache__"};
  return name.empty() || name[0] == '.' || kSkipped.contains(name);
}

// A bounded walk of the tree, hidden and dependency folders left out.
template <typename Visit>
void Walk(const fs::path& root, Visit&& visit) {
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  int seen = 0;
  for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    if (++seen > kMaxWalkEntries) break;
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    const bool directory = it->is_directory(type_ec) && !it->is_symlink(type_ec);
    if (directory && (Skipped(name) || it.depth() >= kMaxWalkDepth)) {
      it.disable_recursion_pending();
    }
    if (!visit(*it, directory)) break;
  }
}

Offer DetectPython(const fs::path& root) {
  Offer offer;
  bool pytest = Exists(root / "pytest.ini") || Exists(root / "conftest.py") ||
                Exists(root / "tests" / "conftest.py") || Exists(root / "test" / "conftest.py");
  if (!pytest) {
    if (auto text = Read(root / "pyproject.toml")) pytest = Contains(*text, "[tool.pytest");
  }
  if (!pytest) {
    if (auto text = Read(root / "setup.cfg")) pytest = Contains(*text, "[tool:pytest]");
  }
  if (!pytest) {
    if (auto text = Read(root / "tox.ini")) pytest = Contains(*text, "[pytest]");
  }
  if (pytest) {
    Add(offer, "test", "python3 -m pytest -q", "pytest configuration");
    return offer;
  }
  // unittest: the folder of the first test_*.py found, shallowest first.
  std::optional<fs::path> folder;
  int folder_depth = 0;
  Walk(root, [&](const fs::directory_entry& entry, bool directory) {
    const std::string name = entry.path().filename().string();
    if (directory || !name.starts_with("test_") || !name.ends_with(".py")) return true;
    const fs::path parent = entry.path().parent_path().lexically_relative(root);
    const int depth = static_cast<int>(std::distance(parent.begin(), parent.end()));
    if (!folder || depth < folder_depth) {
      folder = parent;
      folder_depth = depth;
    }
    return true;
  });
  if (!folder) return offer;
  const std::string dir = folder->string();
  if (dir.empty() || dir == ".") {
    Add(offer, "test", "python3 -m unittest discover", "test_*.py files (unittest)");
  } else {
    Add(offer, "test", "python3 -m unittest discover -s " + dir,
        "test_*.py files in " + dir + "/ (unittest)");
  }
  return offer;
}

std::vector<std::string> TestFolders(const fs::path& root) {
  std::vector<std::string> globs;
  for (const char* name : {"tests", "test", "spec", "e2e"}) {
    std::error_code ec;
    if (fs::is_directory(root / name, ec)) globs.push_back(std::string(name) + "/**");
  }
  bool nested_jest = false;
  Walk(root, [&](const fs::directory_entry& entry, bool directory) {
    if (directory && entry.path().filename() == "__tests__") nested_jest = true;
    return !nested_jest;
  });
  if (nested_jest) globs.push_back("**/__tests__/**");
  return globs;
}

}  // namespace

ProjectDetection DetectProject(const std::filesystem::path& root) {
  ProjectDetection detection;
  const Offer offers[] = {DetectMake(root), DetectNode(root),  DetectCargo(root),
                          DetectGo(root),   DetectCMake(root), DetectPython(root)};
  std::map<std::string, const DetectedGate*> chosen;
  std::vector<const Offer*> used;
  for (const char* step : {"build", "lint", "test"}) {
    for (const Offer& offer : offers) {
      auto it = offer.steps.find(step);
      if (it == offer.steps.end()) continue;
      chosen[step] = &it->second;
      if (std::find(used.begin(), used.end(), &offer) == used.end()) used.push_back(&offer);
      break;
    }
  }
  for (const Offer* offer : used) {
    if (offer->install) detection.gates.push_back(*offer->install);
    if (!offer->network_reason.empty() && !detection.gates_need_network) {
      detection.gates_need_network = true;
      detection.network_reason = offer->network_reason;
    }
  }
  for (const char* step : {"build", "lint", "test"}) {
    if (auto it = chosen.find(step); it != chosen.end()) detection.gates.push_back(*it->second);
  }
  detection.protected_paths = TestFolders(root);
  return detection;
}

}  // namespace factory::setup
