// Tool calls of the built-in tool loop (toolloop/tools.h): ExecuteTool with the model's tool
// name and arguments JSON, on a small real worktree in a temporary folder, with no sandbox (so
// run_command answers that commands are unavailable instead of running them). The input is
// the tool name, a newline, then the arguments. The worktree is put back after every call that
// may have changed it.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_util.h"
#include "toolloop/tools.h"
#include "toolloop/workspace_fs.h"

namespace fs = std::filesystem;

namespace {

const fs::path& Root() {
  static const fs::path root = [] {
    std::string pattern = (fs::temp_directory_path() / "factory-fuzz-tools-XXXXXX").string();
    factory::fuzz::Require(mkdtemp(pattern.data()) != nullptr, "mkdtemp");
    return fs::path(pattern) / "worktree";
  }();
  return root;
}

void Write(const fs::path& path, std::string_view content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

// Empties the worktree (not its root: WorkspaceFs holds a descriptor of it) and fills it again.
void ResetWorktree() {
  std::error_code error;
  fs::create_directories(Root(), error);
  for (const auto& entry : fs::directory_iterator(Root(), error))
    fs::remove_all(entry.path(), error);
  Write(Root() / "README.md", "# demo\nsome text\nmore text\n");
  Write(Root() / "src" / "main.cc", "int main() {\n  return 0;\n}\n");
  Write(Root() / "src" / "util" / "text.h", "#pragma once\n// text helpers\n");
  Write(Root() / ".git" / "HEAD", "ref: refs/heads/main\n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  static const bool initialised = (ResetWorktree(), true);
  (void)initialised;
  static auto fs_result = factory::toolloop::WorkspaceFs::Open(Root().string());
  Require(fs_result.has_value(), "opening the worktree");

  const std::string_view input = factory::fuzz::AsText(data, size);
  const size_t newline = input.find('\n');
  factory::llm::ToolCall call;
  call.id = "call-1";
  call.name = std::string(input.substr(0, std::min(newline, input.size())));
  if (newline != std::string_view::npos)
    call.arguments_json = std::string(input.substr(newline + 1));

  factory::toolloop::ToolEnv env;
  env.fs = &*fs_result;
  env.sandbox = nullptr;
  const factory::toolloop::ToolResult result = factory::toolloop::ExecuteTool(env, call);
  Require(factory::toolloop::IsValidUtf8(result.output), "a tool's answer is valid UTF-8");
  Require(!result.finished || call.name == factory::toolloop::kFinishTool,
          "only finish ends the session");
  if (call.name == "write_file" || call.name == "edit_file") {
    size_t beside_worktree = 0;
    for (const auto& entry : fs::directory_iterator(Root().parent_path())) {
      beside_worktree += entry.path() != Root();
    }
    Require(beside_worktree == 0, "a write stays inside the worktree");
    ResetWorktree();
  }
  return 0;
}
