#pragma once
// SIGINT/SIGTERM handling for long-running commands (worker, run): the handler only writes to a
// self-pipe; a watcher thread calls the callbacks, so they may take locks and log.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <thread>

namespace factory::cli {

inline int g_signal_pipe_write = -1;

inline void OnStopSignal(int signo) {
  const int saved_errno = errno;
  const auto byte = static_cast<unsigned char>(signo);
  if (g_signal_pipe_write >= 0) {
    [[maybe_unused]] ssize_t written = write(g_signal_pipe_write, &byte, 1);
  }
  errno = saved_errno;
}

// Installs SIGINT/SIGTERM handlers for its lifetime. The first signal calls on_stop, the
// second on_cancel. Not re-entrant: one instance at a time.
class SignalWatcher {
 public:
  SignalWatcher(std::function<void(int)> on_stop, std::function<void(int)> on_cancel)
      : on_stop_(std::move(on_stop)), on_cancel_(std::move(on_cancel)) {
    if (pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
      fds_[0] = fds_[1] = -1;
      return;
    }
    g_signal_pipe_write = fds_[1];
    struct sigaction action = {};
    action.sa_handler = OnStopSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
    thread_ = std::thread([this] { Watch(); });
  }
  ~SignalWatcher() {
    if (fds_[0] < 0) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    const unsigned char quit = 0;
    [[maybe_unused]] ssize_t written = write(fds_[1], &quit, 1);
    thread_.join();
    g_signal_pipe_write = -1;
    close(fds_[0]);
    close(fds_[1]);
  }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  void Watch() {
    int signals_seen = 0;
    while (true) {
      pollfd pfd = {fds_[0], POLLIN, 0};
      if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return;
      unsigned char byte = 0;
      while (read(fds_[0], &byte, 1) == 1) {
        if (byte == 0) return;
        ++signals_seen;
        if (signals_seen == 1) {
          on_stop_(byte);
        } else {
          on_cancel_(byte);
        }
      }
    }
  }

  std::function<void(int)> on_stop_;
  std::function<void(int)> on_cancel_;
  int fds_[2] = {-1, -1};
  struct sigaction old_int_ = {};
  struct sigaction old_term_ = {};
  std::thread thread_;
};

}  // namespace factory::cli
