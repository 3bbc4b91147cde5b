#include "plan/config.h"

#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "agents/registry.h"
#include "agents/yaml_fields.h"
#include "core/text_file.h"
#include "plan/glob.h"

namespace factory {
namespace {

const std::set<std::string, std::less<>> kTopLevelKeys = {
    "base_branch",    "concurrency", "max_attempts", "gates",  "protected", "sandbox",
    "default_agents", "budget",      "gateway",      "rebase", "commit"};
const std::set<std::string, std::less<>> kGateKeys = {"name", "kind", "command", "model",
                                                      "timeout"};
const std::set<std::string, std::less<>> kRebaseKeys = {"after_failures", "max_per_task", "model"};
const std::set<std::string, std::less<>> kCommitKeys = {"max_file_mb", "exclude",
                                                        "default_exclude"};
const std::set<std::string, std::less<>> kSandboxKeys = {
    "enabled",         "network", "cpu_seconds", "memory_mb",  "file_size_mb", "max_processes",
    "output_limit_kb", "tmp_mb",  "disk_mb",     "read_paths", "env"};

const std::set<std::string, std::less<>> kBudgetKeys = {
    "usd_per_call",          "usd_per_task",       "tokens_per_task", "usd_per_run",
    "usd_per_agent_per_day", "global_usd_per_day", "velocity"};
const std::set<std::string, std::less<>> kGatewayKeys = {"url"};
const std::set<std::string, std::less<>> kVelocityKeys = {"enabled", "factor", "window", "baseline",
                                                          "min_baseline_usd"};

constexpr int64_t kMaxTimeoutSeconds = 7 * 24 * 3600;
constexpr double kMaxUsd = 1e9;

void ParseGates(const YAML::Node& node, YamlFields& fields, ProjectConfig& config) {
  if (!node.IsSequence()) {
    fields.AddError(node, "gates", "must be a list of {name, command, timeout}");
    return;
  }
  std::map<std::string, int> seen;  // gate name -> line
  for (size_t index = 0; index < node.size(); ++index) {
    const YAML::Node gate_node = node[index];
    const std::string prefix = IndexField("gates", index);
    if (!gate_node.IsMap()) {
      fields.AddError(gate_node, prefix, "must be a mapping with name, command and timeout");
      continue;
    }
    fields.WarnUnknownKeys(gate_node, prefix, kGateKeys);
    GateConfig gate;
    gate.line = fields.Line(gate_node);
    const YAML::Node kind = gate_node["kind"];
    bool kind_ok = true;
    if (kind.IsDefined() && !kind.IsNull()) {
      if (auto text = fields.String(kind, JoinField(prefix, "kind"))) {
        if (*text == "review") {
          gate.kind = GateKind::kReview;
        } else if (*text != "command") {
          fields.AddError(kind, JoinField(prefix, "kind"),
                          "must be command or review, not '" + *text + "'");
          kind_ok = false;
        }
      } else {
        kind_ok = false;
      }
    }
    // The field a gate of this kind needs, and the one it must not have.
    const bool review = gate.kind == GateKind::kReview;
    const char* needed = review ? "model" : "command";
    const char* foreign = review ? "command" : "model";
    for (const char* key : {"name", needed}) {
      const YAML::Node value = gate_node[key];
      const std::string field = JoinField(prefix, key);
      if (!value.IsDefined() || value.IsNull()) {
        if (std::string_view(key) == "name" || kind_ok) {
          fields.AddError(gate_node, field,
                          std::string_view(key) == "model"
                              ? "missing required field (a review gate names its reviewer's "
                                "model: an alias or a model of models.yaml)"
                              : "missing required field");
        }
        continue;
      }
      auto text = fields.String(value, field);
      if (!text) continue;
      if (text->empty()) {
        fields.AddError(value, field, "must not be empty");
        continue;
      }
      if (std::string_view(key) == "name") {
        gate.name = *text;
      } else if (review) {
        gate.model = *text;
        gate.model_line = fields.Line(value);
      } else {
        gate.command = *text;
      }
    }
    if (const YAML::Node value = gate_node[foreign]; value.IsDefined() && !value.IsNull()) {
      fields.AddError(value, JoinField(prefix, foreign),
                      review ? "a review gate has no command (its reviewer is `model`)"
                             : "only a review gate (kind: review) has a model");
    }
    if (!gate.name.empty()) {
      if (auto [it, inserted] = seen.emplace(gate.name, gate.line); !inserted) {
        fields.AddError(gate_node["name"], JoinField(prefix, "name"),
                        "duplicate gate name '" + gate.name + "' (also at line " +
                            std::to_string(it->second) + ")");
      }
    }
    const YAML::Node timeout = gate_node["timeout"];
    if (timeout.IsDefined() && !timeout.IsNull()) {
      std::optional<std::chrono::seconds> seconds;
      if (timeout.IsScalar()) seconds = ParseDuration(timeout.Scalar());
      if (!seconds || seconds->count() > kMaxTimeoutSeconds) {
        fields.AddError(timeout, JoinField(prefix, "timeout"),
                        "must be a positive number of seconds or a duration like 90s, 5m, 1h "
                        "(at most 7 days)");
      } else {
        gate.timeout = *seconds;
      }
    }
    config.gates.push_back(std::move(gate));
  }
}

void ParseSandbox(const YAML::Node& node, YamlFields& fields, SandboxPolicy& sandbox) {
  if (!node.IsMap()) {
    fields.AddError(node, "sandbox", "must be a mapping");
    return;
  }
  fields.WarnUnknownKeys(node, "sandbox", kSandboxKeys);
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const std::string field = JoinField("sandbox", key);
    const YAML::Node value = entry.second;
    if (key == "enabled" || key == "network") {
      if (auto flag = fields.Bool(value, field)) {
        (key == "enabled" ? sandbox.enabled : sandbox.network) = *flag;
      }
      continue;
    }
    if (key == "read_paths") {
      if (auto paths = fields.AbsolutePathList(value, field)) sandbox.read_paths = *paths;
      continue;
    }
    if (key == "env") {
      if (auto names = fields.EnvNameList(value, field)) sandbox.env = *names;
      continue;
    }
    int64_t* target = nullptr;
    if (key == "cpu_seconds") target = &sandbox.cpu_seconds;
    if (key == "tmp_mb") target = &sandbox.tmp_mb;
    if (key == "disk_mb") target = &sandbox.disk_mb;
    if (key == "memory_mb") target = &sandbox.memory_mb;
    if (key == "file_size_mb") target = &sandbox.file_size_mb;
    if (key == "max_processes") target = &sandbox.max_processes;
    if (key == "output_limit_kb") target = &sandbox.output_limit_kb;
    if (target == nullptr) continue;  // unknown: already warned
    // 0 would mean "unlimited" to setrlimit-style code; a limit must be a real limit.
    if (auto number = fields.Int(value, field, 1, INT32_MAX)) *target = *number;
  }
}

// A span such as "10m" (ParseDuration), between 1 s and 7 days.
std::optional<std::chrono::seconds> Span(const YAML::Node& node, YamlFields& fields,
                                         const std::string& field) {
  std::optional<std::chrono::seconds> seconds;
  if (node.IsScalar()) seconds = ParseDuration(node.Scalar());
  if (!seconds || seconds->count() > kMaxTimeoutSeconds) {
    fields.AddError(node, field,
                    "must be a positive number of seconds or a duration like 90s, 10m, 1h "
                    "(at most 7 days)");
    return std::nullopt;
  }
  return seconds;
}

void ParseVelocity(const YAML::Node& node, YamlFields& fields, BudgetConfig::Velocity& velocity) {
  const std::string prefix = "budget.velocity";
  if (!node.IsMap()) {
    fields.AddError(node, prefix,
                    "must be a mapping of enabled, factor, window, baseline, min_baseline_usd");
    return;
  }
  fields.WarnUnknownKeys(node, prefix, kVelocityKeys);
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const std::string field = JoinField(prefix, key);
    const YAML::Node value = entry.second;
    if (key == "enabled") {
      if (auto flag = fields.Bool(value, field)) velocity.enabled = *flag;
    } else if (key == "factor") {
      // At most 1 would pause an agent for spending at its usual rate.
      if (auto number = fields.Number(value, field, 1.01, 1e6)) velocity.factor = *number;
    } else if (key == "window" || key == "baseline") {
      if (auto span = Span(value, fields, field)) {
        (key == "window" ? velocity.window : velocity.baseline) = *span;
      }
    } else if (key == "min_baseline_usd") {
      if (auto number = fields.Number(value, field, 0.0, kMaxUsd)) {
        velocity.min_baseline_usd = *number;
      }
    }
  }
}

