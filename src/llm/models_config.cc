#include "llm/models_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "core/text_file.h"

namespace factory::llm {
namespace {

// Validation helpers that turn YAML nodes into values with "file:line: field: problem" errors.
class Reader {
 public:
  Reader(std::string_view file, const EnvLookup& env) : file_(file), env_(env) {}

  std::string Where(const YAML::Node& node) const {
    const YAML::Mark mark = node.Mark();
    if (mark.line < 0) return file_;
    return file_ + ":" + std::to_string(mark.line + 1);
  }
  std::unexpected<Error> Fail(const YAML::Node& node, const std::string& message) const {
    return InvalidArgument(Where(node) + ": " + message);
  }

  Status CheckKeys(const YAML::Node& map, const std::set<std::string>& allowed,
                   const std::string& what) const {
    for (const auto& entry : map) {
      const std::string key = entry.first.Scalar();
      if (!allowed.contains(key)) {
        std::string list;
        for (const auto& name : allowed) list += (list.empty() ? "" : ", ") + name;
        return Fail(entry.first,
                    what + ": unknown key '" + key + "' (expected one of: " + list + ")");
      }
    }
    return Ok();
  }

  Result<std::string> String(const YAML::Node& node, const std::string& field) const {
    if (!node.IsScalar()) return Fail(node, field + ": expected a string");
    return ExpandEnv(node.Scalar(), env_);
  }

  // Numbers may come from the environment too ("${CONTEXT:-32768}").
  YAML::Node Expanded(const YAML::Node& node) const {
    if (!node.IsScalar() || node.Scalar().find("${") == std::string::npos) return node;
    return YAML::Node(ExpandEnv(node.Scalar(), env_));
  }

  Result<double> NonNegativeNumber(const YAML::Node& raw, const std::string& field) const {
    const YAML::Node node = Expanded(raw);
    double value = 0;
    if (!node.IsScalar() || !YAML::convert<double>::decode(node, value)) {
      return Fail(raw, field + ": expected a number, got '" + Describe(node) + "'");
    }
    if (!(value >= 0))
      return Fail(raw, field + ": must not be negative (got " + node.Scalar() + ")");
    return value;
  }

  // A duration in seconds as milliseconds. Bounded so the conversion stays defined for any
  // number the file holds (1e300, .inf); no timeout or cooldown is meant to last 30 years.
  Result<int64_t> Milliseconds(const YAML::Node& raw, const std::string& field) const {
    constexpr double kMaxSeconds = 1e9;
    FACTORY_ASSIGN_OR_RETURN(double seconds, NonNegativeNumber(raw, field));
    if (seconds > kMaxSeconds) {
      return Fail(
          raw, field + ": must be at most 1000000000 seconds (got " + Expanded(raw).Scalar() + ")");
    }
    return static_cast<int64_t>(seconds * 1000);
  }

  Result<int64_t> NonNegativeInt(const YAML::Node& raw, const std::string& field) const {
    const YAML::Node node = Expanded(raw);
    int64_t value = 0;
    if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, value)) {
      return Fail(raw, field + ": expected an integer, got '" + Describe(node) + "'");
    }
    if (value < 0) return Fail(raw, field + ": must not be negative (got " + node.Scalar() + ")");
    return value;
  }

  Result<bool> Bool(const YAML::Node& node, const std::string& field) const {
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
      return Fail(node, field + ": expected true or false");
    }
    return value;
  }

  Result<std::vector<std::pair<std::string, YAML::Node>>> StringList(
      const YAML::Node& node, const std::string& field) const {
    std::vector<std::pair<std::string, YAML::Node>> out;
    if (node.IsScalar()) {
      FACTORY_ASSIGN_OR_RETURN(std::string value, String(node, field));
      out.emplace_back(value, node);
      return out;
    }
    if (!node.IsSequence()) return Fail(node, field + ": expected a list of names");
    for (const auto& item : node) {
      FACTORY_ASSIGN_OR_RETURN(std::string value, String(item, field));
      out.emplace_back(value, item);
    }
    return out;
  }

  const std::string& file() const { return file_; }
  const EnvLookup& env() const { return env_; }

 private:
  static std::string Describe(const YAML::Node& node) {
    if (node.IsScalar()) return node.Scalar();
    if (node.IsSequence()) return "a list";
    if (node.IsMap()) return "a map";
    return "nothing";
  }

  std::string file_;
  const EnvLookup& env_;
};

