#include "plan/glob.h"

#include <vector>

namespace factory {
namespace {

std::string_view StripLeading(std::string_view text) {
  while (true) {
    if (text.starts_with("./")) {
      text.remove_prefix(2);
    } else if (text.starts_with("/")) {
      text.remove_prefix(1);
    } else {
      return text;
    }
  }
}

std::vector<std::string_view> Split(std::string_view text) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= text.size()) {
    size_t slash = text.find('/', start);
    if (slash == std::string_view::npos) slash = text.size();
    std::string_view segment = text.substr(start, slash - start);
    // Empty segments ("a//b") carry no meaning in a path.
    if (!segment.empty()) segments.push_back(segment);
    start = slash + 1;
  }
  return segments;
}

// One segment against one segment pattern with '*' and '?': the classic linear wildcard match
// that remembers the last '*' and backtracks to it.
bool MatchSegment(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, star_text = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

bool MatchesGlob(std::string_view pattern, std::string_view path) {
  pattern = StripLeading(pattern);
  path = StripLeading(path);
  std::vector<std::string_view> pat = Split(pattern);
  if (pattern.ends_with('/')) pat.push_back("**");
  std::vector<std::string_view> segs = Split(path);
  if (pat.empty()) return false;

  // can[i][j]: pat[i..] matches segs[j..]. Filled backwards: O(|pat| * |segs|), no exponential
  // backtracking on patterns with several "**".
  const size_t np = pat.size(), ns = segs.size();
  std::vector<std::vector<char>> can(np + 1, std::vector<char>(ns + 1, 0));
  can[np][ns] = 1;
  for (size_t i = np; i-- > 0;) {
    for (size_t j = ns + 1; j-- > 0;) {
      if (pat[i] == "**") {
        // Zero segments, or swallow one more.
        can[i][j] = can[i + 1][j] || (j < ns && can[i][j + 1]);
      } else {
        can[i][j] = j < ns && MatchSegment(pat[i], segs[j]) && can[i + 1][j + 1];
      }
    }
  }
  return can[0][0] != 0;
}

std::string CheckGlob(std::string_view pattern) {
  std::string_view stripped = StripLeading(pattern);
  if (stripped.empty()) return "must not be empty";
  for (std::string_view segment : Split(stripped)) {
    if (segment == "..") return "must not contain '..' (patterns are inside the repository)";
  }
  return "";
}

}  // namespace factory
