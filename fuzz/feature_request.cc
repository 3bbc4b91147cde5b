// Feature requests (`factory run FEATURE.md`): LoadFeatureRequest reads the file the user
// passed, so the target writes the input to a file first; the first line names the file (its
// id comes from the name).

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "feature/feature_run.h"
#include "fuzz_util.h"
#include "toolloop/workspace_fs.h"

namespace fs = std::filesystem;

namespace {

const fs::path& WorkDir() {
  static const fs::path dir = [] {
    std::string pattern = (fs::temp_directory_path() / "factory-fuzz-feature-XXXXXX").string();
    factory::fuzz::Require(mkdtemp(pattern.data()) != nullptr, "mkdtemp");
    return fs::path(pattern);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  std::string_view input = factory::fuzz::AsText(data, size);
  const size_t newline = input.find('\n');
  const std::string_view name = input.substr(0, std::min(newline, input.size()));
  const std::string_view text = newline == std::string_view::npos ? "" : input.substr(newline + 1);

  const std::string id = factory::feature::FeatureIdFor(fs::path(std::string(name) + ".md"));
  Require(!id.empty() && id.size() <= 64, "a feature id has 1 to 64 characters");
  for (char c : id) {
    Require((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-',
            "a feature id is [a-z0-9-]");
  }

  const fs::path file = WorkDir() / "request.md";
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  auto request = factory::feature::LoadFeatureRequest(file);
  if (request) {
    Require(request->text == text, "the request is the file's text");
    Require(factory::toolloop::IsValidUtf8(request->text), "an accepted request is UTF-8");
  }
  return 0;
}
