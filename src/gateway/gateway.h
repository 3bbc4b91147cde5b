#pragma once
// `factory gateway`: the model router served over HTTP for external agents (Claude Code, Codex,
// OpenCode, Aider...), so their model calls are authenticated, routed, budgeted and ledgered
// like the built-in agent's.
//
// Endpoints (loopback by default):
//   POST /v1/chat/completions   OpenAI Chat Completions, streaming (SSE) and not
//   POST /v1/embeddings         OpenAI embeddings
//   GET  /v1/models             the configured aliases and models (OpenAI's list shape; with an
//                               `anthropic-version` header, Anthropic's)
//   POST /v1/messages           Anthropic Messages, streaming and not
// Authentication: a virtual key (gateway/keys.h) as `Authorization: Bearer KEY` or
// `x-api-key: KEY`. The request's `model` names an alias or a model of models.yaml; the router
// resolves it to deployments of the provider kind that speaks the endpoint's format (OpenAI-
// compatible deployments for the OpenAI endpoints, Anthropic ones for /v1/messages; no format
// translation) and tries them in order with the router's fallback, breakers, rate limits and
// retries. The request body goes upstream as the client sent it except for `model` (the
// deployment's model id), a `max_tokens` above the model's limit (capped), and, when
// streaming OpenAI-style, `stream_options.include_usage` (always asked for, so the ledger gets
// the usage; the usage chunk is passed on only when the client asked for it itself).
// Streams are passed through event by event as they arrive; a deployment can be switched only
// while nothing has reached the client.
// Every call is ledgered (agent = the key's agent, run/task/attempt = the key's scope, purpose
// "gateway") and budgeted (see internal/metering.h for how the store is kept off the hot path).
// Errors have the endpoint's own JSON error shape; see internal/wire.h for the status of each.

#include <cstdint>
#include <memory>
#include <string>

#include "core/clock.h"
#include "core/result.h"
#include "ledger/budget.h"
#include "llm/models_config.h"
#include "store/store.h"

namespace factory::net {
class BeastServer;
}

namespace factory::gateway {

struct GatewayOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (see Gateway::port())
  // Requests served at once (a streamed answer holds its thread until it ends). Idle and
  // silent connections hold no thread (see net/http_server.h).
  int threads = 64;
  // A connection must send its whole request head within this time of connecting (or of the
  // first byte of its next request), else it is closed.
  int header_timeout_ms = 10'000;
  ledger::BudgetEnvelope budgets;
  // How long a key lookup and the list of paused agents are trusted before the store is asked
  // again: a revocation or a pause made elsewhere takes effect within this time.
  int64_t cache_ttl_ms = 250;
  size_t max_body_bytes = 32 * 1024 * 1024;
  const Clock* clock = nullptr;  // default SystemClock(); must outlive the gateway
};

class Gateway {
 public:
  // Binds and starts serving on background threads. REQUIRES: store outlives the gateway.
  // Errors: Unavailable when the address cannot be bound, InvalidArgument for bad options or a
  // router that cannot be built from `models`.
  static Result<std::unique_ptr<Gateway>> Start(llm::ModelsConfig models, Store& store,
                                                GatewayOptions options = {});
  // The same gateway with its /v1 routes served by `server` (`factory serve`'s listener): it
  // binds nothing itself. port() and base_url() are unset (0); Stop() and Wait() concern only
  // the ledger writer, the server's owner stops the server first.
  // REQUIRES: server not started yet; store and server outlive the gateway's use; the server
  // is stopped before the gateway is destroyed (its handlers point into it).
  static Result<std::unique_ptr<Gateway>> Mount(llm::ModelsConfig models, Store& store,
                                                net::BeastServer& server,
                                                GatewayOptions options = {});
  virtual ~Gateway() = default;

  virtual int port() const = 0;
  // "http://HOST:PORT": what clients use as their base URL (OpenAI SDKs: + "/v1").
  virtual std::string base_url() const = 0;
  // Blocks until Stop() (from another thread or a signal handler's watcher).
  virtual void Wait() = 0;
  // Stops accepting, lets calls in flight finish, writes every queued ledger row. Idempotent.
  virtual void Stop() = 0;
  // Waits until every call finished so far is in the ledger (tests, `--until` style tools).
  virtual Status Flush() = 0;
};

}  // namespace factory::gateway
