#include "orchestrator/gateway_key_runner.h"

#include <spdlog/spdlog.h>

#include <string_view>
#include <utility>

#include "gateway/keys.h"
#include "runners/cli_runner.h"

namespace factory {
namespace {

void ReplaceAll(std::string& text, std::string_view needle, std::string_view replacement) {
  if (needle.empty()) return;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + replacement.size())) {
    text.replace(at, needle.size(), replacement);
  }
}

// A cli agent's runner behind `factory gateway`: each attempt gets its own virtual key, scoped
// to the agent, run, task and attempt, so the gateway ledgers and budgets the agent's calls
// exactly like the built-in agent's; the key is revoked when the attempt ends, however it ends.
// The key itself is never logged; should the agent print it, it is masked in what the attempt
// reports (error, output tail, summary, steps), which the pipeline turns into events.
class GatewayKeyRunner final : public Runner {
 public:
  GatewayKeyRunner(std::unique_ptr<Runner> inner, Store& store, std::string agent,
                   std::string gateway_url, std::vector<std::string> hidden_variables)
      : inner_(std::move(inner)),
        store_(store),
        agent_(std::move(agent)),
        gateway_url_(std::move(gateway_url)),
        hidden_variables_(std::move(hidden_variables)) {}

  Result<RunnerOutcome> Run(const RunnerContext& context) override {
    const AttemptInput& input = context.input;
    gateway::KeyScope scope;
    scope.run_id = input.run_id;
    // As the llm runner attributes its calls: the queue's ids when there is a queue.
    scope.task_id = input.queue_task_id.empty() ? input.task_id : input.queue_task_id;
    scope.attempt_id = input.attempt_id.empty()
                           ? input.task_id + "-" + std::to_string(input.attempt)
                           : input.attempt_id;
    scope.label = "attempt " + std::to_string(input.attempt) + " of " + input.task_id;
    auto issued = gateway::IssueKey(store_, agent_, scope);
    if (!issued) {
      // Unavailable: the pipeline retries the attempt (the store may be busy).
      return Unavailable("agent '" + agent_ +
                         "': cannot issue a gateway key: " + issued.error().message);
    }
    const std::string key_id = issued->record.id;
    struct Revoke {
      Store& store;
      const std::string& id;
      ~Revoke() {
        if (Status revoked = gateway::RevokeKey(store, id); !revoked) {
          spdlog::warn("cannot revoke gateway key {}: {}", id, revoked.error().ToString());
        }
      }
    } revoke{store_, key_id};

    RunnerContext with_key = context;
    // The real provider keys the factory knows of are blanked; GatewayEnvironment then sets
    // OPENAI_API_KEY and ANTHROPIC_API_KEY to the virtual key.
    for (const std::string& name : hidden_variables_) with_key.extra_env[name] = "";
    with_key.extra_env[kGatewayUrlVar] = gateway_url_;
    with_key.extra_env[kGatewayKeyVar] = issued->key;
    auto outcome = inner_->Run(with_key);
    if (!outcome) {
      Error error = outcome.error();
      ReplaceAll(error.message, issued->key, kMasked);
      return std::unexpected(std::move(error));
    }
    for (std::string* text : {&outcome->error, &outcome->output_tail, &outcome->summary}) {
      ReplaceAll(*text, issued->key, kMasked);
    }
    for (AgentStep& step : outcome->steps) ReplaceAll(step.summary, issued->key, kMasked);
    return outcome;
  }

 private:
  static constexpr std::string_view kMasked = "fk-[gateway key]";

  const std::unique_ptr<Runner> inner_;
  Store& store_;
  const std::string agent_;
  const std::string gateway_url_;
  const std::vector<std::string> hidden_variables_;
};

}  // namespace

std::unique_ptr<Runner> WithGatewayKey(std::unique_ptr<Runner> inner, Store& store,
                                       std::string agent, std::string gateway_url,
                                       std::vector<std::string> hidden_variables) {
  return std::make_unique<GatewayKeyRunner>(std::move(inner), store, std::move(agent),
                                            std::move(gateway_url), std::move(hidden_variables));
}

}  // namespace factory