// Forgiving about the /v1 convention: "http://host:11434" for an OpenAI-compatible server means
// its /v1 API (Ollama, vLLM, llama.cpp all serve it there); an Anthropic URL given with /v1 has it
// dropped, since the provider appends /v1/messages itself.
void NormalizeBaseUrl(ProviderConfig& config) {
  const size_t scheme = config.base_url.find("://");
  if (scheme == std::string::npos) return;
  const bool has_path = config.base_url.find('/', scheme + 3) != std::string::npos;
  if (config.kind == ProviderKind::kOpenAi && !has_path) {
    config.base_url += "/v1";
  } else if (config.kind == ProviderKind::kAnthropic && config.base_url.ends_with("/v1")) {
    config.base_url.resize(config.base_url.size() - 3);
  }
}

Result<ProviderConfig> ParseProvider(const Reader& reader, const std::string& name,
                                     const YAML::Node& node) {
  const std::string what = "provider '" + name + "'";
  if (!node.IsMap()) return reader.Fail(node, what + ": expected a map");
  FACTORY_RETURN_IF_ERROR(reader.CheckKeys(node,
                                           {"kind", "base_url", "api_key_env", "api_key_optional",
                                            "rpm", "tpm", "timeout_s", "connect_timeout_s"},
                                           what));
  ProviderConfig config;
  config.name = name;
  config.source = reader.Where(node);
  if (!node["kind"]) return reader.Fail(node, what + ": missing 'kind' (openai or anthropic)");
  FACTORY_ASSIGN_OR_RETURN(std::string kind, reader.String(node["kind"], what + ".kind"));
  if (kind == "openai") {
    config.kind = ProviderKind::kOpenAi;
  } else if (kind == "anthropic") {
    config.kind = ProviderKind::kAnthropic;
  } else {
    return reader.Fail(node["kind"],
                       what + ": bad kind '" + kind + "' (expected openai or anthropic)");
  }
  std::string raw_base_url;
  if (node["base_url"]) {
    raw_base_url = node["base_url"].IsScalar() ? node["base_url"].Scalar() : "";
    FACTORY_ASSIGN_OR_RETURN(config.base_url, reader.String(node["base_url"], what + ".base_url"));
  } else {
    config.base_url = config.kind == ProviderKind::kOpenAi ? "https://api.openai.com/v1"
                                                           : "https://api.anthropic.com";
  }
  while (!config.base_url.empty() && config.base_url.back() == '/') config.base_url.pop_back();
  NormalizeBaseUrl(config);
  if (!config.base_url.empty() && !config.base_url.starts_with("http://") &&
      !config.base_url.starts_with("https://")) {
    return reader.Fail(node["base_url"], what +
                                             ": base_url must start with http:// or https:// "
                                             "(got '" +
                                             config.base_url + "')");
  }
  if (node["api_key_env"]) {
    FACTORY_ASSIGN_OR_RETURN(config.api_key_env,
                             reader.String(node["api_key_env"], what + ".api_key_env"));
  }
  if (node["api_key_optional"]) {
    FACTORY_ASSIGN_OR_RETURN(config.api_key_optional,
                             reader.Bool(node["api_key_optional"], what + ".api_key_optional"));
  }
  if (node["rpm"]) {
    FACTORY_ASSIGN_OR_RETURN(config.rpm, reader.NonNegativeInt(node["rpm"], what + ".rpm"));
  }
  if (node["tpm"]) {
    FACTORY_ASSIGN_OR_RETURN(config.tpm, reader.NonNegativeInt(node["tpm"], what + ".tpm"));
  }
  if (node["timeout_s"]) {
    FACTORY_ASSIGN_OR_RETURN(int64_t ms,
                             reader.Milliseconds(node["timeout_s"], what + ".timeout_s"));
    if (ms == 0) return reader.Fail(node["timeout_s"], what + ".timeout_s: must be > 0");
    config.timeout_ms = ms;
  }
  if (node["connect_timeout_s"]) {
    FACTORY_ASSIGN_OR_RETURN(
        int64_t ms, reader.Milliseconds(node["connect_timeout_s"], what + ".connect_timeout_s"));
    if (ms == 0) {
      return reader.Fail(node["connect_timeout_s"], what + ".connect_timeout_s: must be > 0");
    }
    config.connect_timeout_ms = ms;
  }
  // Availability: a missing key or an empty URL disables the provider without failing the load,
  // so one default file serves every combination of keys.
  if (config.base_url.empty()) {
    config.available = false;
    config.unavailable_reason = raw_base_url.empty() ? "base_url is empty"
                                                     : "base_url '" + raw_base_url +
                                                           "' expands to nothing (variable unset)";
  } else if (!config.api_key_env.empty() && !config.api_key_optional) {
    auto key = reader.env()(config.api_key_env);
    if (!key || key->empty()) {
      config.available = false;
      config.unavailable_reason = "environment variable " + config.api_key_env + " is not set";
    }
  }
  return config;
}

