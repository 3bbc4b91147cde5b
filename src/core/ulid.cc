#include "core/ulid.h"

#include <array>

namespace factory {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int DecodeChar(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  auto pos = kAlphabet.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

}  // namespace

UlidGenerator::UlidGenerator(const Clock& clock) : clock_(clock), rng_(std::random_device{}()) {}

std::string UlidGenerator::Next() {
  std::lock_guard lock(mu_);
  int64_t now = clock_.NowMillis();
  if (now <= last_millis_) {
    // Same (or an earlier, if the wall clock stepped back) millisecond: keep the last timestamp
    // and increment the random part so the id still sorts after the previous one.
    now = last_millis_;
    if (++rand_lo_ == 0) ++rand_hi_;
  } else {
    last_millis_ = now;
    rand_lo_ = rng_();
    rand_hi_ = static_cast<uint16_t>(rng_());
  }
  // 10 base32 digits of time (48 bits) then 16 digits of randomness (80 bits).
  std::string out(26, '0');
  auto time_bits = static_cast<uint64_t>(now);
  for (int i = 9; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kAlphabet[time_bits & 31];
    time_bits >>= 5;
  }
  uint64_t lo = rand_lo_;
  uint64_t hi = rand_hi_;
  for (int i = 25; i >= 10; --i) {
    out[static_cast<size_t>(i)] = kAlphabet[lo & 31];
    lo = (lo >> 5) | ((hi & 31) << 59);
    hi >>= 5;
  }
  return out;
}

std::string NewUlid() {
  static UlidGenerator generator(SystemClock());
  return generator.Next();
}

bool IsUlid(std::string_view text) {
  if (text.size() != 26) return false;
  if (DecodeChar(text[0]) > 7) return false;  // would overflow 128 bits
  for (char c : text) {
    if (DecodeChar(c) < 0) return false;
  }
  return true;
}

int64_t UlidMillis(std::string_view ulid) {
  int64_t millis = 0;
  for (size_t i = 0; i < 10 && i < ulid.size(); ++i) millis = millis * 32 + DecodeChar(ulid[i]);
  return millis;
}

}  // namespace factory
