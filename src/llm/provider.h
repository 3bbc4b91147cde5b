#pragma once
// A model provider: one vendor's wire format over HTTP. Implementations: OpenAI-compatible Chat
// Completions (OpenAI, llama.cpp server, vLLM, Ollama, ...) and Anthropic Messages.
//
// Providers do no retrying, fallback, rate limiting or pricing (the Router does); they translate
// one call and classify its failure (see CallError in llm/types.h):
//   HTTP 429            -> kUnavailable, retry_after_ms from Retry-After / retry-after-ms
//   HTTP 5xx (and 529)  -> kUnavailable
//   timeout             -> kDeadlineExceeded
//   connection errors   -> kUnavailable
//   HTTP 400/413/422    -> kInvalidArgument (the request itself is bad: not retried anywhere)
//   HTTP 401/403        -> kPermissionDenied; 404 -> kNotFound (another provider may work)
//   malformed JSON, a stream cut short (no [DONE] / message_stop) -> kUnavailable
// The API key is read from the environment variable named by ProviderConfig::api_key_env when
// the provider is created; it is sent in a header and appears in no error, log or returned value.
//
// Thread-safe: one Provider serves concurrent calls.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm/http_client.h"
#include "llm/models_config.h"
#include "llm/types.h"

namespace factory::llm {

class Provider {
 public:
  virtual ~Provider() = default;

  // The configured provider name (ProviderConfig::name).
  virtual const std::string& name() const = 0;

  // One non-streaming completion. REQUIRES: request.model is set.
  virtual CallResult<ChatResponse> Chat(const ChatRequest& request) = 0;

  // One streaming completion: `on_delta` sees text and tool-call fragments as they arrive; the
  // result is the assembled response (text, tool calls, usage), as Chat() would have returned.
  // A failure after some deltas were delivered is still an error (the partial answer is lost);
  // its CallError::usage is what the stream was billed for so far (see the assemblers).
  virtual CallResult<ChatResponse> ChatStream(const ChatRequest& request,
                                              const StreamCallback& on_delta) = 0;

  // Embeddings (OpenAI-compatible /embeddings). Anthropic: kFailedPrecondition.
  virtual CallResult<EmbeddingResponse> Embed(const EmbeddingRequest& request) = 0;

  // A cheap reachability check (GET the model list). Used by `factory models --check`.
  virtual CallResult<std::vector<std::string>> ListModels() = 0;
};

// The factories never fail for a missing key: a provider without its required key answers every
// call with kFailedPrecondition (use ProviderConfig::available to skip it up front).
// `http` defaults to HttpClient::Shared(); when given it must outlive the provider.
std::unique_ptr<Provider> MakeOpenAiProvider(const ProviderConfig& config,
                                             HttpClient* http = nullptr);
std::unique_ptr<Provider> MakeAnthropicProvider(const ProviderConfig& config,
                                                HttpClient* http = nullptr);
// Dispatches on config.kind.
std::unique_ptr<Provider> MakeProvider(const ProviderConfig& config, HttpClient* http = nullptr);

// How the router and `factory models --check` create providers; tests substitute fakes.
using ProviderFactory = std::function<std::unique_ptr<Provider>(const ProviderConfig&)>;

}  // namespace factory::llm
