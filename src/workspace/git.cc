#include "workspace/git.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

namespace factory {
namespace {

// Git output we parse is small; the cap only guards memory against a pathological repository.
constexpr size_t kGitOutputCap = 64 << 20;

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  size_t start = 0;
  while (start < text.size() && (text[start] == ' ' || text[start] == '\n')) ++start;
  return text.substr(start);
}

std::string TailOf(const std::string& text, size_t max_bytes = 2000) {
  std::string trimmed = Trim(text);
  if (trimmed.size() <= max_bytes) return trimmed;
  return "..." + trimmed.substr(trimmed.size() - max_bytes);
}

std::string JoinArgs(const std::vector<std::string>& args) {
  std::string joined;
  for (const auto& arg : args) {
    if (!joined.empty()) joined += ' ';
    joined += arg;
  }
  return joined;
}

std::unexpected<Error> GitError(const std::vector<std::string>& args, const SubprocessResult& run) {
  std::string message = "git " + JoinArgs(args) + " failed";
  if (run.timed_out) {
    return DeadlineExceeded(message + " (timed out)");
  }
  message += " (exit " + std::to_string(run.exit_code) + ")";
  std::string detail = TailOf(run.stderr_tail);
  if (detail.empty()) detail = TailOf(run.stdout_tail);
  if (!detail.empty()) message += ": " + detail;
  return Unavailable(message);
}

}  // namespace

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

std::vector<std::string> SplitNul(const std::string& text) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) fields.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return fields;
}

const std::vector<std::pair<std::string, std::string>>& HardenedConfig() {
  // Values that name a program name one that cannot do anything ("/bin/false", ":" which git
  // itself treats as "no editor"); the transports are all refused, so the ssh and proxy
  // commands are never reached anyway.
  static const auto* const config = new std::vector<std::pair<std::string, std::string>>{
      {"core.fsmonitor", "false"},
      {"core.hooksPath", "/dev/null"},
      {"core.sshCommand", "/bin/false"},
      {"core.gitProxy", "none"},
      {"core.pager", "cat"},
      {"core.editor", ":"},
      {"sequence.editor", ":"},
      {"core.askPass", ""},
      {"core.attributesFile", "/dev/null"},
      {"core.untrackedCache", "false"},
      {"core.alternateRefsCommand", "/bin/false"},
      {"credential.helper", ""},
      {"diff.external", ""},
      {"gpg.program", "/bin/false"},
      {"gpg.ssh.program", "/bin/false"},
      {"gpg.x509.program", "/bin/false"},
      {"gpg.ssh.defaultKeyCommand", "/bin/false"},
      {"commit.gpgSign", "false"},
      {"tag.gpgSign", "false"},
      {"merge.verifySignatures", "false"},
      {"log.showSignature", "false"},
      {"mailmap.file", "/dev/null"},
      {"mailmap.blob", ""},
      {"protocol.allow", "never"},
      {"protocol.file.allow", "never"},
      {"protocol.git.allow", "never"},
      {"protocol.ssh.allow", "never"},
      {"protocol.http.allow", "never"},
      {"protocol.https.allow", "never"},
      {"protocol.ext.allow", "never"},
      {"submodule.recurse", "false"},
      {"fetch.recurseSubmodules", "false"},
      {"diff.ignoreSubmodules", "all"},
      {"status.submoduleSummary", "false"},
      {"gc.auto", "0"},
      {"gc.autoDetach", "false"},
      {"maintenance.auto", "false"},
      {"color.ui", "never"},
      {"safe.directory", "*"},
  };
  return *config;
}

Git::Git(std::string dir, GitIdentity identity, int64_t timeout_ms)
    : dir_(std::move(dir)), identity_(std::move(identity)), timeout_ms_(timeout_ms) {}

Git::Git(std::string dir, std::string git_dir, GitIdentity identity, int64_t timeout_ms)
    : dir_(std::move(dir)),
      git_dir_(std::move(git_dir)),
      identity_(std::move(identity)),
      timeout_ms_(timeout_ms) {}

Git Git::WithGitDir(std::string git_dir, std::string work_tree) const {
  return Git(std::move(work_tree), std::move(git_dir), identity_, timeout_ms_);
}

