// Backlog JSON (the backlog agent's answer, `--backlog FILE.json`): ParseBacklogJson, validated
// against a small agent registry so the agent checks run too.

#include "backlog_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = factory::fuzz::AsText(data, size);
  auto parsed = factory::ParseBacklogJson(text, "backlog agent output",
                                          {.agents = &factory::fuzz::FuzzAgents()});
  factory::fuzz::CheckBacklog(parsed);
  return 0;
}
