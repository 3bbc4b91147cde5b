#include "setup/detect.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "plan/config.h"

namespace factory::setup {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// "name: command" of each detected gate, in order.
std::vector<std::string> Gates(const ProjectDetection& detection) {
  std::vector<std::string> out;
  for (const auto& gate : detection.gates) out.push_back(gate.name + ": " + gate.command);
  return out;
}

struct Case {
  std::string label;
  std::map<std::string, std::string> files;  // path -> content ("/" suffix: a directory)
  std::vector<std::string> gates;
  bool network = false;
};

class DetectTest : public ::testing::TestWithParam<Case> {};

TEST_P(DetectTest, FindsTheCommands) {
  const Case& c = GetParam();
  testing::TempDir dir;
  for (const auto& [path, content] : c.files) {
    if (path.ends_with("/")) {
      std::filesystem::create_directories(dir.path() / path);
    } else {
      testing::WriteFile(dir.path() / path, content);
    }
  }
  const ProjectDetection detection = DetectProject(dir.path());
  EXPECT_EQ(Gates(detection), c.gates) << c.label;
  EXPECT_EQ(detection.gates_need_network, c.network) << c.label;
}

const char kPackageWithDeps[] = R"({"name": "x", "scripts": {"build": "tsc", "lint": "eslint .",
  "test": "jest"}, "devDependencies": {"jest": "^29"}})";

INSTANTIATE_TEST_SUITE_P(
    Ecosystems, DetectTest,
    ::testing::Values(
        Case{"make test and build",
             {{"Makefile", "CC=cc\nbuild: main.o\n\tcc -o app main.o\ntest: build\n\t./app\n"}},
             {"build: make build", "test: make test"}},
        Case{"make check, variables and patterns are no targets",
             {{"Makefile", "X := y\n%.o: %.c\n\tcc -c $<\n.PHONY: check\ncheck:\n\ttrue\n"}},
             {"test: make check"}},
        Case{"npm with a lock file installs with npm ci",
             {{"package.json", kPackageWithDeps}, {"package-lock.json", "{}"}},
             {"install: npm ci", "build: npm run build", "lint: npm run lint", "test: npm test"},
             true},
        Case{"pnpm lock file",
             {{"package.json", kPackageWithDeps}, {"pnpm-lock.yaml", ""}},
             {"install: pnpm install --frozen-lockfile", "build: pnpm run build",
              "lint: pnpm run lint", "test: pnpm test"},
             true},
        Case{"yarn lock file",
             {{"package.json", kPackageWithDeps}, {"yarn.lock", ""}},
             {"install: yarn install --frozen-lockfile", "build: yarn run build",
              "lint: yarn run lint", "test: yarn test"},
             true},
        Case{"npm init's placeholder test is no test; no dependencies, no install",
             {{"package.json",
               R"({"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}})"}},
             {}},
        Case{"cargo with dependencies",
             {{"Cargo.toml", "[package]\nname = \"x\"\n\n[dependencies]\nserde = \"1\"\n"}},
             {"build: cargo build", "test: cargo test"},
             true},
        Case{"cargo without dependencies needs no network",
             {{"Cargo.toml", "[package]\nname = \"x\"\n[dependencies]\n"}},
             {"build: cargo build", "test: cargo test"}},
        Case{"go modules",
             {{"go.mod", "module example.com/x\n\ngo 1.21\n"}},
             {"build: go build ./...", "test: go test ./..."}},
        Case{"cmake with ctest",
             {{"CMakeLists.txt", "project(x)\nenable_testing()\nadd_test(NAME t COMMAND t)\n"}},
             {"build: cmake -S . -B build && cmake --build build",
              "test: ctest --test-dir build --output-on-failure"}},
        Case{"cmake without tests builds only",
             {{"CMakeLists.txt", "project(x)\nadd_executable(x main.c)\n"}},
             {"build: cmake -S . -B build && cmake --build build"}},
        Case{"pytest from pyproject",
             {{"pyproject.toml", "[tool.pytest.ini_options]\naddopts = \"-q\"\n"},
              {"tests/test_a.py", ""}},
             {"test: python3 -m pytest -q"}},
        Case{"pytest from conftest.py", {{"conftest.py", ""}}, {"test: python3 -m pytest -q"}},
        Case{"unittest files in a folder",
             {{"pkg/mod.py", ""}, {"tests/test_mod.py", "import unittest\n"}},
             {"test: python3 -m unittest discover -s tests"}},
        Case{"unittest files at the root",
             {{"test_mod.py", "import unittest\n"}},
             {"test: python3 -m unittest discover"}},
        Case{"a Makefile's test wins over package.json's; its build comes from npm",
             {{"Makefile", "test:\n\tnpm test\n"}, {"package.json", kPackageWithDeps}},
             {"install: npm install", "build: npm run build", "lint: npm run lint",
              "test: make test"},
             true},
        Case{"nothing to detect", {{"README.md", "# hi\n"}}, {}}),
    [](const ::testing::TestParamInfo<Case>& info) { return "case" + std::to_string(info.index); });

