// Server-Sent Events (the bodies of streaming model calls): SseParser::Feed. The stream arrives
// in arbitrary chunks; the parser promises the same events however it is cut, which the target
// checks by feeding it whole and in pieces (the first byte chooses the piece sizes).

#include "llm/sse.h"

#include <vector>

#include "fuzz_util.h"

namespace {

struct Parsed {
  std::vector<factory::llm::SseEvent> events;
  bool partial = false;
};

bool Same(const factory::llm::SseEvent& a, const factory::llm::SseEvent& b) {
  return a.event == b.event && a.data == b.data && a.id == b.id;
}

Parsed Parse(std::string_view body, size_t piece_seed) {
  factory::llm::SseParser parser;
  Parsed parsed;
  auto handler = [&](const factory::llm::SseEvent& event) { parsed.events.push_back(event); };
  if (piece_seed == 0) {
    parser.Feed(body, handler);
  } else {
    size_t offset = 0;
    size_t step = 0;
    while (offset < body.size()) {
      const size_t piece = 1 + (piece_seed * (++step)) % 7;  // 1..7 bytes, varying
      parser.Feed(body.substr(offset, piece), handler);
      offset += std::min(piece, body.size() - offset);
    }
  }
  parsed.partial = parser.HasPartialEvent();
  return parsed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  std::string_view body = factory::fuzz::AsText(data, size);
  const uint8_t seed = factory::fuzz::TakeByte(body);
  const Parsed whole = Parse(body, 0);
  const Parsed pieces = Parse(body, seed | 1);
  Require(whole.events.size() == pieces.events.size(), "same events however the body is cut");
  for (size_t index = 0; index < whole.events.size(); ++index) {
    Require(Same(whole.events[index], pieces.events[index]), "same events however the body is cut");
  }
  Require(whole.partial == pieces.partial, "same partial event however the body is cut");
  return 0;
}
