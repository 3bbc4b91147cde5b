#include "setup/agent_choice.h"

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <system_error>

#include "agents/examples.h"

namespace factory::setup {
namespace {

// The coding CLIs init looks for, in order of preference; each is a cli preset of the same name.
constexpr std::array<std::string_view, 5> kCliOrder = {"claude", "codex", "opencode", "gemini",
                                                       "aider"};

// Names shared with the default models.yaml (llm/models_config.cc), checked by a test.
constexpr char kLocalAlias[] = "local/fast";
constexpr char kCloudAlias[] = "cloud/fast";
constexpr char kLocalReviewModel[] = "local-review";
constexpr char kOpenAiReviewModel[] = "gpt-4.1";
constexpr char kAnthropicReviewModel[] = "claude-sonnet";

bool IsSet(const HostProbe& probe, const std::string& name) {
  auto value = probe.env(name);
  return value && !value->empty();
}

std::string ValueOr(const HostProbe& probe, const std::string& name, std::string fallback) {
  auto value = probe.env(name);
  return value && !value->empty() ? *value : fallback;
}

bool IsCliPreset(std::string_view name) {
  for (std::string_view preset : kCliOrder) {
    if (preset == name) return true;
  }
  return false;
}

void ChooseReview(const HostProbe& probe, AgentChoice& choice) {
  const bool local = IsSet(probe, "FACTORY_LLM_BASE_URL");
  const bool local_builder = choice.kind == AgentKind::kLlm && choice.provider == "local";
  if (local && IsSet(probe, "FACTORY_LLM_REVIEW_MODEL")) {
    const std::string reviewer = ValueOr(probe, "FACTORY_LLM_REVIEW_MODEL", "");
    const std::string builder = ValueOr(probe, "FACTORY_LLM_MODEL", "default");
    if (reviewer != builder) {
      choice.review_model = kLocalReviewModel;
      choice.review_reason =
          "FACTORY_LLM_REVIEW_MODEL names a second model (" + reviewer + ") on the local server";
      return;
    }
  }
  if (local && choice.kind == AgentKind::kCli) {
    choice.review_model = kLocalAlias;
    choice.review_reason = "the local server's model is not the CLI's";
    return;
  }
  if (IsSet(probe, "OPENAI_API_KEY")) {
    choice.review_model = kOpenAiReviewModel;
    choice.review_reason = "OPENAI_API_KEY is set and gpt-4.1 is not a model of the builder";
    return;
  }
  if (IsSet(probe, "ANTHROPIC_API_KEY")) {
    choice.review_model = kAnthropicReviewModel;
    choice.review_reason =
        "ANTHROPIC_API_KEY is set and claude-sonnet is not a model of the builder";
    return;
  }
  choice.review_reason =
      local_builder
          ? "no model other than the builder's is available (FACTORY_LLM_REVIEW_MODEL: a second "
            "model id the same server serves; or a cloud key)"
          : "no model other than the builder's is available";
}

Result<AgentChoice> LlmChoice(const HostProbe& probe) {
  AgentChoice choice;
  choice.kind = AgentKind::kLlm;
  if (IsSet(probe, "FACTORY_LLM_BASE_URL")) {
    choice.provider = "local";
    choice.model = kLocalAlias;
    choice.reason = "FACTORY_LLM_BASE_URL is set (a local OpenAI-compatible server, model " +
                    ValueOr(probe, "FACTORY_LLM_MODEL", "default") + ")";
  } else if (IsSet(probe, "OPENAI_API_KEY")) {
    choice.provider = "openai";
    choice.model = kCloudAlias;
    choice.reason = "OPENAI_API_KEY is set";
  } else if (IsSet(probe, "ANTHROPIC_API_KEY")) {
    choice.provider = "anthropic";
    choice.model = kCloudAlias;
    choice.reason = "ANTHROPIC_API_KEY is set";
  } else {
    return FailedPrecondition(
        "the llm agent needs a model provider: set FACTORY_LLM_BASE_URL (a local "
        "OpenAI-compatible server), OPENAI_API_KEY or ANTHROPIC_API_KEY");
  }
  ExampleFile file = LlmAgentFile(choice.model, "Chosen by `factory init`: " + choice.reason + ".");
  choice.name = "llm-coder";
  choice.file_name = file.name;
  choice.file_text = std::move(file.content);
  return choice;
}

Result<AgentChoice> CliChoice(std::string_view preset) {
  AgentChoice choice;
  choice.kind = AgentKind::kCli;
  choice.provider = std::string(preset);
  choice.reason = "`" + std::string(preset) + "` is on PATH";
  FACTORY_ASSIGN_OR_RETURN(
      ExampleFile file, CliAgentFile(preset, "Chosen by `factory init`: " + choice.reason + "."));
  choice.name = std::string(preset) + "-coder";
  choice.file_name = file.name;
  choice.file_text = std::move(file.content);
  return choice;
}

}  // namespace

HostProbe SystemProbe() {
  HostProbe probe;
  probe.env = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
  probe.on_path = [](const std::string& program) {
    const char* path = std::getenv("PATH");
    return FindOnPath(program, path == nullptr ? "/usr/local/bin:/usr/bin:/bin" : path);
  };
  return probe;
}

bool FindOnPath(const std::string& program, std::string_view path_value) {
  if (program.empty() || program.find('/') != std::string::npos) return false;
  size_t start = 0;
  while (start <= path_value.size()) {
    size_t end = path_value.find(':', start);
    if (end == std::string_view::npos) end = path_value.size();
    std::string dir(path_value.substr(start, end - start));
    if (dir.empty()) dir = ".";
    const std::filesystem::path candidate = std::filesystem::path(dir) / program;
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec) && access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

std::string_view AgentKindName(AgentKind kind) {
  switch (kind) {
    case AgentKind::kLlm:
      return "llm";
    case AgentKind::kCli:
      return "cli";
    case AgentKind::kNone:
      return "none";
  }
  return "none";
}

Result<AgentChoice> ChooseAgent(const HostProbe& probe, std::string_view preference) {
  if (!preference.empty() && preference != "llm" && preference != "none" &&
      !IsCliPreset(preference)) {
    return InvalidArgument("--agent: unknown agent kind '" + std::string(preference) +
                           "' (llm, claude, codex, opencode, gemini, aider or none)");
  }
  AgentChoice choice;
  if (preference == "none") {
    choice.reason = "--agent none";
  } else if (preference == "llm") {
    FACTORY_ASSIGN_OR_RETURN(choice, LlmChoice(probe));
  } else if (!preference.empty()) {
    if (!probe.on_path(std::string(preference))) {
      return FailedPrecondition("--agent " + std::string(preference) + ": `" +
                                std::string(preference) + "` is not on PATH");
    }
    FACTORY_ASSIGN_OR_RETURN(choice, CliChoice(preference));
  } else if (auto llm = LlmChoice(probe); llm) {
    choice = std::move(*llm);
  } else {
    choice.reason =
        "no model provider (FACTORY_LLM_BASE_URL, OPENAI_API_KEY, ANTHROPIC_API_KEY) is set "
        "and no coding CLI (claude, codex, opencode, gemini, aider) is on PATH";
    for (std::string_view preset : kCliOrder) {
      if (!probe.on_path(std::string(preset))) continue;
      FACTORY_ASSIGN_OR_RETURN(choice, CliChoice(preset));
      break;
    }
  }
  if (choice.kind != AgentKind::kNone) ChooseReview(probe, choice);
  return choice;
}

std::string NoAgentMessage(const std::filesystem::path& agents_dir) {
  const std::string dir = agents_dir.string();
  return "no agent can take tasks: " + dir +
         " has no agent file (*.md). Configure one of:\n"
         "  - a model provider for the built-in llm agent: export FACTORY_LLM_BASE_URL="
         "http://127.0.0.1:8080/v1 (a local llama.cpp/Ollama/vLLM server; FACTORY_LLM_MODEL "
         "names its model), or OPENAI_API_KEY, or ANTHROPIC_API_KEY; then run `factory init` "
         "again (it writes " +
         dir +
         "/llm-coder.md and keeps every other file)\n"
         "  - a coding CLI on PATH (claude, codex, opencode, gemini or aider), then `factory "
         "init` again (or `factory init --agent claude`)\n"
         "  - or copy an example from " +
         dir + "/examples/ into " + dir + " and edit it";
}

}  // namespace factory::setup
