// The runner process of a dispatch-latency task (worker_bench): prints its own start time
// (CLOCK_REALTIME, nanoseconds), sleeps, then prints its end time, on stdout, which the shell
// executor (and the bench's bare baseline) sends to the attempt's stdout.log:
//
//   started <ns>
//   ended <ns>
//
// Run as `exec stamped_sleep SECONDS`. The instrument must cost one exec and nothing more, so it
// is linked statically without a C library (x86-64 system calls, its own _start): glibc's
// start-up alone costs ~0.3 ms of CPU per process on a KVM guest (cpuid traps while it probes
// the CPU), and fifty of those in a burst on 2 cores were most of what the dispatch figure
// measured, for the factory and its baseline alike. stamped_sleep_libc.cc is the same program
// on glibc, to measure that effect.

#include <sys/syscall.h>
#include <time.h>

namespace {

long Syscall3(long number, long a, long b, long c) {
  long result;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "a"(number), "D"(a), "S"(b), "d"(c)
                   : "rcx", "r11", "memory");
  return result;
}

long long RealtimeNanos() {
  timespec now{};
  Syscall3(SYS_clock_gettime, CLOCK_REALTIME, reinterpret_cast<long>(&now), 0);
  return static_cast<long long>(now.tv_sec) * 1'000'000'000LL + now.tv_nsec;
}

bool WriteStamp(const char* name, long long nanos) {
  char line[64];
  int length = 0;
  while (*name != '\0') line[length++] = *name++;
  line[length++] = ' ';
  char digits[24];
  int count = 0;
  do {
    digits[count++] = static_cast<char>('0' + nanos % 10);
    nanos /= 10;
  } while (nanos > 0);
  while (count > 0) line[length++] = digits[--count];
  line[length++] = '\n';
  return Syscall3(SYS_write, 1, reinterpret_cast<long>(line), length) == length;
}

// "0.2" -> nanoseconds; digits and one dot only.
long long ParseSeconds(const char* text, bool& ok) {
  long long whole = 0, fraction = 0, scale = 1'000'000'000LL;
  bool dot = false, any = false;
  for (; *text != '\0'; ++text) {
    if (*text == '.' && !dot) {
      dot = true;
      continue;
    }
    if (*text < '0' || *text > '9') {
      ok = false;
      return 0;
    }
    any = true;
    if (!dot) {
      whole = whole * 10 + (*text - '0');
    } else if (scale > 1) {
      scale /= 10;
      fraction += (*text - '0') * scale;
    }
  }
  ok = any;
  return whole * 1'000'000'000LL + fraction;
}

}  // namespace

// Called by _start with the initial stack: argc, then argv.
extern "C" [[noreturn]] void StampedMain(long* stack) {
  const long long started = RealtimeNanos();
  const long argc = stack[0];
  char** argv = reinterpret_cast<char**>(stack + 1);
  bool ok = false;
  const long long nanos = argc == 2 ? ParseSeconds(argv[1], ok) : 0;
  int code = 0;
  if (!ok) {
    static const char usage[] = "usage: stamped_sleep SECONDS\n";
    Syscall3(SYS_write, 2, reinterpret_cast<long>(usage), sizeof(usage) - 1);
    code = 2;
  } else if (!WriteStamp("started", started)) {
    code = 1;
  } else {
    timespec pause{static_cast<time_t>(nanos / 1'000'000'000LL),
                   static_cast<long>(nanos % 1'000'000'000LL)};
    // Interrupted: sleep the remainder the kernel wrote back.
    while (Syscall3(SYS_nanosleep, reinterpret_cast<long>(&pause), reinterpret_cast<long>(&pause),
                    0) != 0) {
    }
    code = WriteStamp("ended", RealtimeNanos()) ? 0 : 1;
  }
  Syscall3(SYS_exit_group, code, 0, 0);
  __builtin_unreachable();
}

// The kernel enters with argc at (%rsp) and a 16-byte aligned stack; a call needs it aligned
// before the return address is pushed.
__asm__(
    ".globl _start\n"
    "_start:\n"
    "  xor %rbp, %rbp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call StampedMain\n"
    "  hlt\n");
