#include "core/redact.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace factory {
namespace redact_internal {

struct Entry {
  std::string value;
  std::string name;
  std::string marker;
};

// An immutable search structure over a set of values, all at least key_length bytes long.
struct Index {
  size_t min_length = kMinSecretLength;
  // How many leading bytes of a value form its hash key (at most 8: one uint64_t).
  size_t key_length = 8;
  size_t max_length = 0;
  std::vector<Entry> entries;
  // One bit per possible first two bytes of a value.
  std::array<uint64_t, 1024> first_two{};
  // Leading key_length bytes -> entries starting with them, longest first.
  std::unordered_map<uint64_t, std::vector<uint32_t>> by_key;
};

}  // namespace redact_internal

namespace {

using redact_internal::Entry;
using redact_internal::Index;

// Beyond this many held-back bytes a stream releases an occurrence chain that is still
// growing: only a stream made of overlapping secrets back to back gets there.
constexpr size_t kMaxHeldBack = 1 << 20;

std::string Upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

std::string_view Trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  const size_t end = text.find_last_not_of(kSpace);
  return text.substr(begin, end - begin + 1);
}

// The value as it appears inside a JSON string written by nlohmann::json (no ASCII escaping).
std::string JsonEscaped(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 8);
  for (char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string MarkerFor(std::string_view name) {
  if (name.empty()) return "[REDACTED]";
  std::string marker = "[REDACTED:";
  for (char c : name) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == '.' || c == '-';
    marker += plain ? c : '_';
  }
  marker += ']';
  return marker;
}

uint64_t KeyAt(const char* data, size_t key_length) {
  uint64_t key = 0;
  std::memcpy(&key, data, key_length);
  return key;
}

size_t FirstTwo(const char* data) {
  return (static_cast<size_t>(static_cast<unsigned char>(data[0])) << 8) |
         static_cast<unsigned char>(data[1]);
}

std::shared_ptr<const Index> Build(size_t min_length, std::vector<Entry> entries) {
  auto index = std::make_shared<Index>();
  index->min_length = min_length;
  index->key_length = std::min<size_t>(min_length, 8);
  index->entries = std::move(entries);
  for (uint32_t id = 0; id < index->entries.size(); ++id) {
    const std::string& value = index->entries[id].value;
    index->max_length = std::max(index->max_length, value.size());
    const size_t two = FirstTwo(value.data());
    index->first_two[two / 64] |= uint64_t{1} << (two % 64);
    index->by_key[KeyAt(value.data(), index->key_length)].push_back(id);
  }
  for (auto& [key, ids] : index->by_key) {
    std::stable_sort(ids.begin(), ids.end(), [&](uint32_t a, uint32_t b) {
      return index->entries[a].value.size() > index->entries[b].value.size();
    });
  }
  return index;
}

// A run of text covered by one or more overlapping occurrences; `entry` is the first one's.
struct Span {
  size_t begin;
  size_t end;
  uint32_t entry;
};

// The merged spans of the occurrences that start before `limit` and end within `text`.
std::vector<Span> Scan(const Index& index, std::string_view text, size_t limit) {
  std::vector<Span> spans;
  if (index.entries.empty() || text.size() < index.key_length) return spans;
  const size_t last_start = std::min(limit, text.size() - index.key_length + 1);
  const char* data = text.data();
  for (size_t pos = 0; pos < last_start; ++pos) {
    const size_t two = FirstTwo(data + pos);
    if ((index.first_two[two / 64] & (uint64_t{1} << (two % 64))) == 0) continue;
    auto found = index.by_key.find(KeyAt(data + pos, index.key_length));
    if (found == index.by_key.end()) continue;
    for (uint32_t id : found->second) {
      const std::string& value = index.entries[id].value;
      if (pos + value.size() > text.size()) continue;
      if (std::memcmp(data + pos, value.data(), value.size()) != 0) continue;
      const size_t end = pos + value.size();
      if (!spans.empty() && spans.back().end > pos) {
        spans.back().end = std::max(spans.back().end, end);
      } else {
        spans.push_back(Span{pos, end, id});
      }
      break;  // the longest at this position; shorter ones lie inside it
    }
  }
  return spans;
}

// text[0, cut) with the spans (all inside it) replaced by their markers.
std::string Render(const Index& index, std::string_view text, size_t cut,
                   const std::vector<Span>& spans) {
  std::string out;
  out.reserve(cut + 16 * spans.size());
  size_t at = 0;
  for (const Span& span : spans) {
    if (span.end > cut) break;
    out.append(text.data() + at, span.begin - at);
    out += index.entries[span.entry].marker;
    at = span.end;
  }
  out.append(text.data() + at, cut - at);
  return out;
}

}  // namespace

