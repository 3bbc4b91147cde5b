// `factory serve`: one long-running process that executes runs (through the service), serves
// the JSON API, the event stream, /metrics and the gateway's /v1 routes on one listener, and
// stops gracefully on SIGTERM/SIGINT.

#include <charconv>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "agents/registry.h"
#include "cli/cli.h"
#include "cli/signals.h"
#include "cli/validate.h"
#include "events/event_log.h"
#include "gateway/gateway.h"
#include "llm/models_config.h"
#include "orchestrator/environment.h"
#include "plan/config.h"
#include "server/api_server.h"
#include "service/service.h"

namespace factory::cli {
namespace {

struct ServeFlags {
  std::string listen = "127.0.0.1:8700";
  std::string tls_cert;
  std::string tls_key;
  bool insecure_http = false;
  std::string cors_origin;
  int rate_limit = 6000;
  int threads = 16;
  int max_parallel_runs = 4;
  std::string models;
  bool no_resume = false;
};

Result<std::pair<std::string, int>> ParseListenFlag(const std::string& text) {
  const size_t colon = text.rfind(':');
  auto bad = [&] {
    return InvalidArgument("--listen '" + text + "': expected HOST:PORT, e.g. 127.0.0.1:8700");
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

// The project's budget envelope, as `factory gateway` enforces it on /v1 calls.
Result<ledger::BudgetEnvelope> LoadBudgets(const CliContext& ctx) {
  ProjectConfig config;
  const auto config_path = ctx.FactoryDir() / "config.yaml";
  if (std::filesystem::exists(config_path)) {
    FACTORY_ASSIGN_OR_RETURN(auto loaded, LoadProjectConfig(config_path));
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

int RunServe(const CliContext& ctx, const ServeFlags& flags) {
  auto listen = ParseListenFlag(flags.listen);
  if (!listen) return ReportError(listen.error());
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return ReportError(InvalidArgument("--tls-cert and --tls-key go together").error());
  }
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());

  events::EventLog events(**store, {.actor = "api"});
  auto service = service::Service::Create(
      **store, {.actor = "api", .max_parallel_runs = flags.max_parallel_runs});

  server::ApiServerOptions options;
  options.host = listen->first;
  options.port = listen->second;
  options.tls_cert_file = flags.tls_cert;
  options.tls_key_file = flags.tls_key;
  options.insecure_http = flags.insecure_http;
  options.cors_origin = flags.cors_origin;
  options.rate_limit_per_minute = flags.rate_limit;
  options.worker_threads = flags.threads;
  options.access_log = &std::cerr;
  auto api = server::ApiServer::Create(**store, *service, events, options);
  if (!api) return ReportError(api.error());

  // The gateway's /v1 routes, when the project has models.yaml (or --models names one).
  std::unique_ptr<gateway::Gateway> gateway;
  const std::filesystem::path models_path =
      flags.models.empty() ? ctx.FactoryDir() / "models.yaml" : std::filesystem::path(flags.models);
  if (!flags.models.empty() || std::filesystem::exists(models_path)) {
    auto models = llm::LoadModelsConfig(models_path);
    if (!models) return ReportError(models.error());
    RedactModelKeys(*models);
    auto budgets = LoadBudgets(ctx);
    if (!budgets) return ReportError(budgets.error());
    gateway::GatewayOptions gateway_options;
    gateway_options.budgets = std::move(*budgets);
    auto mounted = gateway::Gateway::Mount(std::move(*models), **store, (*api)->listener(),
                                           std::move(gateway_options));
    if (!mounted) return ReportError(mounted.error());
    gateway = std::move(*mounted);
  }

  if (auto started = (*api)->Start(); !started) return ReportError(started.error());
  const std::string scheme = flags.tls_cert.empty() ? "http" : "https";
  std::cout << "factory serve: listening on " << scheme << "://" << listen->first << ":"
            << (*api)->port() << std::endl;

  if (!flags.no_resume) {
    auto resumed = service->ResumeInterruptedRuns();
    if (!resumed) {
      std::cerr << "factory serve: resuming interrupted runs: " << resumed.error().ToString()
                << "\n";
    } else {
      for (const auto& run : *resumed) std::cerr << "factory serve: resumed run " << run << "\n";
    }
  }

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  {
    SignalWatcher signals(
        [&](int) {
          std::lock_guard lock(mu);
          stop = true;
          cv.notify_all();
        },
        [&](int) {
          std::lock_guard lock(mu);
          stop = true;
          cv.notify_all();
        });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return stop; });
  }
  std::cerr << "factory serve: stopping" << std::endl;
  // Stop accepting, end the event streams, let requests in flight finish; then the executor.
  (*api)->Stop();
  service->Shutdown(service::StopMode::kGraceful);
  if (gateway) {
    gateway->Stop();
    gateway.reset();
  }
  std::cerr << "factory serve: stopped" << std::endl;
  return kExitOk;
}

}  // namespace

void AddServeCommand(CLI::App& app, CliContext& ctx) {
  static ServeFlags flags;
  auto* serve = app.add_subcommand(
      "serve",
      "Run the factory as a service: execute runs, serve the JSON API (/api), live events (SSE), "
      "/metrics and the gateway's /v1 routes on one listener");
  serve->add_option("--listen", flags.listen, "HOST:PORT to listen on (PORT 0: any free port)")
      ->capture_default_str();
  serve->add_option("--tls-cert", flags.tls_cert, "PEM certificate chain: serve HTTPS");
  serve->add_option("--tls-key", flags.tls_key, "PEM private key of --tls-cert");
  serve->add_flag("--insecure-http", flags.insecure_http,
                  "Allow plain HTTP on a non-loopback address");
  serve->add_option("--cors-origin", flags.cors_origin,
                    "Allow browser calls from this origin (default: no CORS headers)");
  serve->add_option("--rate-limit", flags.rate_limit, "Requests per minute per token (0: none)")
      ->check(NumberIn(0, 10'000'000))
      ->capture_default_str();
  serve->add_option("--threads", flags.threads, "Requests handled at once")
      ->check(NumberIn(1, 1024))
      ->capture_default_str();
  serve->add_option("--max-parallel-runs", flags.max_parallel_runs, "Runs executed at once")
      ->check(NumberIn(1, 256))
      ->capture_default_str();
  serve->add_option("--models", flags.models,
                    "models.yaml for the /v1 routes (default: <factory dir>/models.yaml if "
                    "present)");
  serve->add_flag("--no-resume", flags.no_resume, "Do not resume interrupted runs at start");
  serve->callback([&ctx] { ctx.action = [&ctx] { return RunServe(ctx, flags); }; });
}

}  // namespace factory::cli
