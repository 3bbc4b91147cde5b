// Backlog YAML (`factory run --backlog FILE`, BACKLOG.yaml of a spec folder): ParseBacklogYaml,
// validated against a small agent registry so the agent checks run too.

#include "backlog_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = factory::fuzz::AsText(data, size);
  auto parsed =
      factory::ParseBacklogYaml(text, "BACKLOG.yaml", {.agents = &factory::fuzz::FuzzAgents()});
  factory::fuzz::CheckBacklog(parsed);
  return 0;
}