namespace {

// What a push to the user's remote needs of the user's environment: where the configuration
// is, and what carries credentials, certificates and proxies.
constexpr const char* kUserTransportVariables[] = {
    "HOME",         "XDG_CONFIG_HOME",  "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
    "USER",         "LOGNAME",          "SSH_AUTH_SOCK",     "SSH_AGENT_PID",
    "SSH_ASKPASS",  "GIT_SSH",          "GIT_SSH_COMMAND",   "GIT_SSH_VARIANT",
    "GIT_ASKPASS",  "GIT_SSL_CAINFO",   "GIT_SSL_CAPATH",    "SSL_CERT_FILE",
    "SSL_CERT_DIR", "http_proxy",       "https_proxy",       "all_proxy",
    "no_proxy",     "HTTP_PROXY",       "HTTPS_PROXY",       "ALL_PROXY",
    "NO_PROXY",     "GIT_PROXY_COMMAND"};

// The keys a push leaves to the user's configuration: how to reach and authenticate to the
// remote. `protocol.ext.allow` is not among them: `ext::` runs an arbitrary command.
bool IsTransportKey(const std::string& key) {
  static const std::set<std::string> keys = {
      "core.sshCommand",     "core.gitProxy",       "core.askPass",       "credential.helper",
      "protocol.allow",      "protocol.file.allow", "protocol.git.allow", "protocol.ssh.allow",
      "protocol.http.allow", "protocol.https.allow"};
  return keys.contains(key);
}

}  // namespace

std::map<std::string, std::string> Git::BaseEnv(Access access) const {
  // A clean environment: an inherited GIT_DIR, GIT_WORK_TREE or GIT_INDEX_FILE (say, the factory
  // started from a git hook) would silently point our commands at the wrong repository or index,
  // and the user's global configuration may name programs (a pager, a credential helper) that
  // have no business running on an agent's tree.
  std::map<std::string, std::string> env;
  for (const char* name : {"TMPDIR", "GIT_EXEC_PATH"}) {
    if (const char* value = std::getenv(name)) env[name] = value;
  }
  if (access == Access::kUserTransport) {
    for (const char* name : kUserTransportVariables) {
      if (const char* value = std::getenv(name)) env[name] = value;
    }
    if (const char* value = std::getenv("GIT_CONFIG_NOSYSTEM")) env["GIT_CONFIG_NOSYSTEM"] = value;
  } else {
    env["HOME"] = "/nonexistent";
    env["GIT_CONFIG_NOSYSTEM"] = "1";
    env["GIT_CONFIG_GLOBAL"] = "/dev/null";
  }
  env["GIT_ATTR_NOSYSTEM"] = "1";
  env["GIT_NO_REPLACE_OBJECTS"] = "1";
  env["LC_ALL"] = "C";  // stable, parseable messages
  env["GIT_TERMINAL_PROMPT"] = "0";
  env["GIT_AUTHOR_NAME"] = identity_.name;
  env["GIT_AUTHOR_EMAIL"] = identity_.email;
  env["GIT_COMMITTER_NAME"] = identity_.name;
  env["GIT_COMMITTER_EMAIL"] = identity_.email;
  return env;
}

std::vector<std::string> Git::Prefix() const {
  std::vector<std::string> argv = {"git", "-C", dir_};
  if (!git_dir_.empty()) {
    argv.push_back("--git-dir=" + git_dir_);
    argv.push_back("--work-tree=" + dir_);
  }
  return argv;
}

Result<SubprocessResult> Git::Spawn(const std::vector<std::string>& args,
                                    const std::map<std::string, std::string>& env,
                                    const std::string& stdin_data, Access access) const {
  SubprocessOptions options;
  options.argv = Prefix();
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.clear_env = true;
  options.env_set = BaseEnv(access);
  for (const auto& [key, value] : env) options.env_set[key] = value;
  options.stdin_data = stdin_data;
  options.timeout_ms = timeout_ms_;
  options.tail_bytes = kGitOutputCap;
  auto result = RunSubprocess(options);
  if (!result) return std::unexpected(result.error().Wrap("running git"));
  return result;
}

