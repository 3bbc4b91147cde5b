#include "forge/remote.h"

#include <cctype>
#include <string>

namespace factory::forge {
namespace {

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

bool IsUnreserved(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_' ||
         c == '~';
}

// Percent-encodes every byte but the unreserved ones (and '/' when keep_slash).
std::string Encode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (char c : text) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      encoded += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      encoded += '%';
      encoded += kHex[byte >> 4];
      encoded += kHex[byte & 0xf];
    }
  }
  return encoded;
}

bool StartsWithLabel(std::string_view host, std::string_view label) {
  return host.starts_with(label) && host.size() > label.size() && host[label.size()] == '.';
}

bool ValidHost(std::string_view host) {
  if (host.empty()) return false;
  for (char c : host) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string_view ForgeName(ForgeKind kind) {
  switch (kind) {
    case ForgeKind::kGitHub:
      return "github";
    case ForgeKind::kGitLab:
      return "gitlab";
    case ForgeKind::kGitea:
      return "gitea";
    case ForgeKind::kBitbucket:
      return "bitbucket";
    case ForgeKind::kUnknown:
      break;
  }
  return "unknown";
}

ForgeKind GuessForge(std::string_view raw_host) {
  const std::string host = Lower(raw_host);
  if (host == "github.com" || host == "www.github.com") return ForgeKind::kGitHub;
  if (host == "gitlab.com" || StartsWithLabel(host, "gitlab")) return ForgeKind::kGitLab;
  if (host == "bitbucket.org") return ForgeKind::kBitbucket;
  if (host == "codeberg.org" || StartsWithLabel(host, "gitea") ||
      StartsWithLabel(host, "forgejo")) {
    return ForgeKind::kGitea;
  }
  return ForgeKind::kUnknown;
}

std::string WithoutUserInfo(std::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const size_t authority = scheme_end + 3;
  const size_t path = url.find('/', authority);
  const std::string_view host_part =
      url.substr(authority, path == std::string_view::npos ? url.npos : path - authority);
  const size_t at = host_part.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, authority)) + std::string(url.substr(authority + at + 1));
}

Result<RemoteLocation> ParseRemoteUrl(std::string_view url) {
  const std::string shown = WithoutUserInfo(url);
  auto local = [&] {
    return FailedPrecondition("remote URL '" + shown +
                              "' is a path on this machine: no forge serves it");
  };
  if (url.empty()) return InvalidArgument("the remote has no URL");
  std::string_view host_part;
  std::string_view path;
  if (const size_t scheme_end = url.find("://"); scheme_end != std::string_view::npos) {
    const std::string scheme = Lower(url.substr(0, scheme_end));
    if (scheme == "file") return local();
    if (scheme != "https" && scheme != "http" && scheme != "ssh" && scheme != "git" &&
        scheme != "git+ssh" && scheme != "ssh+git") {
      return InvalidArgument("remote URL '" + shown + "': unsupported scheme '" + scheme + "'");
    }
    const std::string_view rest = url.substr(scheme_end + 3);
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      return InvalidArgument("remote URL '" + shown + "' names no repository");
    }
    host_part = rest.substr(0, slash);
    path = rest.substr(slash + 1);
    if (const size_t at = host_part.rfind('@'); at != std::string_view::npos) {
      host_part = host_part.substr(at + 1);
    }
    if (const size_t colon = host_part.rfind(':'); colon != std::string_view::npos) {
      host_part = host_part.substr(0, colon);  // a port
    }
  } else {
    // git's rule: a colon before any slash makes it scp-like ([user@]host:path); else a path.
    const size_t colon = url.find(':');
    const size_t slash = url.find('/');
    if (colon == std::string_view::npos || (slash != std::string_view::npos && slash < colon)) {
      return local();
    }
    host_part = url.substr(0, colon);
    path = url.substr(colon + 1);
    if (const size_t at = host_part.rfind('@'); at != std::string_view::npos) {
      host_part = host_part.substr(at + 1);
    }
  }
  while (path.starts_with('/')) path.remove_prefix(1);
  while (path.ends_with('/')) path.remove_suffix(1);
  if (path.ends_with(".git")) path.remove_suffix(4);
  while (path.ends_with('/')) path.remove_suffix(1);
  if (!ValidHost(host_part)) {
    return InvalidArgument("remote URL '" + shown + "': cannot read a host name in it");
  }
  if (path.empty() || path.find("..") != std::string_view::npos ||
      path.find_first_of(" \t\r\n?#") != std::string_view::npos) {
    return InvalidArgument("remote URL '" + shown + "': cannot read a repository path in it");
  }
  RemoteLocation location;
  location.host = Lower(host_part);
  location.path = std::string(path);
  location.web_url = "https://" + location.host + "/" + location.path;
  location.kind = GuessForge(location.host);
  return location;
}

Result<std::string> CompareUrl(const RemoteLocation& remote, std::string_view base,
                               std::string_view head) {
  switch (remote.kind) {
    case ForgeKind::kGitHub:
      return remote.web_url + "/compare/" + Encode(base, true) + "..." + Encode(head, true) +
             "?expand=1";
    case ForgeKind::kGitLab:
      return remote.web_url +
             "/-/merge_requests/new?merge_request%5Bsource_branch%5D=" + Encode(head, false) +
             "&merge_request%5Btarget_branch%5D=" + Encode(base, false);
    case ForgeKind::kGitea:
      return remote.web_url + "/compare/" + Encode(base, true) + "..." + Encode(head, true);
    case ForgeKind::kBitbucket:
      return remote.web_url + "/pull-requests/new?source=" + Encode(head, false) +
             "&dest=" + Encode(base, false);
    case ForgeKind::kUnknown:
      break;
  }
  return FailedPrecondition("cannot tell which forge serves " + remote.host +
                            " (GitHub, GitLab, Gitea/Forgejo and Bitbucket are known by their "
                            "host names): open the pull request on its web page");
}

}  // namespace factory::forge
