#pragma once
// Helpers shared by the fuzz targets: turning libFuzzer's bytes into the product's inputs.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace factory::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Takes the first byte of `input` (0 when empty) as a small choice for the target: a format, a
// chunk size... so that the fuzzer can mutate it like the rest.
inline uint8_t TakeByte(std::string_view& input) {
  if (input.empty()) return 0;
  const auto byte = static_cast<uint8_t>(input.front());
  input.remove_prefix(1);
  return byte;
}

// Stops the fuzzer with a message when a property the product promises does not hold (a
// finding, like a crash).
inline void Require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

}  // namespace factory::fuzz