namespace {

// Command-scope configuration as GIT_CONFIG_COUNT/KEY_n/VALUE_n: unlike `-c k=v` it needs no
// quoting, so a driver name with '=' or spaces in it is overridden exactly.
void AddConfigEnv(const std::vector<std::pair<std::string, std::string>>& config,
                  std::map<std::string, std::string>& env) {
  size_t index = 0;
  for (const auto& [key, value] : config) {
    env["GIT_CONFIG_KEY_" + std::to_string(index)] = key;
    env["GIT_CONFIG_VALUE_" + std::to_string(index)] = value;
    ++index;
  }
  env["GIT_CONFIG_COUNT"] = std::to_string(index);
}

// What makes a driver named by an attribute harmless, per section.
void NeutraliseDriver(const std::string& section, const std::string& name,
                      std::vector<std::pair<std::string, std::string>>& config) {
  const std::string prefix = section + "." + name + ".";
  if (section == "filter") {
    // An empty command is no filter at all (content passes unchanged), and a filter that is
    // no longer `required` cannot fail the command.
    for (const char* key : {"clean", "smudge", "process"}) config.emplace_back(prefix + key, "");
    config.emplace_back(prefix + "required", "false");
  } else if (section == "diff") {
    // Never run: diff, log and show get --no-ext-diff and --no-textconv.
    config.emplace_back(prefix + "command", "");
    config.emplace_back(prefix + "textconv", "");
  } else if (section == "merge") {
    // git's own three-way text merge, the behaviour without a driver.
    config.emplace_back(prefix + "driver", "git merge-file --marker-size=%L %A %O %B");
    config.emplace_back(prefix + "recursive", "text");
  }
}

}  // namespace

Result<SubprocessResult> Git::RunRaw(const std::vector<std::string>& args,
                                     const std::map<std::string, std::string>& env) const {
  return RunHardened(args, env, "");
}

Result<SubprocessResult> Git::PushToUserRemote(const std::string& remote,
                                               const std::vector<std::string>& refspecs) const {
  std::vector<std::string> args = {"push", "--porcelain", "--no-verify", "--recurse-submodules=no",
                                   "--",   remote};
  args.insert(args.end(), refspecs.begin(), refspecs.end());
  return RunHardened(args, {}, "", Access::kUserTransport);
}

Result<SubprocessResult> Git::RunHardened(const std::vector<std::string>& args,
                                          const std::map<std::string, std::string>& env,
                                          const std::string& stdin_data, Access access) const {
  std::map<std::string, std::string> hardened = env;
  std::vector<std::pair<std::string, std::string>> config;
  for (const auto& entry : HardenedConfig()) {
    if (access == Access::kUserTransport && IsTransportKey(entry.first)) continue;
    config.push_back(entry);
  }
  if (access == Access::kUserTransport) config.emplace_back("push.gpgSign", "false");
  AddConfigEnv(config, hardened);
  // Every driver the configuration defines, whatever attribute could name it. Read right before
  // the command, so a driver added since the last command is covered too.
  FACTORY_ASSIGN_OR_RETURN(
      SubprocessResult drivers,
      Spawn({"config", "-z", "--name-only", "--get-regexp", "^(filter|diff|merge)\\..+\\.[^.]+$"},
            hardened, "", access));
  if (drivers.exit_code != 0 && drivers.exit_code != 1) {  // 1: no such key
    return GitError({"config", "--get-regexp", "<drivers>"}, drivers);
  }
  std::set<std::pair<std::string, std::string>> seen;
  for (const std::string& key : SplitNul(drivers.stdout_tail)) {
    const size_t first = key.find('.');
    const size_t last = key.rfind('.');
    if (first == std::string::npos || last <= first) continue;
    auto driver = std::make_pair(key.substr(0, first), key.substr(first + 1, last - first - 1));
    if (seen.insert(driver).second) NeutraliseDriver(driver.first, driver.second, config);
  }
  AddConfigEnv(config, hardened);

  std::vector<std::string> full = args;
  if (!full.empty() && (full[0] == "diff" || full[0] == "log" || full[0] == "show")) {
    full.insert(full.begin() + 1, {"--no-ext-diff", "--no-textconv"});
  }
  return Spawn(full, hardened, stdin_data, access);
}