void ParseBudget(const YAML::Node& node, YamlFields& fields, BudgetConfig& budget) {
  if (!node.IsMap()) {
    fields.AddError(node, "budget",
                    "must be a mapping of usd_per_call, usd_per_task, tokens_per_task, "
                    "usd_per_run, usd_per_agent_per_day, global_usd_per_day, velocity");
    return;
  }
  fields.WarnUnknownKeys(node, "budget", kBudgetKeys);
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const std::string field = JoinField("budget", key);
    const YAML::Node value = entry.second;
    if (value.IsNull()) continue;  // `key:` with nothing: no limit
    if (key == "velocity") {
      ParseVelocity(value, fields, budget.velocity);
      continue;
    }
    if (key == "tokens_per_task") {
      if (auto number = fields.Int(value, field, 1, INT64_MAX)) budget.tokens_per_task = *number;
      continue;
    }
    std::optional<double>* target = nullptr;
    if (key == "usd_per_call") target = &budget.usd_per_call;
    if (key == "usd_per_task") target = &budget.usd_per_task;
    if (key == "usd_per_run") target = &budget.usd_per_run;
    if (key == "usd_per_agent_per_day") target = &budget.usd_per_agent_per_day;
    if (key == "global_usd_per_day") target = &budget.global_usd_per_day;
    if (target == nullptr) continue;  // unknown: already warned
    if (auto number = fields.Number(value, field, 0.0, kMaxUsd)) *target = *number;
  }
}

