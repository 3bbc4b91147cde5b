// Command templates and output parsers of the cli runner (runners/cli_runner.h).

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "runners/cli_runner.h"
#include "runners/internal/runner_common.h"

namespace factory {
namespace {

using nlohmann::json;
using runners_internal::OneLine;
using runners_internal::Utf8Tail;

bool IsPlaceholderChar(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }

// --- JSON field access that never throws ------------------------------------------------------

std::string Str(const json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// A token count: a number clamped to [0, kMaxCliTokens] (1e300 or -5 must neither overflow nor
// make a cost negative); 0 when missing or not a number.
int64_t Tokens(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return 0;
  if (it->is_number_float()) {
    const double value = it->get<double>();
    if (!(value > 0)) return 0;  // NaN included
    return value >= static_cast<double>(kMaxCliTokens) ? kMaxCliTokens
                                                       : static_cast<int64_t>(value);
  }
  if (it->is_number_unsigned()) {
    return static_cast<int64_t>(std::min<uint64_t>(it->get<uint64_t>(), kMaxCliTokens));
  }
  return std::clamp<int64_t>(it->get<int64_t>(), 0, kMaxCliTokens);
}

// total + more, saturating at kMaxCliTokens. REQUIRES: both in [0, kMaxCliTokens].
int64_t AddTokens(int64_t total, int64_t more) { return std::min(total + more, kMaxCliTokens); }

std::optional<double> Double(const json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

bool Bool(const json& object, const char* key) {
  if (!object.is_object()) return false;
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

const json& Field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string CompactDump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// --- parsing state ------------------------------------------------------------------------------

class OutputBuilder {
 public:
  explicit OutputBuilder(size_t tail_bytes) : tail_bytes_(tail_bytes) {}

  void Step(std::string kind, std::string_view summary) {
    if (output_.steps.size() >= kMaxCliSteps) return;
    output_.steps.push_back(AgentStep{std::move(kind), OneLine(summary)});
  }
  void OtherLine(std::string_view line) {
    other_.append(line);
    other_ += '\n';
    if (other_.size() > 2 * tail_bytes_ + 4096) other_ = Utf8Tail(other_, tail_bytes_);
  }
  CliOutput& output() { return output_; }
  CliOutput Finish() {
    output_.other_lines = Utf8Tail(other_, tail_bytes_);
    return std::move(output_);
  }

 private:
  size_t tail_bytes_;
  std::string other_;
  CliOutput output_;
};

// A short description of a Claude Code tool call: the tool and its most telling argument.
std::string ToolUseSummary(const json& block) {
  std::string name = Str(block, "name");
  const json& input = Field(block, "input");
  for (const char* key :
       {"file_path", "path", "command", "pattern", "url", "query", "description"}) {
    std::string value = Str(input, key);
    if (!value.empty()) return name + ": " + value;
  }
  if (input.is_object() && !input.empty()) return name + ": " + CompactDump(input);
  return name;
}

std::string ToolResultText(const json& block) {
  const json& content = Field(block, "content");
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (content.is_array()) {
    for (const auto& part : content) {
      std::string piece = Str(part, "text");
      if (!piece.empty()) text += (text.empty() ? "" : " ") + piece;
    }
  }
  return text;
}

void ParseClaudeEvent(const json& event, OutputBuilder& builder, std::string& last_text) {
  CliOutput& out = builder.output();
  const std::string type = Str(event, "type");
  if (type == "system") {
    std::string model = Str(event, "model");
    if (!model.empty() && out.usage.model.empty()) out.usage.model = model;
    if (Str(event, "subtype") == "init") {
      builder.Step("system", model.empty() ? "session started" : "session started (" + model + ")");
    }
  } else if (type == "assistant") {
    const json& message = Field(event, "message");
    std::string model = Str(message, "model");
    if (!model.empty() && out.usage.model.empty()) out.usage.model = model;
    const json& content = Field(message, "content");
    if (!content.is_array()) return;
    for (const auto& block : content) {
      const std::string block_type = Str(block, "type");
      if (block_type == "text") {
        std::string text = Str(block, "text");
        if (text.empty()) continue;
        last_text = text;
        builder.Step("message", text);
      } else if (block_type == "tool_use") {
        builder.Step("tool_use", ToolUseSummary(block));
      } else if (block_type == "thinking") {
        builder.Step("thinking", Str(block, "thinking"));
      }
    }
  } else if (type == "user") {
    const json& content = Field(Field(event, "message"), "content");
    if (!content.is_array()) return;
    for (const auto& block : content) {
      if (Str(block, "type") != "tool_result") continue;
      std::string text = ToolResultText(block);
      builder.Step("tool_result", Bool(block, "is_error") ? "error: " + text : text);
    }
  } else if (type == "result") {
    const std::string subtype = Str(event, "subtype");
    const bool ok = !Bool(event, "is_error") && (subtype.empty() || subtype == "success");
    out.reported_ok = ok;
    std::string result = Str(event, "result");
    if (!result.empty()) out.summary = result;
    if (!ok) {
      out.reported_error = subtype.empty() ? "error" : subtype;
      if (!result.empty()) out.reported_error += ": " + result;
    }
    std::optional<double> cost = Double(event, "total_cost_usd");
    if (!cost) cost = Double(event, "cost_usd");
    if (cost) out.usage.cost_usd = cost;
    const json& usage = Field(event, "usage");
    const int64_t cache_read = Tokens(usage, "cache_read_input_tokens");
    out.usage.input_tokens = AddTokens(
        AddTokens(Tokens(usage, "input_tokens"), Tokens(usage, "cache_creation_input_tokens")),
        cache_read);
    out.usage.cached_tokens = cache_read;
    out.usage.output_tokens = Tokens(usage, "output_tokens");
    std::string step = ok ? "success" : out.reported_error;
    if (cost) {
      char buffer[32];
      std::snprintf(buffer, sizeof(buffer), " ($%.4f)", *cost);
      step += buffer;
    }
    builder.Step("result", step);
  }
}

void ParseCodexEvent(const json& event, OutputBuilder& builder) {
  CliOutput& out = builder.output();
  const std::string type = Str(event, "type");
  if (type == "item.completed") {
    const json& item = Field(event, "item");
    const std::string item_type = Str(item, "type");
    if (item_type == "agent_message") {
      std::string text = Str(item, "text");
      if (!text.empty()) out.summary = text;
      builder.Step("message", text);
    } else if (item_type == "reasoning") {
      builder.Step("reasoning", Str(item, "text"));
    } else if (item_type == "command_execution") {
      std::string summary = Str(item, "command");
      const json& exit_code = Field(item, "exit_code");
      if (exit_code.is_number_integer()) {
        summary += " (exit " + std::to_string(exit_code.get<int64_t>()) + ")";
      }
      builder.Step("command", summary);
    } else if (item_type == "file_change") {
      std::string summary;
      const json& changes = Field(item, "changes");
      if (changes.is_array()) {
        for (const auto& change : changes) {
          if (!summary.empty()) summary += ", ";
          summary += Str(change, "kind") + " " + Str(change, "path");
        }
      }
      builder.Step("file_change", summary);
    } else if (item_type == "mcp_tool_call") {
      builder.Step("tool_use", Str(item, "server") + "." + Str(item, "tool"));
    } else if (item_type == "web_search") {
      builder.Step("web_search", Str(item, "query"));
    } else if (item_type == "error") {
      builder.Step("error", Str(item, "message"));
    }
  } else if (type == "turn.completed") {
    const json& usage = Field(event, "usage");
    out.usage.input_tokens = AddTokens(out.usage.input_tokens, Tokens(usage, "input_tokens"));
    out.usage.cached_tokens =
        AddTokens(out.usage.cached_tokens, Tokens(usage, "cached_input_tokens"));
    out.usage.output_tokens = AddTokens(out.usage.output_tokens, Tokens(usage, "output_tokens"));
    out.reported_ok = true;
    out.reported_error.clear();
    builder.Step("result", "turn completed");
  } else if (type == "turn.failed") {
    out.reported_ok = false;
    out.reported_error = Str(Field(event, "error"), "message");
    if (out.reported_error.empty()) out.reported_error = "turn failed";
    builder.Step("result", "turn failed: " + out.reported_error);
  } else if (type == "error") {
    out.reported_error = Str(event, "message");
    builder.Step("error", out.reported_error);
  }
}

const std::vector<CliPreset> kPresets = {
    {"claude",
     "claude -p --output-format stream-json --verbose --permission-mode acceptEdits "
     "--model {model}",
     CliOutputFormat::kClaudeStreamJson},
    {"codex", "codex exec --json --full-auto --model {model} -", CliOutputFormat::kCodexJson},
    {"opencode", "opencode run --model {model} {prompt}", CliOutputFormat::kPlain},
    {"aider", "aider --yes-always --no-auto-commits --message-file {prompt_file} --model {model}",
     CliOutputFormat::kPlain},
    {"gemini", "gemini --yolo -m {model} -p {prompt}", CliOutputFormat::kPlain},
};

}  // namespace

const std::vector<CliPreset>& CliPresets() { return kPresets; }

const CliPreset* FindCliPreset(std::string_view name) {
  for (const auto& preset : kPresets) {
    if (preset.name == name) return &preset;
  }
  return nullptr;
}

Result<std::vector<std::string>> SplitCommandTemplate(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\'') {
      size_t close = text.find('\'', i + 1);
      if (close == std::string_view::npos) {
        return InvalidArgument("unterminated ' in command template: " + std::string(text));
      }
      word.append(text.substr(i + 1, close - i - 1));
      i = close;
    } else if (c == '"') {
      size_t j = i + 1;
      for (; j < text.size() && text[j] != '"'; ++j) {
        if (text[j] == '\\' && j + 1 < text.size() && (text[j + 1] == '"' || text[j + 1] == '\\')) {
          ++j;
        }
        word += text[j];
      }
      if (j >= text.size()) {
        return InvalidArgument("unterminated \" in command template: " + std::string(text));
      }
      i = j;
    } else if (c == '\\') {
      if (i + 1 >= text.size()) {
        return InvalidArgument("trailing backslash in command template: " + std::string(text));
      }
      word += text[++i];
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) return InvalidArgument("empty command template");
  return words;
}

Result<std::vector<std::string>> ExpandCommandTemplate(const std::vector<std::string>& words,
                                                       const CliTemplateValues& values) {
  std::vector<std::string> argv;
  for (const auto& word : words) {
    if (values.model.empty() && word.find("{model}") != std::string::npos) {
      // "--model {model}": the option goes with its value; "--model={model}" goes alone.
      if (word == "{model}" && !argv.empty() && !argv.back().empty() &&
          argv.back().front() == '-') {
        argv.pop_back();
      }
      continue;
    }
    std::string expanded;
    // One left-to-right pass: substituted text is never scanned again, so a title containing
    // "{model}" stays as written.
    for (size_t i = 0; i < word.size(); ++i) {
      if (word[i] == '{') {
        size_t j = i + 1;
        while (j < word.size() && IsPlaceholderChar(word[j])) ++j;
        if (j < word.size() && word[j] == '}' && j > i + 1) {
          const std::string name = word.substr(i + 1, j - i - 1);
          if (name == "prompt_file") {
            expanded += values.prompt_file;
          } else if (name == "prompt") {
            expanded += values.prompt;
          } else if (name == "model") {
            expanded += values.model;
          } else if (name == "worktree") {
            expanded += values.worktree;
          } else {
            return InvalidArgument("unknown placeholder {" + name +
                                   "} in command template (known: {prompt_file}, {prompt}, "
                                   "{model}, {worktree})");
          }
          i = j;
          continue;
        }
      }
      expanded += word[i];
    }
    argv.push_back(std::move(expanded));
  }
  if (argv.empty()) return InvalidArgument("the command template expands to nothing");
  return argv;
}

Result<std::vector<std::string>> CliCommandWords(const AgentSpec& agent) {
  const CliPreset* preset = FindCliPreset(agent.preset);
  if (preset == nullptr) {
    return InvalidArgument("agent '" + agent.name + "': unknown cli preset '" + agent.preset + "'");
  }
  auto words = SplitCommandTemplate(agent.command.empty() ? preset->command_template
                                                          : std::string_view(agent.command));
  if (!words) return std::unexpected(words.error().Wrap("agent '" + agent.name + "'"));
  return words;
}

bool PromptOnStdin(const std::vector<std::string>& words) {
  for (const auto& word : words) {
    if (word.find("{prompt_file}") != std::string::npos ||
        word.find("{prompt}") != std::string::npos) {
      return false;
    }
  }
  return true;
}

CliOutput ParseCliOutput(CliOutputFormat format, std::istream& in, size_t tail_bytes) {
  OutputBuilder builder(tail_bytes);
  std::string last_text;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (format == CliOutputFormat::kPlain) {
      builder.OtherLine(line);
      continue;
    }
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    json event = line[first] == '{' ? json::parse(line, nullptr, false) : json(nullptr);
    if (!event.is_object()) {
      builder.OtherLine(line);
      continue;
    }
    ++builder.output().json_lines;
    if (format == CliOutputFormat::kClaudeStreamJson) {
      ParseClaudeEvent(event, builder, last_text);
    } else {
      ParseCodexEvent(event, builder);
    }
  }
  CliOutput& out = builder.output();
  if (out.summary.empty()) out.summary = last_text;
  if (!out.reported_ok && !out.reported_error.empty()) out.reported_ok = false;
  return builder.Finish();
}

}  // namespace factory