TEST(DetectTestFolders, ProtectsEveryTestFolderFound) {
  testing::TempDir dir;
  for (const char* folder : {"tests", "spec", "src/components/__tests__"}) {
    std::filesystem::create_directories(dir.path() / folder);
  }
  testing::WriteFile(dir.path() / "node_modules/x/__tests__/a.js", "");
  const ProjectDetection detection = DetectProject(dir.path());
  EXPECT_THAT(detection.protected_paths, ElementsAre("tests/**", "spec/**", "**/__tests__/**"));
}

TEST(DetectTestFolders, NoneWhenThereAreNone) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "src/main.c", "int main(void) { return 0; }\n");
  EXPECT_THAT(DetectProject(dir.path()).protected_paths, IsEmpty());
}

// What init writes from a detection is a config that loads with no error or warning, holding
// exactly the detected gates, folders and network setting.
TEST(DetectToConfig, RendersAValidConfig) {
  ConfigScaffold scaffold;
  scaffold.gates.push_back({"install", "npm ci", "", "detected: package-lock.json"});
  scaffold.gates.push_back({"test", "npm test -- --grep \"a: b\" # not a comment", "", ""});
  scaffold.gates.push_back({"review", "", "gpt-4.1", "chosen: a second model"});
  scaffold.protected_paths = {"tests/**", "**/__tests__/**"};
  scaffold.gate_network = true;
  scaffold.network_note = "npm fetches the dependencies";
  const std::string text = RenderDefaultConfig(scaffold);
  auto loaded = ParseProjectConfig(text, "config.yaml");
  ASSERT_TRUE(loaded) << loaded.error().message << "\n" << text;
  EXPECT_TRUE(loaded->warnings.empty()) << text;
  const ProjectConfig& config = loaded->value;
  ASSERT_EQ(config.gates.size(), 3u);
  EXPECT_EQ(config.gates[0].command, "npm ci");
  EXPECT_EQ(config.gates[1].command, "npm test -- --grep \"a: b\" # not a comment");
  EXPECT_EQ(config.gates[2].kind, GateKind::kReview);
  EXPECT_EQ(config.gates[2].model, "gpt-4.1");
  EXPECT_THAT(config.protected_paths, ElementsAre(".factory/**", "tests/**", "**/__tests__/**"));
  EXPECT_TRUE(config.sandbox.network);

  auto empty = ParseProjectConfig(RenderDefaultConfig({}), "config.yaml");
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(empty->value.gates.empty());
  EXPECT_FALSE(empty->value.sandbox.network);
  EXPECT_THAT(empty->value.protected_paths, ElementsAre(".factory/**"));
}

}  // namespace
}  // namespace factory::setup