Result<std::string> Git::Run(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env) const {
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args, env));
  if (run.exit_code != 0 || run.timed_out) return GitError(args, run);
  return std::move(run.stdout_tail);
}

Result<std::string> Git::RunWithInput(const std::vector<std::string>& args,
                                      const std::string& input,
                                      const std::map<std::string, std::string>& env) const {
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunHardened(args, env, input));
  if (run.exit_code != 0 || run.timed_out) return GitError(args, run);
  return std::move(run.stdout_tail);
}

namespace {

// A small file's whole content; nullopt when it cannot be read or exceeds `max_bytes`.
std::optional<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 4096) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string content(max_bytes + 1, '\0');
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  const size_t got = static_cast<size_t>(in.gcount());
  if (got > max_bytes) return std::nullopt;
  content.resize(got);
  return content;
}

// What a file said, for a message: its first line, printable characters only, shortened.
std::string Quoted(const std::string& content) {
  std::string line = content.substr(0, content.find('\n'));
  std::string printable;
  for (char c : line) printable += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (printable.size() > 200) printable = printable.substr(0, 200) + "...";
  return "'" + printable + "'";
}

std::string FileKind(const struct stat& info) {
  if (S_ISLNK(info.st_mode)) return "a symbolic link";
  if (S_ISDIR(info.st_mode)) return "a directory";
  if (S_ISREG(info.st_mode)) return "a regular file";
  return "a special file";
}

}  // namespace

Result<Git> Git::ForWorktree(const std::string& work_tree) const {
  namespace fs = std::filesystem;
  if (work_tree.empty() || work_tree.front() != '/') {
    return InvalidArgument("a worktree path must be absolute: '" + work_tree + "'");
  }
  FACTORY_ASSIGN_OR_RETURN(std::string common, CommonDir());
  std::error_code error;
  const fs::path canonical_common = fs::canonical(common, error);
  if (error) return Unavailable("cannot resolve the git directory " + common);
  const std::string dot_git = work_tree + "/.git";

  // The administrative folder is found from the repository's side: its `gitdir` file names the
  // work tree. The agent can write its worktree, not the common git dir.
  std::string admin;
  const fs::path worktrees = canonical_common / "worktrees";
  for (fs::directory_iterator it(worktrees, error), end; !error && it != end; it.increment(error)) {
    if (!it->is_directory(error) || it->is_symlink(error)) continue;
    auto named = ReadSmallFile((it->path() / "gitdir").string());
    if (named && *named == dot_git + "\n") {
      admin = it->path().string();
      break;
    }
  }
  if (admin.empty()) return NotFound("not a worktree of this repository: " + work_tree);

  struct stat info {};
  if (::lstat(work_tree.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return FailedPrecondition(std::string(kTamperingPrefix) + work_tree +
                              " is no longer the directory git made");
  }
  if (::lstat(dot_git.c_str(), &info) != 0) {
    return FailedPrecondition(std::string(kTamperingPrefix) + dot_git +
                              " is missing: the worktree's link to its repository was removed");
  }
  if (!S_ISREG(info.st_mode)) {
    return FailedPrecondition(std::string(kTamperingPrefix) + dot_git + " is " + FileKind(info) +
                              ", not the file git wrote (a repository of the agent's own?)");
  }
  auto link = ReadSmallFile(dot_git);
  if (!link || *link != "gitdir: " + admin + "\n") {
    return FailedPrecondition(std::string(kTamperingPrefix) + dot_git + " was rewritten" +
                              (link ? " to " + Quoted(*link) : std::string()) +
                              "; it must read 'gitdir: " + admin + "'");
  }
  auto commondir = ReadSmallFile(admin + "/commondir");
  if (!commondir || *commondir != "../..\n") {
    return FailedPrecondition(std::string(kTamperingPrefix) + admin +
                              "/commondir was changed; it must read '../..'");
  }
  return WithGitDir(admin, work_tree);
}

Result<bool> Git::IsRepo() const {
  if (!std::filesystem::is_directory(dir_)) return false;
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw({"rev-parse", "--is-inside-work-tree"}));
  return run.exit_code == 0 && Trim(run.stdout_tail) == "true";
}

