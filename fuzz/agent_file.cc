// Agent files (`.factory/agents/NAME.md`: YAML front matter, then the system prompt):
// ParseAgentFile.

#include "agents/agent.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  auto parsed = factory::ParseAgentFile(factory::fuzz::AsText(data, size), "agents/fuzz.md");
  if (!parsed) {
    Require(!parsed.error().message.empty(), "a refused agent file names its errors");
    return 0;
  }
  const factory::AgentSpec& agent = parsed->value;
  Require(factory::IsValidName(agent.name), "a loaded agent has a valid name");
  Require(!agent.role.empty(), "a loaded agent has a role");
  Require(agent.concurrency >= 1, "concurrency is at least 1");
  Require(agent.cost_tier >= 0, "cost_tier is not negative");
  (void)agent.Covers(agent.capabilities);
  return 0;
}
