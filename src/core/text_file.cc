#include "core/text_file.h"

#include <fstream>

#include "core/redact.h"

namespace factory {

Status WriteTextFile(const std::string& path, std::string_view content) {
  const std::string redacted = ProcessRedactor().Redact(content);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(redacted.data(), static_cast<std::streamsize>(redacted.size()));
  out.flush();
  if (!out) return Internal("cannot write " + path);
  return Ok();
}

}  // namespace factory
