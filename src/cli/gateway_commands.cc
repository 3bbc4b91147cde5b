// `factory gateway` (the metered model proxy for external agents) and `factory keys
// create|list|revoke` (its virtual keys).

#include <fmt/core.h>

#include <charconv>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agents/registry.h"
#include "cli/cli.h"
#include "cli/signals.h"
#include "cli/validate.h"
#include "gateway/gateway.h"
#include "gateway/keys.h"
#include "llm/models_config.h"
#include "orchestrator/environment.h"
#include "plan/config.h"

namespace factory::cli {
namespace {

struct GatewayFlags {
  std::string listen = "127.0.0.1:8788";
  std::string models;
  int threads = 64;
  int64_t cache_ttl_ms = 250;
  int header_timeout_ms = 10'000;
};

// "HOST:PORT" (PORT 0 = any free port). InvalidArgument naming the flag otherwise.
Result<std::pair<std::string, int>> ParseListen(const std::string& text) {
  const size_t colon = text.rfind(':');
  auto bad = [&] {
    return InvalidArgument("--listen '" + text + "': expected HOST:PORT, e.g. 127.0.0.1:8788");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size()) return bad();
  int port = -1;
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, port);
  if (ec != std::errc() || ptr != end || port < 0 || port > 65535) return bad();
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

// The budget envelope of the project: config.yaml `budget:` and the agents' own `budget:`,
// as `factory run` enforces them. Missing files mean no limits.
Result<ledger::BudgetEnvelope> LoadEnvelope(const CliContext& ctx) {
  ProjectConfig config;
  const auto config_path = ctx.FactoryDir() / "config.yaml";
  if (std::filesystem::exists(config_path)) {
    FACTORY_ASSIGN_OR_RETURN(auto loaded, LoadProjectConfig(config_path));
    for (const auto& warning : loaded.warnings) std::cerr << warning.ToString() << "\n";
    config = std::move(loaded.value);
  }
  const auto agents_dir = ctx.FactoryDir() / "agents";
  std::unique_ptr<AgentRegistry> agents = std::make_unique<AgentRegistry>();
  if (std::filesystem::is_directory(agents_dir)) {
    FACTORY_ASSIGN_OR_RETURN(auto loaded, AgentRegistry::LoadDirectory(agents_dir));
    agents = std::move(loaded.value);
  }
  return MakeBudgetEnvelope(config, *agents);
}

int RunGateway(const CliContext& ctx, const GatewayFlags& flags) {
  auto listen = ParseListen(flags.listen);
  if (!listen) return ReportError(listen.error());
  const std::filesystem::path models_path =
      flags.models.empty() ? ctx.FactoryDir() / "models.yaml" : std::filesystem::path(flags.models);
  auto models = llm::LoadModelsConfig(models_path);
  if (!models) return ReportError(models.error());
  RedactModelKeys(*models);
  auto envelope = LoadEnvelope(ctx);
  if (!envelope) return ReportError(envelope.error());
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());

  gateway::GatewayOptions options;
  options.host = listen->first;
  options.port = listen->second;
  options.threads = flags.threads;
  options.header_timeout_ms = flags.header_timeout_ms;
  options.cache_ttl_ms = flags.cache_ttl_ms;
  options.budgets = std::move(*envelope);
  auto server = gateway::Gateway::Start(std::move(*models), **store, std::move(options));
  if (!server) return ReportError(server.error());
  {
    // The watcher holds a raw pointer to the gateway: it goes before the gateway does.
    gateway::Gateway* running = server->get();
    SignalWatcher signals([running](int) { running->Stop(); }, [running](int) { running->Stop(); });
    // The address on stdout (the port may have been chosen by the system): scripts read it.
    std::cout << "factory gateway: listening on " << (*server)->base_url() << std::endl;
    (*server)->Wait();
  }
  server->reset();  // finishes calls in flight and writes the ledger
  std::cerr << "factory gateway: stopped" << std::endl;
  return kExitOk;
}

int CreateKey(const CliContext& ctx, const std::string& agent, const std::string& label,
              bool as_json) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  auto issued = gateway::IssueKey(**store, agent, gateway::KeyScope{.label = label});
  if (!issued) return ReportError(issued.error());
  if (as_json) {
    std::cout << nlohmann::json{{"id", issued->record.id},
                                {"agent", issued->record.agent},
                                {"prefix", issued->record.prefix},
                                {"label", issued->record.label},
                                {"key", issued->key}}
                     .dump()
              << "\n";
  } else {
    std::cout << issued->key << "\n";
  }
  std::cerr << "factory: key " << issued->record.id << " for agent " << agent
            << " (shown once: only its hash is stored)\n";
  return kExitOk;
}

