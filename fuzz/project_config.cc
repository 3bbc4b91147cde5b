// `.factory/config.yaml`: ParseProjectConfig, then what the run asks of the result.

#include "fuzz_util.h"
#include "plan/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  auto parsed =
      factory::ParseProjectConfig(factory::fuzz::AsText(data, size), ".factory/config.yaml");
  if (!parsed) {
    Require(!parsed.error().message.empty(), "a refused config names its errors");
    return 0;
  }
  const factory::ProjectConfig& config = parsed->value;
  Require(config.concurrency >= 1, "concurrency is at least 1");
  Require(config.max_attempts >= 1, "max_attempts is at least 1");
  for (const auto& gate : config.gates) {
    Require(gate.timeout.count() > 0, "gate timeouts are positive");
  }
  // The protected-path check every attempt runs, on paths an agent could have written.
  for (const char* path : {"tests/a_test.cc", ".factory/config.yaml", "src/main.cc", ""}) {
    (void)config.ProtectedMatch(path, config.protected_paths);
    (void)config.ProtectedMatch(path);
  }
  (void)config.GatesOfKind(factory::GateKind::kReview);
  return 0;
}
