#pragma once
// Where a git remote lives on the web: the forge that hosts it (GitHub, GitLab, Gitea or
// Forgejo, Bitbucket) and the page that opens a pull (merge) request there. Pure functions of
// the remote's URL; nothing is fetched.
//
//   auto remote = forge::ParseRemoteUrl("git@github.com:acme/app.git");
//   auto url = forge::CompareUrl(*remote, "main", "factory/r1");
//   // https://github.com/acme/app/compare/main...factory/r1?expand=1

#include <string>
#include <string_view>

#include "core/result.h"

namespace factory::forge {

enum class ForgeKind { kUnknown, kGitHub, kGitLab, kGitea, kBitbucket };

// "github", "gitlab", "gitea", "bitbucket" or "unknown".
std::string_view ForgeName(ForgeKind kind);

// The forge a host name suggests: github.com, gitlab.com and hosts named gitlab.*, bitbucket.org,
// codeberg.org and hosts named gitea.* or forgejo.*. kUnknown otherwise (a self-hosted forge
// under another name).
ForgeKind GuessForge(std::string_view host);

struct RemoteLocation {
  std::string host;     // lowercase, without user or port
  std::string path;     // "owner/repo" (GitLab: "group/subgroup/repo"), without ".git"
  std::string web_url;  // "https://<host>/<path>"
  ForgeKind kind = ForgeKind::kUnknown;
};

// Parses the URL forms git accepts for a remote on a server: https://[user@]host[:port]/path,
// http://..., ssh://[user@]host[:port]/path, git://host/path and scp-like [user@]host:path.
// FailedPrecondition (saying so) for a local path or a file:// URL, which no forge serves;
// InvalidArgument for anything else that is not such a URL.
Result<RemoteLocation> ParseRemoteUrl(std::string_view url);

// The web page that opens a pull (merge) request of `head` into `base` on the remote's forge.
// FailedPrecondition naming the host when its forge is unknown.
Result<std::string> CompareUrl(const RemoteLocation& remote, std::string_view base,
                               std::string_view head);

// `url` without the user information (https://user:token@host/... -> https://host/...), for
// printing a remote URL that may carry a credential.
std::string WithoutUserInfo(std::string_view url);

}  // namespace factory::forge