Result<std::string> Git::TopLevel() const {
  FACTORY_ASSIGN_OR_RETURN(std::string out, Run({"rev-parse", "--show-toplevel"}));
  return Trim(out);
}

Result<std::string> Git::CommonDir() const {
  FACTORY_ASSIGN_OR_RETURN(std::string out,
                           Run({"rev-parse", "--path-format=absolute", "--git-common-dir"}));
  return Trim(out);
}

Result<std::optional<std::string>> Git::CurrentBranch() const {
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run,
                           RunRaw({"symbolic-ref", "--quiet", "--short", "HEAD"}));
  if (run.exit_code == 1) return std::optional<std::string>();  // detached
  if (run.exit_code != 0) return GitError({"symbolic-ref", "--quiet", "--short", "HEAD"}, run);
  return std::optional<std::string>(Trim(run.stdout_tail));
}

Result<std::string> Git::RevParse(const std::string& rev) const {
  std::vector<std::string> args = {"rev-parse", "--verify", "--quiet", "--end-of-options",
                                   rev + "^{commit}"};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 1) return NotFound("no such commit: " + rev);
  if (run.exit_code != 0) return GitError(args, run);
  return Trim(run.stdout_tail);
}

Result<bool> Git::RefExists(const std::string& ref) const {
  std::vector<std::string> args = {"show-ref", "--verify", "--quiet", ref};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 0) return true;
  if (run.exit_code == 1) return false;
  return GitError(args, run);
}

Result<bool> Git::IsAncestor(const std::string& ancestor, const std::string& descendant) const {
  std::vector<std::string> args = {"merge-base", "--is-ancestor", ancestor, descendant};
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 0) return true;
  if (run.exit_code == 1) return false;
  return GitError(args, run);
}

Status Git::CreateBranch(const std::string& branch, const std::string& start) const {
  FACTORY_ASSIGN_OR_RETURN(bool exists, RefExists("refs/heads/" + branch));
  if (exists) return AlreadyExists("branch already exists: " + branch);
  FACTORY_RETURN_IF_ERROR(Run({"branch", "--no-track", branch, start}));
  return Ok();
}

Status Git::DeleteBranch(const std::string& branch, bool force) const {
  FACTORY_ASSIGN_OR_RETURN(bool exists, RefExists("refs/heads/" + branch));
  if (!exists) return NotFound("no such branch: " + branch);
  FACTORY_RETURN_IF_ERROR(Run({"branch", force ? "-D" : "-d", branch}));
  return Ok();
}

Status Git::UpdateRef(const std::string& ref, const std::string& new_value,
                      const std::optional<std::string>& old_value) const {
  std::vector<std::string> args = {"update-ref", ref, new_value};
  if (old_value) args.push_back(*old_value);
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  if (run.exit_code == 0) return Ok();
  if (old_value) {
    return Aborted("ref " + ref + " moved concurrently (expected " + *old_value +
                   "): " + TailOf(run.stderr_tail));
  }
  return GitError(args, run);
}

Status Git::WorktreeAdd(const std::string& path, const std::string& branch,
                        const std::string& start, bool reset_branch) const {
  std::vector<std::string> args = {"worktree", "add", "--quiet"};
  if (branch.empty()) {
    args.push_back("--detach");
  } else {
    args.push_back(reset_branch ? "-B" : "-b");
    args.push_back(branch);
  }
  args.push_back(path);
  args.push_back(start);
  FACTORY_RETURN_IF_ERROR(Run(args));
  return Ok();
}

Status Git::WorktreeRemove(const std::string& path, bool force) const {
  std::vector<std::string> args = {"worktree", "remove"};
  if (force) args.push_back("--force");
  args.push_back(path);
  FACTORY_RETURN_IF_ERROR(Run(args));
  return Ok();
}

Status Git::WorktreePrune() const {
  FACTORY_RETURN_IF_ERROR(Run({"worktree", "prune"}));
  return Ok();
}

