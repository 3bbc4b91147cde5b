// `factory doctor [--json]`: whether a run can succeed here, checked piece by piece (git and
// the repository, the factory directory, config and agents, the sandbox, the models, every
// gate on a clean checkout of HEAD, the gateway, disk space), each failure with the fix.
// Exit 0 only when nothing failed; warnings (a run works, less well) do not fail it.

#include <fmt/core.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>

#include "agents/registry.h"
#include "cli/cli.h"
#include "llm/http_client.h"
#include "llm/models_config.h"
#include "llm/models_report.h"
#include "plan/config.h"
#include "runners/runner.h"
#include "setup/agent_choice.h"
#include "verify/checkout.h"
#include "verify/gates.h"
#include "workspace/git.h"
#include "workspace/sandbox.h"

namespace factory::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Below this much free space a run's worktrees, build outputs and database cannot be trusted
// to fit.
constexpr uint64_t kMinFreeBytes = uint64_t{1} << 30;

enum class CheckStatus { kOk, kWarn, kFail, kSkip };

std::string_view StatusName(CheckStatus status) {
  switch (status) {
    case CheckStatus::kOk:
      return "ok";
    case CheckStatus::kWarn:
      return "warn";
    case CheckStatus::kFail:
      return "fail";
    case CheckStatus::kSkip:
      return "skip";
  }
  return "fail";
}

struct CheckResult {
  std::string name;
  CheckStatus status = CheckStatus::kOk;
  std::string detail;
  std::string fix;  // what to do; set for warnings and failures
};

// Collects the checks and prints each as soon as it is known: on stdout as text, or on stderr
// as progress when stdout is kept for the JSON document.
class Report {
 public:
  explicit Report(bool as_json) : as_json_(as_json) {}

  void Add(std::string name, CheckStatus status, std::string detail, std::string fix = "") {
    CheckResult check{std::move(name), status, std::move(detail), std::move(fix)};
    std::ostream& out = as_json_ ? std::cerr : std::cout;
    std::string label(StatusName(status));
    if (status == CheckStatus::kFail) label = "FAIL";
    out << fmt::format("  {:<5} {:<11} {}\n", label, check.name, check.detail);
    if (!check.fix.empty() && status != CheckStatus::kOk) {
      out << "        fix: " << check.fix << "\n";
    }
    out.flush();
    checks_.push_back(std::move(check));
  }

  // A line saying what is being done now (slow checks: gates).
  void Progress(const std::string& line) {
    std::cerr << "  ...   " << line << "\n";
    std::cerr.flush();
  }

  bool failed() const {
    return std::any_of(checks_.begin(), checks_.end(),
                       [](const CheckResult& c) { return c.status == CheckStatus::kFail; });
  }

  json ToJson(const std::string& repo) const {
    json checks = json::array();
    for (const auto& check : checks_) {
      checks.push_back({{"name", check.name},
                        {"status", StatusName(check.status)},
                        {"detail", check.detail},
                        {"fix", check.fix}});
    }
    return {{"ok", !failed()}, {"repository", repo}, {"checks", checks}};
  }

 private:
  bool as_json_;
  std::vector<CheckResult> checks_;
};

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// The last `count` non-empty lines of `text`, joined with " | ".
std::string LastLines(const std::string& text, size_t count) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty()) lines.push_back(line);
    start = end + 1;
  }
  std::string out;
  for (size_t i = lines.size() > count ? lines.size() - count : 0; i < lines.size(); ++i) {
    out += (out.empty() ? "" : " | ") + lines[i];
  }
  return out;
}

// A private directory under $TMPDIR, removed on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string pattern = (base / "factory-doctor-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

SandboxConfig SandboxConfigFor(const ProjectConfig& config) {
  SandboxConfig sandbox;
  sandbox.use_bubblewrap = config.sandbox.enabled;
  sandbox.read_paths = config.sandbox.read_paths;
  sandbox.tmp_mb = config.sandbox.tmp_mb;
  sandbox.disk_mb = config.sandbox.disk_mb;
  sandbox.env = config.sandbox.env;
  return sandbox;
}

