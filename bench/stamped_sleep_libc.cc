// stamped_sleep built on the C library: the same stamps and sleep as stamped_sleep.cc, with
// glibc's start-up before main. On a KVM guest that start-up costs ~0.3 ms of CPU per process
// (glibc's CPU-feature and cache probing executes cpuid, which traps to the hypervisor), 5x the
// libc-free program; worker_bench --stamped-sleep build/bench/stamped_sleep_libc shows what a
// burst of 50 such starts costs on 2 cores (bench/HISTORY.md). It is also the runner on
// machines other than x86-64, where the libc-free one is not built.
//
//   started <ns>
//   ended <ns>

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace {

long long RealtimeNanos() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<long long>(now.tv_sec) * 1'000'000'000LL + now.tv_nsec;
}

bool WriteStamp(const char* name, long long nanos) {
  char line[64];
  const int length = std::snprintf(line, sizeof(line), "%s %lld\n", name, nanos);
  return write(STDOUT_FILENO, line, static_cast<size_t>(length)) == length;
}

}  // namespace

int main(int argc, char** argv) {
  const long long started = RealtimeNanos();
  if (argc != 2) {
    std::fprintf(stderr, "usage: stamped_sleep SECONDS\n");
    return 2;
  }
  const double seconds = std::strtod(argv[1], nullptr);
  if (!WriteStamp("started", started)) return 1;
  timespec pause{};
  pause.tv_sec = static_cast<time_t>(seconds);
  pause.tv_nsec = static_cast<long>((seconds - static_cast<double>(pause.tv_sec)) * 1e9);
  while (nanosleep(&pause, &pause) != 0) {
  }
  return WriteStamp("ended", RealtimeNanos()) ? 0 : 1;
}
