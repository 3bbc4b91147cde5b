#pragma once
// A fake model provider for tests: one loopback HTTP server (port 0) speaking the OpenAI
// (`/v1/chat/completions` incl. SSE streaming, `/v1/embeddings`, `/v1/models`) and Anthropic
// (`/v1/messages` incl. SSE streaming) wire formats. Each test scripts it with a queue of
// replies, consumed one per chat/embedding request whatever the endpoint, and rendered in the
// format of the endpoint hit. It records every request (headers and bodies) for assertions.
//
//   FakeProviderServer fake;
//   fake.Enqueue(FakeReply::RateLimited(/*retry_after_s=*/2));
//   fake.Enqueue(FakeReply::Text("hello", {.input_tokens = 10, .output_tokens = 2}));
//   provider_config.base_url = fake.openai_base_url();   // or anthropic_base_url()
//
// Thread-safe. Destroy HTTP clients that talk to it (closing their keep-alive connections)
// before the server, or its shutdown waits for the keep-alive timeout (1 s).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "llm/types.h"

namespace httplib {
class Server;
}

namespace factory::llm::fake {

struct FakeReply {
  int status = 200;
  // Success content.
  std::string text;
  std::vector<ToolCall> tool_calls;
  Usage usage;                // neutral convention (input includes cached); rendered per format
  std::string finish_reason;  // "" = derived: "tool_calls" when there are tool calls, else "stop"
  std::string model;          // "" = echo the requested model
  std::vector<std::vector<float>> embeddings;  // "" = a deterministic 4-dimensional vector each
  // Failure content: an error body in the provider's format with this message.
  std::string error_message;
  bool echo_credentials = false;  // append the received API key to error_message (leak test)
  // Anything: sent verbatim instead of the rendered body (malformed JSON, odd error bodies).
  std::optional<std::string> raw_body;
  std::map<std::string, std::string> headers;  // extra response headers (Retry-After, ...)
  // Timing and stream damage.
  int delay_ms = 0;                // before answering (interrupted when the server stops)
  int event_delay_ms = 0;          // between SSE events
  int truncate_after_events = -1;  // stream: end the body cleanly after N events, no terminator

  static FakeReply Text(std::string text, Usage usage = {});
  static FakeReply Tools(std::vector<ToolCall> calls, Usage usage = {}, std::string text = "");
  static FakeReply Error(int status, std::string message = "scripted failure");
  static FakeReply RateLimited(int retry_after_s, std::string message = "rate limited");
  static FakeReply Malformed(std::string body = "{\"choices\": [ this is not json");
  static FakeReply Embeddings(std::vector<std::vector<float>> vectors, Usage usage = {});
  FakeReply&& WithDelay(int ms) && {
    delay_ms = ms;
    return std::move(*this);
  }
  FakeReply&& TruncatedAfter(int events) && {
    truncate_after_events = events;
    return std::move(*this);
  }
};

struct RecordedRequest {
  std::string method;
  std::string path;
  std::multimap<std::string, std::string> headers;  // names as sent
  std::string body;
  int remote_port = 0;  // the client's port: equal ports on two requests = a reused connection

  // First value of a header, matched case-insensitively; "" when absent.
  std::string Header(const std::string& name) const;
  nlohmann::json Json() const;  // the body parsed (null when not JSON)
};

class FakeProviderServer {
 public:
  FakeProviderServer();  // listening on 127.0.0.1 at a free port on return
  ~FakeProviderServer();
  FakeProviderServer(const FakeProviderServer&) = delete;
  FakeProviderServer& operator=(const FakeProviderServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const;            // http://127.0.0.1:PORT
  std::string openai_base_url() const;     // http://127.0.0.1:PORT/v1
  std::string anthropic_base_url() const;  // http://127.0.0.1:PORT

  void Enqueue(FakeReply reply);
  // Chooses the reply from the request itself, before the queue is consulted: for callers whose
  // requests arrive in no fixed order (parallel planners). nullopt falls through to the queue.
  // Called under the server's lock: it must not call back into the server.
  using Responder = std::function<std::optional<FakeReply>(const RecordedRequest& request)>;
  void SetResponder(Responder responder);
  // Served when the queue is empty (by default: HTTP 500 "no scripted reply").
  void SetDefault(FakeReply reply);
  size_t pending() const;

  std::vector<RecordedRequest> requests() const;
  size_t request_count() const;

 private:
  FakeReply Next(RecordedRequest request);
  bool SleepInterruptible(int ms);  // false when the server is stopping

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;                  // guarded by mu_
  std::deque<FakeReply> queue_;            // guarded by mu_
  std::optional<FakeReply> default_;       // guarded by mu_
  Responder responder_;                    // guarded by mu_
  std::vector<RecordedRequest> requests_;  // guarded by mu_
};

}  // namespace factory::llm::fake
