#include "agents/registry.h"

#include <algorithm>
#include <system_error>

namespace factory {
namespace {

std::string JoinCapabilities(const std::vector<std::string>& capabilities) {
  std::string out = "[";
  for (size_t i = 0; i < capabilities.size(); ++i) {
    if (i > 0) out += ", ";
    out += capabilities[i];
  }
  return out + "]";
}

}  // namespace

std::string AgentStatus::ToString() const {
  switch (state) {
    case AgentState::kIdle:
      return "idle";
    case AgentState::kBusy:
      return "busy(" + std::to_string(in_use) + "/" + std::to_string(concurrency) + ")";
    case AgentState::kPaused:
      return pause_reason.empty() ? "paused" : "paused: " + pause_reason;
  }
  return "unknown";
}

Result<Loaded<std::unique_ptr<AgentRegistry>>> AgentRegistry::LoadDirectory(
    const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return NotFound("agents directory " + dir.string() + " does not exist");
  }
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".md" && it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) return Unavailable("cannot list " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());

  auto registry = std::make_unique<AgentRegistry>();
  std::vector<Diagnostic> warnings;
  std::vector<std::string> errors;
  std::map<std::string, std::string> first_file;  // name -> file that defined it
  for (const auto& file : files) {
    auto loaded = LoadAgentFile(file);
    if (!loaded) {
      errors.push_back(loaded.error().message);
      continue;
    }
    warnings.insert(warnings.end(), loaded->warnings.begin(), loaded->warnings.end());
    const std::string name = loaded->value.name;
    if (auto it = first_file.find(name); it != first_file.end()) {
      auto line = loaded->value.field_lines.find("name");
      errors.push_back(file.string() + ":" +
                       std::to_string(line == loaded->value.field_lines.end() ? 1 : line->second) +
                       ": field 'name': duplicate agent name '" + name + "' (also defined in " +
                       it->second + ")");
      continue;
    }
    first_file.emplace(name, file.string());
    (void)registry->Add(std::move(loaded->value));
  }
  if (!errors.empty()) {
    std::string message;
    for (const auto& error : errors) {
      if (!message.empty()) message += "\n";
      message += error;
    }
    return InvalidArgument(std::move(message));
  }
  return Loaded<std::unique_ptr<AgentRegistry>>{std::move(registry), std::move(warnings)};
}

Status AgentRegistry::Add(AgentSpec spec) {
  if (agents_.contains(spec.name)) {
    return AlreadyExists("duplicate agent name '" + spec.name + "'");
  }
  std::lock_guard lock(mu_);
  slots_[spec.name] = Slot{};
  std::string name = spec.name;
  agents_.emplace(std::move(name), std::make_unique<AgentSpec>(std::move(spec)));
  return Ok();
}

void AgentRegistry::SetDefaultAgents(DefaultAgents defaults) {
  std::lock_guard lock(mu_);
  defaults_ = std::move(defaults);
}

const AgentSpec* AgentRegistry::Find(std::string_view name) const {
  auto it = agents_.find(name);
  return it == agents_.end() ? nullptr : it->second.get();
}

std::vector<const AgentSpec*> AgentRegistry::agents() const {
  std::vector<const AgentSpec*> out;
  for (const auto& [name, spec] : agents_) out.push_back(spec.get());
  return out;
}

Result<AgentRegistry::Choice> AgentRegistry::Candidates(const AgentRequest& request,
                                                        const DefaultAgents& defaults) const {
  Choice choice;
  if (!request.agent.empty()) {
    choice.fixed = Find(request.agent);
    if (choice.fixed == nullptr) return NotFound("unknown agent '" + request.agent + "'");
    return choice;
  }
  if (!request.type.empty()) {
    if (auto it = defaults.find(request.type); it != defaults.end()) {
      const AgentSpec* preferred = Find(it->second);
      if (preferred == nullptr) {
        return NotFound("default agent '" + it->second + "' for task type '" + request.type +
                        "' (config default_agents) is not defined");
      }
      if (preferred->Covers(request.capabilities)) {
        choice.fixed = preferred;
        return choice;
      }
    }
  }
  for (const auto& [name, spec] : agents_) {
    if (spec->Covers(request.capabilities)) choice.by_preference.push_back(spec.get());
  }
  if (choice.by_preference.empty()) {
    return FailedPrecondition("no agent has all of the capabilities " +
                              JoinCapabilities(request.capabilities));
  }
  // agents_ is ordered by name, so a stable sort by tier leaves ties by name.
  std::stable_sort(
      choice.by_preference.begin(), choice.by_preference.end(),
      [](const AgentSpec* a, const AgentSpec* b) { return a->cost_tier < b->cost_tier; });
  return choice;
}

