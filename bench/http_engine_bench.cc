// The HTTP engines side by side: net::BeastServer (factory serve) against net::HttpServer
// (factory gateway), the same handler answering the same bytes.
//
//   http_engine_bench [--body BYTES] [--clients N] [--requests N] [--idle N] [--subscribers N]
//
// 1. Keep-alive GETs: `clients` threads, each on its own connection, send `requests` requests
//    one after another; latency per request (send to last byte), p50/p99, requests/s.
// 2. The same with `idle` idle keep-alive connections open beside them.
// 3. Streams: `subscribers` SSE clients on one reader thread (poll); 200 events, each stamped
//    with its write time, written to every stream; write-to-delivery p50/p99. BeastServer feeds
//    detached streams (no thread each); HttpServer holds one worker thread per stream, so it
//    gets `subscribers` + 8 threads.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/beast_server.h"
#include "net/http_server.h"

namespace {

using factory::net::AsyncStream;
using factory::net::BeastServer;
using factory::net::BeastServerOptions;
using factory::net::HttpServer;
using factory::net::HttpServerOptions;
using factory::net::Request;
using factory::net::Responder;
using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Reads one Content-Length answer; false when the connection failed.
bool ReadAnswer(int fd, std::string& buffer) {
  size_t head_end;
  char chunk[65536];
  while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t got = ::recv(fd, chunk, sizeof(chunk), 0);
    if (got <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(got));
  }
  const size_t at = buffer.find("Content-Length: ");
  const size_t length = std::stoul(buffer.substr(at + 16));
  const size_t total = head_end + 4 + length;
  while (buffer.size() < total) {
    const ssize_t got = ::recv(fd, chunk, sizeof(chunk), 0);
    if (got <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(got));
  }
  buffer.erase(0, total);
  return true;
}

struct Figures {
  double p50_ms = 0;
  double p99_ms = 0;
  double per_second = 0;
};

Figures Summarise(std::vector<int64_t> ns, double seconds) {
  Figures figures;
  if (ns.empty()) return figures;
  std::sort(ns.begin(), ns.end());
  figures.p50_ms = static_cast<double>(ns[ns.size() / 2]) / 1e6;
  figures.p99_ms = static_cast<double>(ns[std::min(ns.size() - 1, ns.size() * 99 / 100)]) / 1e6;
  figures.per_second = seconds > 0 ? static_cast<double>(ns.size()) / seconds : 0;
  return figures;
}