Result<ModelSpec> ParseModel(const Reader& reader, const std::string& name, const YAML::Node& node,
                             const ModelsConfig& config) {
  const std::string what = "model '" + name + "'";
  if (!node.IsMap()) return reader.Fail(node, what + ": expected a map");
  FACTORY_RETURN_IF_ERROR(
      reader.CheckKeys(node,
                       {"provider", "model", "input_per_mtok", "output_per_mtok", "cached_per_mtok",
                        "cache_write_per_mtok", "context_window", "max_output_tokens"},
                       what));
  ModelSpec model;
  model.name = name;
  model.source = reader.Where(node);
  if (!node["provider"]) return reader.Fail(node, what + ": missing 'provider'");
  FACTORY_ASSIGN_OR_RETURN(model.provider, reader.String(node["provider"], what + ".provider"));
  if (config.FindProvider(model.provider) == nullptr) {
    return reader.Fail(node["provider"], what + ": unknown provider '" + model.provider + "'");
  }
  model.model_id = name;
  if (node["model"]) {
    FACTORY_ASSIGN_OR_RETURN(model.model_id, reader.String(node["model"], what + ".model"));
    if (model.model_id.empty()) return reader.Fail(node["model"], what + ".model: is empty");
  }
  auto price = [&](const char* field, double& out) -> Status {
    if (!node[field]) return Ok();
    FACTORY_ASSIGN_OR_RETURN(out, reader.NonNegativeNumber(node[field], what + "." + field));
    return Ok();
  };
  FACTORY_RETURN_IF_ERROR(price("input_per_mtok", model.input_per_mtok));
  FACTORY_RETURN_IF_ERROR(price("output_per_mtok", model.output_per_mtok));
  model.cached_per_mtok = model.input_per_mtok;
  model.cache_write_per_mtok = model.input_per_mtok;
  FACTORY_RETURN_IF_ERROR(price("cached_per_mtok", model.cached_per_mtok));
  FACTORY_RETURN_IF_ERROR(price("cache_write_per_mtok", model.cache_write_per_mtok));
  if (node["context_window"]) {
    FACTORY_ASSIGN_OR_RETURN(model.context_window, reader.NonNegativeInt(node["context_window"],
                                                                         what + ".context_window"));
  }
  if (node["max_output_tokens"]) {
    FACTORY_ASSIGN_OR_RETURN(
        model.max_output_tokens,
        reader.NonNegativeInt(node["max_output_tokens"], what + ".max_output_tokens"));
    if (model.max_output_tokens == 0) {
      return reader.Fail(node["max_output_tokens"], what + ".max_output_tokens: must be > 0");
    }
  }
  return model;
}

