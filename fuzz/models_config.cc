// `.factory/models.yaml`: ParseModelsConfig with a fixed environment (the file may use ${VAR}),
// then the lookups the router makes.

#include "llm/models_config.h"

#include "fuzz_util.h"

namespace {

std::optional<std::string> FuzzEnv(const std::string& name) {
  if (name == "OPENAI_API_KEY") return "sk-fuzz";
  if (name == "FACTORY_LLM_BASE_URL") return "http://127.0.0.1:8080/v1";
  if (name == "EMPTY") return "";
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  auto parsed =
      factory::llm::ParseModelsConfig(factory::fuzz::AsText(data, size), "models.yaml", FuzzEnv);
  if (!parsed) {
    Require(!parsed.error().message.empty(), "a refused models.yaml names its errors");
    return 0;
  }
  const factory::llm::ModelsConfig& config = *parsed;
  for (const auto& model : config.models) {
    Require(config.FindProvider(model.provider) != nullptr, "a model's provider exists");
    Require(model.input_per_mtok >= 0 && model.output_per_mtok >= 0, "prices are not negative");
    factory::llm::Usage usage;
    usage.input_tokens = 1000;
    usage.output_tokens = 1000;
    (void)factory::llm::CostUsd(model, usage);
  }
  for (const auto& alias : config.aliases) {
    for (const auto& model : alias.models) {
      Require(config.FindModel(model) != nullptr, "an alias names known models");
    }
    (void)config.AliasRank(alias.name);
  }
  (void)config.ChainFor("code", "low");
  (void)config.ChainFor("plan", "");
  return 0;
}
