#pragma once
// The inputs libFuzzer found crashing a parser, kept in fuzz/regressions/<target>/, for the unit
// tests that replay them through the product's entry point in the normal (GCC) build. Each file
// is the fuzz target's whole input: where the target takes its first byte as a choice (a
// format, a chunk size), the test decodes it the same way (fuzz/<target>.cc says how).
// REQUIRES: FACTORY_SOURCE_DIR defined (factory_test does it).

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace factory::testing {

inline std::filesystem::path FuzzRegressionDir(const std::string& target) {
  return std::filesystem::path(FACTORY_SOURCE_DIR) / "fuzz" / "regressions" / target;
}

// One input by file name; throws when it is missing, so a renamed file fails its test loudly.
inline std::string FuzzRegression(const std::string& target, const std::string& name) {
  const std::filesystem::path path = FuzzRegressionDir(target) / name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing fuzz regression input " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Every input of `target`, as (file name, bytes), sorted by name.
inline std::vector<std::pair<std::string, std::string>> FuzzRegressions(const std::string& target) {
  std::vector<std::pair<std::string, std::string>> inputs;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(FuzzRegressionDir(target), error)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    inputs.emplace_back(name, FuzzRegression(target, name));
  }
  std::sort(inputs.begin(), inputs.end());
  return inputs;
}

}  // namespace factory::testing
