#include "llm/sse.h"

namespace factory::llm {

void SseParser::Feed(std::string_view chunk, const Handler& handler) {
  for (char c : chunk) {
    if (last_was_cr_) {
      last_was_cr_ = false;
      if (c == '\n') continue;  // second half of a CRLF
    }
    if (c == '\r' || c == '\n') {
      last_was_cr_ = (c == '\r');
      std::string line = std::move(line_);
      line_.clear();
      ProcessLine(line, handler);
      continue;
    }
    line_.push_back(c);
  }
}

void SseParser::ProcessLine(std::string_view line, const Handler& handler) {
  if (line.empty()) {
    if (has_data_) handler(pending_);
    pending_ = SseEvent{};
    has_fields_ = false;
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment / keep-alive
  std::string_view field = line;
  std::string_view value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  has_fields_ = true;
  if (field == "data") {
    if (has_data_) pending_.data.push_back('\n');
    pending_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    pending_.event = std::string(value);
  } else if (field == "id") {
    pending_.id = std::string(value);
  }
  // "retry" and unknown fields are ignored.
}

}  // namespace factory::llm
