#include "toolloop/workspace_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

namespace factory::toolloop {
namespace {

// Closes a descriptor at scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Length of the well-formed UTF-8 sequence at text[pos], or 0 when ill-formed.
size_t Utf8SequenceLength(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char min_second = 0x80, max_second = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) min_second = 0xA0;  // overlong
    if (lead == 0xED) max_second = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) min_second = 0x90;  // overlong
    if (lead == 0xF4) max_second = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (pos + length > text.size()) return 0;
  if (byte(pos + 1) < min_second || byte(pos + 1) > max_second) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
  }
  return length;
}

std::string Quote(std::string_view path) { return "'" + SanitizeUtf8(path) + "'"; }

// A message for the model about a failed open of `path`.
Error OpenError(std::string_view path, int err) {
  if (err == ELOOP || err == EMLINK) {
    return Error{
        ErrorCode::kPermissionDenied,
        "refused: " + Quote(path) + " is or passes through a symlink; symlinks are not followed"};
  }
  if (err == ENOENT)
    return Error{ErrorCode::kNotFound, "no such file or directory: " + Quote(path)};
  if (err == ENOTDIR) {
    // Either a regular file used as a directory or a symlink in the middle of the path
    // (O_DIRECTORY|O_NOFOLLOW on a symlink also gives ENOTDIR).
    return Error{ErrorCode::kPermissionDenied,
                 "refused: a component of " + Quote(path) +
                     " is not a directory (or is a symlink, which is not followed)"};
  }
  if (err == EISDIR) return Error{ErrorCode::kInvalidArgument, Quote(path) + " is a directory"};
  return Error{ErrorCode::kInternal, Quote(path) + ": " + std::strerror(err)};
}