struct Project {
  std::optional<fs::path> root;  // the repository's top level
  std::optional<std::string> head;
  ProjectConfig config;
  bool config_ok = false;
  std::unique_ptr<AgentRegistry> agents;
};

void CheckGit(Report& report, Project& project) {
  Git here(".");
  auto version = here.Run({"--version"});
  if (!version) {
    report.Add("git", CheckStatus::kFail, "git cannot run: " + version.error().message,
               "install git (apt-get install git)");
    return;
  }
  report.Add("git", CheckStatus::kOk, FirstLine(*version));
  auto top = here.TopLevel();
  if (!top) {
    report.Add("repository", CheckStatus::kFail, "not inside a git repository",
               "run factory in your project's repository (or `git init` there first)");
    return;
  }
  project.root = fs::path(*top);
  auto head = here.RevParse("HEAD");
  if (!head) {
    report.Add("repository", CheckStatus::kFail, *top + ": HEAD has no commit",
               "commit your files first: git add -A && git commit -m 'initial commit'");
    return;
  }
  project.head = *head;
  auto branch = here.CurrentBranch();
  std::string on = branch && *branch ? "branch " + **branch : "a detached HEAD";
  report.Add("repository", CheckStatus::kOk,
             *top + ", " + on + " at " + head->substr(0, 12) +
                 " (the factory commits under its own identity)");
}

void CheckFactoryDir(Report& report, const CliContext& ctx, Project& project) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) {
    report.Add("factory", CheckStatus::kFail, store.error().message, "factory init");
  } else {
    report.Add("factory", CheckStatus::kOk,
               ctx.DbPath().string() + " (schema version " +
                   std::to_string((*store)->Info().schema_version) + ")");
  }
  const fs::path dir = project.root ? *project.root / ".factory" : ctx.FactoryDir();
  const fs::path config_path = dir / "config.yaml";
  auto config = LoadProjectConfig(config_path);
  if (config) {
    project.config = std::move(config->value);
    project.config_ok = true;
    std::string detail = config_path.string();
    if (!config->warnings.empty()) {
      detail += " (" + std::to_string(config->warnings.size()) +
                " warning(s): " + config->warnings.front().ToString() + ")";
    }
    report.Add("config", config->warnings.empty() ? CheckStatus::kOk : CheckStatus::kWarn, detail,
               "fix the keys it warns about");
  } else if (config.error().code == ErrorCode::kNotFound) {
    project.config_ok = true;  // the defaults: legal, and the gates check says what is missing
    report.Add("config", CheckStatus::kWarn, config_path.string() + " does not exist (defaults)",
               "factory init (writes it with the detected gates)");
  } else {
    report.Add("config", CheckStatus::kFail, config.error().message,
               "edit " + config_path.string());
  }

  const fs::path agents_dir = dir / "agents";
  auto agents = AgentRegistry::LoadDirectory(agents_dir);
  if (!agents && agents.error().code != ErrorCode::kNotFound) {
    report.Add("agents", CheckStatus::kFail, agents.error().message,
               "fix the agent files it names");
    return;
  }
  project.agents = agents ? std::move(agents->value) : std::make_unique<AgentRegistry>();
  if (project.agents->size() == 0) {
    report.Add("agents", CheckStatus::kFail, "no agent in " + agents_dir.string(),
               setup::NoAgentMessage(agents_dir));
    return;
  }
  for (const AgentSpec* agent : project.agents->agents()) {
    const std::string label = agent->name + " (" + std::string(RunnerKindName(agent->runner)) + ")";
    if (agent->runner == RunnerKind::kLlm) {
      report.Add("agent", CheckStatus::kOk, label + ", model " + agent->model + " (see models)");
      continue;
    }
    if (Status available = CheckRunnerAvailable(*agent); !available) {
      report.Add("agent", CheckStatus::kFail, label + ": " + available.error().message,
                 agent->runner == RunnerKind::kCli
                     ? "install `" + agent->preset + "` on PATH, or remove " + agent->source
                     : "fix " + agent->source);
      continue;
    }
    report.Add(
        "agent", CheckStatus::kOk,
        label + (agent->runner == RunnerKind::kCli ? ": `" + agent->preset + "` is on PATH" : ""));
  }
}

