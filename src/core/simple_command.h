#pragma once
// The fast path make uses for recipe lines: a command that is only plain words (no quotes,
// expansions, globs, redirections, operators, assignments or shell builtins) means the same
// when its words are exec'd directly as when /bin/sh -c runs it, and skips starting a shell
// (whose start-up dominates the cost of a short task).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace factory {

// The argv to exec for `command`, or nullopt when only a shell can run it. A leading `exec`
// word is dropped (the shell would replace itself with the rest). `true` and `false` are the
// only builtins taken (their programs behave the same); other builtins and keywords (cd,
// export, echo, if...) and a first word with '=' (an assignment) need the shell.
std::optional<std::vector<std::string>> SimpleCommandArgv(std::string_view command);

}  // namespace factory