Status ParseDocument(const Reader& reader, const YAML::Node& root, ModelsConfig& config) {
  if (!root || root.IsNull()) return InvalidArgument(reader.file() + ": the file is empty");
  if (!root.IsMap()) return reader.Fail(root, "expected a map at the top level");
  FACTORY_RETURN_IF_ERROR(reader.CheckKeys(
      root, {"providers", "models", "aliases", "routing", "retry", "breaker", "cache"},
      "models config"));

  const YAML::Node providers = root["providers"];
  if (!providers || !providers.IsMap() || providers.size() == 0) {
    return providers ? reader.Fail(providers, "providers: expected a non-empty map")
                     : InvalidArgument(reader.file() + ": missing 'providers'");
  }
  for (const auto& entry : providers) {
    const std::string name = entry.first.Scalar();
    if (config.FindProvider(name) != nullptr) {
      return reader.Fail(entry.first, "provider '" + name + "' is defined twice");
    }
    FACTORY_ASSIGN_OR_RETURN(ProviderConfig provider, ParseProvider(reader, name, entry.second));
    config.providers.push_back(std::move(provider));
  }

  const YAML::Node models = root["models"];
  if (!models || !models.IsMap() || models.size() == 0) {
    return models ? reader.Fail(models, "models: expected a non-empty map")
                  : InvalidArgument(reader.file() + ": missing 'models'");
  }
  for (const auto& entry : models) {
    const std::string name = entry.first.Scalar();
    if (config.FindModel(name) != nullptr) {
      return reader.Fail(entry.first, "model '" + name + "' is defined twice");
    }
    FACTORY_ASSIGN_OR_RETURN(ModelSpec model, ParseModel(reader, name, entry.second, config));
    config.models.push_back(std::move(model));
  }

  if (const YAML::Node aliases = root["aliases"]) {
    if (!aliases.IsMap()) return reader.Fail(aliases, "aliases: expected a map");
    for (const auto& entry : aliases) {
      AliasConfig alias;
      alias.name = entry.first.Scalar();
      alias.source = reader.Where(entry.first);
      const std::string what = "alias '" + alias.name + "'";
      if (config.FindAlias(alias.name) != nullptr) {
        return reader.Fail(entry.first, what + ": is defined twice");
      }
      if (config.FindModel(alias.name) != nullptr) {
        return reader.Fail(entry.first, what + ": clashes with a model of the same name");
      }
      FACTORY_ASSIGN_OR_RETURN(auto names, reader.StringList(entry.second, what));
      if (names.empty()) return reader.Fail(entry.second, what + ": lists no models");
      for (auto& [model_name, node] : names) {
        if (config.FindModel(model_name) == nullptr) {
          return reader.Fail(node, what + ": unknown model '" + model_name + "'");
        }
        alias.models.push_back(model_name);
      }
      config.aliases.push_back(std::move(alias));
    }
  }

  if (const YAML::Node routing = root["routing"]) {
    if (!routing.IsSequence()) return reader.Fail(routing, "routing: expected a list of rules");
    for (const auto& node : routing) {
      const std::string what = "routing rule";
      if (!node.IsMap()) return reader.Fail(node, what + ": expected a map");
      FACTORY_RETURN_IF_ERROR(reader.CheckKeys(node, {"task_type", "complexity", "chain"}, what));
      RoutingRule rule;
      rule.source = reader.Where(node);
      rule.task_type = "*";
      rule.complexity = "*";
      if (node["task_type"]) {
        FACTORY_ASSIGN_OR_RETURN(rule.task_type, reader.String(node["task_type"], "task_type"));
      }
      if (node["complexity"]) {
        FACTORY_ASSIGN_OR_RETURN(rule.complexity, reader.String(node["complexity"], "complexity"));
      }
      if (!node["chain"]) return reader.Fail(node, what + ": missing 'chain'");
      FACTORY_ASSIGN_OR_RETURN(auto names, reader.StringList(node["chain"], what + ".chain"));
      if (names.empty()) return reader.Fail(node["chain"], what + ": the chain is empty");
      for (auto& [alias_name, alias_node] : names) {
        if (config.FindAlias(alias_name) == nullptr) {
          return reader.Fail(alias_node, what + ": unknown alias '" + alias_name + "'");
        }
        rule.chain.push_back(alias_name);
      }
      config.routing.push_back(std::move(rule));
    }
  }

  if (const YAML::Node retry = root["retry"]) {
    if (!retry.IsMap()) return reader.Fail(retry, "retry: expected a map");
    FACTORY_RETURN_IF_ERROR(reader.CheckKeys(
        retry, {"max_attempts", "base_ms", "max_ms", "max_retry_after_ms"}, "retry"));
    if (retry["max_attempts"]) {
      FACTORY_ASSIGN_OR_RETURN(int64_t attempts,
                               reader.NonNegativeInt(retry["max_attempts"], "retry.max_attempts"));
      if (attempts < 1 || attempts > 100) {
        return reader.Fail(retry["max_attempts"], "retry.max_attempts: must be 1..100");
      }
      config.retry.max_attempts = static_cast<int>(attempts);
    }
    if (retry["base_ms"]) {
      FACTORY_ASSIGN_OR_RETURN(config.retry.base_ms,
                               reader.NonNegativeInt(retry["base_ms"], "retry.base_ms"));
    }
    if (retry["max_ms"]) {
      FACTORY_ASSIGN_OR_RETURN(config.retry.max_ms,
                               reader.NonNegativeInt(retry["max_ms"], "retry.max_ms"));
    }
    if (retry["max_retry_after_ms"]) {
      FACTORY_ASSIGN_OR_RETURN(
          config.retry.max_retry_after_ms,
          reader.NonNegativeInt(retry["max_retry_after_ms"], "retry.max_retry_after_ms"));
    }
    if (config.retry.max_ms < config.retry.base_ms) {
      return reader.Fail(retry, "retry: max_ms must be >= base_ms");
    }
  }

  if (const YAML::Node breaker = root["breaker"]) {
    if (!breaker.IsMap()) return reader.Fail(breaker, "breaker: expected a map");
    FACTORY_RETURN_IF_ERROR(
        reader.CheckKeys(breaker, {"failure_threshold", "cooldown_s"}, "breaker"));
    if (breaker["failure_threshold"]) {
      FACTORY_ASSIGN_OR_RETURN(
          int64_t threshold,
          reader.NonNegativeInt(breaker["failure_threshold"], "breaker.failure_threshold"));
      if (threshold < 1) {
        return reader.Fail(breaker["failure_threshold"], "breaker.failure_threshold: must be >= 1");
      }
      config.breaker.failure_threshold = static_cast<int>(threshold);
    }
    if (breaker["cooldown_s"]) {
      FACTORY_ASSIGN_OR_RETURN(config.breaker.cooldown_ms,
                               reader.Milliseconds(breaker["cooldown_s"], "breaker.cooldown_s"));
    }
  }

  if (const YAML::Node cache = root["cache"]) {
    if (!cache.IsMap()) return reader.Fail(cache, "cache: expected a map");
    FACTORY_RETURN_IF_ERROR(reader.CheckKeys(cache, {"enabled", "max_entries"}, "cache"));
    if (cache["enabled"]) {
      FACTORY_ASSIGN_OR_RETURN(config.cache.enabled,
                               reader.Bool(cache["enabled"], "cache.enabled"));
    }
    if (cache["max_entries"]) {
      FACTORY_ASSIGN_OR_RETURN(int64_t entries,
                               reader.NonNegativeInt(cache["max_entries"], "cache.max_entries"));
      config.cache.max_entries = static_cast<size_t>(entries);
    }
  }
  return Ok();
}