void CheckSandbox(Report& report, const Project& project, Sandbox& sandbox) {
  if (!project.config.sandbox.enabled) {
    report.Add("sandbox", CheckStatus::kWarn,
               "sandbox.enabled is false: agents and gates run without isolation",
               "set sandbox.enabled: true in .factory/config.yaml");
  } else if (sandbox.name() != "bubblewrap") {
    report.Add("bubblewrap", CheckStatus::kWarn,
               BubblewrapAvailable() ? "bubblewrap is not used"
                                     : "bwrap is missing or cannot create namespaces here: "
                                       "commands run without filesystem or network isolation",
               "apt-get install bubblewrap (and allow unprivileged user namespaces)");
  } else {
    report.Add("bubblewrap", CheckStatus::kOk, "bwrap creates its namespaces here");
  }
  ScratchDir scratch;
  if (scratch.path().empty()) {
    report.Add("sandbox", CheckStatus::kFail, "cannot create a scratch directory in $TMPDIR",
               "make $TMPDIR (or /tmp) writable");
    return;
  }
  SandboxedCommand command;
  command.shell = "echo sandbox-ok > probe.txt && cat probe.txt";
  command.worktree = scratch.path().string();
  command.timeout_ms = 30'000;
  auto ran = sandbox.Run(command);
  if (!ran) {
    report.Add("sandbox", CheckStatus::kFail,
               "a command could not start in the " + std::string(sandbox.name()) +
                   " sandbox: " + ran.error().message,
               "apt-get install bubblewrap, or set sandbox.enabled: false in config.yaml");
    return;
  }
  const bool ok = ran->exit_code == 0 && ran->stdout_tail.find("sandbox-ok") != std::string::npos;
  if (!ok) {
    report.Add("sandbox", CheckStatus::kFail,
               "a command in the " + std::string(sandbox.name()) + " sandbox failed (exit " +
                   std::to_string(ran->exit_code) +
                   "): " + LastLines(ran->stdout_tail + ran->stderr_tail, 3),
               "check that bwrap works for this user (`bwrap --ro-bind / / true`), or set "
               "sandbox.enabled: false in config.yaml");
    return;
  }
  report.Add("sandbox", CheckStatus::kOk,
             "a command ran in the " + std::string(sandbox.name()) + " sandbox");
}

