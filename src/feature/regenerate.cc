#include "feature/regenerate.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <system_error>

#include "core/clock.h"
#include "feature/feature_run.h"
#include "feature/internal/spec_files.h"
#include "workspace/worktree.h"

namespace factory::feature {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kVersionEntries[] = {"PLAN.md",       "BACKLOG.yaml", "context.md",
                                           "metadata.json", "planners",     "final-gates"};

bool IsFeatureId(const std::string& text) {
  if (text.empty() || text.size() > 64) return false;
  for (size_t index = 0; index < text.size(); ++index) {
    const char c = text[index];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && index > 0);
    if (!ok) return false;
  }
  return true;
}

std::string KnownFeatures(const fs::path& specs) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(specs, error)) {
    if (fs::is_regular_file(entry.path() / internal::kMetadataFile, error)) {
      names.push_back(entry.path().filename().string());
    }
  }
  if (names.empty()) return "no feature has been planned here yet (factory run FEATURE.md)";
  std::sort(names.begin(), names.end());
  std::string text = "known features:";
  for (const auto& name : names) text += " " + name;
  return text;
}

// Copies a version's files to history/v<version>/, overwriting what an interrupted earlier
// copy left.
Status CopyToHistory(const fs::path& spec_dir, int version) {
  const fs::path target = spec_dir / "history" / ("v" + std::to_string(version));
  std::error_code error;
  fs::create_directories(target, error);
  if (error) return Internal("cannot create " + target.string() + ": " + error.message());
  for (const char* entry : kVersionEntries) {
    const fs::path from = spec_dir / entry;
    if (!fs::exists(from, error)) continue;
    fs::remove_all(target / entry, error);
    fs::copy(from, target / entry, fs::copy_options::recursive, error);
    if (error) {
      return Internal("cannot copy " + from.string() + " to " + target.string() + ": " +
                      error.message());
    }
  }
  return Ok();
}

std::string Money(double usd) {
  char text[32];
  std::snprintf(text, sizeof(text), "$%.4f", usd);
  return text;
}

json TaskResultJson(const std::optional<TaskResult>& result) {
  if (!result) return nullptr;
  return {{"state", result->state}, {"attempts", result->attempts}, {"cost_usd", result->cost_usd}};
}

std::string DescribeTask(const std::optional<TaskResult>& result) {
  if (!result) return "-";
  return result->state + " (" + std::to_string(result->attempts) + " attempt" +
         (result->attempts == 1 ? "" : "s") + ", " + Money(result->cost_usd) + ")";
}

json VersionJson(const VersionResult& version) {
  return {{"version", version.version},
          {"run_id", version.run_id},
          {"status", version.status},
          {"run_known", version.run_known},
          {"done", version.summary.done},
          {"failed", version.summary.failed},
          {"blocked", version.summary.blocked},
          {"total", version.summary.total},
          {"attempts", version.summary.attempts},
          {"cost_usd", version.summary.cost_usd}};
}

std::string DescribeVersion(const VersionResult& version) {
  std::string text = "version " + std::to_string(version.version) + " (run " +
                     (version.run_id.empty() ? "none" : version.run_id) +
                     "): " + (version.status.empty() ? "unknown" : version.status);
  if (!version.run_known) return text + "; the run is not in the database";
  return text + ", " + std::to_string(version.summary.done) + "/" +
         std::to_string(version.summary.total) + " tasks done, " +
         std::to_string(version.summary.attempts) + " attempts, " + Money(version.summary.cost_usd);
}

}  // namespace

Result<FeatureRef> ResolveFeature(const fs::path& repo_root, const std::string& argument) {
  FeatureRef feature;
  if (argument.ends_with(".md")) {
    feature.id = FeatureIdFor(argument);
  } else if (IsFeatureId(argument)) {
    feature.id = argument;
  } else {
    return InvalidArgument("'" + argument +
                           "' is neither a feature id (lowercase letters, digits and '-') nor a "
                           "feature request file (.md)");
  }
  const fs::path specs = repo_root / ".factory" / "specs";
  feature.spec_dir = specs / feature.id;
  std::error_code error;
  if (!fs::is_regular_file(feature.spec_dir / internal::kMetadataFile, error)) {
    return NotFound("unknown feature '" + feature.id + "': no " +
                    (feature.spec_dir / internal::kMetadataFile).string() + " (" +
                    KnownFeatures(specs) + ")");
  }
  return feature;
}

std::string RegenerationRunId(const std::string& feature_id, int version) {
  std::string base = feature_id.substr(0, 100);
  while (!base.empty() && base.back() == '-') base.pop_back();
  if (base.empty()) base = "feature";
  return base + "-r" + std::to_string(version);
}