// Why `url` is not "http://HOST:PORT" (a trailing '/' allowed); "" when it is.
std::string GatewayUrlProblem(std::string_view url) {
  static constexpr std::string_view kScheme = "http://";
  const std::string expected = "must be http://HOST:PORT (e.g. http://127.0.0.1:8788)";
  if (!url.starts_with(kScheme)) {
    return expected + (url.starts_with("https://")
                           ? "; `factory gateway` serves plain HTTP on the host's loopback"
                           : "");
  }
  std::string_view authority = url.substr(kScheme.size());
  while (authority.ends_with('/')) authority.remove_suffix(1);
  if (authority.find_first_of("/?#@ ") != std::string_view::npos) {
    return expected + ", without a path, query or user";
  }
  size_t colon = std::string_view::npos;
  if (authority.starts_with('[')) {  // [IPv6]:PORT
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return expected;
    if (close + 1 < authority.size() && authority[close + 1] == ':') colon = close + 1;
  } else {
    colon = authority.find(':');
    if (colon != std::string_view::npos &&
        authority.find(':', colon + 1) != std::string_view::npos) {
      return expected + " (an IPv6 address goes in brackets: http://[::1]:8788)";
    }
  }
  if (colon == std::string_view::npos) return expected + ": the port is missing";
  if (colon == 0) return expected + ": the host is missing";
  const std::optional<int64_t> port = ParseInt64(authority.substr(colon + 1));
  if (!port || *port < 1 || *port > 65535) return expected + ": the port must be 1..65535";
  return "";
}

void ParseCommit(const YAML::Node& node, YamlFields& fields, CommitConfig& commit) {
  if (!node.IsMap()) {
    fields.AddError(node, "commit",
                    "must be a mapping of max_file_mb, exclude, default_exclude (e.g. "
                    "{max_file_mb: 5, exclude: [\"*.log\"]})");
    return;
  }
  fields.WarnUnknownKeys(node, "commit", kCommitKeys);
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const std::string field = JoinField("commit", key);
    const YAML::Node value = entry.second;
    if (value.IsNull()) continue;  // `key:` with nothing: the default
    if (key == "max_file_mb") {
      if (auto number = fields.Int(value, field, 0, 1'000'000)) commit.max_file_mb = *number;
    } else if (key == "exclude") {
      if (auto patterns = fields.StringList(value, field)) {
        for (size_t index = 0; index < patterns->size(); ++index) {
          if ((*patterns)[index].find_first_of("\n\r") != std::string::npos) {
            fields.AddError(value[index], IndexField(field, index), "a pattern must be one line");
          }
        }
        commit.exclude = *patterns;
      }
    } else if (key == "default_exclude") {
      if (auto flag = fields.Bool(value, field)) commit.default_exclude = *flag;
    }
  }
}

