#pragma once
// Which agent `factory init` writes, from what this host offers, so that the first `factory
// run` has an agent that can actually work here:
//   1. the built-in `llm` agent when a model provider is available, in this order:
//        FACTORY_LLM_BASE_URL (a local OpenAI-compatible server)  model alias local/fast
//        OPENAI_API_KEY or ANTHROPIC_API_KEY                      model alias cloud/fast
//      (aliases of the default models.yaml, which routes them to those providers);
//   2. else a coding CLI on PATH, in this order: claude, codex, opencode, gemini, aider;
//   3. else none: `factory run` then says what to configure (NoAgentMessage).
// A review gate is chosen only when a model other than every model the builder may use is
// available: FACTORY_LLM_REVIEW_MODEL (a second model id on the local server, model
// `local-review` of models.yaml) when it differs from FACTORY_LLM_MODEL, else gpt-4.1 with
// OPENAI_API_KEY, else claude-sonnet with ANTHROPIC_API_KEY (the cloud builder's cloud/fast
// holds neither).

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace factory::setup {

// What the choice may learn of the host. Injectable for tests.
struct HostProbe {
  // A variable of the environment; nullopt when unset. An empty value counts as unset.
  std::function<std::optional<std::string>(const std::string& name)> env;
  // Whether an executable of this name is on PATH.
  std::function<bool(const std::string& program)> on_path;
};

// The process's environment and PATH.
HostProbe SystemProbe();

// Whether `program` is an executable file in one of the directories of `path_value`
// (a PATH-style list).
bool FindOnPath(const std::string& program, std::string_view path_value);

enum class AgentKind { kLlm, kCli, kNone };
std::string_view AgentKindName(AgentKind kind);  // "llm", "cli", "none"

struct AgentChoice {
  AgentKind kind = AgentKind::kNone;
  std::string name;       // the agent's name ("llm-coder", "claude-coder"); "" for kNone
  std::string file_name;  // its file in .factory/agents/
  std::string file_text;
  std::string provider;  // llm: "local" | "openai" | "anthropic"; cli: the preset
  std::string model;     // llm: the alias it uses
  std::string reason;    // why this one ("FACTORY_LLM_BASE_URL is set", "`claude` is on PATH")

  std::string review_model;   // the review gate's model; "" = no review gate
  std::string review_reason;  // why that model, or why there is no review gate
};

// Chooses as above. `preference` forces a kind: "" (choose), "llm", a cli preset ("claude",
// ...), or "none". InvalidArgument for an unknown preference; FailedPrecondition when the
// preferred agent cannot run here, saying what is missing.
Result<AgentChoice> ChooseAgent(const HostProbe& probe, std::string_view preference = "");

// What `factory run` says when `agents_dir` holds no agent: the choices and how to make each.
std::string NoAgentMessage(const std::filesystem::path& agents_dir);

}  // namespace factory::setup
