#include "forge/pull_request.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/redact.h"
#include "core/subprocess.h"

namespace factory::forge {
namespace {

std::string Usd(double usd) {
  char text[32];
  std::snprintf(text, sizeof(text), "$%.4f", usd);
  return text;
}

// One line of Markdown: no line breaks, and backticks kept from closing a code span.
std::string Inline(const std::string& text) {
  std::string line;
  for (char c : text) line += (c == '\n' || c == '\r') ? ' ' : c;
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

std::string Code(const std::string& text) {
  std::string code = Inline(text);
  for (char& c : code) {
    if (c == '`') c = '\'';
  }
  return "`" + code + "`";
}

std::string Join(const std::vector<std::string>& items, const std::string& separator) {
  std::string joined;
  for (const auto& item : items) joined += (joined.empty() ? "" : separator) + item;
  return joined;
}

std::string TaskSection(const TaskReport& task) {
  std::string text = "### " + Code(task.key) + " " + Inline(task.title) + "\n\n";
  std::vector<std::string> facts = {task.state};
  if (!task.agent.empty()) facts.push_back("agent " + Code(task.agent));
  facts.push_back(std::to_string(task.attempts) + (task.attempts == 1 ? " attempt" : " attempts"));
  facts.push_back(Usd(task.cost_usd));
  if (!task.scope.empty()) {
    std::vector<std::string> globs;
    for (const auto& glob : task.scope) globs.push_back(Code(glob));
    facts.push_back("scope " + Join(globs, ", "));
  }
  text += Join(facts, " · ") + "\n";
  if (!task.gates.empty()) {
    std::vector<std::string> gates;
    for (const auto& gate : task.gates) gates.push_back(Code(gate.name) + " " + gate.result);
    text += "\nGates: " + Join(gates, ", ") + "\n";
  }
  if (!task.acceptance.empty()) {
    text += "\nAcceptance criteria:\n";
    for (const auto& criterion : task.acceptance) text += "- " + Inline(criterion) + "\n";
  }
  return text + "\n";
}

}  // namespace

std::string PullRequestTitle(const PullRequestContent& content) {
  std::string title = Inline(content.headline);
  if (title.empty()) title = "Run " + content.run_id;
  return ProcessRedactor().Redact(title);
}

std::string PullRequestBody(const PullRequestContent& content) {
  std::string head;
  if (!content.merge_blockers.empty()) {
    head += "> **Not mergeable**, pushed with `--force`:\n";
    for (const auto& blocker : content.merge_blockers) head += "> - " + Inline(blocker) + "\n";
    head += "\n";
  }
  head += "Built by Agent Factory: run " + Code(content.run_id);
  if (!content.feature.empty()) head += ", feature " + Code(content.feature);
  head += ", branch " + Code(content.head_branch) + " into " + Code(content.base_branch) + "; " +
          std::to_string(content.tasks_done) + " of " + std::to_string(content.tasks.size()) +
          " tasks done.\n\n";
  if (!content.request.empty()) {
    head += "## Request\n\n" + content.request;
    if (!content.request.ends_with('\n')) head += "\n";
    head += "\n";
  }

  std::string tail = "## Gates\n\n";
  tail += "- Every task: " + std::to_string(content.gates_configured) +
          (content.gates_configured == 1 ? " gate" : " gates") +
          (content.gates_configured == 0 ? " configured: nothing checked the tasks' work\n"
                                         : " on a clean checkout of its commit\n");
  if (!content.feature.empty()) {
    tail += "- Final gates on the integration branch's tip: " +
            (content.final_gates.empty() ? std::string("not run") : content.final_gates);
    if (content.final_gates != "passed" && !content.final_gates_detail.empty()) {
      tail += " (" + Inline(content.final_gates_detail) + ")";
    }
    tail += "\n";
  }
  tail += "\n## Cost\n\n" + Usd(content.build_cost_usd + content.planning_cost_usd) +
          " in total: " + Usd(content.build_cost_usd) + " building";
  if (!content.feature.empty()) tail += ", " + Usd(content.planning_cost_usd) + " planning";
  tail += ".\n\n## Audit\n\n";
  if (!content.audit_problem.empty()) {
    tail += "The event log does **not** verify: " + Inline(content.audit_problem) + ".\n";
  } else if (content.audit_head.empty()) {
    tail += "The event log is empty.\n";
  } else {
    tail += "Event log head " + Code(content.audit_head) + " (" +
            std::to_string(content.audit_events) + " events verified; `factory audit verify` " +
            "recomputes it).\n";
  }

  std::string tasks = "## Tasks\n\n";
  for (const auto& task : content.tasks) tasks += TaskSection(task);
  // The tasks are what may be long; the summary, gates, cost and audit always fit.
  const std::string cut =
      "\n_The task list is cut here: `factory run show " + content.run_id + "` has all of it._\n\n";
  if (head.size() + tasks.size() + tail.size() > kMaxBodyBytes) {
    const size_t room = kMaxBodyBytes > head.size() + tail.size() + cut.size()
                            ? kMaxBodyBytes - head.size() - tail.size() - cut.size()
                            : 0;
    const size_t last_whole = tasks.rfind("\n### ", room);  // the end of a whole task
    tasks = tasks.substr(0, last_whole == std::string::npos ? 0 : last_whole + 1) + cut;
  }
  std::string body = ProcessRedactor().Redact(head + tasks + tail);
  if (body.size() > kMaxBodyBytes) body.resize(kMaxBodyBytes);  // a huge request text
  return body;
}

std::optional<PrClient> FindPrClient(ForgeKind kind, const std::string& path_env) {
  std::string name;
  if (kind == ForgeKind::kGitHub) name = "gh";
  if (kind == ForgeKind::kGitLab) name = "glab";
  if (name.empty()) return std::nullopt;
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string::npos) end = path_env.size();
    const std::string dir = path_env.substr(start, end - start);
    if (!dir.empty()) {
      const std::filesystem::path candidate = std::filesystem::path(dir) / name;
      std::error_code error;
      if (std::filesystem::is_regular_file(candidate, error) &&
          ::access(candidate.c_str(), X_OK) == 0) {
        return PrClient{.name = name, .path = std::filesystem::absolute(candidate, error)};
      }
    }
    start = end + 1;
  }
  return std::nullopt;
}

