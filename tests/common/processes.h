#pragma once
// Finding the processes a test started, by a unique marker on their command line.

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/test_util.h"

namespace factory::testing {

// Live (non-zombie) processes whose command line contains `marker`.
inline std::vector<int> LiveProcessesWith(const std::string& marker) {
  std::vector<int> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const std::string base = std::string("/proc/") + entry->d_name;
    std::string cmdline = ReadFile(base + "/cmdline");
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (cmdline.find(marker) == std::string::npos) continue;
    std::string stat = ReadFile(base + "/stat");
    auto rparen = stat.rfind(')');
    if (rparen == std::string::npos || rparen + 2 >= stat.size()) continue;
    char state = stat[rparen + 2];
    if (state != 'Z' && state != 'X') pids.push_back(std::atoi(entry->d_name));
  }
  closedir(proc);
  return pids;
}

// A string no other process's command line holds: the name, this process and a random number.
inline std::string UniqueMarker(const std::string& name) {
  return "factory-" + name + "-" + std::to_string(getpid()) + "-" +
         std::to_string(std::rand() % 1000000);
}

}  // namespace factory::testing
