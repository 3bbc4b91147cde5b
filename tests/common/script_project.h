#pragma once
// A `factory init`-ed project whose agents are scripts: what the CLI, security and feature tests
// write after `factory init` in a test repository. The scripts live in .factory/scripts/, which
// is not in the repository (so not in the attempts' worktrees) and which the sandbox hides
// unless the project names it in sandbox.read_paths: WriteConfig always does.
//
//   testing::InitGitRepo(dir, {{"README.md", "hello\n"}});
//   sandbox.Ok({"init"});
//   testing::ScriptProject project(dir);
//   project.RemoveExampleAgents();
//   project.WriteConfig("concurrency: 1\ngates:\n  - {name: check, command: 'true'}\n");
//   project.AddScriptAgent("good", "echo good > good.txt\n");

#include <filesystem>
#include <string>

#include "common/test_util.h"

namespace factory::testing {

class ScriptProject {
 public:
  explicit ScriptProject(std::filesystem::path root) : root_(std::move(root)) {}

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path ScriptsDir() const { return root_ / ".factory" / "scripts"; }

  // Removes the example agents `factory init` writes: none of them can run in a test.
  void RemoveExampleAgents() const {
    for (const char* example : {"builder.md", "claude-coder.md", "llm-coder.md"}) {
      std::filesystem::remove(root_ / ".factory" / "agents" / example);
    }
  }

  // The config line that lets sandboxed agents read their scripts.
  std::string ScriptsReadable() const {
    return "sandbox: {read_paths: [\"" + ScriptsDir().string() + "\"]}\n";
  }

  // .factory/config.yaml: `body` (YAML without a `sandbox` key) and the scripts' read path.
  void WriteConfig(const std::string& body) const {
    WriteFile(root_ / ".factory" / "config.yaml", body + ScriptsReadable());
  }

  // .factory/scripts/<name>.sh holding `script`, and the agent .factory/agents/<name>.md that
  // runs it (`runner: script`, `command: sh <script>`, capabilities [code]) with `front_matter`
  // (more YAML lines) added. Returns the script's path.
  std::filesystem::path AddScriptAgent(const std::string& name, const std::string& script,
                                       const std::string& role = "",
                                       const std::string& front_matter = "") const {
    const std::filesystem::path file = ScriptsDir() / (name + ".sh");
    WriteFile(file, script);
    WriteFile(root_ / ".factory" / "agents" / (name + ".md"),
              "---\nname: " + name + "\nrole: " + (role.empty() ? name : role) +
                  "\nrunner: script\ncapabilities: [code]\ncommand: sh " + file.string() + "\n" +
                  front_matter + "---\n");
    return file;
  }

 private:
  std::filesystem::path root_;
};

}  // namespace factory::testing