Result<RegenerationStart> StartRegeneration(const fs::path& spec_dir, const std::string& run_id) {
  FACTORY_ASSIGN_OR_RETURN(json metadata, internal::ReadMetadata(spec_dir));
  RegenerationStart start;
  start.feature_id = metadata.value("feature_id", spec_dir.filename().string());
  start.backlog_path = spec_dir / internal::kBacklogFile;
  const int current_version = metadata.value("version", 1);
  const std::string current_run = metadata.value("run_id", "");
  std::error_code error;

  if (!run_id.empty() && run_id == current_run) {
    const json from = metadata.value("regenerated_from", json());
    if (!from.is_object()) {
      return FailedPrecondition("run " + run_id + " is version " + std::to_string(current_version) +
                                " of feature " + start.feature_id +
                                " as planned; continue it with `factory run FEATURE.md --run-id " +
                                run_id + "`, or regenerate under another run id");
    }
    if (!fs::is_regular_file(start.backlog_path, error)) {
      return FailedPrecondition("version " + std::to_string(current_version) + " has no " +
                                start.backlog_path.string());
    }
    start.version = current_version;
    start.run_id = run_id;
    start.previous_version = from.value("version", current_version - 1);
    start.previous_run_id = from.value("run_id", "");
    start.previous_status = from.value("status", "");
    start.resumed = true;
    return start;
  }

  if (!fs::is_regular_file(start.backlog_path, error)) {
    return FailedPrecondition("version " + std::to_string(current_version) + " of feature " +
                              start.feature_id + " has no BACKLOG.yaml (status " +
                              metadata.value("status", "unknown") +
                              "): nothing to regenerate from; plan it with `factory run "
                              "FEATURE.md`");
  }
  start.version = current_version + 1;
  start.run_id = run_id.empty() ? RegenerationRunId(start.feature_id, start.version) : run_id;
  FACTORY_RETURN_IF_ERROR(WorkspaceManager::ValidateId("run id", start.run_id));
  // An earlier version's run would be resumed, not rebuilt.
  for (const auto& entry : fs::directory_iterator(spec_dir / "history", error)) {
    const std::string text = internal::ReadText(entry.path() / internal::kMetadataFile);
    const json old = json::parse(text, nullptr, false);
    if (old.is_object() && old.value("run_id", "") == start.run_id) {
      return InvalidArgument("run id " + start.run_id + " was " + entry.path().filename().string() +
                             " of feature " + start.feature_id + "; choose another --run-id");
    }
  }
  start.previous_version = current_version;
  start.previous_run_id = current_run;
  start.previous_status = metadata.value("status", "");

  // Copy first, then the new metadata (the commit point), then drop what belongs to the old
  // version only: an interruption anywhere leaves a folder that is one version or the other.
  FACTORY_RETURN_IF_ERROR(CopyToHistory(spec_dir, current_version));
  json next = metadata;
  for (const char* key : {"build", "final_gates", "backlog_errors"}) next.erase(key);
  next["version"] = start.version;
  next["status"] = "building";
  next["run_id"] = start.run_id;
  next["plan_version"] = metadata.value("plan_version", current_version);
  next["regenerated_from"] = {
      {"version", current_version}, {"run_id", current_run}, {"status", start.previous_status}};
  next["attempts"] = 0;
  next["cost_usd"] = 0.0;
  next["last_generated"] = internal::UtcTimestamp(SystemClock().NowMillis());
  FACTORY_RETURN_IF_ERROR(
      internal::WriteAtomically(spec_dir / internal::kMetadataFile, next.dump(2) + "\n"));
  fs::remove_all(spec_dir / "final-gates", error);
  return start;
}

Result<CodeComparison> CompareCode(const Git& git, const std::string& before_run,
                                   const std::string& after_run) {
  CodeComparison code;
  code.after_branch = WorkspaceManager::IntegrationBranch(after_run);
  FACTORY_ASSIGN_OR_RETURN(code.after_tip, git.RevParse("refs/heads/" + code.after_branch));
  if (before_run.empty()) {
    code.reason = "the previous version has no run";
    return code;
  }
  code.before_branch = WorkspaceManager::IntegrationBranch(before_run);
  auto before_tip = git.RevParse("refs/heads/" + code.before_branch);
  if (!before_tip) {
    if (before_tip.error().code != ErrorCode::kNotFound) return std::unexpected(before_tip.error());
    code.reason = "the previous version's integration branch " + code.before_branch +
                  " does not exist (deleted, or that version never built)";
    return code;
  }
  code.before_tip = *before_tip;
  code.compared = true;
  FACTORY_ASSIGN_OR_RETURN(std::string trees, git.Run({"rev-parse", code.before_tip + "^{tree}",
                                                       code.after_tip + "^{tree}"}));
  const std::vector<std::string> tree_ids = SplitLines(trees);
  code.identical_trees = tree_ids.size() == 2 && tree_ids[0] == tree_ids[1];
  if (code.identical_trees) return code;
  FACTORY_ASSIGN_OR_RETURN(std::string numstat,
                           git.Run({"diff", "--numstat", code.before_tip, code.after_tip}));
  for (const std::string& line : SplitLines(numstat)) {
    ++code.files_changed;
    // "<insertions>\t<deletions>\t<path>"; "-" for binary files.
    const size_t first = line.find('\t');
    const size_t second = first == std::string::npos ? first : line.find('\t', first + 1);
    if (second == std::string::npos) continue;
    code.insertions += std::atoi(line.substr(0, first).c_str());
    code.deletions += std::atoi(line.substr(first + 1, second - first - 1).c_str());
  }
  FACTORY_ASSIGN_OR_RETURN(code.diff_stat,
                           git.Run({"diff", "--stat=120", code.before_tip, code.after_tip}));
  return code;
}

