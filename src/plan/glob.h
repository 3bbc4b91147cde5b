#pragma once
// Path globs for `protected:` in the config and `allow_protected:` in a backlog.
//
// A pattern is matched against a repository-relative path with '/' separators, anchored at the
// repository root (as in .gitignore patterns that contain a slash):
//   *    any run of characters within one path segment (never '/')
//   ?    one character other than '/'
//   **   as a whole segment: zero or more segments ("tests/**", "**/*.lock", "a/**/b");
//        elsewhere ("a**b") it acts as '*'
// A trailing '/' means "everything below" ("tests/" == "tests/**"). A leading "./" or "/" on
// the pattern or the path is ignored. Other characters, '[' included, match themselves.
// A pattern without a slash therefore matches at the top level only: use "**/*.lock" for
// "anywhere".

#include <string>
#include <string_view>

namespace factory {

bool MatchesGlob(std::string_view pattern, std::string_view path);

// Empty when `pattern` is usable; otherwise why not (empty, or a ".." segment that could only
// name something outside the repository).
std::string CheckGlob(std::string_view pattern);

}  // namespace factory
