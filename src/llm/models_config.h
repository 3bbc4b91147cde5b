#pragma once
// `.factory/models.yaml`: which providers exist, which models they serve at what price, the
// aliases agents name (`local/fast`, `cloud/fast`, `cloud/mid`, `cloud/frontier`), the routing
// rules of the cost pyramid and the retry policy.
//
//   providers:
//     openai: {kind: openai, base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY,
//              rpm: 500, tpm: 200000, timeout_s: 120}
//   models:
//     gpt-4.1-mini: {provider: openai, model: gpt-4.1-mini, input_per_mtok: 0.40,
//                    output_per_mtok: 1.60, cached_per_mtok: 0.10, context_window: 1047576,
//                    max_output_tokens: 32768}
//   aliases:                      # cheapest first: the order is the escalation order
//     cloud/fast: [gpt-4.1-mini, claude-haiku]
//   routing:
//     - {task_type: "*", complexity: low, chain: [local/fast, cloud/fast, cloud/mid]}
//   retry: {max_attempts: 3, base_ms: 500, max_ms: 20000}
//   breaker: {failure_threshold: 5, cooldown_s: 30}
//   cache: {enabled: true, max_entries: 1000}
//
// String values may use ${VAR} and ${VAR:-default}, expanded from the environment at load.
// Base URLs follow each vendor's SDK: an OpenAI-compatible base_url ends in /v1
// (requests go to {base_url}/chat/completions; a URL without a path gets /v1 appended); an
// Anthropic base_url is the host root (requests go to {base_url}/v1/messages; a trailing /v1 is
// dropped).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "llm/types.h"

namespace factory::llm {

enum class ProviderKind { kOpenAi, kAnthropic };
std::string_view ProviderKindName(ProviderKind kind);  // "openai", "anthropic"

struct ProviderConfig {
  std::string name;
  ProviderKind kind = ProviderKind::kOpenAi;
  std::string base_url;           // after ${VAR} expansion, without a trailing '/'
  std::string api_key_env;        // name of the environment variable holding the key; "" = no key
  bool api_key_optional = false;  // a local server: send the key if set, work without it
  int64_t rpm = 0;                // requests per minute; 0 = unlimited
  int64_t tpm = 0;                // tokens per minute; 0 = unlimited
  int64_t timeout_ms = 120'000;   // whole call (streaming: longest silence)
  int64_t connect_timeout_ms = 10'000;
  // Resolved at load: false when the key variable is unset (and required) or base_url is empty.
  bool available = true;
  std::string unavailable_reason;
  std::string source;  // "file:line" of the definition, for messages
};

struct ModelSpec {
  std::string name;           // key under `models:`
  std::string provider;       // a ProviderConfig::name
  std::string model_id;       // what the provider calls it
  double input_per_mtok = 0;  // USD per million input tokens
  double output_per_mtok = 0;
  double cached_per_mtok = 0;       // cache reads; defaults to input_per_mtok when not given
  double cache_write_per_mtok = 0;  // defaults to input_per_mtok when not given
  int64_t context_window = 0;       // 0 = unknown
  int64_t max_output_tokens = 4096;
  std::string source;
};

struct AliasConfig {
  std::string name;
  std::vector<std::string> models;  // model names, in fallback order
  std::string source;
};

struct RoutingRule {
  std::string task_type;           // "*" (or absent) matches any
  std::string complexity;          // "*" (or absent) matches any
  std::vector<std::string> chain;  // alias names, cheapest first
  std::string source;
};

struct RetryConfig {
  int max_attempts = 3;   // times each deployment of a chain may be tried within one call
  int64_t base_ms = 500;  // backoff before the second round, before jitter
  int64_t max_ms = 20'000;
  int64_t max_retry_after_ms = 60'000;  // a longer Retry-After skips the deployment instead
};

struct BreakerConfig {
  int failure_threshold = 5;  // consecutive failures that open a deployment's breaker
  int64_t cooldown_ms = 30'000;
};

struct CacheConfig {
  bool enabled = false;  // exact-match cache of temperature-0 requests
  size_t max_entries = 1000;
};

struct ModelsConfig {
  std::string path;                       // where it was loaded from ("" for a string)
  std::vector<ProviderConfig> providers;  // in file order
  std::vector<ModelSpec> models;
  std::vector<AliasConfig> aliases;  // in file order = tier order, cheapest first
  std::vector<RoutingRule> routing;  // first match wins
  RetryConfig retry;
  BreakerConfig breaker;
  CacheConfig cache;

  const ProviderConfig* FindProvider(std::string_view name) const;
  const ModelSpec* FindModel(std::string_view name) const;
  const AliasConfig* FindAlias(std::string_view name) const;
  // Tier of an alias (its index in `aliases`), or -1.
  int AliasRank(std::string_view name) const;
  // Why `target` (an alias or a model) cannot be called here: not in this file, or no model of
  // it has an available provider (with each provider's reason). Empty when it can be.
  std::string RouteProblem(std::string_view target) const;
  // The chain of the first rule matching task_type and complexity, or an error naming both.
  Result<std::vector<std::string>> ChainFor(std::string_view task_type,
                                            std::string_view complexity) const;
};

// Looks an environment variable up; nullopt when unset. Injectable for tests.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnv();

// Parses and validates models.yaml text. `file_name` prefixes errors: "models.yaml:12: ...".
// Errors (kInvalidArgument) name the file and line: malformed YAML, unknown keys, a bad kind, an
// unknown provider in a model, an unknown model in an alias, an unknown alias in a rule, a
// negative price or limit. An unset key variable is not an error: the provider is marked
// unavailable.
Result<ModelsConfig> ParseModelsConfig(std::string_view yaml_text, std::string_view file_name,
                                       const EnvLookup& env = ProcessEnv());
// Reads and parses a file (kNotFound when it does not exist).
Result<ModelsConfig> LoadModelsConfig(const std::filesystem::path& path,
                                      const EnvLookup& env = ProcessEnv());

// The shipped default: a local OpenAI-compatible server at ${FACTORY_LLM_BASE_URL} (model
// `local`: ${FACTORY_LLM_MODEL}, default "default"; model `local-review`, for a review gate:
// ${FACTORY_LLM_REVIEW_MODEL}), OpenAI with OPENAI_API_KEY and Anthropic with ANTHROPIC_API_KEY.
extern const std::string_view kDefaultModelsYaml;
// Writes kDefaultModelsYaml to `path` (creating parent directories). kAlreadyExists when the
// file is there (never overwrites a user's config).
Status WriteDefaultModelsConfig(const std::filesystem::path& path);

// Expands ${VAR} and ${VAR:-default} in text. Unset variables without a default expand to "".
std::string ExpandEnv(std::string_view text, const EnvLookup& env);

// USD cost of a call: uncached input x input price + cache reads x cached price + cache writes x
// cache-write price + output x output price, all per million tokens.
double CostUsd(const ModelSpec& model, const Usage& usage);

}  // namespace factory::llm
