#pragma once
// File access for the built-in tool loop, confined to one worktree.
//
// Every path comes from a model and is untrusted. How confinement works (no canonicalisation,
// no prefix check — both race with a concurrent `ln -s` and get symlinks wrong):
//  1. the path is checked lexically: valid UTF-8, no NUL byte, not absolute, at most 4096 bytes;
//     "." components are dropped and ".." pops one component, an attempt to go above the root is
//     refused ("a/../b" is fine, "../x" and "a/../../x" are not);
//  2. the remaining components are walked from a directory descriptor of the worktree with
//     openat(O_NOFOLLOW | O_DIRECTORY) for each directory and O_NOFOLLOW for the final file, so a
//     symlink at ANY component (the middle, the final one, a dangling one) makes the call fail
//     with ELOOP/ENOTDIR and is never followed. Symlinks are refused even when they point inside
//     the worktree: resolving them safely would need a second walk and a model can always use
//     the link's target path instead.
//  3. only regular files are read or written (a FIFO or a device is refused; files are opened
//     O_NONBLOCK so a FIFO cannot hang the call); writes go to a temporary file in the same
//     directory and are renamed over the target, so a hard link to a file outside the worktree is
//     replaced, never written through; the old file's permission bits are kept.
// Writes below `.git/` are refused (the factory owns the repository metadata).
//
// Errors are Results whose message is meant for the model ("path escapes the worktree: ../x").
// Thread-compatible: distinct instances may be used concurrently; one instance is used by one
// tool loop at a time.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace factory::toolloop {

inline constexpr size_t kMaxReadBytes = 256 * 1024;        // returned to the model per read
inline constexpr size_t kMaxFileBytes = 16 * 1024 * 1024;  // largest file read or edited at all
inline constexpr size_t kMaxPathBytes = 4096;

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view text);
// `text` with every ill-formed sequence replaced by U+FFFD: safe to put in JSON.
std::string SanitizeUtf8(std::string_view text);

// The lexically normalised relative form of a model-supplied path ("" = the root itself), or
// kInvalidArgument/kPermissionDenied with a message for the model.
Result<std::string> NormalizePath(std::string_view path);

struct DirEntry {
  enum class Type { kFile, kDirectory, kSymlink, kOther };
  std::string name;  // relative to the listed directory (ListDir) or to the root (Walk)
  Type type = Type::kOther;
  int64_t size = 0;  // regular files only
};

class WorkspaceFs {
 public:
  // Opens the worktree's root directory. kNotFound when it is not a directory.
  static Result<WorkspaceFs> Open(const std::string& root);
  ~WorkspaceFs();
  WorkspaceFs(WorkspaceFs&& other) noexcept;
  WorkspaceFs& operator=(WorkspaceFs&& other) noexcept;
  WorkspaceFs(const WorkspaceFs&) = delete;
  WorkspaceFs& operator=(const WorkspaceFs&) = delete;

  // The whole content of a regular file. kResourceExhausted above max_bytes.
  Result<std::string> ReadFile(std::string_view path, size_t max_bytes = kMaxFileBytes) const;
  // Replaces (or creates, with missing parent directories) a regular file.
  Status WriteFile(std::string_view path, std::string_view content) const;
  // The entries of a directory, sorted by name, without "." and "..".
  Result<std::vector<DirEntry>> ListDir(std::string_view path) const;
  // Depth-first, sorted walk below `path` (a directory), never following symlinks, skipping
  // `.git` directories. `visit` gets names relative to the root and returns false to stop.
  // Directories are visited before their contents.
  Status Walk(std::string_view path, const std::function<bool(const DirEntry&)>& visit) const;

  const std::string& root() const { return root_; }

 private:
  WorkspaceFs(std::string root, int root_fd) : root_(std::move(root)), root_fd_(root_fd) {}
  // Opens the directory holding the last component of `relative` (a normalised path), creating
  // missing directories when `create`. Returns the fd (caller closes) and the last component.
  Result<std::pair<int, std::string>> OpenParent(const std::string& relative, bool create) const;
  // Opens a directory (normalised relative path, "" = root). Caller closes.
  Result<int> OpenDir(const std::string& relative) const;

  std::string root_;
  int root_fd_ = -1;
};

}  // namespace factory::toolloop