void CheckModels(Report& report, const Project& project, const fs::path& factory_dir) {
  std::vector<const AgentSpec*> llm_agents;
  if (project.agents) {
    for (const AgentSpec* agent : project.agents->agents()) {
      if (agent->runner == RunnerKind::kLlm) llm_agents.push_back(agent);
    }
  }
  const std::vector<GateConfig> reviews = project.config.GatesOfKind(GateKind::kReview);
  const bool needed = !llm_agents.empty() || !reviews.empty();
  const fs::path path = factory_dir / "models.yaml";
  auto models = llm::LoadModelsConfig(path);
  // A feature run plans with a model whatever its agents are: without one only
  // `factory run --backlog` works, which is a warning, not a failure.
  const CheckStatus missing_status = needed ? CheckStatus::kFail : CheckStatus::kWarn;
  if (!models) {
    report.Add("models",
               models.error().code == ErrorCode::kNotFound ? missing_status : CheckStatus::kFail,
               models.error().message,
               models.error().code == ErrorCode::kNotFound ? "factory init (writes the default)"
                                                           : "edit " + path.string());
    return;
  }
  RedactModelKeys(*models);
  const llm::ModelsReport described = llm::DescribeModels(*models, /*check=*/true);
  int available = 0;
  for (const auto& provider : described.providers) {
    if (!provider.available) continue;
    ++available;
    if (provider.reachable) {
      std::string served;
      if (!provider.served_models.empty()) {
        served = ", serves " + std::to_string(provider.served_models.size()) + " model(s)";
      }
      report.Add("provider", CheckStatus::kOk,
                 fmt::format("{} {} reachable ({} ms){}", provider.name, provider.base_url,
                             provider.check_latency_ms, served));
      continue;
    }
    report.Add("provider", CheckStatus::kFail,
               provider.name + " " + provider.base_url + " unreachable: " + provider.check_error,
               provider.kind == "openai" && provider.api_key_env.empty()
                   ? "start the server, or fix its base_url in " + path.string()
                   : "start the server or check " +
                         (provider.api_key_env.empty() ? std::string("its base_url")
                                                       : provider.api_key_env) +
                         " (" + path.string() + ")");
  }
  if (available == 0) {
    report.Add("models", missing_status, "no provider of " + path.string() + " is available",
               "export FACTORY_LLM_BASE_URL=http://127.0.0.1:8080/v1 (a local OpenAI-compatible "
               "server), OPENAI_API_KEY or ANTHROPIC_API_KEY");
    return;
  }
  // A model the server does not list answers 404 at the first call (Ollama, vLLM); llama.cpp
  // serves whatever it loaded under any name, and lists one.
  for (const auto& model : described.models) {
    if (!model.available || model.aliases.empty()) continue;
    for (const auto& provider : described.providers) {
      if (provider.name != model.provider || !provider.reachable ||
          provider.served_models.size() < 2) {
        continue;
      }
      if (std::find(provider.served_models.begin(), provider.served_models.end(), model.model_id) ==
          provider.served_models.end()) {
        report.Add(
            "model", CheckStatus::kWarn,
            model.name + ": " + provider.name + " does not list model id '" + model.model_id + "'",
            "set the model id in " + path.string() + " (FACTORY_LLM_MODEL for `local`)");
      }
    }
  }
  for (const AgentSpec* agent : llm_agents) {
    if (std::string problem = models->RouteProblem(agent->model); !problem.empty()) {
      report.Add("models", CheckStatus::kFail, "agent " + agent->name + ": " + problem,
                 "give " + agent->source + " a `model` alias whose provider is available");
    } else {
      report.Add("models", CheckStatus::kOk,
                 "agent " + agent->name + ": " + agent->model + " routes to an available provider");
    }
  }
  for (const GateConfig& gate : reviews) {
    if (std::string problem = models->RouteProblem(gate.model); !problem.empty()) {
      report.Add("models", CheckStatus::kFail, "review gate '" + gate.name + "': " + problem,
                 "set its model in .factory/config.yaml to one that is available, or remove it");
    } else {
      report.Add("models", CheckStatus::kOk,
                 "review gate '" + gate.name + "': " + gate.model + " is available");
    }
  }
}

void CheckGates(Report& report, const Project& project, Sandbox& sandbox) {
  if (!project.config_ok) return;
  std::vector<GateConfig> gates;
  for (const GateConfig& gate : project.config.gates) {
    if (gate.kind == GateKind::kCommand && !gate.command.empty()) gates.push_back(gate);
  }
  if (gates.empty()) {
    report.Add("gates", CheckStatus::kWarn, "no command gate: tasks merge without any check",
               "add the project's build and test commands to `gates:` in .factory/config.yaml");
    return;
  }
  if (!project.root || !project.head) {
    report.Add("gates", CheckStatus::kSkip, "no commit to check them on");
    return;
  }
  ScratchDir scratch;
  if (scratch.path().empty()) {
    report.Add("gates", CheckStatus::kFail, "cannot create a scratch directory in $TMPDIR",
               "make $TMPDIR (or /tmp) writable");
    return;
  }
  Git repo(project.root->string());
  const std::string dir = (scratch.path() / "checkout").string();
  auto checkout = MakeCleanCheckout(repo, *project.head, dir);
  if (!checkout) {
    report.Add("gates", CheckStatus::kFail,
               "cannot check out HEAD at " + dir + ": " + checkout.error().message,
               "check the repository with `git worktree prune` and `git fsck`");
    return;
  }
  GateRunOptions options = GateOptionsFromPolicy(project.config.sandbox, &sandbox);
  for (const GateConfig& gate : gates) {
    report.Progress("gate " + gate.name + ": " + gate.command + " (clean checkout of HEAD " +
                    project.head->substr(0, 12) + ")");
    auto results = RunGates({gate}, checkout->path(), options);
    if (!results || results->empty()) {
      report.Add("gate", CheckStatus::kFail,
                 gate.name + ": could not run: " +
                     (results ? std::string("no result") : results.error().message),
                 "fix the gate's command in .factory/config.yaml");
      break;
    }
    const GateResult& result = results->front();
    if (result.passed) {
      report.Add("gate", CheckStatus::kOk,
                 fmt::format("{}: `{}` passed on HEAD ({:.1f} s)", gate.name, gate.command,
                             static_cast<double>(result.duration_ms) / 1000.0));
      continue;
    }
    std::string why = result.timed_out        ? "timed out"
                      : result.quota_exceeded ? result.quota_message
                                              : "exit " + std::to_string(result.exit_code);
    report.Add("gate", CheckStatus::kFail,
               gate.name + ": `" + gate.command + "` fails on a clean checkout of HEAD (" + why +
                   "): " + LastLines(result.output_tail, 3),
               "make it pass on HEAD (commit what it needs; the sandbox has no network unless "
               "sandbox.network: true), or change the gate in .factory/config.yaml");
    break;  // later gates run after this one in a run: they would not be reached
  }
  if (Status removed = checkout->Remove(); !removed) {
    report.Add("gates", CheckStatus::kWarn,
               "the temporary checkout was not removed: " + removed.error().message,
               "git worktree prune");
  }
}

