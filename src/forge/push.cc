#include "forge/push.h"

#include <algorithm>
#include <string>
#include <vector>

#include "forge/remote.h"

namespace factory::forge {
namespace {

std::string TrimmedLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

std::string Tail(const std::string& text, size_t max_bytes = 1500) {
  const std::string trimmed = TrimmedLine(text);
  return trimmed.size() <= max_bytes ? trimmed : "..." + trimmed.substr(trimmed.size() - max_bytes);
}

Result<std::string> RemoteUrlOf(const Git& repo, const std::string& name) {
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run,
                           repo.RunRaw({"config", "--get", "remote." + name + ".url"}));
  const std::string url = TrimmedLine(run.stdout_tail);
  if (run.exit_code != 0 || url.empty()) {
    return FailedPrecondition("remote '" + name + "' has no URL (git config remote." + name +
                              ".url)");
  }
  return url;
}

}  // namespace

Result<PushTarget> ResolveRemote(const Git& repo, std::string_view requested,
                                 std::string_view base_branch) {
  if (requested.starts_with('-')) {
    return InvalidArgument("'" + std::string(requested) + "' is not a remote name");
  }
  FACTORY_ASSIGN_OR_RETURN(std::string listed, repo.Run({"remote"}));
  const std::vector<std::string> remotes = SplitLines(listed);
  auto has = [&](const std::string& name) {
    return std::find(remotes.begin(), remotes.end(), name) != remotes.end();
  };
  std::string name(requested);
  if (name.empty()) {
    if (remotes.empty()) {
      return FailedPrecondition(
          "the repository has no remote to push to: add one (git remote add origin URL)");
    }
    if (!base_branch.empty()) {
      auto upstream =
          repo.RunRaw({"config", "--get", "branch." + std::string(base_branch) + ".remote"});
      if (upstream && upstream->exit_code == 0) name = TrimmedLine(upstream->stdout_tail);
    }
    if (name.empty() || !has(name)) name = has("origin") ? "origin" : "";
    if (name.empty()) {
      if (remotes.size() != 1) {
        std::string names;
        for (const auto& remote : remotes) names += (names.empty() ? "" : ", ") + remote;
        return FailedPrecondition("the repository has several remotes (" + names +
                                  ") and none is origin: choose one with --remote NAME");
      }
      name = remotes.front();
    }
  } else if (!has(name)) {
    std::string names;
    for (const auto& remote : remotes) names += (names.empty() ? "" : ", ") + remote;
    return FailedPrecondition("the repository has no remote '" + name + "' (" +
                              (names.empty() ? std::string("it has none") : "it has " + names) +
                              ")");
  }
  FACTORY_ASSIGN_OR_RETURN(std::string url, RemoteUrlOf(repo, name));
  return PushTarget{.name = name, .url = std::move(url)};
}

Result<PushOutcome> PushBranch(const Git& repo, const PushTarget& remote, std::string_view branch) {
  const std::string ref = "refs/heads/" + std::string(branch);
  auto tip = repo.RevParse(ref);
  if (!tip) {
    if (tip.error().code == ErrorCode::kNotFound) {
      return NotFound("branch " + std::string(branch) + " does not exist in " + repo.dir());
    }
    return std::unexpected(tip.error());
  }
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run,
                           repo.PushToUserRemote(remote.name, {ref + ":" + ref}));
  PushOutcome outcome;
  outcome.remote = remote.name;
  outcome.remote_url = WithoutUserInfo(remote.url);
  outcome.branch = std::string(branch);
  outcome.commit = *tip;
  // --porcelain: one line per ref, "<flag>\t<from>:<to>\t<summary>"; '=' up to date, '!'
  // rejected.
  std::string rejected;
  for (const std::string& line : SplitLines(run.stdout_tail)) {
    if (line.size() < 2 || line[1] != '\t') continue;
    if (line[0] == '=') outcome.up_to_date = true;
    if (line[0] == '!') rejected = line.substr(line.rfind('\t') + 1);
  }
  // git's messages may quote the URL as configured, credential included.
  auto shown = [&](std::string text) {
    if (remote.url == outcome.remote_url) return text;
    for (size_t at = text.find(remote.url); at != std::string::npos;
         at = text.find(remote.url, at + outcome.remote_url.size())) {
      text.replace(at, remote.url.size(), outcome.remote_url);
    }
    return text;
  };
  const std::string where = "git push to " + remote.name + " (" + outcome.remote_url + ")";
  if (run.timed_out) return Unavailable(where + " timed out");
  if (!rejected.empty()) {
    return FailedPrecondition(
        where + " was refused: " + rejected +
        (rejected.find("fetch first") != std::string::npos ||
                 rejected.find("non-fast-forward") != std::string::npos
             ? "; the remote's " + std::string(branch) + " has commits the run's branch does not"
             : std::string()) +
        (run.stderr_tail.empty() ? "" : "\n" + shown(Tail(run.stderr_tail))));
  }
  if (run.exit_code != 0) {
    std::string detail = shown(Tail(run.stderr_tail));
    if (detail.empty()) detail = shown(Tail(run.stdout_tail));
    return Unavailable(where + " failed (exit " + std::to_string(run.exit_code) + ")" +
                       (detail.empty() ? "" : ": " + detail));
  }
  return outcome;
}

}  // namespace factory::forge