void ParseRebase(const YAML::Node& node, YamlFields& fields, RebaseConfig& rebase) {
  if (!node.IsMap()) {
    fields.AddError(node, "rebase",
                    "must be a mapping of after_failures, max_per_task, model (e.g. "
                    "{after_failures: 2, max_per_task: 1})");
    return;
  }
  rebase.line = fields.Line(node);
  fields.WarnUnknownKeys(node, "rebase", kRebaseKeys);
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const std::string field = JoinField("rebase", key);
    const YAML::Node value = entry.second;
    if (value.IsNull()) continue;  // `key:` with nothing: the default
    if (key == "after_failures") {
      if (auto number = fields.Int(value, field, 1, 100)) {
        rebase.after_failures = static_cast<int>(*number);
      }
    } else if (key == "max_per_task") {
      if (auto number = fields.Int(value, field, 0, 100)) {
        rebase.max_per_task = static_cast<int>(*number);
      }
    } else if (key == "model") {
      auto text = fields.String(value, field);
      if (!text) continue;
      if (text->empty()) {
        fields.AddError(value, field, "must not be empty (leave it out for models.yaml's chain)");
        continue;
      }
      rebase.model = *text;
      rebase.model_line = fields.Line(value);
    }
  }
}

void ParseGateway(const YAML::Node& node, YamlFields& fields, GatewayConfig& gateway) {
  if (!node.IsMap()) {
    fields.AddError(node, "gateway",
                    "must be a mapping with url (e.g. {url: \"http://127.0.0.1:8788\"})");
    return;
  }
  fields.WarnUnknownKeys(node, "gateway", kGatewayKeys);
  const YAML::Node url = node["url"];
  if (!url || url.IsNull()) return;  // no gateway
  auto text = fields.String(url, "gateway.url");
  if (!text) return;
  if (std::string problem = GatewayUrlProblem(*text); !problem.empty()) {
    fields.AddError(url, "gateway.url", problem + ", not '" + *text + "'");
    return;
  }
  std::string trimmed = *text;
  while (trimmed.ends_with('/')) trimmed.pop_back();
  gateway.url = std::move(trimmed);
  gateway.line = fields.Line(url);
}

}  // namespace

std::optional<std::chrono::seconds> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (auto plain = ParseInt64(text)) {
    if (*plain <= 0) return std::nullopt;
    return std::chrono::seconds(*plain);
  }
  int64_t total = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t digits_end = pos;
    while (digits_end < text.size() && text[digits_end] >= '0' && text[digits_end] <= '9') {
      ++digits_end;
    }
    if (digits_end == pos || digits_end == text.size() || digits_end - pos > 9) {
      return std::nullopt;
    }
    int64_t amount = *ParseInt64(text.substr(pos, digits_end - pos));
    switch (text[digits_end]) {
      case 's':
        total += amount;
        break;
      case 'm':
        total += amount * 60;
        break;
      case 'h':
        total += amount * 3600;
        break;
      default:
        return std::nullopt;
    }
    pos = digits_end + 1;
  }
  if (total <= 0) return std::nullopt;
  return std::chrono::seconds(total);
}

std::optional<std::string> ProjectConfig::ProtectedMatch(
    std::string_view path, const std::vector<std::string>& allow) const {
  for (const auto& allowed : allow) {
    if (MatchesGlob(allowed, path)) return std::nullopt;
  }
  for (const auto& pattern : protected_paths) {
    if (MatchesGlob(pattern, path)) return pattern;
  }
  return std::nullopt;
}

std::vector<GateConfig> ProjectConfig::GatesOfKind(GateKind kind) const {
  std::vector<GateConfig> selected;
  for (const auto& gate : gates) {
    if (gate.kind == kind) selected.push_back(gate);
  }
  return selected;
}

bool ProjectConfig::HasReviewGate() const {
  for (const auto& gate : gates) {
    if (gate.kind == GateKind::kReview) return true;
  }
  return false;
}