void CheckGateway(Report& report, const Project& project) {
  const std::string& url = project.config.gateway.url;
  if (url.empty()) return;
  llm::HttpRequest request;
  request.method = "GET";
  request.url = url + "/v1/models";
  request.connect_timeout_ms = 3'000;
  request.total_timeout_ms = 5'000;
  auto response = llm::HttpClient::Shared().Send(request);
  if (!response) {
    report.Add("gateway", CheckStatus::kFail, url + " unreachable: " + response.error().message,
               "start it (`factory gateway`) or fix gateway.url in .factory/config.yaml");
    return;
  }
  // Any HTTP answer (401 without a key) means it listens.
  report.Add("gateway", CheckStatus::kOk,
             url + " answers (HTTP " + std::to_string(response->status) + ")");
}

void CheckDisk(Report& report, const fs::path& where) {
  struct statvfs info {};
  if (statvfs(where.c_str(), &info) != 0) {
    report.Add("disk", CheckStatus::kWarn, "cannot read the free space of " + where.string(),
               "check the file system");
    return;
  }
  const uint64_t free_bytes = static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
  const std::string detail = fmt::format(
      "{:.1f} GiB free at {}", static_cast<double>(free_bytes) / (1 << 30), where.string());
  if (free_bytes < kMinFreeBytes) {
    report.Add("disk", CheckStatus::kFail, detail + " (a run needs at least 1 GiB)",
               "free some space on that file system");
  } else {
    report.Add("disk", CheckStatus::kOk, detail);
  }
}

int RunDoctor(const CliContext& ctx, bool as_json) {
  Report report(as_json);
  Project project;
  (as_json ? std::cerr : std::cout) << "factory doctor: can a run succeed here?\n";
  CheckGit(report, project);
  CheckFactoryDir(report, ctx, project);
  const fs::path factory_dir = project.root ? *project.root / ".factory" : ctx.FactoryDir();
  auto sandbox = MakeSandbox(SandboxConfigFor(project.config));
  CheckSandbox(report, project, *sandbox);
  CheckModels(report, project, factory_dir);
  CheckGates(report, project, *sandbox);
  CheckGateway(report, project);
  CheckDisk(report, project.root ? *project.root : fs::current_path());
  const bool ok = !report.failed();
  if (as_json) {
    std::cout << report.ToJson(project.root ? project.root->string() : "").dump(2) << "\n";
  } else {
    std::cout << (ok ? "factory doctor: a run can start here\n"
                     : "factory doctor: fix the failures above before `factory run`\n");
  }
  return ok ? kExitOk : kExitFailed;
}

}  // namespace

void AddDoctorCommand(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand(
      "doctor",
      "Check that a run can succeed here: git and the repository, the sandbox, models, agents, "
      "every gate on a clean checkout of HEAD, the gateway, disk space (exit 0 only if so)");
  static bool as_json = false;
  cmd->add_flag("--json", as_json, "Print the checks as JSON (progress on stderr)");
  cmd->callback([&ctx] { ctx.action = [&ctx] { return RunDoctor(ctx, as_json); }; });
}

}  // namespace factory::cli