Result<OpenedPullRequest> OpenPullRequest(const PrClient& client,
                                          const PullRequestRequest& request) {
  SubprocessOptions options;
  options.cwd = request.repo_dir;
  options.timeout_ms = request.timeout_ms;
  options.tail_bytes = 64 * 1024;
  // Never wait for an answer nobody will type.
  options.env_set = {{"GH_PROMPT_DISABLED", "1"}, {"GIT_TERMINAL_PROMPT", "0"}, {"NO_COLOR", "1"}};
  if (client.name == "gh") {
    options.argv = {client.path,
                    "pr",
                    "create",
                    "--repo",
                    request.remote.host + "/" + request.remote.path,
                    "--base",
                    request.base_branch,
                    "--head",
                    request.head_branch,
                    "--title",
                    request.title,
                    "--body-file",
                    "-"};
    options.stdin_data = request.body;
  } else {
    options.argv = {client.path,
                    "mr",
                    "create",
                    "--repo",
                    request.remote.web_url,
                    "--source-branch",
                    request.head_branch,
                    "--target-branch",
                    request.base_branch,
                    "--title",
                    request.title,
                    "--description",
                    request.body,
                    "--yes"};
  }
  if (request.draft) options.argv.push_back("--draft");
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunSubprocess(options));
  std::string url;
  size_t start = 0;
  const std::string& out = run.stdout_tail;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(start, end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.starts_with("https://") || line.starts_with("http://")) url = line;
    start = end + 1;
  }
  auto tail = [](std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text.size() > 1500 ? "..." + text.substr(text.size() - 1500) : text;
  };
  const std::string what = client.name + (client.name == "gh" ? " pr create" : " mr create");
  if (run.timed_out) return Unavailable(what + " timed out");
  if (run.exit_code != 0) {
    std::string detail = tail(run.stderr_tail);
    if (detail.empty()) detail = tail(run.stdout_tail);
    return Unavailable(what + " failed (exit " + std::to_string(run.exit_code) + ")" +
                       (detail.empty() ? "" : ": " + detail));
  }
  if (url.empty()) {
    return Unavailable(what + " printed no pull request URL: " + tail(run.stdout_tail));
  }
  return OpenedPullRequest{.client = client.name, .url = url};
}

}  // namespace factory::forge
