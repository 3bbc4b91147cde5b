#pragma once
// Pushing a run's integration branch to one of the repository's remotes, with the user's own
// credentials (Git::PushToUserRemote says what of the user's setup a push may use and what
// stays hardened).

#include <string>
#include <string_view>

#include "core/result.h"
#include "workspace/git.h"

namespace factory::forge {

struct PushTarget {
  std::string name;  // the remote's name ("origin")
  std::string url;   // remote.<name>.url as configured (may carry a credential: never print it
                     // without WithoutUserInfo)
};

// The remote to push to: `requested` when not empty, else the upstream remote of the base
// branch (branch.<base>.remote), else "origin", else the repository's only remote.
// FailedPrecondition when there is none (saying how to add one) or `requested` is not a remote
// of the repository (naming the ones there are); InvalidArgument for a name git would read as
// an option.
Result<PushTarget> ResolveRemote(const Git& repo, std::string_view requested,
                                 std::string_view base_branch);

struct PushOutcome {
  std::string remote;       // name
  std::string remote_url;   // without user information
  std::string branch;       // the same name locally and on the remote
  std::string commit;       // the branch's tip that was pushed
  bool up_to_date = false;  // the remote had that commit on that branch already
};

// Pushes refs/heads/<branch> to the branch of the same name on `remote`, never forced.
// NotFound when the branch does not exist here; FailedPrecondition when the remote refused the
// update (its branch has commits this one lacks, or a rule forbids it), with git's words;
// Unavailable with the tail of git's output when the push could not be done (network,
// credentials).
Result<PushOutcome> PushBranch(const Git& repo, const PushTarget& remote, std::string_view branch);

}  // namespace factory::forge