Result<const AgentSpec*> AgentRegistry::Resolve(const AgentRequest& request) const {
  DefaultAgents defaults;
  {
    std::lock_guard lock(mu_);
    defaults = defaults_;
  }
  FACTORY_ASSIGN_OR_RETURN(Choice choice, Candidates(request, defaults));
  return choice.fixed != nullptr ? choice.fixed : choice.by_preference.front();
}

Result<const AgentSpec*> AgentRegistry::Acquire(const AgentRequest& request) {
  std::lock_guard lock(mu_);
  FACTORY_ASSIGN_OR_RETURN(Choice choice, Candidates(request, defaults_));
  std::vector<const AgentSpec*> order = choice.by_preference;
  if (choice.fixed != nullptr) order = {choice.fixed};
  std::string why;
  for (const AgentSpec* spec : order) {
    Slot& slot = slots_[spec->name];
    if (!slot.paused && slot.in_use < spec->concurrency) {
      ++slot.in_use;
      return spec;
    }
    if (!why.empty()) why += ", ";
    why += spec->name + " " + StatusLocked(*spec).ToString();
  }
  return Unavailable((order.size() == 1 ? "the agent for this task is not free: "
                                        : "every agent able to take this task is busy: ") +
                     why);
}

Status AgentRegistry::TryAcquire(std::string_view name) {
  const AgentSpec* spec = Find(name);
  if (spec == nullptr) return NotFound("unknown agent '" + std::string(name) + "'");
  std::lock_guard lock(mu_);
  Slot& slot = slots_[spec->name];
  if (slot.paused || slot.in_use >= spec->concurrency) {
    return Unavailable("agent '" + spec->name + "' is " + StatusLocked(*spec).ToString());
  }
  ++slot.in_use;
  return Ok();
}

void AgentRegistry::Release(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = slots_.find(name);
  // A release without an acquire is a caller bug; never let the count go negative.
  if (it != slots_.end() && it->second.in_use > 0) --it->second.in_use;
}

Status AgentRegistry::Pause(std::string_view name, std::string reason) {
  if (Find(name) == nullptr) return NotFound("unknown agent '" + std::string(name) + "'");
  std::lock_guard lock(mu_);
  Slot& slot = slots_.find(name)->second;
  slot.paused = true;
  slot.pause_reason = std::move(reason);
  return Ok();
}

Status AgentRegistry::Resume(std::string_view name) {
  if (Find(name) == nullptr) return NotFound("unknown agent '" + std::string(name) + "'");
  std::lock_guard lock(mu_);
  Slot& slot = slots_.find(name)->second;
  slot.paused = false;
  slot.pause_reason.clear();
  return Ok();
}

Status AgentRegistry::CheckModelAliases(
    const std::function<bool(std::string_view)>& is_known_alias) const {
  std::vector<Diagnostic> errors;
  for (const auto& [name, spec] : agents_) {
    auto line_of = [&](const char* field) {
      auto it = spec->field_lines.find(field);
      return it == spec->field_lines.end() ? 0 : it->second;
    };
    const std::string file = spec->source.empty() ? "agent '" + name + "'" : spec->source;
    if (!spec->model.empty() && !is_known_alias(spec->model)) {
      errors.push_back(Diagnostic{Severity::kError, file, line_of("model"), "", "model",
                                  "unknown model alias '" + spec->model + "'"});
    }
    for (size_t index = 0; index < spec->fallbacks.size(); ++index) {
      if (is_known_alias(spec->fallbacks[index])) continue;
      errors.push_back(Diagnostic{Severity::kError, file, line_of("fallbacks"), "",
                                  "fallbacks[" + std::to_string(index) + "]",
                                  "unknown model alias '" + spec->fallbacks[index] + "'"});
    }
  }
  if (!errors.empty()) return InvalidArgument(FormatDiagnostics(errors));
  return Ok();
}

AgentStatus AgentRegistry::StatusLocked(const AgentSpec& spec) const {
  AgentStatus status;
  status.name = spec.name;
  status.concurrency = spec.concurrency;
  auto it = slots_.find(spec.name);
  if (it != slots_.end()) {
    status.in_use = it->second.in_use;
    if (it->second.paused) {
      status.state = AgentState::kPaused;
      status.pause_reason = it->second.pause_reason;
    } else if (status.in_use > 0) {
      status.state = AgentState::kBusy;
    }
  }
  return status;
}

Result<AgentStatus> AgentRegistry::StatusOf(std::string_view name) const {
  const AgentSpec* spec = Find(name);
  if (spec == nullptr) return NotFound("unknown agent '" + std::string(name) + "'");
  std::lock_guard lock(mu_);
  return StatusLocked(*spec);
}

std::vector<AgentStatus> AgentRegistry::Statuses() const {
  std::lock_guard lock(mu_);
  std::vector<AgentStatus> out;
  for (const auto& [name, spec] : agents_) out.push_back(StatusLocked(*spec));
  return out;
}

}  // namespace factory
