#pragma once
// Incremental Server-Sent Events parser (WHATWG "event stream interpretation"), for the bodies of
// streaming model calls. Bytes arrive in arbitrary chunks: a line, even a CRLF pair, may be split
// across two Feed() calls.

#include <functional>
#include <string>
#include <string_view>

namespace factory::llm {

struct SseEvent {
  std::string event;  // "" when the event had no `event:` field (the spec's "message")
  std::string data;   // `data:` lines joined with '\n'
  std::string id;
};

// Not thread-safe; one parser per stream.
class SseParser {
 public:
  using Handler = std::function<void(const SseEvent&)>;

  // Consumes `chunk`, calling `handler` for every event completed (by a blank line) within it.
  void Feed(std::string_view chunk, const Handler& handler);

  // Bytes received that have not formed a complete event yet (a truncated stream ends with some).
  bool HasPartialEvent() const { return !line_.empty() || has_fields_; }

 private:
  void ProcessLine(std::string_view line, const Handler& handler);

  std::string line_;          // the current, incomplete line
  bool last_was_cr_ = false;  // a '\r' ended the previous chunk; a leading '\n' belongs to it
  bool has_fields_ = false;   // the pending event has at least one field
  bool has_data_ = false;
  SseEvent pending_;
};

}  // namespace factory::llm
