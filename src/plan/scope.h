#pragma once
// What an attempt may change: a task's `scope:` globs (plan/glob.h syntax), and the top-level
// Python modules that would shadow the standard library for the gates.
//
// A scope limits the paths an attempt of its task may add, modify or delete; a task without one
// may change the whole repository. Independently of scopes, an attempt may not add a top-level
// module or package named like a module of Python's standard library (or of the test runners
// `pytest` and `pluggy`): a gate such as `python3 -m unittest` runs with the checkout's top level
// first on sys.path, so `unittest/__init__.py` in the repository would replace the real test
// runner and "pass" broken code.

#include <string>
#include <string_view>
#include <vector>

namespace factory {

// Empty when `pattern` can be a scope glob; otherwise why not: CheckGlob's reasons, and
// absolute patterns (a scope is relative to the repository root).
std::string CheckScopeGlob(std::string_view pattern);

// True when `scope` is non-empty and `pattern` alone matches every path (like "**"): a scope that
// limits nothing.
bool IsWholeRepositoryGlob(std::string_view pattern);

// The paths of `changed` that no glob of `scope` matches, in order. Empty when `scope` is empty
// (the whole repository).
std::vector<std::string> OutsideScope(const std::vector<std::string>& scope,
                                      const std::vector<std::string>& changed);

struct ShadowingPath {
  std::string path;    // as in the change list: "unittest/__init__.py", "json.py"
  std::string module;  // the module it would replace: "unittest"
};

// The paths of `changed` that define a top-level Python module or regular package named like a
// standard-library module: NAME.py, NAME.pyc, NAME.so (and NAME.<abi tag>.so), or
// NAME/__init__.py (.pyc, .so). Whether each path is new is for the caller to check.
std::vector<ShadowingPath> PythonShadowingCandidates(const std::vector<std::string>& changed);

// True when `module` is a top-level module name of Python's standard library (CPython 3.11's
// sys.stdlib_module_names, private ones aside) or of pytest.
bool IsProtectedPythonModule(std::string_view module);

}  // namespace factory