bool TaskComparison::changed() const {
  if (!before || !after) return true;
  return before->state != after->state || before->attempts != after->attempts;
}

std::vector<TaskComparison> CompareTasks(const RunDetails* before, const RunDetails& after) {
  auto result_of = [](const RunTaskView& task) {
    return TaskResult{.state = task.state, .attempts = task.attempts, .cost_usd = task.cost_usd};
  };
  std::map<std::string, const RunTaskView*> before_by_key;
  if (before != nullptr) {
    for (const auto& task : before->tasks) before_by_key[task.key] = &task;
  }
  std::vector<TaskComparison> tasks;
  for (const auto& task : after.tasks) {
    TaskComparison comparison;
    comparison.key = task.key;
    comparison.after = result_of(task);
    if (auto it = before_by_key.find(task.key); it != before_by_key.end()) {
      comparison.before = result_of(*it->second);
      before_by_key.erase(it);
    }
    tasks.push_back(std::move(comparison));
  }
  if (before != nullptr) {
    for (const auto& task : before->tasks) {
      if (!before_by_key.contains(task.key)) continue;
      tasks.push_back(TaskComparison{.key = task.key, .before = result_of(task), .after = {}});
    }
  }
  return tasks;
}

std::string FormatRegenerationReport(const RegenerationReport& report, bool as_json) {
  if (as_json) {
    json tasks = json::array();
    for (const auto& task : report.tasks) {
      tasks.push_back({{"id", task.key},
                       {"before", TaskResultJson(task.before)},
                       {"after", TaskResultJson(task.after)},
                       {"changed", task.changed()}});
    }
    const CodeComparison& code = report.code;
    json out = {{"feature", report.feature_id},
                {"before", VersionJson(report.before)},
                {"after", VersionJson(report.after)},
                {"final_gates", report.final_gates},
                {"message", report.message},
                {"tasks", tasks},
                {"code",
                 {{"compared", code.compared},
                  {"reason", code.reason},
                  {"before_branch", code.before_branch},
                  {"after_branch", code.after_branch},
                  {"before_tip", code.before_tip},
                  {"after_tip", code.after_tip},
                  {"identical_trees", code.identical_trees},
                  {"files_changed", code.files_changed},
                  {"insertions", code.insertions},
                  {"deletions", code.deletions},
                  {"diff_stat", code.diff_stat}}}};
    return out.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  }
  std::string text = "feature " + report.feature_id + ": regenerated as version " +
                     std::to_string(report.after.version) + "\n";
  text += "  before: " + DescribeVersion(report.before) + "\n";
  text += "  after:  " + DescribeVersion(report.after) + "; final gates " +
          (report.final_gates.empty() ? "not run" : report.final_gates) + "\n";
  if (!report.message.empty()) text += "  " + report.message + "\n";
  size_t width = 4;
  for (const auto& task : report.tasks) width = std::max(width, task.key.size());
  text += "tasks:\n";
  auto pad = [](std::string value, size_t size) {
    if (value.size() < size) value.append(size - value.size(), ' ');
    return value;
  };
  text += "  " + pad("task", width) + "  " + pad("before", 30) + "  after\n";
  for (const auto& task : report.tasks) {
    text += "  " + pad(task.key, width) + "  " + pad(DescribeTask(task.before), 30) + "  " +
            DescribeTask(task.after) + (task.changed() ? "  (changed)" : "") + "\n";
  }
  const CodeComparison& code = report.code;
  if (!code.compared) {
    text += "code: not compared: " + code.reason + "\n";
  } else if (code.identical_trees) {
    text += "code: identical trees (" + code.before_branch + " " + code.before_tip.substr(0, 12) +
            ", " + code.after_branch + " " + code.after_tip.substr(0, 12) + ")\n";
  } else {
    text += "code: " + code.before_branch + " " + code.before_tip.substr(0, 12) + " -> " +
            code.after_branch + " " + code.after_tip.substr(0, 12) + ": " +
            std::to_string(code.files_changed) + " file" + (code.files_changed == 1 ? "" : "s") +
            " changed, " + std::to_string(code.insertions) + " insertions(+), " +
            std::to_string(code.deletions) + " deletions(-)\n" + code.diff_stat;
    if (!code.diff_stat.empty() && !code.diff_stat.ends_with('\n')) text += "\n";
  }
  return text;
}

}  // namespace factory::feature
