#include "prompts/library.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "core/text_file.h"
#include "prompts/internal/embedded.h"

namespace factory::prompts {
namespace {

namespace fs = std::filesystem;

// Templates are small; anything larger is not a prompt someone meant to write.
constexpr std::uintmax_t kMaxTemplateBytes = 256 * 1024;

std::string JoinNames(const std::map<std::string, PromptEntry, std::less<>>& entries) {
  std::string names;
  for (const auto& [name, entry] : entries) names += (names.empty() ? "" : ", ") + name;
  return names;
}

std::string JoinVariables(const PromptTemplate& prompt) {
  std::string names;
  for (const auto& variable : prompt.variables()) {
    names += (names.empty() ? "" : ", ") + variable.name;
  }
  return names.empty() ? "none" : names;
}

// An override may ask only for what the factory gives the default it replaces.
Status CheckOverride(const PromptTemplate& override_prompt, const PromptTemplate& builtin) {
  for (const auto& variable : override_prompt.variables()) {
    const PromptVariable* provided = builtin.FindVariable(variable.name);
    const std::string where = override_prompt.file() + ":" + std::to_string(variable.line) + ": ";
    if (provided == nullptr) {
      return InvalidArgument(where + "variable " + variable.name + " is not provided for prompt " +
                             builtin.name() + " (the factory provides: " + JoinVariables(builtin) +
                             ")");
    }
    if (variable.required && !provided->required) {
      return InvalidArgument(where + "variable " + variable.name + " is optional for prompt " +
                             builtin.name() +
                             " (the factory does not always provide it): declare it under "
                             "optional:");
    }
  }
  return Ok();
}

Result<std::string> ReadTemplateFile(const fs::path& path) {
  std::error_code error;
  const auto size = fs::file_size(path, error);
  if (error) return NotFound("cannot read " + path.string() + ": " + error.message());
  if (size > kMaxTemplateBytes) {
    return InvalidArgument(path.string() +
                           ": a prompt template may be at most 256 KiB (this one is " +
                           std::to_string(size) + " bytes)");
  }
  auto text = ReadTextFile(path, ReadTextOptions{.max_bytes = kMaxTemplateBytes});
  if (!text && text.error().code == ErrorCode::kNotFound) {
    return NotFound("cannot read " + path.string());
  }
  return text;
}

}  // namespace

std::string_view PromptSourceName(PromptSource source) {
  return source == PromptSource::kBuiltin ? "builtin" : "project";
}

bool IsValidPromptName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Result<PromptLibrary> PromptLibrary::Builtin() {
  PromptLibrary library;
  for (std::size_t index = 0; index < internal::kEmbeddedPromptCount; ++index) {
    const internal::EmbeddedPrompt& embedded = internal::kEmbeddedPrompts[index];
    const std::string_view text(reinterpret_cast<const char*>(embedded.data), embedded.size);
    const std::string name = embedded.name;
    auto parsed = PromptTemplate::Parse(text, name, "prompts/" + name + ".md");
    if (!parsed) return std::unexpected(parsed.error().Wrap("built-in prompt " + name));
    library.entries_.emplace(
        name, PromptEntry{.prompt = std::move(*parsed), .source = PromptSource::kBuiltin});
  }
  return library;
}

Result<PromptLibrary> PromptLibrary::Load(const fs::path& override_dir) {
  FACTORY_ASSIGN_OR_RETURN(PromptLibrary library, Builtin());
  std::error_code error;
  if (!fs::exists(override_dir, error)) return library;
  if (!fs::is_directory(override_dir, error)) {
    return InvalidArgument(override_dir.string() + " is not a directory");
  }
  std::vector<fs::path> files;
  for (fs::directory_iterator it(override_dir, error), end; !error && it != end;
       it.increment(error)) {
    const fs::path& path = it->path();
    if (path.extension() != ".md" || path.filename() == "README.md") continue;
    files.push_back(path);
  }
  if (error) return Unavailable("cannot list " + override_dir.string() + ": " + error.message());
  std::sort(files.begin(), files.end());

  for (const fs::path& path : files) {
    const std::string name = path.stem().string();
    if (!IsValidPromptName(name)) {
      return InvalidArgument(path.string() + ": invalid prompt name '" + name +
                             "' (file names are lowercase letters, digits and '-', e.g. "
                             "implement.md)");
    }
    FACTORY_ASSIGN_OR_RETURN(std::string text, ReadTemplateFile(path));
    FACTORY_ASSIGN_OR_RETURN(PromptTemplate parsed,
                             PromptTemplate::Parse(text, name, path.string()));
    auto existing = library.entries_.find(name);
    const bool overrides = existing != library.entries_.end();
    if (overrides) FACTORY_RETURN_IF_ERROR(CheckOverride(parsed, existing->second.prompt));
    PromptEntry entry{.prompt = std::move(parsed),
                      .source = PromptSource::kProject,
                      .overrides_builtin = overrides};
    if (overrides) {
      existing->second = std::move(entry);
    } else {
      library.entries_.emplace(name, std::move(entry));
    }
  }
  return library;
}

std::vector<const PromptEntry*> PromptLibrary::List() const {
  std::vector<const PromptEntry*> list;
  list.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) list.push_back(&entry);
  return list;
}

Result<const PromptEntry*> PromptLibrary::Find(std::string_view name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return NotFound("no prompt named '" + std::string(name) + "' (known: " + JoinNames(entries_) +
                    ")");
  }
  return &it->second;
}

Result<std::string> PromptLibrary::Render(std::string_view name,
                                          const std::map<std::string, std::string>& values) const {
  FACTORY_ASSIGN_OR_RETURN(const PromptEntry* entry, Find(name));
  return entry->prompt.Render(values);
}

}  // namespace factory::prompts
