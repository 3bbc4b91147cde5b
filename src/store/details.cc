#include "store/details.h"

#include <nlohmann/json.hpp>
#include <set>
#include <type_traits>
#include <utility>

namespace factory {
namespace {

using json = nlohmann::json;

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

const char* TypeName(const json& value) { return value.type_name(); }

// Reads the fields of one JSON object, remembering which keys it consumed so that the rest can
// go to `extra`, and the first type error with the field's dotted path.
class Reader {
 public:
  Reader(const json& object, std::string what, std::string prefix = "")
      : object_(object), what_(std::move(what)), prefix_(std::move(prefix)) {}

  template <typename T>
  void Get(const char* key, T& out) {
    const json* value = Find(key);
    if (value == nullptr) return;
    Convert(key, *value, out);
  }
  template <typename T>
  void Get(const char* key, std::optional<T>& out) {
    const json* value = Find(key);
    if (value == nullptr) return;
    T converted{};
    if (Convert(key, *value, converted)) out = std::move(converted);
  }
  // A nested object read by `read`, which gets a Reader for it.
  template <typename T, typename Fn>
  void Object(const char* key, std::optional<T>& out, Fn read) {
    const json* value = Find(key);
    if (value == nullptr) return;
    if (!value->is_object()) return Mismatch(key, "an object", *value);
    Reader nested(*value, what_, Path(key) + ".");
    T converted{};
    read(nested, converted);
    if (nested.error_) {
      if (!error_) error_ = std::move(nested.error_);
      return;
    }
    out = std::move(converted);
  }
  // An array of objects, each read by `read`.
  template <typename T, typename Fn>
  void Objects(const char* key, std::optional<std::vector<T>>& out, Fn read) {
    const json* value = Find(key);
    if (value == nullptr) return;
    if (!value->is_array()) return Mismatch(key, "an array", *value);
    std::vector<T> items;
    for (size_t index = 0; index < value->size(); ++index) {
      const std::string element = std::string(key) + "[" + std::to_string(index) + "]";
      const json& item = (*value)[index];
      if (!item.is_object()) return Mismatch(element, "an object", item);
      Reader nested(item, what_, Path(element) + ".");
      T converted{};
      read(nested, converted);
      if (nested.error_) {
        if (!error_) error_ = std::move(nested.error_);
        return;
      }
      items.push_back(std::move(converted));
    }
    out = std::move(items);
  }

  // The keys no Get/Object/Objects asked for, with their JSON text.
  std::map<std::string, std::string> Extra() const {
    std::map<std::string, std::string> extra;
    for (const auto& [key, value] : object_.items()) {
      if (!seen_.contains(key)) extra.emplace(key, Dump(value));
    }
    return extra;
  }

  Status status() const {
    if (error_) return std::unexpected(*error_);
    return Ok();
  }

 private:
  const json* Find(const char* key) {
    seen_.insert(key);
    auto it = object_.find(key);
    if (it == object_.end()) return nullptr;
    return &*it;
  }
  std::string Path(std::string_view key) const { return prefix_ + std::string(key); }
  void Mismatch(std::string_view key, const char* expected, const json& value) {
    if (error_) return;
    error_ = Error{ErrorCode::kInvalidArgument, what_ + ": field '" + Path(key) + "': expected " +
                                                    expected + ", got " + TypeName(value)};
  }

  bool Convert(std::string_view key, const json& value, std::string& out) {
    if (!value.is_string()) return Mismatch(key, "a string", value), false;
    out = value.get<std::string>();
    return true;
  }
  bool Convert(std::string_view key, const json& value, bool& out) {
    if (!value.is_boolean()) return Mismatch(key, "a boolean", value), false;
    out = value.get<bool>();
    return true;
  }
  bool Convert(std::string_view key, const json& value, double& out) {
    if (!value.is_number()) return Mismatch(key, "a number", value), false;
    out = value.get<double>();
    return true;
  }
  template <typename T>
  requires std::is_integral_v<T>
  bool Convert(std::string_view key, const json& value, T& out) {
    if (!value.is_number_integer()) return Mismatch(key, "an integer", value), false;
    out = value.get<T>();
    return true;
  }
  bool Convert(std::string_view key, const json& value, std::vector<std::string>& out) {
    if (!value.is_array()) return Mismatch(key, "an array of strings", value), false;
    std::vector<std::string> items;
    for (size_t index = 0; index < value.size(); ++index) {
      const json& item = value[index];
      if (!item.is_string()) {
        Mismatch(std::string(key) + "[" + std::to_string(index) + "]", "a string", item);
        return false;
      }
      items.push_back(item.get<std::string>());
    }
    out = std::move(items);
    return true;
  }

