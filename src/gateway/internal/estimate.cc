#include "gateway/internal/estimate.h"

#include <algorithm>
#include <string>

namespace factory::gateway::internal {
namespace {

using nlohmann::json;

bool IsImagePart(const json& part) {
  if (!part.is_object()) return false;
  auto type = part.find("type");
  if (type == part.end() || !type->is_string()) return false;
  const std::string& name = type->get_ref<const std::string&>();
  // OpenAI chat ("image_url"), OpenAI responses-style ("input_image"), Anthropic ("image").
  return name == "image_url" || name == "input_image" || name == "image";
}

// Counts image parts anywhere under `node` (message content, Anthropic tool results) and the
// bytes their data takes in the body, which the fixed charge replaces.
void CountImages(const json& node, int64_t& images, size_t& image_bytes) {
  if (IsImagePart(node)) {
    ++images;
    image_bytes += node.dump().size();
    return;
  }
  if (node.is_array() || node.is_object()) {
    for (const json& child : node) CountImages(child, images, image_bytes);
  }
}

int64_t PositiveInt(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || !it->is_number_integer()) return 1;
  return std::max<int64_t>(1, it->get<int64_t>());
}

}  // namespace

CallEstimate EstimateCall(const json& body, size_t body_bytes) {
  CallEstimate estimate;
  size_t image_bytes = 0;
  if (auto messages = body.find("messages"); messages != body.end()) {
    CountImages(*messages, estimate.images, image_bytes);
  }
  if (auto system = body.find("system"); system != body.end()) {
    CountImages(*system, estimate.images, image_bytes);
  }
  if (auto tools = body.find("tools"); tools != body.end() && tools->is_array()) {
    estimate.tools = static_cast<int64_t>(tools->size());
  }
  const size_t text_bytes = body_bytes > image_bytes ? body_bytes - image_bytes : 0;
  estimate.input_tokens =
      static_cast<int64_t>(text_bytes / 4) + 8 + estimate.images * kImagePartTokens +
      (estimate.tools > 0 ? kToolsPreambleTokens : 0) + estimate.tools * kTokensPerTool;
  estimate.choices =
      std::min(kMaxChoices, std::max(PositiveInt(body, "n"), PositiveInt(body, "best_of")));
  return estimate;
}

}  // namespace factory::gateway::internal