std::string_view GateKindName(GateKind kind) {
  return kind == GateKind::kReview ? "review" : "command";
}

namespace {

Result<Loaded<ProjectConfig>> ParseProjectConfigImpl(std::string_view text,
                                                     const std::string& file) {
  Diagnostics diagnostics(file);
  YamlFields fields(diagnostics);
  ProjectConfig config;
  config.source = file;
  std::optional<YAML::Node> root = fields.Parse(text);
  if (!root) return std::unexpected(diagnostics.ToError());
  if (root->IsNull()) return Loaded<ProjectConfig>{std::move(config), {}};
  if (!root->IsMap()) {
    fields.AddError(*root, "", "the config must be a YAML mapping of keys");
    return std::unexpected(diagnostics.ToError());
  }
  fields.WarnUnknownKeys(*root, "", kTopLevelKeys);

  for (const auto& entry : *root) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const YAML::Node value = entry.second;
    if (value.IsNull()) continue;  // `key:` with nothing: keep the default
    if (key == "base_branch") {
      if (auto branch = fields.String(value, key)) {
        if (branch->empty()) {
          fields.AddError(value, key, "must not be empty");
        } else {
          config.base_branch = *branch;
        }
      }
    } else if (key == "concurrency") {
      if (auto number = fields.Int(value, key, 1, 10000))
        config.concurrency = static_cast<int>(*number);
    } else if (key == "max_attempts") {
      if (auto number = fields.Int(value, key, 1, 100))
        config.max_attempts = static_cast<int>(*number);
    } else if (key == "gates") {
      ParseGates(value, fields, config);
    } else if (key == "protected") {
      if (auto globs = fields.StringList(value, key)) {
        for (size_t index = 0; index < globs->size(); ++index) {
          if (std::string why = CheckGlob((*globs)[index]); !why.empty()) {
            fields.AddError(value[index], IndexField(key, index), why);
          }
        }
        config.protected_paths = *globs;
      }
    } else if (key == "sandbox") {
      ParseSandbox(value, fields, config.sandbox);
    } else if (key == "budget") {
      ParseBudget(value, fields, config.budget);
    } else if (key == "gateway") {
      ParseGateway(value, fields, config.gateway);
    } else if (key == "rebase") {
      ParseRebase(value, fields, config.rebase);
    } else if (key == "commit") {
      ParseCommit(value, fields, config.commit);
    } else if (key == "default_agents") {
      if (!value.IsMap()) {
        fields.AddError(value, key, "must be a mapping of task type to agent name");
        continue;
      }
      for (const auto& pair : value) {
        const std::string type = pair.first.IsScalar() ? pair.first.Scalar() : "";
        const std::string field = JoinField(key, type);
        if (type.empty()) {
          fields.AddError(pair.first, key, "task types must be non-empty names");
          continue;
        }
        if (config.default_agents.contains(type)) {
          fields.AddError(pair.first, field, "task type given twice");
          continue;
        }
        auto agent = fields.String(pair.second, field);
        if (!agent) continue;
        if (agent->empty()) {
          fields.AddError(pair.second, field, "must name an agent");
          continue;
        }
        config.default_agents[type] = *agent;
        config.default_agents_lines[type] = fields.Line(pair.second);
      }
    }
  }
  if (diagnostics.has_errors()) return std::unexpected(diagnostics.ToError());
  return Loaded<ProjectConfig>{std::move(config), diagnostics.warnings()};
}

}  // namespace

Result<Loaded<ProjectConfig>> ParseProjectConfig(std::string_view text, const std::string& file) {
  try {
    return ParseProjectConfigImpl(text, file);
  } catch (const YAML::Exception& e) {
    // Every access is checked first; this is the last line of defence, not a control path.
    return InvalidArgument(file + ": cannot read config: " + e.what());
  }
}

Result<Loaded<ProjectConfig>> LoadProjectConfig(const std::filesystem::path& path) {
  auto text = ReadTextFile(path);
  if (!text && text.error().code == ErrorCode::kNotFound) {
    return NotFound("cannot read config " + path.string());
  }
  if (!text) return std::unexpected(text.error());
  return ParseProjectConfig(*text, path.string());
}