  const json& object_;
  std::string what_;
  std::string prefix_;
  std::set<std::string, std::less<>> seen_;
  std::optional<Error> error_;
};

Result<json> ParseObjectText(std::string_view text, const std::string& what) {
  if (text.empty()) return json::object();
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return InvalidArgument(what + ": not valid JSON");
  if (!parsed.is_object()) {
    return InvalidArgument(what + ": expected a JSON object, got " + TypeName(parsed));
  }
  return parsed;
}

// Writers: a field goes out only when it is set.
void Put(json& out, const char* key, const std::string& value) {
  if (!value.empty()) out[key] = value;
}
template <typename T>
void Put(json& out, const char* key, const std::optional<T>& value) {
  if (value) out[key] = *value;
}
void PutTrue(json& out, const char* key, bool value) {
  if (value) out[key] = true;
}
void PutList(json& out, const char* key, const std::vector<std::string>& value) {
  if (!value.empty()) out[key] = value;
}
void PutExtra(json& out, const std::map<std::string, std::string>& extra) {
  for (const auto& [key, text] : extra) {
    if (out.contains(key)) continue;  // a typed field wins
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!value.is_discarded()) out[key] = std::move(value);
  }
}

constexpr char kAttemptDetails[] = "attempt details";

void ReadUsage(Reader& in, AttemptUsageDetails& usage) {
  in.Get("input_tokens", usage.input_tokens);
  in.Get("output_tokens", usage.output_tokens);
  in.Get("cached_tokens", usage.cached_tokens);
  in.Get("cost_usd", usage.cost_usd);
  in.Get("model", usage.model);
}

void ReadGate(Reader& in, GateDetails& gate) {
  in.Get("name", gate.name);
  in.Get("passed", gate.passed);
  in.Get("exit_code", gate.exit_code);
  in.Get("timed_out", gate.timed_out);
  in.Get("duration_ms", gate.duration_ms);
  in.Get("log", gate.log);
}

void ReadReview(Reader& in, ReviewDetails& review) {
  in.Get("gate", review.gate);
  in.Get("model", review.model);
  in.Get("verdict", review.verdict);
  in.Get("reasons", review.reasons);
  in.Get("error", review.error);
}

}  // namespace

double AttemptDetails::AgentCostUsd() const {
  if (usage && usage->cost_usd) return *usage->cost_usd;
  return cost_usd.value_or(0);
}

double AttemptDetails::TotalCostUsd() const {
  // cost_usd is the agent's whole spending on the attempt; usage.cost_usd is the same money.
  return cost_usd.value_or(usage && usage->cost_usd ? *usage->cost_usd : 0) +
         review_cost_usd.value_or(0) + rebase_cost_usd.value_or(0);
}