int ListKeys(const CliContext& ctx, bool as_json) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  auto keys = gateway::ListKeys(**store);
  if (!keys) return ReportError(keys.error());
  if (as_json) {
    std::cout << gateway::KeysJson(*keys) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<26} {:<20} {:<12} {:<8} {:<24} {}\n", "ID", "AGENT", "PREFIX",
                           "STATE", "CREATED", "LABEL");
  for (const VirtualKey& key : *keys) {
    std::cout << fmt::format("{:<26} {:<20} {:<12} {:<8} {:<24} {}\n", key.id, key.agent,
                             key.prefix + "...", key.revoked_ms != 0 ? "revoked" : "active",
                             FormatTimestamp(key.created_ms), key.label);
  }
  return kExitOk;
}

int RevokeKey(const CliContext& ctx, const std::string& id) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  if (auto status = gateway::RevokeKey(**store, id); !status) return ReportError(status.error());
  std::cout << "factory: revoked key " << id << "\n";
  return kExitOk;
}

}  // namespace

void AddGatewayCommands(CLI::App& app, CliContext& ctx) {
  static GatewayFlags flags;
  auto* gateway = app.add_subcommand(
      "gateway",
      "Serve the model router as an OpenAI- and Anthropic-compatible HTTP proxy: virtual keys, "
      "routing, budgets and the ledger for external agents");
  gateway->add_option("--listen", flags.listen, "HOST:PORT to listen on (PORT 0: any free port)")
      ->capture_default_str();
  gateway->add_option("--models", flags.models, "models.yaml (default: <factory dir>/models.yaml)");
  gateway->add_option("--threads", flags.threads, "Requests served at once")
      ->check(NumberIn(1, 4096))
      ->capture_default_str();
  gateway
      ->add_option("--header-timeout-ms", flags.header_timeout_ms,
                   "A connection that has not sent its whole request head this long after "
                   "connecting (or after the first byte of its next request) is closed")
      ->check(NumberIn(1, 3'600'000))
      ->capture_default_str();
  gateway
      ->add_option("--cache-ms", flags.cache_ttl_ms,
                   "How long key lookups and agent pauses are cached (a revocation or pause "
                   "takes effect within this time)")
      ->check(NumberIn(int64_t{0}, int64_t{60'000}))
      ->capture_default_str();
  gateway->callback([&ctx] { ctx.action = [&ctx] { return RunGateway(ctx, flags); }; });

  auto* keys = app.add_subcommand("keys", "Virtual keys of the gateway (one per agent)");
  keys->require_subcommand(1);
  static std::string create_agent;
  static std::string create_label;
  static bool create_json = false;
  auto* create = keys->add_subcommand("create", "Issue a key for an agent; prints it once");
  create->add_option("--agent", create_agent, "The agent its calls are ledgered and budgeted as")
      ->required();
  create->add_option("--label", create_label, "A note shown by `keys list`");
  create->add_flag("--json", create_json, "Print {id, agent, prefix, label, key} as JSON");
  create->callback([&ctx] {
    ctx.action = [&ctx] { return CreateKey(ctx, create_agent, create_label, create_json); };
  });
  static bool list_json = false;
  auto* list = keys->add_subcommand("list", "Every key (id, agent, prefix, state); never the key");
  list->add_flag("--json", list_json, "Print JSON");
  list->callback([&ctx] { ctx.action = [&ctx] { return ListKeys(ctx, list_json); }; });
  static std::string revoke_id;
  auto* revoke = keys->add_subcommand("revoke", "Revoke a key by its id (from `keys list`)");
  revoke->add_option("ID", revoke_id, "Key id")->required();
  revoke->callback([&ctx] { ctx.action = [&ctx] { return RevokeKey(ctx, revoke_id); }; });
}

}  // namespace factory::cli
