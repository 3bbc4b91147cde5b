// The cli runners' stream parsers (runners/cli_output.cc): ParseCliOutput on an agent's stdout
// in each format (the first byte chooses the format and the tail size).

#include <sstream>
#include <string>

#include "fuzz_util.h"
#include "runners/cli_runner.h"
#include "toolloop/workspace_fs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  std::string_view text = factory::fuzz::AsText(data, size);
  const uint8_t choice = factory::fuzz::TakeByte(text);
  const factory::CliOutputFormat formats[] = {factory::CliOutputFormat::kPlain,
                                              factory::CliOutputFormat::kClaudeStreamJson,
                                              factory::CliOutputFormat::kCodexJson};
  const factory::CliOutputFormat format = formats[choice % 3];
  const size_t tail_bytes = (choice & 0x80) != 0 ? 16 : 4096;

  std::istringstream in{std::string(text)};
  const factory::CliOutput output = factory::ParseCliOutput(format, in, tail_bytes);
  Require(output.steps.size() <= factory::kMaxCliSteps, "at most kMaxCliSteps steps");
  Require(output.other_lines.size() <= tail_bytes, "other_lines is a tail of tail_bytes");
  return 0;
}