bool Matches(std::string_view pattern, std::string_view value) {
  return pattern.empty() || pattern == "*" || pattern == value;
}

}  // namespace

std::string_view ProviderKindName(ProviderKind kind) {
  return kind == ProviderKind::kAnthropic ? "anthropic" : "openai";
}

const ProviderConfig* ModelsConfig::FindProvider(std::string_view name) const {
  for (const auto& provider : providers) {
    if (provider.name == name) return &provider;
  }
  return nullptr;
}

const ModelSpec* ModelsConfig::FindModel(std::string_view name) const {
  for (const auto& model : models) {
    if (model.name == name) return &model;
  }
  return nullptr;
}

const AliasConfig* ModelsConfig::FindAlias(std::string_view name) const {
  for (const auto& alias : aliases) {
    if (alias.name == name) return &alias;
  }
  return nullptr;
}

std::string ModelsConfig::RouteProblem(std::string_view target) const {
  std::vector<std::string> names;
  if (const AliasConfig* alias = FindAlias(target)) {
    names = alias->models;
  } else if (FindModel(target) != nullptr) {
    names = {std::string(target)};
  } else {
    return "'" + std::string(target) + "' is neither an alias nor a model of models.yaml";
  }
  std::string reasons;
  for (const std::string& name : names) {
    const ModelSpec* model = FindModel(name);
    if (model == nullptr) continue;
    const ProviderConfig* provider = FindProvider(model->provider);
    if (provider != nullptr && provider->available) return "";
    if (provider != nullptr) {
      reasons += (reasons.empty() ? "" : "; ") + name + ": " + provider->unavailable_reason;
    }
  }
  return "no model of '" + std::string(target) + "' has an available provider" +
         (reasons.empty() ? "" : " (" + reasons + ")");
}