Status ValidateDefaultAgents(const ProjectConfig& config, const AgentRegistry& agents) {
  Diagnostics diagnostics(config.source.empty() ? "config" : config.source);
  for (const auto& [type, agent] : config.default_agents) {
    if (agents.Find(agent) != nullptr) continue;
    auto line = config.default_agents_lines.find(type);
    diagnostics.AddError(line == config.default_agents_lines.end() ? 0 : line->second,
                         "default_agents." + type, "unknown agent '" + agent + "'");
  }
  if (diagnostics.has_errors()) return std::unexpected(diagnostics.ToError());
  return Ok();
}

namespace {

constexpr std::string_view kConfigHead =
    R"yaml(# Agent Factory project configuration (.factory/config.yaml).
# Every key is optional. Unknown keys are reported as warnings.

# The branch each run's integration branch (factory/<run>) starts from; `factory run merge RUN`
# merges into it. `factory run` itself never touches it.
# Default: the branch checked out when the run starts.
# base_branch: main

# Tasks executed at the same time, each in its own git worktree and sandbox.
concurrency: 4

# Attempts per task before it fails finally (and its dependents are blocked). Each retry gets
# the previous attempt's failure as feedback.
max_attempts: 3

)yaml";

constexpr std::string_view kGatesIntro =
    R"yaml(# Checks run in order on a clean checkout of every attempt's commit; all must exit 0.
# timeout: seconds (90) or a duration (90s, 5m, 1h30m); default 10m.
)yaml";

constexpr std::string_view kGatesExample = R"yaml(#  - name: build
#    command: make
#    timeout: 10m
#  - name: test
#    command: make test
#    timeout: 10m
)yaml";

constexpr std::string_view kReviewComment =
    R"yaml(# A reviewer agent on a different model from the builders (kind: review) runs after every
# command gate passed: it reads the diff against the acceptance criteria and answers pass or
# fail with reasons (the next attempt's feedback). `model`: an alias or model of models.yaml
# that no builder agent can use. timeout: the reviewer call's deadline.
)yaml";

constexpr std::string_view kReviewExample = R"yaml(#  - name: review
#    kind: review
#    model: cloud/frontier
#    timeout: 5m
)yaml";

constexpr std::string_view kProtectedIntro =
    R"yaml(# Path globs an attempt may not change (agents must not edit the tests that judge them):
# `*` within one path segment, `**` across segments, `?` one character; anchored at the
# repository root. A backlog task may exempt paths with `allow_protected: [globs]`.
protected:
  - ".factory/**"
)yaml";

constexpr std::string_view kBeforeSandbox =
    R"yaml(# Limits for runner and gate commands. With bubblewrap installed a command sees its worktree
# read-write, the system directories (/usr, /etc without its secrets...) read-only, a private
# /tmp and HOME, and nothing else of the host; without it only the clean environment, the
# quotas, the limits and the timeouts apply.
)yaml";

constexpr std::string_view kSandboxHead = R"yaml(sandbox:
  enabled: true
)yaml";

constexpr std::string_view kAfterNetwork = R"yaml(  cpu_seconds: 600
  memory_mb: 4096
  file_size_mb: 1024
  max_processes: 512
  output_limit_kb: 1024 # per stream; the tail is kept
  tmp_mb: 512           # the private /tmp (HOME is in it); writes past it fail
  disk_mb: 2048         # what one attempt may add to its worktrees and hold in /tmp; past it: failed
  read_paths: []        # host paths readable inside, e.g. [/opt/toolchain, /var/cache/pip]
  env: []               # variables passed through, e.g. [GOPROXY]; provider keys only if named

# Hard limits on model spend, checked before every model call (a call reserves its worst case:
# prompt + max output tokens at the model's prices). Every key is optional: absent = no limit.
# An agent's own `budget:` (usd_per_task, usd_per_day, tokens_per_task) overrides these for it.
# budget:
#   usd_per_call: 0.50
#   usd_per_task: 2.00          # all attempts of a task; reaching it ends it as budget_exceeded
#   tokens_per_task: 2000000
#   usd_per_run: 20
#   usd_per_agent_per_day: 10   # UTC day; reaching it pauses the agent (factory agents resume)
#   global_usd_per_day: 50      # all agents; reaching it pauses every agent
#   velocity: {enabled: true, factor: 3, window: 10m, baseline: 1h, min_baseline_usd: 0.10}