bool IsSecretVariableName(std::string_view raw_name) {
  const std::string name = Upper(raw_name);
  if (name.empty()) return false;
  for (std::string_view place : {"_FILE", "_PATH", "_DIR", "_URL"}) {
    if (EndsWith(name, place)) return false;
  }
  if (name.starts_with("AWS_")) {
    for (std::string_view setting : {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                                     "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_OUTPUT"}) {
      if (name == setting) return false;
    }
    return true;
  }
  if (name == "TOKEN") return true;
  for (std::string_view suffix :
       {"_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_PASS", "_PAT", "_CREDENTIALS"}) {
    if (EndsWith(name, suffix)) return true;
  }
  for (std::string_view part : {"API_KEY", "APIKEY", "SECRET", "PASSWORD", "PASSWD", "ACCESS_KEY",
                                "PRIVATE_KEY", "AUTH_TOKEN", "ACCESS_TOKEN", "SESSION_TOKEN"}) {
    if (name.find(part) != std::string::npos) return true;
  }
  return false;
}

Redactor::Redactor(size_t min_secret_length)
    : min_length_(std::max<size_t>(min_secret_length, 2)), index_(Build(min_length_, {})) {}

Redactor::~Redactor() = default;

std::shared_ptr<const Index> Redactor::Snapshot() const {
  std::lock_guard lock(mu_);
  return index_;
}

bool Redactor::Add(std::string_view name, std::string_view raw_value) {
  const std::string_view value = Trim(raw_value);
  if (value.size() < min_length_) return false;
  std::string escaped = JsonEscaped(value);
  std::lock_guard lock(mu_);
  std::vector<Entry> entries = index_->entries;
  bool changed = false;
  for (const std::string& form : {std::string(value), std::move(escaped)}) {
    const bool known = std::any_of(entries.begin(), entries.end(),
                                   [&](const Entry& entry) { return entry.value == form; });
    if (known) continue;
    entries.push_back(Entry{form, std::string(name), MarkerFor(name)});
    changed = true;
  }
  if (changed) index_ = Build(min_length_, std::move(entries));
  return true;
}

int Redactor::AddSecretEnvironment(const char* const* envp) {
  int added = 0;
  for (const char* const* entry = envp; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view pair(*entry);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    const std::string_view name = pair.substr(0, eq);
    if (!IsSecretVariableName(name)) continue;
    if (Add(name, pair.substr(eq + 1))) ++added;
  }
  return added;
}

std::string Redactor::Redact(std::string_view text) const {
  const auto index = Snapshot();
  const std::vector<Span> spans = Scan(*index, text, text.size());
  if (spans.empty()) return std::string(text);
  return Render(*index, text, text.size(), spans);
}

bool Redactor::RedactInPlace(std::string& text) const {
  const auto index = Snapshot();
  const std::vector<Span> spans = Scan(*index, text, text.size());
  if (spans.empty()) return false;
  text = Render(*index, text, text.size(), spans);
  return true;
}

std::vector<std::string> Redactor::Find(std::string_view text) const {
  const auto index = Snapshot();
  std::vector<std::string> names;
  for (const Span& span : Scan(*index, text, text.size())) {
    const std::string& name = index->entries[span.entry].name;
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  return names;
}

size_t Redactor::size() const { return Snapshot()->entries.size(); }

size_t Redactor::max_secret_length() const { return Snapshot()->max_length; }

Redactor& ProcessRedactor() {
  static Redactor* const redactor = new Redactor();
  return *redactor;
}

StreamRedactor::StreamRedactor(const Redactor& redactor) : redactor_(redactor) {}

std::string StreamRedactor::Feed(std::string_view piece) {
  pending_.append(piece.data(), piece.size());
  const auto index = redactor_.Snapshot();
  if (index->entries.empty()) return std::exchange(pending_, {});
  // An occurrence starting before `safe` ends within what we have; one starting later may
  // still be growing, so those bytes wait for the next piece.
  const size_t held = index->max_length - 1;
  const size_t safe = pending_.size() > held ? pending_.size() - held : 0;
  const std::vector<Span> spans = Scan(*index, pending_, safe);
  size_t cut = safe;
  if (!spans.empty() && spans.back().end > safe) {
    // A later occurrence may still overlap this one: keep it whole, unless the chain has
    // grown absurdly long.
    cut =
        pending_.size() - spans.back().begin > kMaxHeldBack ? spans.back().end : spans.back().begin;
  }
  std::string out = Render(*index, pending_, cut, spans);
  pending_.erase(0, cut);
  return out;
}

std::string StreamRedactor::Finish() {
  std::string rest = std::exchange(pending_, {});
  return redactor_.Redact(rest);
}

}  // namespace factory
