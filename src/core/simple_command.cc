#include "core/simple_command.h"

#include <algorithm>
#include <array>

namespace factory {
namespace {

// Characters that mean the same to /bin/sh inside a word as outside one. Everything else
// (quotes, $, `, \, globs *?[], ~, #, !, {}, ;&|<>(), newlines) takes the shell.
bool IsPlainWordChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '_':
    case '-':
    case '.':
    case '/':
    case '+':
    case ',':
    case ':':
    case '@':
    case '%':
    case '=':
      return true;
    default:
      return false;
  }
}

// POSIX sh (dash) builtins and reserved words, except `true` and `false`.
constexpr std::array<std::string_view, 50> kShellOnly = {
    ".",     ":",     "[",     "alias",  "bg",     "break",  "cd",       "command", "continue",
    "echo",  "eval",  "exec",  "exit",   "export", "fc",     "fg",       "getopts", "hash",
    "jobs",  "kill",  "local", "printf", "pwd",    "read",   "readonly", "return",  "set",
    "shift", "test",  "times", "trap",   "type",   "ulimit", "umask",    "unalias", "unset",
    "wait",  "if",    "then",  "else",   "elif",   "fi",     "case",     "esac",    "for",
    "while", "until", "do",    "done",   "in"};

}  // namespace

std::optional<std::vector<std::string>> SimpleCommandArgv(std::string_view command) {
  std::vector<std::string> words;
  size_t index = 0;
  while (index < command.size()) {
    const char c = command[index];
    if (c == ' ' || c == '\t') {
      ++index;
      continue;
    }
    const size_t begin = index;
    while (index < command.size() && IsPlainWordChar(command[index])) ++index;
    if (index == begin) return std::nullopt;  // a character only the shell understands
    if (index < command.size() && command[index] != ' ' && command[index] != '\t') {
      return std::nullopt;
    }
    words.emplace_back(command.substr(begin, index - begin));
  }
  if (!words.empty() && words.front() == "exec") words.erase(words.begin());
  if (words.empty()) return std::nullopt;
  const std::string& program = words.front();
  if (program.find('=') != std::string::npos) return std::nullopt;  // FOO=bar cmd
  if (std::find(kShellOnly.begin(), kShellOnly.end(), program) != kShellOnly.end()) {
    return std::nullopt;
  }
  return words;
}

}  // namespace factory
