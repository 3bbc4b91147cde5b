#pragma once
// What a client's request may cost at most, read from its JSON body before it goes upstream:
// the input of the budget's worst case and the rate limiters' estimate. Internal to gateway/.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

namespace factory::gateway::internal {

// Input tokens charged per image part whatever its size: above what the providers bill for the
// largest image they accept after resizing (OpenAI high detail ~1,100, patch-based models up to
// ~2,500, Anthropic ~1,600), so an image never costs more than its reservation.
inline constexpr int64_t kImagePartTokens = 2'500;
// Input tokens charged once when a request carries tools (the providers wrap the schemas in a
// system preamble of their own), on top of the schemas' own size.
inline constexpr int64_t kToolsPreambleTokens = 500;
inline constexpr int64_t kTokensPerTool = 16;
// Keeps the products of a huge `n` finite (OpenAI itself accepts at most 128).
inline constexpr int64_t kMaxChoices = 1'000'000;

struct CallEstimate {
  int64_t input_tokens = 0;  // text (body bytes / 4, image data left out) + images + tools
  int64_t images = 0;        // image parts counted
  int64_t tools = 0;         // tool definitions counted
  int64_t choices = 1;       // answers the output is generated for: max(n, best_of, 1)
};

// `body`: the client's JSON object; `body_bytes`: its size as received.
CallEstimate EstimateCall(const nlohmann::json& body, size_t body_bytes);

}  // namespace factory::gateway::internal
