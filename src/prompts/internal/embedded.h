#pragma once
// The shipped prompts/*.md, embedded by embed_prompts.cmake into a generated .cc.

#include <cstddef>

namespace factory::prompts::internal {

struct EmbeddedPrompt {
  const char* name;           // file stem, e.g. "implement"
  const unsigned char* data;  // file content, NUL-terminated
  std::size_t size;           // without the NUL
};

extern const EmbeddedPrompt kEmbeddedPrompts[];
extern const std::size_t kEmbeddedPromptCount;

}  // namespace factory::prompts::internal
