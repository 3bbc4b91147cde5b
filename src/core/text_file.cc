#include "core/text_file.h"

#include <fstream>

namespace factory {

Status WriteTextFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.flush();
  if (!out) return Internal("cannot write " + path);
  return Ok();
}

}  // namespace factory