# A running `factory gateway` (issue keys with `factory keys`; it meters and caps model calls).
# When set, each attempt of a `cli` agent (Claude Code, Codex, OpenCode, Aider...) gets a
# virtual key scoped to its run, task and attempt, revoked when the attempt ends, and its
# OPENAI_/ANTHROPIC_ base-URL and key variables point at the gateway instead of the providers.
# The gateway listens on the host's loopback: such an agent needs `network: true`.
# gateway:
#   url: http://127.0.0.1:8788

# A task whose attempts failed a gate (command or review) `after_failures` times gets its spec
# rewritten by a rebase agent from the failure reports, then a fresh attempt with a clean
# context, at most `max_per_task` times (0: never). Attempts still count against max_attempts:
# a rebase helps only when max_attempts >= after_failures + 1. `model`: an alias or model of
# models.yaml; default: the routing chain for task type "rebase". Needs .factory/models.yaml.
rebase:
  after_failures: 2
  max_per_task: 1
#  model: cloud/mid

# What an attempt's commit may hold, checked before it is accepted. A file above max_file_mb
# fails the attempt (0: no limit). New files matching `exclude` (gitignore patterns) or the
# default list of build artefacts (__pycache__/, *.pyc, *.pyo, .pytest_cache/, .mypy_cache/,
# .ruff_cache/, .tox/, .venv/, node_modules/, *.o, *.obj, .DS_Store; `default_exclude: false`
# drops it) are left out, as are files the base branch's .gitignore ignores.
commit:
  max_file_mb: 5
  exclude: []
  default_exclude: true

# Task type -> the agent that takes tasks of that type (when it has the task's capabilities).
# Otherwise the cheapest agent (lowest cost_tier) with the capabilities is chosen.
default_agents: {}
#  code: llm-coder
#  docs: claude-coder
)yaml";

// A YAML double-quoted scalar: commands hold `:`, `#`, quotes and other YAML syntax.
std::string Quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string RenderDefaultConfig(const ConfigScaffold& scaffold) {
  std::string text(kConfigHead);
  text += kGatesIntro;
  bool any_review = false;
  if (scaffold.gates.empty()) {
    text += "gates: []\n";
    text += kGatesExample;
  } else {
    text += "gates:\n";
    for (const ConfigScaffold::Gate& gate : scaffold.gates) {
      if (!gate.model.empty()) {
        any_review = true;
        text += kReviewComment;
      }
      if (!gate.note.empty()) text += "  # " + gate.note + "\n";
      text += "  - name: " + gate.name + "\n";
      if (gate.model.empty()) {
        text += "    command: " + Quoted(gate.command) + "\n    timeout: 10m\n";
      } else {
        text += "    kind: review\n    model: " + Quoted(gate.model) + "\n    timeout: 5m\n";
      }
    }
  }
  if (!any_review) {
    text += kReviewComment;
    text += kReviewExample;
  }
  text += "\n";
  text += kProtectedIntro;
  for (const std::string& glob : scaffold.protected_paths) text += "  - " + Quoted(glob) + "\n";
  if (scaffold.protected_paths.empty()) text += "#  - \"tests/**\"\n";
  text += "\n";
  text += kBeforeSandbox;
  text += kSandboxHead;
  if (scaffold.gate_network) {
    text += "  network: true         # for gates (" + scaffold.network_note +
            "); agents follow `network:` in their own file\n";
  } else {
    text += "  network: false        # for gates; agents follow `network:` in their own file\n";
  }
  text += kAfterNetwork;
  return text;
}

namespace {
const std::string kDefaultConfigText = RenderDefaultConfig({});
}  // namespace

const std::string_view kDefaultConfigYaml = kDefaultConfigText;

Status WriteDefaultConfig(const std::filesystem::path& path, const ConfigScaffold& scaffold) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return AlreadyExists(path.string() + " already exists; not overwriting it");
  }
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      return Unavailable("cannot create " + path.parent_path().string() + ": " + ec.message());
  }
  const std::string text = RenderDefaultConfig(scaffold);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable("cannot write " + path.string());
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return Unavailable("error writing " + path.string());
  return Ok();
}

}  // namespace factory