std::vector<std::string> SplitComponents(const std::string& relative) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= relative.size() && !relative.empty()) {
    size_t slash = relative.find('/', start);
    if (slash == std::string::npos) slash = relative.size();
    parts.push_back(relative.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

DirEntry::Type TypeOf(mode_t mode) {
  if (S_ISREG(mode)) return DirEntry::Type::kFile;
  if (S_ISDIR(mode)) return DirEntry::Type::kDirectory;
  if (S_ISLNK(mode)) return DirEntry::Type::kSymlink;
  return DirEntry::Type::kOther;
}

// Entries of an open directory (fd is consumed), sorted, with types from fstatat(NOFOLLOW).
Result<std::vector<DirEntry>> ReadDirFd(int fd, std::string_view path_for_errors) {
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    const int err = errno;
    ::close(fd);
    return std::unexpected(OpenError(path_for_errors, err));
  }
  ::rewinddir(dir);
  std::vector<DirEntry> entries;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    DirEntry out;
    out.name = name;
    struct stat st {};
    if (::fstatat(::dirfd(dir), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      out.type = TypeOf(st.st_mode);
      if (out.type == DirEntry::Type::kFile) out.size = st.st_size;
    }
    entries.push_back(std::move(out));
  }
  ::closedir(dir);
  std::sort(entries.begin(), entries.end(),
            [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return entries;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = Utf8SequenceLength(text, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = Utf8SequenceLength(text, pos);
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      ++pos;
    } else {
      out.append(text.substr(pos, length));
      pos += length;
    }
  }
  return out;
}

Result<std::string> NormalizePath(std::string_view path) {
  if (path.size() > kMaxPathBytes) return InvalidArgument("path is longer than 4096 bytes");
  if (path.find('\0') != std::string_view::npos) return InvalidArgument("path contains a NUL byte");
  if (!IsValidUtf8(path)) return InvalidArgument("path is not valid UTF-8");
  if (!path.empty() && path.front() == '/') {
    return PermissionDenied("refused: absolute path " + Quote(path) +
                            "; use a path relative to the worktree root");
  }
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    const std::string_view part = path.substr(start, slash - start);
    start = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) {
        return PermissionDenied("refused: path " + Quote(path) + " escapes the worktree");
      }
      parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  std::string relative;
  for (const auto& part : parts) {
    if (!relative.empty()) relative += '/';
    relative += part;
  }
  return relative;
}

Result<WorkspaceFs> WorkspaceFs::Open(const std::string& root) {
  const int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return NotFound("worktree " + root + " cannot be opened: " + std::strerror(errno));
  return WorkspaceFs(root, fd);
}

WorkspaceFs::~WorkspaceFs() {
  if (root_fd_ >= 0) ::close(root_fd_);
}

WorkspaceFs::WorkspaceFs(WorkspaceFs&& other) noexcept
    : root_(std::move(other.root_)), root_fd_(other.root_fd_) {
  other.root_fd_ = -1;
}

WorkspaceFs& WorkspaceFs::operator=(WorkspaceFs&& other) noexcept {
  if (this != &other) {
    if (root_fd_ >= 0) ::close(root_fd_);
    root_ = std::move(other.root_);
    root_fd_ = other.root_fd_;
    other.root_fd_ = -1;
  }
  return *this;
}

Result<int> WorkspaceFs::OpenDir(const std::string& relative) const {
  // A fresh open file description (not dup): directory offsets must not be shared.
  Fd current(::openat(root_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (current.get() < 0) return Internal(std::string("dup: ") + std::strerror(errno));
  for (const auto& part : SplitComponents(relative)) {
    const int next =
        ::openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) return std::unexpected(OpenError(relative, errno));
    current.reset(next);
  }
  return current.release();
}

Result<std::pair<int, std::string>> WorkspaceFs::OpenParent(const std::string& relative,
                                                            bool create) const {
  std::vector<std::string> parts = SplitComponents(relative);
  if (parts.empty()) return InvalidArgument("the path names the worktree root, not a file");
  const std::string last = parts.back();
  parts.pop_back();
  int current = ::dup(root_fd_);
  if (current < 0) return Internal(std::string("dup: ") + std::strerror(errno));
  for (const auto& part : parts) {
    int next = ::openat(current, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(current, part.c_str(), 0755) != 0 && errno != EEXIST) {
        const int err = errno;
        ::close(current);
        return std::unexpected(OpenError(relative, err));
      }
      next = ::openat(current, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    const int err = errno;
    ::close(current);
    if (next < 0) return std::unexpected(OpenError(relative, err));
    current = next;
  }
  return std::make_pair(current, last);
}

Result<std::string> WorkspaceFs::ReadFile(std::string_view path, size_t max_bytes) const {
  FACTORY_ASSIGN_OR_RETURN(const std::string relative, NormalizePath(path));
  FACTORY_ASSIGN_OR_RETURN(auto parent, OpenParent(relative, /*create=*/false));
  Fd dir(parent.first);
  Fd file(::openat(dir.get(), parent.second.c_str(),
                   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (file.get() < 0) return std::unexpected(OpenError(path, errno));
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return std::unexpected(OpenError(path, errno));
  if (S_ISDIR(st.st_mode)) return InvalidArgument(Quote(path) + " is a directory; use list_dir");
  if (!S_ISREG(st.st_mode)) return InvalidArgument(Quote(path) + " is not a regular file");
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    return ResourceExhausted(Quote(path) + " is too large (" + std::to_string(st.st_size) +
                             " bytes; limit " + std::to_string(max_bytes) + ")");
  }
  std::string content;
  char buffer[65536];
  while (true) {
    const ssize_t got = ::read(file.get(), buffer, sizeof(buffer));
    if (got < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(OpenError(path, errno));
    }
    if (got == 0) break;
    content.append(buffer, static_cast<size_t>(got));
    if (content.size() > max_bytes) {
      return ResourceExhausted(Quote(path) + " is too large (limit " + std::to_string(max_bytes) +
                               " bytes)");
    }
  }
  return content;
}

Status WorkspaceFs::WriteFile(std::string_view path, std::string_view content) const {
  FACTORY_ASSIGN_OR_RETURN(const std::string relative, NormalizePath(path));
  if (relative == ".git" || relative.starts_with(".git/")) {
    return PermissionDenied("refused: " + Quote(path) + " is inside .git");
  }
  FACTORY_ASSIGN_OR_RETURN(auto parent, OpenParent(relative, /*create=*/true));
  Fd dir(parent.first);
  const std::string& name = parent.second;
  mode_t mode = 0644;
  struct stat st {};
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) return std::unexpected(OpenError(path, ELOOP));
    if (S_ISDIR(st.st_mode)) return std::unexpected(OpenError(path, EISDIR));
    if (!S_ISREG(st.st_mode)) return InvalidArgument(Quote(path) + " is not a regular file");
    mode = st.st_mode & 07777;
  } else if (errno != ENOENT) {
    return std::unexpected(OpenError(path, errno));
  }
  // A temporary sibling, renamed over the target: never writes through a link.
  std::random_device random;
  std::string temp_name;
  Fd temp;
  for (int tries = 0; tries < 16 && temp.get() < 0; ++tries) {
    temp_name = "." + name.substr(0, 64) + ".factory-tmp-" + std::to_string(random());
    const int fd = ::openat(dir.get(), temp_name.c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      temp.reset(fd);
    } else if (errno != EEXIST) {
      return std::unexpected(OpenError(path, errno));
    }
  }
  if (temp.get() < 0) return Internal("cannot create a temporary file next to " + Quote(path));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t put = ::write(temp.get(), content.data() + written, content.size() - written);
    if (put < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::unlinkat(dir.get(), temp_name.c_str(), 0);
      return std::unexpected(OpenError(path, err));
    }
    written += static_cast<size_t>(put);
  }
  if (::fchmod(temp.get(), mode) != 0 ||
      ::renameat(dir.get(), temp_name.c_str(), dir.get(), name.c_str()) != 0) {
    const int err = errno;
    ::unlinkat(dir.get(), temp_name.c_str(), 0);
    return std::unexpected(OpenError(path, err));
  }
  return Ok();
}

Result<std::vector<DirEntry>> WorkspaceFs::ListDir(std::string_view path) const {
  FACTORY_ASSIGN_OR_RETURN(const std::string relative, NormalizePath(path));
  FACTORY_ASSIGN_OR_RETURN(const int fd, OpenDir(relative));
  return ReadDirFd(fd, path);
}

Status WorkspaceFs::Walk(std::string_view path,
                         const std::function<bool(const DirEntry&)>& visit) const {
  FACTORY_ASSIGN_OR_RETURN(const std::string start, NormalizePath(path));
  // An explicit stack of (relative directory, open fd) keeps the walk descriptor-based.
  struct Frame {
    std::string relative;
    std::vector<DirEntry> entries;
    size_t next = 0;
    int fd = -1;
  };
  std::vector<Frame> stack;
  FACTORY_ASSIGN_OR_RETURN(const int root_fd, OpenDir(start));
  {
    const int keep = ::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FACTORY_ASSIGN_OR_RETURN(auto entries, ReadDirFd(root_fd, path));
    stack.push_back(Frame{start, std::move(entries), 0, keep});
  }
  bool stopped = false;
  while (!stack.empty() && !stopped) {
    Frame& frame = stack.back();
    if (frame.next >= frame.entries.size()) {
      if (frame.fd >= 0) ::close(frame.fd);
      stack.pop_back();
      continue;
    }
    DirEntry entry = frame.entries[frame.next++];
    const std::string name = entry.name;
    entry.name = frame.relative.empty() ? name : frame.relative + "/" + name;
    if (entry.type == DirEntry::Type::kDirectory && name == ".git") continue;
    if (!visit(entry)) {
      stopped = true;
      break;
    }
    if (entry.type != DirEntry::Type::kDirectory || frame.fd < 0) continue;
    const int child =
        ::openat(frame.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) continue;  // vanished or replaced by a symlink meanwhile: skip it
    const int keep = ::openat(child, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    auto entries = ReadDirFd(child, entry.name);
    if (!entries) {
      if (keep >= 0) ::close(keep);
      continue;
    }
    stack.push_back(Frame{entry.name, std::move(*entries), 0, keep});
  }
  for (auto& frame : stack) {
    if (frame.fd >= 0) ::close(frame.fd);
  }
  return Ok();
}

}  // namespace factory::toolloop
