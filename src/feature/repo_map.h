#pragma once
// The repo map a feature's planners read: what the repository holds, in a few kilobytes.
//
//   ### Files (N tracked, M bytes)
//   README.md (120 B)
//   src/main.cc (2.1 KiB)
//   [12 more files not shown]
//
//   ### README.md (first lines)
//   ...
//
// The file list is `git ls-files` (tracked files only: build outputs and secrets that are
// ignored never reach a model), without the factory's own `.factory/` folder. Key files
// (READMEs, build and package manifests, design notes) follow with their first lines. The tree
// gets three quarters of the byte cap, key files the rest plus what the tree left; the whole
// map never exceeds max_bytes and is valid UTF-8.

#include <cstddef>
#include <filesystem>
#include <string>

#include "core/result.h"

namespace factory::feature {

struct RepoMapOptions {
  size_t max_bytes = 16 * 1024;
  int key_file_lines = 15;   // lines shown per key file
  int max_line_bytes = 200;  // longer lines are cut
};

// The map of the git work tree containing `repo_root`. Unavailable (git's error) when
// `git ls-files` fails; unreadable files are listed without content.
Result<std::string> BuildRepoMap(const std::filesystem::path& repo_root,
                                 const RepoMapOptions& options = {});

// True for the files whose first lines the map shows (README*, CMakeLists.txt, Makefile,
// package.json, pyproject.toml, Cargo.toml, go.mod, DESIGN/ARCHITECTURE/CONTRIBUTING docs...).
bool IsKeyFile(std::string_view path);

}  // namespace factory::feature
