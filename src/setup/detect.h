#pragma once
// What `factory init` learns from a repository's files before writing its config: the commands
// that build and test it (the gates) and the folders that hold its tests (protected paths).
//
// Detection reads files only; it never runs a build tool. Each detector looks at one ecosystem;
// the first one that offers a step wins that step, in this order:
//   Makefile      targets `build`, `check`/`test` (`make build`, `make test`)
//   package.json  scripts build, lint, test, run with the lock file's package manager (npm,
//                 pnpm, yarn, bun) after a frozen install (`npm ci`, ...)
//   Cargo.toml    cargo build, cargo test
//   go.mod        go build ./..., go test ./...
//   CMakeLists    configure + build in build/; ctest when the project enables testing
//   Python        pytest (pytest.ini, [tool.pytest...] in pyproject.toml, [tool:pytest] in
//                 setup.cfg, conftest.py) or unittest (test_*.py files)
// Steps run in the order install, build, lint, test. Test folders: tests/, test/, spec/,
// __tests__/ (also nested), e2e/ at the root.

#include <filesystem>
#include <string>
#include <vector>

namespace factory::setup {

struct DetectedGate {
  std::string name;     // install | build | lint | test
  std::string command;  // a shell command line, run in the repository root
  std::string source;   // why: "Makefile target test", "package.json script build"
};

struct ProjectDetection {
  std::vector<DetectedGate> gates;  // in run order
  // Repository-relative globs of the test folders found ("tests/**", "**/__tests__/**").
  std::vector<std::string> protected_paths;
  // A step fetches dependencies (npm ci, cargo, go modules): its gates need the network.
  bool gates_need_network = false;
  std::string network_reason;  // which step, for the config's comment and init's report
};

// Inspects `root` (a repository's top level). Never fails: unreadable or malformed files only
// mean that nothing is detected from them.
ProjectDetection DetectProject(const std::filesystem::path& root);

}  // namespace factory::setup
