// The runner process of a dispatch-latency task (worker_bench): prints its own start time
// (CLOCK_REALTIME, nanoseconds), sleeps, then prints its end time, on stdout, which the shell
// executor (and the bench's bare baseline) sends to the attempt's stdout.log:
//
//   started <ns>
//   ended <ns>
//
// Run as `exec stamped_sleep SECONDS` from the task's shell. It is linked statically and writes
// no file of its own, so the instrument costs one exec and nothing more (`date +%s%N > file`
// would cost a fork, an exec, a dynamic link and a file creation per stamp).

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
