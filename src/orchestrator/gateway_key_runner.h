#pragma once
// A decorator for cli agents' runners behind `factory gateway`: each attempt gets its own
// virtual key (gateway::IssueKey on the run's store) scoped to the agent, the run, the queue's
// task and the attempt, and FACTORY_GATEWAY_URL / FACTORY_GATEWAY_KEY in its environment (which
// the cli runner turns into the SDKs' base-URL and key variables); the provider key variables
// given are blanked for it. The key is revoked when the attempt ends, whatever the outcome, and
// never written to logs, events or the task file; should the agent print it, it is masked in
// what the attempt reports.

#include <memory>
#include <string>
#include <vector>

#include "runners/runner.h"
#include "store/store.h"

namespace factory {

// REQUIRES: store outlives the returned runner. Thread-safe as `inner`.
std::unique_ptr<Runner> WithGatewayKey(std::unique_ptr<Runner> inner, Store& store,
                                       std::string agent, std::string gateway_url,
                                       std::vector<std::string> hidden_variables);

}  // namespace factory
