// The backlog agent's answer in a feature run (the planners' task graph): CheckPlannedBacklog
// (JSON extraction, the backlog validator and the planned-backlog rules), then what planning
// does with a valid one: write it as BACKLOG.yaml and read that back.

#include "feature/planned_backlog.h"

#include "backlog_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using factory::fuzz::Require;
  const std::string_view text = factory::fuzz::AsText(data, size);
  (void)factory::feature::ExtractJsonObject(text);
  factory::feature::PlannedBacklogOptions options;
  options.agents = &factory::fuzz::FuzzAgents();
  options.max_tasks = 30;
  const factory::feature::PlannedBacklogCheck check =
      factory::feature::CheckPlannedBacklog(text, options);
  if (!check.ok()) {
    Require(!check.errors.empty(), "an invalid backlog has errors");
    return 0;
  }
  Require(check.errors.empty(), "a valid backlog has no errors");
  const factory::Backlog& backlog = check.backlog->value;
  Require(backlog.tasks.size() <= 30, "at most max_tasks tasks");

  // PlanFeature writes BACKLOG.yaml and runs what it reads back: the same tasks.
  const std::string yaml = factory::feature::BacklogToYaml(backlog, "fuzz");
  auto reread = factory::ParseBacklogYaml(yaml, "BACKLOG.yaml", {.agents = options.agents});
  Require(reread.has_value(), "BACKLOG.yaml of a valid backlog parses");
  Require(reread->value.tasks.size() == backlog.tasks.size(), "BACKLOG.yaml keeps every task");
  for (const factory::BacklogTask& before : backlog.tasks) {
    const factory::BacklogTask* found = reread->value.Find(before.id);
    Require(found != nullptr, "BACKLOG.yaml keeps every task");
    const factory::BacklogTask& after = *found;
    Require(before.id == after.id && before.title == after.title &&
                before.description == after.description && before.acceptance == after.acceptance &&
                before.depends_on == after.depends_on && before.agent == after.agent &&
                before.type == after.type && before.capabilities == after.capabilities &&
                before.priority == after.priority,
            "BACKLOG.yaml keeps every field");
  }
  return 0;
}
