#include "llm/models_report.h"

#include <chrono>

namespace factory::llm {

ModelsReport DescribeModels(const ModelsConfig& config, bool check,
                            const ProviderFactory& factory) {
  ModelsReport report;
  report.path = config.path;
  report.aliases = config.aliases;
  for (const ProviderConfig& provider : config.providers) {
    ProviderReport out;
    out.name = provider.name;
    out.kind = std::string(ProviderKindName(provider.kind));
    out.base_url = provider.base_url;
    out.api_key_env = provider.api_key_env;
    out.available = provider.available;
    out.unavailable_reason = provider.unavailable_reason;
    if (check && provider.available) {
      std::unique_ptr<Provider> instance = factory ? factory(provider) : MakeProvider(provider);
      const auto start = std::chrono::steady_clock::now();
      auto models = instance->ListModels();
      out.check_latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
      out.checked = true;
      out.reachable = models.has_value();
      if (models) {
        out.served_models = std::move(*models);
      } else {
        out.check_error = models.error().ToString();
      }
    }
    report.providers.push_back(std::move(out));
  }
  for (const ModelSpec& model : config.models) {
    ModelReport out;
    out.name = model.name;
    out.provider = model.provider;
    out.model_id = model.model_id;
    out.input_per_mtok = model.input_per_mtok;
    out.output_per_mtok = model.output_per_mtok;
    out.cached_per_mtok = model.cached_per_mtok;
    out.context_window = model.context_window;
    out.max_output_tokens = model.max_output_tokens;
    const ProviderConfig* provider = config.FindProvider(model.provider);
    out.available = provider != nullptr && provider->available;
    for (const AliasConfig& alias : config.aliases) {
      for (const std::string& name : alias.models) {
        if (name == model.name) out.aliases.push_back(alias.name);
      }
    }
    report.models.push_back(std::move(out));
  }
  return report;
}

nlohmann::json ModelsReportToJson(const ModelsReport& report) {
  using nlohmann::json;
  json providers = json::array();
  for (const ProviderReport& provider : report.providers) {
    json entry = {{"name", provider.name},
                  {"kind", provider.kind},
                  {"base_url", provider.base_url},
                  {"api_key_env", provider.api_key_env},
                  {"available", provider.available}};
    if (!provider.available) entry["unavailable_reason"] = provider.unavailable_reason;
    if (provider.checked) {
      entry["reachable"] = provider.reachable;
      entry["check_latency_ms"] = provider.check_latency_ms;
      if (provider.reachable) {
        entry["served_models"] = provider.served_models;
      } else {
        entry["check_error"] = provider.check_error;
      }
    }
    providers.push_back(std::move(entry));
  }
  json models = json::array();
  for (const ModelReport& model : report.models) {
    models.push_back({{"name", model.name},
                      {"provider", model.provider},
                      {"model", model.model_id},
                      {"input_per_mtok", model.input_per_mtok},
                      {"output_per_mtok", model.output_per_mtok},
                      {"cached_per_mtok", model.cached_per_mtok},
                      {"context_window", model.context_window},
                      {"max_output_tokens", model.max_output_tokens},
                      {"available", model.available},
                      {"aliases", model.aliases}});
  }
  json aliases = json::array();
  for (const AliasConfig& alias : report.aliases) {
    aliases.push_back({{"name", alias.name}, {"models", alias.models}});
  }
  return {
      {"path", report.path}, {"providers", providers}, {"models", models}, {"aliases", aliases}};
}

}  // namespace factory::llm