Result<std::vector<GitWorktreeInfo>> Git::WorktreeList() const {
  FACTORY_ASSIGN_OR_RETURN(std::string out, Run({"worktree", "list", "--porcelain"}));
  std::vector<GitWorktreeInfo> list;
  size_t start = 0;
  // Records are separated by blank lines; parse line by line keeping empty lines.
  std::optional<GitWorktreeInfo> current;
  while (start <= out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(start, end - start);
    start = end + 1;
    if (line.empty()) {
      if (current) list.push_back(std::move(*current));
      current.reset();
      if (end == out.size()) break;
      continue;
    }
    auto take = [&](std::string_view key) -> std::optional<std::string> {
      if (line.size() >= key.size() && line.compare(0, key.size(), key) == 0) {
        return line.size() > key.size() ? line.substr(key.size() + 1) : std::string();
      }
      return std::nullopt;
    };
    if (auto path = take("worktree")) {
      if (current) list.push_back(std::move(*current));
      current = GitWorktreeInfo{};
      current->path = *path;
    } else if (!current) {
      continue;
    } else if (auto head = take("HEAD")) {
      current->head = *head;
    } else if (auto branch = take("branch")) {
      current->branch = *branch;
    } else if (take("bare")) {
      current->bare = true;
    } else if (take("prunable")) {
      current->prunable = true;
    }
  }
  if (current) list.push_back(std::move(*current));
  return list;
}

Result<std::string> Git::StatusPorcelain(bool include_untracked) const {
  return Run({"status", "--porcelain", "--ignore-submodules=all",
              include_untracked ? "--untracked-files=normal" : "--untracked-files=no"});
}

Result<std::vector<std::string>> Git::DiffNameOnly(const std::string& from,
                                                   const std::string& to) const {
  FACTORY_ASSIGN_OR_RETURN(std::string out,
                           Run({"diff", "--name-only", "--no-renames", from, to, "--"}));
  return SplitLines(out);
}

Result<std::string> Git::SnapshotToRef(const std::string& ref, const std::string& message) const {
  std::string tmpl = (std::filesystem::temp_directory_path() / "factory-snapshot-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return Unavailable("mkdtemp for a snapshot index failed");
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{tmpl};
  const std::map<std::string, std::string> env = {{"GIT_INDEX_FILE", tmpl + "/index"}};
  // Start from HEAD's tree so tracked-but-ignored files are kept, then record every change.
  FACTORY_RETURN_IF_ERROR(Run({"read-tree", "HEAD"}, env));
  FACTORY_RETURN_IF_ERROR(Run({"add", "-A"}, env));
  FACTORY_ASSIGN_OR_RETURN(std::string tree, Run({"write-tree"}, env));
  FACTORY_ASSIGN_OR_RETURN(std::string head, RevParse("HEAD"));
  FACTORY_ASSIGN_OR_RETURN(std::string commit,
                           Run({"commit-tree", Trim(tree), "-p", head, "-m", message}, env));
  commit = Trim(commit);
  FACTORY_RETURN_IF_ERROR(UpdateRef(ref, commit));
  return commit;
}

Result<GitMergeResult> Git::Merge(const std::string& rev, const std::string& message,
                                  bool no_ff) const {
  std::vector<std::string> args = {"merge", "--no-edit", "--no-verify", "-m", message};
  if (no_ff) args.insert(args.begin() + 1, "--no-ff");
  args.push_back(rev);
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult run, RunRaw(args));
  GitMergeResult result;
  if (run.exit_code == 0) {
    FACTORY_ASSIGN_OR_RETURN(result.commit, RevParse("HEAD"));
    result.merged = true;
    return result;
  }
  FACTORY_ASSIGN_OR_RETURN(SubprocessResult merging,
                           RunRaw({"rev-parse", "--quiet", "--verify", "MERGE_HEAD"}));
  if (merging.exit_code != 0) return GitError(args, run);  // refused before starting
  FACTORY_ASSIGN_OR_RETURN(std::string unmerged,
                           Run({"diff", "--name-only", "--diff-filter=U", "--no-renames"}));
  result.conflicts = SplitLines(unmerged);
  std::sort(result.conflicts.begin(), result.conflicts.end());
  FACTORY_RETURN_IF_ERROR(Run({"merge", "--abort"}));
  if (result.conflicts.empty()) return GitError(args, run);
  return result;
}

}  // namespace factory