int ModelsConfig::AliasRank(std::string_view name) const {
  for (size_t i = 0; i < aliases.size(); ++i) {
    if (aliases[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

Result<std::vector<std::string>> ModelsConfig::ChainFor(std::string_view task_type,
                                                        std::string_view complexity) const {
  for (const auto& rule : routing) {
    if (Matches(rule.task_type, task_type) && Matches(rule.complexity, complexity)) {
      return rule.chain;
    }
  }
  return NotFound("no routing rule matches task_type '" + std::string(task_type) +
                  "' and complexity '" + std::string(complexity) + "'");
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::string ExpandEnv(std::string_view text, const EnvLookup& env) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = text.find("${", pos);
    if (start == std::string_view::npos) break;
    const size_t end = text.find('}', start + 2);
    if (end == std::string_view::npos) break;
    out.append(text.substr(pos, start - pos));
    std::string_view expr = text.substr(start + 2, end - start - 2);
    std::string_view name = expr;
    std::optional<std::string_view> fallback;
    if (size_t sep = expr.find(":-"); sep != std::string_view::npos) {
      name = expr.substr(0, sep);
      fallback = expr.substr(sep + 2);
    }
    auto value = env(std::string(name));
    if (value && !value->empty()) {
      out.append(*value);
    } else if (fallback) {
      out.append(*fallback);
    }
    pos = end + 1;
  }
  out.append(text.substr(pos));
  return out;
}

Result<ModelsConfig> ParseModelsConfig(std::string_view yaml_text, std::string_view file_name,
                                       const EnvLookup& env) {
  ModelsConfig config;
  config.path = std::string(file_name);
  Reader reader(file_name, env);
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    FACTORY_RETURN_IF_ERROR(ParseDocument(reader, root, config));
  } catch (const YAML::Exception& e) {
    const std::string where = e.mark.line >= 0
                                  ? std::string(file_name) + ":" + std::to_string(e.mark.line + 1)
                                  : std::string(file_name);
    return InvalidArgument(where + ": " + e.msg);
  }
  return config;
}

Result<ModelsConfig> LoadModelsConfig(const std::filesystem::path& path, const EnvLookup& env) {
  FACTORY_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return ParseModelsConfig(text, path.string(), env);
}

Status WriteDefaultModelsConfig(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return AlreadyExists(path.string() + ": already exists");
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return Unavailable(path.parent_path().string() + ": " + ec.message());
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << kDefaultModelsYaml;
  out.close();
  if (!out) return Unavailable(path.string() + ": write failed");
  return Ok();
}

double CostUsd(const ModelSpec& model, const Usage& usage) {
  const int64_t uncached = std::max<int64_t>(
      0, usage.input_tokens - usage.cached_read_tokens - usage.cache_write_tokens);
  const double micro_usd =
      static_cast<double>(uncached) * model.input_per_mtok +
      static_cast<double>(usage.cached_read_tokens) * model.cached_per_mtok +
      static_cast<double>(usage.cache_write_tokens) * model.cache_write_per_mtok +
      static_cast<double>(usage.output_tokens) * model.output_per_mtok;
  return micro_usd / 1e6;
}

const std::string_view kDefaultModelsYaml =
    R"yaml(# Agent Factory model configuration (.factory/models.yaml).
#
# Providers whose key variable is unset (or whose base_url expands to nothing) are listed as
# unavailable and skipped; nothing else is needed to start. String values may use ${VAR} and
# ${VAR:-default}. OpenAI-compatible base URLs end in /v1 (added when the URL has no path);
# Anthropic's is the host root.
providers:
  local:                       # llama.cpp server, vLLM, Ollama, LM Studio, ...
    kind: openai
    base_url: ${FACTORY_LLM_BASE_URL}          # e.g. http://127.0.0.1:8080/v1
    api_key_env: FACTORY_LLM_API_KEY           # sent when set (vLLM --api-key)
    api_key_optional: true
    timeout_s: 300
  openai:
    kind: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    rpm: 500
    tpm: 200000
    timeout_s: 180
  anthropic:
    kind: anthropic
    base_url: https://api.anthropic.com
    api_key_env: ANTHROPIC_API_KEY
    rpm: 50
    tpm: 80000
    timeout_s: 180

# Prices in USD per million tokens. cached_per_mtok prices cache reads; cache_write_per_mtok
# prices Anthropic cache writes (both default to input_per_mtok).
models:
  local:
    provider: local
    model: ${FACTORY_LLM_MODEL:-default}
    input_per_mtok: 0
    output_per_mtok: 0
    context_window: ${FACTORY_LLM_CONTEXT:-32768}
    max_output_tokens: 4096
  local-review:                # a second model on the same server, for a review gate: a
    provider: local            # reviewer must not be the builder's model
    model: ${FACTORY_LLM_REVIEW_MODEL:-review}
    input_per_mtok: 0
    output_per_mtok: 0
    context_window: ${FACTORY_LLM_CONTEXT:-32768}
    max_output_tokens: 4096
  gpt-4.1-mini:
    provider: openai
    model: gpt-4.1-mini
    input_per_mtok: 0.40
    output_per_mtok: 1.60
    cached_per_mtok: 0.10
    context_window: 1047576
    max_output_tokens: 32768
  gpt-4.1:
    provider: openai
    model: gpt-4.1
    input_per_mtok: 2.00
    output_per_mtok: 8.00
    cached_per_mtok: 0.50
    context_window: 1047576
    max_output_tokens: 32768
  claude-haiku:
    provider: anthropic
    model: claude-3-5-haiku-latest
    input_per_mtok: 0.80
    output_per_mtok: 4.00
    cached_per_mtok: 0.08
    cache_write_per_mtok: 1.00
    context_window: 200000
    max_output_tokens: 8192
  claude-sonnet:
    provider: anthropic
    model: claude-sonnet-4-20250514
    input_per_mtok: 3.00
    output_per_mtok: 15.00
    cached_per_mtok: 0.30
    cache_write_per_mtok: 3.75
    context_window: 200000
    max_output_tokens: 64000
  claude-opus:
    provider: anthropic
    model: claude-opus-4-20250514
    input_per_mtok: 15.00
    output_per_mtok: 75.00
    cached_per_mtok: 1.50
    cache_write_per_mtok: 18.75
    context_window: 200000
    max_output_tokens: 32000

# Aliases are listed cheapest first: this order is the cost pyramid's escalation order.
# Within an alias, models are tried in order (fallback on 429, 5xx, timeouts, connection errors).
aliases:
  local/fast: [local]
  cloud/fast: [gpt-4.1-mini, claude-haiku]
  cloud/mid: [claude-sonnet, gpt-4.1]
  cloud/frontier: [claude-opus, gpt-4.1]

# First matching rule wins; "*" matches anything. Attempt 1 uses the first available alias of
# the chain; each failed gate moves one alias up (to a dearer tier), never past the agent's
# ceiling. local/fast ends the review/plan/high chains as a last resort: it is used only when no
# cloud alias is available, so a machine with only a local server can still run them.
routing:
  - {task_type: review, chain: [cloud/mid, cloud/frontier, local/fast]}
  - {task_type: plan, chain: [cloud/mid, cloud/frontier, local/fast]}
  - {task_type: "*", complexity: low, chain: [local/fast, cloud/fast, cloud/mid, cloud/frontier]}
  - {task_type: "*", complexity: medium, chain: [local/fast, cloud/fast, cloud/mid, cloud/frontier]}
  - {task_type: "*", complexity: high, chain: [cloud/mid, cloud/frontier, local/fast]}
  - {task_type: "*", chain: [local/fast, cloud/fast, cloud/mid, cloud/frontier]}

retry:
  max_attempts: 3
  base_ms: 500
  max_ms: 20000
  max_retry_after_ms: 60000

breaker:
  failure_threshold: 5
  cooldown_s: 30

cache:
  enabled: true
  max_entries: 1000
)yaml";

}  // namespace factory::llm