Result<AttemptDetails> ParseAttemptDetails(std::string_view json_text) {
  FACTORY_ASSIGN_OR_RETURN(json object, ParseObjectText(json_text, kAttemptDetails));
  AttemptDetails details;
  Reader in(object, kAttemptDetails);
  in.Get("attempt", details.attempt);
  in.Get("task_key", details.task_key);
  in.Get("agent", details.agent);
  in.Get("runner", details.runner);
  in.Get("spec_version", details.spec_version);
  in.Get("worktree", details.worktree);
  in.Get("start_commit", details.start_commit);
  in.Get("attempt_dir", details.attempt_dir);
  in.Object("saved_refs", details.saved_refs, [](Reader& refs, SavedRefsDetails& out) {
    refs.Get("snapshot_ref", out.snapshot_ref);
    refs.Get("attempt_ref", out.attempt_ref);
  });
  in.Get("had_feedback", details.had_feedback);
  in.Object("usage", details.usage, ReadUsage);
  in.Get("prompt_bytes", details.prompt_bytes);
  in.Get("runner_ms", details.runner_ms);
  in.Get("runner_exit_code", details.runner_exit_code);
  in.Get("steps", details.steps);
  in.Get("agent_summary", details.agent_summary);
  in.Get("budget_exceeded", details.budget_exceeded);
  in.Get("commit", details.commit);
  in.Get("changed_paths", details.changed_paths);
  in.Get("excluded_paths", details.excluded_paths);
  in.Get("excluded_paths_total", details.excluded_paths_total);
  in.Get("tampering", details.tampering);
  in.Get("protected_violations", details.protected_violations);
  in.Get("scope_violations", details.scope_violations);
  in.Get("shadowing_paths", details.shadowing_paths);
  in.Objects("gates", details.gates, ReadGate);
  in.Objects("reviews", details.reviews, ReadReview);
  in.Get("gates_passed", details.gates_passed);
  in.Get("cost_usd", details.cost_usd);
  in.Get("review_cost_usd", details.review_cost_usd);
  in.Get("rebase_cost_usd", details.rebase_cost_usd);
  in.Get("rebase_failed", details.rebase_failed);
  in.Object("rebased", details.rebased, [](Reader& rebased, RebasedDetails& out) {
    rebased.Get("spec_version", out.spec_version);
    rebased.Get("previous_spec_version", out.previous_spec_version);
    rebased.Get("spec_file", out.spec_file);
  });
  in.Get("failed_phase", details.failed_phase);
  in.Get("feedback", details.feedback);
  in.Get("cancelled_in", details.cancelled_in);
  in.Get("merge_commit", details.merge_commit);
  in.Get("already_merged", details.already_merged);
  in.Get("conflicts", details.conflicts);
  FACTORY_RETURN_IF_ERROR(in.status());
  details.extra = in.Extra();
  return details;
}

std::string AttemptDetailsJson(const AttemptDetails& details) {
  json out = json::object();
  Put(out, "attempt", details.attempt);
  Put(out, "task_key", details.task_key);
  Put(out, "agent", details.agent);
  Put(out, "runner", details.runner);
  Put(out, "spec_version", details.spec_version);
  Put(out, "worktree", details.worktree);
  Put(out, "start_commit", details.start_commit);
  Put(out, "attempt_dir", details.attempt_dir);
  if (details.saved_refs) {
    json refs = json::object();
    Put(refs, "snapshot_ref", details.saved_refs->snapshot_ref);
    Put(refs, "attempt_ref", details.saved_refs->attempt_ref);
    out["saved_refs"] = std::move(refs);
  }
  Put(out, "had_feedback", details.had_feedback);
  if (details.usage) {
    json usage{{"input_tokens", details.usage->input_tokens},
               {"output_tokens", details.usage->output_tokens},
               {"cached_tokens", details.usage->cached_tokens}};
    Put(usage, "cost_usd", details.usage->cost_usd);
    Put(usage, "model", details.usage->model);
    out["usage"] = std::move(usage);
  }
  Put(out, "prompt_bytes", details.prompt_bytes);
  Put(out, "runner_ms", details.runner_ms);
  Put(out, "runner_exit_code", details.runner_exit_code);
  Put(out, "steps", details.steps);
  Put(out, "agent_summary", details.agent_summary);
  PutTrue(out, "budget_exceeded", details.budget_exceeded);
  Put(out, "commit", details.commit);
  Put(out, "changed_paths", details.changed_paths);
  Put(out, "excluded_paths", details.excluded_paths);
  Put(out, "excluded_paths_total", details.excluded_paths_total);
  PutTrue(out, "tampering", details.tampering);
  Put(out, "protected_violations", details.protected_violations);
  Put(out, "scope_violations", details.scope_violations);
  Put(out, "shadowing_paths", details.shadowing_paths);
  if (details.gates) {
    json gates = json::array();
    for (const GateDetails& gate : *details.gates) {
      gates.push_back(json{{"name", gate.name},
                           {"passed", gate.passed},
                           {"exit_code", gate.exit_code},
                           {"timed_out", gate.timed_out},
                           {"duration_ms", gate.duration_ms},
                           {"log", gate.log}});
    }
    out["gates"] = std::move(gates);
  }
  if (details.reviews) {
    json reviews = json::array();
    for (const ReviewDetails& review : *details.reviews) {
      json item{{"gate", review.gate}};
      if (!review.error.empty()) {
        item["error"] = review.error;
      } else {
        item["model"] = review.model;
        item["verdict"] = review.verdict;
        item["reasons"] = review.reasons;
      }
      reviews.push_back(std::move(item));
    }
    out["reviews"] = std::move(reviews);
  }
  Put(out, "gates_passed", details.gates_passed);
  Put(out, "cost_usd", details.cost_usd);
  Put(out, "review_cost_usd", details.review_cost_usd);
  Put(out, "rebase_cost_usd", details.rebase_cost_usd);
  Put(out, "rebase_failed", details.rebase_failed);
  if (details.rebased) {
    out["rebased"] = json{{"spec_version", details.rebased->spec_version},
                          {"previous_spec_version", details.rebased->previous_spec_version},
                          {"spec_file", details.rebased->spec_file}};
  }
  Put(out, "failed_phase", details.failed_phase);
  Put(out, "feedback", details.feedback);
  Put(out, "cancelled_in", details.cancelled_in);
  Put(out, "merge_commit", details.merge_commit);
  Put(out, "already_merged", details.already_merged);
  Put(out, "conflicts", details.conflicts);
  PutExtra(out, details.extra);
  return Dump(out);
}

