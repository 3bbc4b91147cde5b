#pragma once
// What `factory models [--json] [--check]` shows: the configured providers, models and aliases,
// which are available (key set, URL given), and with a check, which answer a model-list probe.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llm/models_config.h"
#include "llm/provider.h"

namespace factory::llm {

struct ProviderReport {
  std::string name;
  std::string kind;  // "openai" | "anthropic"
  std::string base_url;
  std::string api_key_env;
  bool available = false;
  std::string unavailable_reason;
  // Filled by a check only.
  bool checked = false;
  bool reachable = false;
  std::string check_error;  // redacted by the provider
  int64_t check_latency_ms = 0;
  std::vector<std::string> served_models;
};

struct ModelReport {
  std::string name;
  std::string provider;
  std::string model_id;
  double input_per_mtok = 0;
  double output_per_mtok = 0;
  double cached_per_mtok = 0;
  int64_t context_window = 0;
  int64_t max_output_tokens = 0;
  bool available = false;            // its provider is available
  std::vector<std::string> aliases;  // aliases that list it
};

struct ModelsReport {
  std::string path;
  std::vector<ProviderReport> providers;
  std::vector<ModelReport> models;
  std::vector<AliasConfig> aliases;
};

// Describes `config`. With `check`, probes every available provider once (sequentially, each
// bounded by its timeout, at most 15 s); `factory` defaults to MakeProvider. Never fails: probe
// failures are reported per provider.
ModelsReport DescribeModels(const ModelsConfig& config, bool check,
                            const ProviderFactory& factory = {});

// Stable JSON for `factory models --json`.
nlohmann::json ModelsReportToJson(const ModelsReport& report);

}  // namespace factory::llm