Figures KeepAliveGets(int port, int clients, int requests, int idle) {
  std::vector<int> idle_fds;
  for (int index = 0; index < idle; ++index) {
    const int fd = Connect(port);
    if (fd < 0) continue;
    const std::string request = "GET /page HTTP/1.1\r\nHost: b\r\n\r\n";
    std::string buffer;
    if (::send(fd, request.data(), request.size(), 0) > 0 && ReadAnswer(fd, buffer)) {
      idle_fds.push_back(fd);
    } else {
      ::close(fd);
    }
  }
  std::mutex mu;
  std::vector<int64_t> all;
  const auto started = Clock::now();
  std::vector<std::thread> threads;
  for (int client = 0; client < clients; ++client) {
    threads.emplace_back([&] {
      const int fd = Connect(port);
      if (fd < 0) return;
      const std::string request = "GET /page HTTP/1.1\r\nHost: b\r\n\r\n";
      std::string buffer;
      std::vector<int64_t> mine;
      mine.reserve(static_cast<size_t>(requests));
      for (int index = 0; index < requests; ++index) {
        const int64_t sent = NowNs();
        if (::send(fd, request.data(), request.size(), 0) <= 0) break;
        if (!ReadAnswer(fd, buffer)) break;
        mine.push_back(NowNs() - sent);
      }
      ::close(fd);
      std::lock_guard lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
    });
  }
  for (auto& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  for (int fd : idle_fds) ::close(fd);
  return Summarise(std::move(all), seconds);
}

// Subscribers on one poll() thread; events "t=<ns>\n" are timed on arrival.
Figures Streams(int port, int subscribers, int events, const std::function<void(int64_t)>& write,
                const std::function<size_t()>& ready) {
  std::vector<pollfd> fds;
  const std::string request = "GET /events HTTP/1.1\r\nHost: b\r\n\r\n";
  for (int index = 0; index < subscribers; ++index) {
    const int fd = Connect(port);
    if (fd < 0) break;
    ::send(fd, request.data(), request.size(), 0);
    fds.push_back({fd, POLLIN, 0});
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (ready() < fds.size() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::vector<int64_t> latencies;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    std::vector<std::string> pending(fds.size());
    size_t expected = fds.size() * static_cast<size_t>(events);
    char chunk[65536];
    while (latencies.size() < expected && Clock::now() < deadline + std::chrono::seconds(30)) {
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      for (size_t index = 0; index < fds.size(); ++index) {
        if (!(fds[index].revents & POLLIN)) continue;
        const ssize_t got = ::recv(fds[index].fd, chunk, sizeof(chunk), 0);
        if (got <= 0) {
          fds[index].fd = -fds[index].fd - 1;
          continue;
        }
        const int64_t now = NowNs();
        pending[index].append(chunk, static_cast<size_t>(got));
        size_t at;
        while ((at = pending[index].find("t=")) != std::string::npos) {
          const size_t end = pending[index].find('\n', at);
          if (end == std::string::npos) break;
          latencies.push_back(now - std::stoll(pending[index].substr(at + 2, end - at - 2)));
          pending[index].erase(0, end + 1);
        }
      }
    }
    done = true;
  });
  const auto started = Clock::now();
  for (int event = 0; event < events && !done; ++event) {
    write(NowNs());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  reader.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  for (auto& fd : fds) ::close(fd.fd >= 0 ? fd.fd : -fd.fd - 1);
  Figures figures = Summarise(latencies, seconds);
  figures.per_second = static_cast<double>(latencies.size());  // deliveries
  return figures;
}

int Arg(int argc, char** argv, const char* name, int fallback) {
  for (int index = 1; index + 1 < argc; ++index) {
    if (std::strcmp(argv[index], name) == 0) return std::atoi(argv[index + 1]);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int body_bytes = Arg(argc, argv, "--body", 30'000);
  const int clients = Arg(argc, argv, "--clients", 8);
  const int requests = Arg(argc, argv, "--requests", 2000);
  const int idle = Arg(argc, argv, "--idle", 500);
  const int subscribers = Arg(argc, argv, "--subscribers", 500);
  constexpr int kEvents = 200;
  const std::string body(static_cast<size_t>(body_bytes), 'x');
  auto page = [&body](const Request&, Responder& responder) {
    responder.Send(200, {{"Content-Type", "application/json"}}, body);
  };

  std::printf("engine       test                          p50_ms   p99_ms   rate\n");
  auto print = [](const char* engine, const char* test, const Figures& figures, const char* unit) {
    std::printf("%-12s %-28s %8.3f %8.3f   %.0f %s\n", engine, test, figures.p50_ms, figures.p99_ms,
                figures.per_second, unit);
  };

  {
    BeastServerOptions options;
    options.worker_threads = 16;
    BeastServer server(options);
    server.Route("GET", "/page", page);
    std::mutex mu;
    std::vector<std::shared_ptr<AsyncStream>> streams;
    server.Route("GET", "/events", [&](const Request&, Responder& responder) {
      auto stream = responder.Detach(200, {{"Content-Type", "text/event-stream"}});
      std::lock_guard lock(mu);
      if (stream) streams.push_back(stream);
    });
    if (!server.Start()) return 1;
    print("beast", "keep-alive GET", KeepAliveGets(server.port(), clients, requests, 0), "req/s");
    print("beast", "keep-alive GET + idle", KeepAliveGets(server.port(), clients, requests, idle),
          "req/s");
    auto figures = Streams(
        server.port(), subscribers, kEvents,
        [&](int64_t stamp) {
          const std::string event = "data: t=" + std::to_string(stamp) + "\n\n";
          std::lock_guard lock(mu);
          for (auto& stream : streams) stream->Write(event);
        },
        [&] {
          std::lock_guard lock(mu);
          return streams.size();
        });
    print("beast", "SSE write-to-delivery", figures, "deliveries");
    server.Stop();
  }
  {
    HttpServerOptions options;
    options.threads = 16;
    auto server = std::make_unique<HttpServer>(options);
    server->Route("GET", "/page", page);
    if (!server->Start()) return 1;
    print("threads", "keep-alive GET", KeepAliveGets(server->port(), clients, requests, 0),
          "req/s");
    print("threads", "keep-alive GET + idle",
          KeepAliveGets(server->port(), clients, requests, idle), "req/s");
    server->Stop();
  }
  {
    // A streamed answer holds a worker: one thread per subscriber.
    HttpServerOptions options;
    options.threads = subscribers + 8;
    HttpServer server(options);
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> log;  // every event so far; each stream keeps its own position
    bool stopping = false;
    std::atomic<size_t> open{0};
    server.Route("GET", "/events", [&](const Request&, Responder& responder) {
      responder.StartStream(200, {{"Content-Type", "text/event-stream"}});
      ++open;
      size_t next = 0;
      std::unique_lock lock(mu);
      while (!stopping) {
        cv.wait(lock, [&] { return stopping || next < log.size(); });
        while (next < log.size()) {
          const std::string event = log[next++];
          lock.unlock();
          const bool sent = responder.WriteChunk(event);
          lock.lock();
          if (!sent) return;
        }
      }
      lock.unlock();
      responder.EndStream();
    });
    if (!server.Start()) return 1;
    auto figures = Streams(
        server.port(), subscribers, kEvents,
        [&](int64_t stamp) {
          std::lock_guard lock(mu);
          log.push_back("data: t=" + std::to_string(stamp) + "\n\n");
          cv.notify_all();
        },
        [&] { return open.load(); });
    print("threads", "SSE write-to-delivery", figures, "deliveries");
    {
      std::lock_guard lock(mu);
      stopping = true;
      cv.notify_all();
    }
    server.Stop();
  }
  return 0;
}