Result<RunMetadata> ParseRunMetadata(std::string_view json_text) {
  constexpr char kWhat[] = "run metadata";
  FACTORY_ASSIGN_OR_RETURN(json object, ParseObjectText(json_text, kWhat));
  RunMetadata metadata;
  Reader in(object, kWhat);
  in.Get("base_branch", metadata.base_branch);
  in.Get("integration_branch", metadata.integration_branch);
  in.Get("backlog", metadata.backlog);
  in.Get("repo", metadata.repo);
  in.Get("feature", metadata.feature);
  in.Get("feature_request", metadata.feature_request);
  FACTORY_RETURN_IF_ERROR(in.status());
  metadata.extra = in.Extra();
  return metadata;
}

std::string RunMetadataJson(const RunMetadata& metadata) {
  json out = json::object();
  Put(out, "base_branch", metadata.base_branch);
  Put(out, "integration_branch", metadata.integration_branch);
  Put(out, "backlog", metadata.backlog);
  Put(out, "repo", metadata.repo);
  Put(out, "feature", metadata.feature);
  Put(out, "feature_request", metadata.feature_request);
  PutExtra(out, metadata.extra);
  return Dump(out);
}

Result<TaskMetadata> ParseTaskMetadata(std::string_view json_text) {
  constexpr char kWhat[] = "task metadata";
  FACTORY_ASSIGN_OR_RETURN(json object, ParseObjectText(json_text, kWhat));
  TaskMetadata metadata;
  Reader in(object, kWhat);
  in.Get("backlog_id", metadata.backlog_id);
  in.Get("allow_protected", metadata.allow_protected);
  in.Get("scope", metadata.scope);
  in.Get("files", metadata.files);
  in.Get("agent", metadata.agent);
  in.Get("type", metadata.type);
  in.Get("capabilities", metadata.capabilities);
  in.Get("backlog_line", metadata.backlog_line);
  FACTORY_RETURN_IF_ERROR(in.status());
  metadata.extra = in.Extra();
  return metadata;
}

std::string TaskMetadataJson(const TaskMetadata& metadata) {
  json out = json::object();
  Put(out, "backlog_id", metadata.backlog_id);
  // Written even when empty, as every backlog task always had them: readers may rely on them.
  out["allow_protected"] = metadata.allow_protected;
  out["scope"] = metadata.scope;
  PutList(out, "files", metadata.files);
  out["agent"] = metadata.agent;
  out["type"] = metadata.type;
  out["capabilities"] = metadata.capabilities;
  Put(out, "backlog_line", metadata.backlog_line);
  PutExtra(out, metadata.extra);
  return Dump(out);
}

}  // namespace factory
