#include "plan/scope.h"

#include <algorithm>
#include <array>

#include "plan/glob.h"

namespace factory {
namespace {

// sys.stdlib_module_names of CPython 3.11 without the private (underscore) ones, which are
// compiled in or never imported by name, plus the test runner pytest. Sorted for binary search.
constexpr auto kProtectedModules = std::to_array<std::string_view>({
    "_pytest",      "abc",
    "aifc",         "antigravity",
    "argparse",     "array",
    "ast",          "asynchat",
    "asyncio",      "asyncore",
    "atexit",       "audioop",
    "base64",       "bdb",
    "binascii",     "bisect",
    "builtins",     "bz2",
    "cProfile",     "calendar",
    "cgi",          "cgitb",
    "chunk",        "cmath",
    "cmd",          "code",
    "codecs",       "codeop",
    "collections",  "colorsys",
    "compileall",   "concurrent",
    "configparser", "contextlib",
    "contextvars",  "copy",
    "copyreg",      "crypt",
    "csv",          "ctypes",
    "curses",       "dataclasses",
    "datetime",     "dbm",
    "decimal",      "difflib",
    "dis",          "distutils",
    "doctest",      "email",
    "encodings",    "ensurepip",
    "enum",         "errno",
    "faulthandler", "fcntl",
    "filecmp",      "fileinput",
    "fnmatch",      "fractions",
    "ftplib",       "functools",
    "gc",           "genericpath",
    "getopt",       "getpass",
    "gettext",      "glob",
    "graphlib",     "grp",
    "gzip",         "hashlib",
    "heapq",        "hmac",
    "html",         "http",
    "idlelib",      "imaplib",
    "imghdr",       "imp",
    "importlib",    "inspect",
    "io",           "ipaddress",
    "itertools",    "json",
    "keyword",      "lib2to3",
    "linecache",    "locale",
    "logging",      "lzma",
    "mailbox",      "mailcap",
    "marshal",      "math",
    "mimetypes",    "mmap",
    "modulefinder", "msilib",
    "msvcrt",       "multiprocessing",
    "netrc",        "nis",
    "nntplib",      "nt",
    "ntpath",       "nturl2path",
    "numbers",      "opcode",
    "operator",     "optparse",
    "os",           "ossaudiodev",
    "pathlib",      "pdb",
    "pickle",       "pickletools",
    "pipes",        "pkgutil",
    "platform",     "plistlib",
    "pluggy",       "poplib",
    "posix",        "posixpath",
    "pprint",       "profile",
    "pstats",       "pty",
    "pwd",          "py_compile",
    "pyclbr",       "pydoc",
    "pydoc_data",   "pyexpat",
    "pytest",       "queue",
    "quopri",       "random",
    "re",           "readline",
    "reprlib",      "resource",
    "rlcompleter",  "runpy",
    "sched",        "secrets",
    "select",       "selectors",
    "shelve",       "shlex",
    "shutil",       "signal",
    "site",         "smtpd",
    "smtplib",      "sndhdr",
    "socket",       "socketserver",
    "spwd",         "sqlite3",
    "sre_compile",  "sre_constants",
    "sre_parse",    "ssl",
    "stat",         "statistics",
    "string",       "stringprep",
    "struct",       "subprocess",
    "sunau",        "symtable",
    "sys",          "sysconfig",
    "syslog",       "tabnanny",
    "tarfile",      "telnetlib",
    "tempfile",     "termios",
    "textwrap",     "this",
    "threading",    "time",
    "timeit",       "tkinter",
    "token",        "tokenize",
    "tomllib",      "trace",
    "traceback",    "tracemalloc",
    "tty",          "turtle",
    "turtledemo",   "types",
    "typing",       "unicodedata",
    "unittest",     "urllib",
    "uu",           "uuid",
    "venv",         "warnings",
    "wave",         "weakref",
    "webbrowser",   "winreg",
    "winsound",     "wsgiref",
    "xdrlib",       "xml",
    "xmlrpc",       "zipapp",
    "zipfile",      "zipimport",
    "zlib",         "zoneinfo",
});

// The module a top-level file defines: "json.py" -> "json", "x.cpython-311-x86_64-linux-gnu.so"
// -> "x"; "" when the file is no Python module.
std::string_view ModuleOfFile(std::string_view file) {
  for (std::string_view suffix : {".py", ".pyc", ".pyw"}) {
    if (file.size() > suffix.size() && file.ends_with(suffix)) {
      return file.substr(0, file.size() - suffix.size());
    }
  }
  if (file.ends_with(".so")) {
    // Extension modules: NAME.so or NAME.<abi tag>.so.
    return file.substr(0, file.find('.'));
  }
  return "";
}

bool IsInitFile(std::string_view file) {
  return file == "__init__.py" || file == "__init__.pyc" ||
         (file.starts_with("__init__.") && file.ends_with(".so"));
}

std::string_view StripDotSlash(std::string_view path) {
  while (path.starts_with("./")) path.remove_prefix(2);
  return path;
}

}  // namespace

std::string CheckScopeGlob(std::string_view pattern) {
  if (pattern.starts_with('/')) {
    return "must be relative to the repository root (no leading '/')";
  }
  return CheckGlob(pattern);
}

bool IsWholeRepositoryGlob(std::string_view pattern) {
  // Probes no project would have: a glob matching both matches every top-level file and every
  // nested one alike, so it cannot be a real limit.
  return MatchesGlob(pattern, "factory-probe.x") &&
         MatchesGlob(pattern, "factory-probe/any/where/factory-probe.y");
}

std::vector<std::string> OutsideScope(const std::vector<std::string>& scope,
                                      const std::vector<std::string>& changed) {
  std::vector<std::string> outside;
  if (scope.empty()) return outside;
  for (const auto& path : changed) {
    const bool inside = std::any_of(scope.begin(), scope.end(), [&](const std::string& glob) {
      return MatchesGlob(glob, path);
    });
    if (!inside) outside.push_back(path);
  }
  return outside;
}

std::vector<ShadowingPath> PythonShadowingCandidates(const std::vector<std::string>& changed) {
  std::vector<ShadowingPath> found;
  for (const auto& original : changed) {
    const std::string_view path = StripDotSlash(original);
    const size_t slash = path.find('/');
    std::string_view module;
    if (slash == std::string_view::npos) {
      module = ModuleOfFile(path);
    } else if (path.find('/', slash + 1) == std::string_view::npos &&
               IsInitFile(path.substr(slash + 1))) {
      module = path.substr(0, slash);
    }
    if (!module.empty() && IsProtectedPythonModule(module)) {
      found.push_back(ShadowingPath{original, std::string(module)});
    }
  }
  return found;
}

bool IsProtectedPythonModule(std::string_view module) {
  return std::binary_search(kProtectedModules.begin(), kProtectedModules.end(), module);
}

}  // namespace factory
