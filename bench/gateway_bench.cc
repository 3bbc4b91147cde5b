// Gateway overhead: latency p50/p99 and throughput of chat completions
// straight to a local fake upstream, through `factory gateway` (the real binary: virtual key,
// routing, budget admission, ledger) and through Portkey's open-source gateway, in front of the
// same upstream, at concurrency 1 and 32, all in one run.
//
//   gateway_bench --factory build/factory --portkey-dir DIR [--dir OUT] [--seconds S]
//                 [--idle N] [--idle-rounds R] [--idle-only]
//
// The upstream is a cpp-httplib server in this process answering a fixed OpenAI completion
// (with usage); the load generator is this process too: one thread per connection, each with a
// keep-alive connection, for `--seconds` after a warm-up. DIR holds Portkey installed by
// `npm ci` (bench/gateway_bench/package.json) and the loopback preload bind-loopback.cjs.
//
// Then idle connections, in R rounds (default 3): `factory gateway` at concurrency 1 with no
// idle connection open, then with N (default 1000) open to it, half connected and silent, half
// idle keep-alive after one request (the gateway runs with a header timeout longer than the
// run, so the silent ones stay); closed again before the next round. In each phase one thread
// alternates a call straight to the upstream and one through the gateway, so the two figures
// whose difference is the added latency see the same machine load. Printed per phase, then the
// median over the rounds of the ratio of the added p50 with and without the idle connections.
// --idle-only skips the matrix and Portkey.

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/subprocess.h"

namespace {

using Clock = std::chrono::steady_clock;
using factory::RunSubprocess;
using factory::SubprocessOptions;
using nlohmann::json;

constexpr char kUpstreamBody[] =
    R"({"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench",)"
    R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?"},)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,)"
    R"("total_tokens":19,"prompt_tokens_details":{"cached_tokens":0}}})";

struct Target {
  std::string name;
  int port = 0;
  std::string model;
  httplib::Headers headers;
};

struct Figures {
  double requests_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t requests = 0;
  int64_t errors = 0;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A port nothing listens on right now (bound, read back, released).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

// Runs `threads` keep-alive clients against the target for warmup + seconds.
Figures Measure(const Target& target, int threads, double seconds, double warmup_s) {
  const std::string body = json{{"model", target.model},
                                {"max_tokens", 16},
                                {"messages", {{{"role", "user"}, {"content", "Say hello."}}}}}
                               .dump();
  std::atomic<bool> measuring{false};
  std::atomic<bool> done{false};
  std::vector<std::vector<double>> latencies(threads);
  std::vector<int64_t> errors(threads, 0);
  std::vector<std::thread> workers;
  for (int index = 0; index < threads; ++index) {
    workers.emplace_back([&, index] {
      httplib::Client client("127.0.0.1", target.port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(30, 0);
      auto& mine = latencies[index];
      mine.reserve(200'000);
      while (!done.load(std::memory_order_relaxed)) {
        const auto start = Clock::now();
        auto response =
            client.Post("/v1/chat/completions", target.headers, body, "application/json");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (!measuring.load(std::memory_order_relaxed)) continue;
        if (!response || response->status != 200) {
          ++errors[index];
          if (errors[index] == 1 && response) {
            std::fprintf(stderr, "%s: HTTP %d: %s\n", target.name.c_str(), response->status,
                         response->body.substr(0, 300).c_str());
          } else if (errors[index] == 1) {
            std::fprintf(stderr, "%s: %s\n", target.name.c_str(),
                         httplib::to_string(response.error()).c_str());
          }
          continue;
        }
        mine.push_back(ms);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
  measuring = true;
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  done = true;
  for (auto& worker : workers) worker.join();

  std::vector<double> all;
  Figures figures;
  for (int index = 0; index < threads; ++index) {
    all.insert(all.end(), latencies[index].begin(), latencies[index].end());
    figures.errors += errors[index];
  }
  std::sort(all.begin(), all.end());
  figures.requests = static_cast<int64_t>(all.size());
  figures.requests_per_s = static_cast<double>(all.size()) / elapsed;
  if (!all.empty()) {
    figures.p50_ms = all[all.size() / 2];
    figures.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return figures;
}

// Percentile of sorted `values` (0 when empty).
double SortedPercentile(const std::vector<double>& values, double fraction) {
  if (values.empty()) return 0;
  return values[std::min(values.size() - 1, static_cast<size_t>(fraction * values.size()))];
}

// Concurrency 1 straight to the upstream and through the gateway, interleaved: one thread
// alternates blocks of kPairBlock calls to each (own keep-alive connection each), so both
// figures see the same machine load. Blocks rather than single calls: the gateway's work after
// its answer (the ledger's group commit) would otherwise land on every direct call.
constexpr int kPairBlock = 50;

struct PairedFigures {
  Figures direct;
  Figures gateway;
};

PairedFigures MeasurePaired(const Target& direct, const Target& gateway, double seconds,
                            double warmup_s) {
  auto body_for = [](const Target& target) {
    return json{{"model", target.model},
                {"max_tokens", 16},
                {"messages", {{{"role", "user"}, {"content", "Say hello."}}}}}
        .dump();
  };
  const Target* targets[2] = {&direct, &gateway};
  const std::string bodies[2] = {body_for(direct), body_for(gateway)};
  httplib::Client direct_client("127.0.0.1", direct.port);
  httplib::Client gateway_client("127.0.0.1", gateway.port);
  httplib::Client* clients[2] = {&direct_client, &gateway_client};
  for (httplib::Client* client : clients) {
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);
    client->set_read_timeout(30, 0);
  }
  std::vector<double> latencies[2];
  int64_t errors[2] = {0, 0};
  const auto began = Clock::now();
  const auto measure_from = began + std::chrono::duration<double>(warmup_s);
  const auto measure_until = measure_from + std::chrono::duration<double>(seconds);
  for (;;) {
    const auto now = Clock::now();
    if (now >= measure_until) break;
    const bool measuring = now >= measure_from;
    for (int call = 0; call < 2 * kPairBlock; ++call) {
      const int side = call / kPairBlock;
      const auto start = Clock::now();
      auto response = clients[side]->Post("/v1/chat/completions", targets[side]->headers,
                                          bodies[side], "application/json");
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (!measuring) continue;
      if (!response || response->status != 200) {
        if (++errors[side] == 1) {
          std::fprintf(stderr, "%s: %s\n", targets[side]->name.c_str(),
                       response ? ("HTTP " + std::to_string(response->status)).c_str()
                                : httplib::to_string(response.error()).c_str());
        }
        continue;
      }
      latencies[side].push_back(ms);
    }
  }
  PairedFigures figures;
  Figures* sides[2] = {&figures.direct, &figures.gateway};
  for (int side = 0; side < 2; ++side) {
    std::sort(latencies[side].begin(), latencies[side].end());
    sides[side]->requests = static_cast<int64_t>(latencies[side].size());
    sides[side]->requests_per_s = static_cast<double>(latencies[side].size()) / seconds;
    sides[side]->p50_ms = SortedPercentile(latencies[side], 0.50);
    sides[side]->p99_ms = SortedPercentile(latencies[side], 0.99);
    sides[side]->errors = errors[side];
  }
  return figures;
}

// Opens `count` connections to `port` that stay idle: half send nothing, half send one request
// (read to its end) and then nothing. Returns their descriptors, or an empty vector on failure.
std::vector<int> OpenIdle(int port, int count, const std::string& request) {
  std::vector<int> fds;
  for (int index = 0; index < count; ++index) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      std::fprintf(stderr, "idle connection %d: %s\n", index, std::strerror(errno));
      for (int open : fds) close(open);
      if (fd >= 0) close(fd);
      return {};
    }
    fds.push_back(fd);
    if (index % 2 == 1) {
      timeval tv{.tv_sec = 10, .tv_usec = 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request.size())) {
        std::fprintf(stderr, "idle connection %d: send failed\n", index);
      }
      // The answer is small and has a Content-Length: read until the body is complete.
      std::string answer;
      char buffer[4096];
      for (;;) {
        const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
        if (got <= 0) break;
        answer.append(buffer, static_cast<size_t>(got));
        const size_t head_end = answer.find("\r\n\r\n");
        if (head_end == std::string::npos) continue;
        std::string head = answer.substr(0, head_end);
        std::transform(head.begin(), head.end(), head.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        const size_t at = head.find("content-length: ");
        const size_t length = at == std::string::npos ? 0 : std::stoul(head.substr(at + 16));
        if (answer.size() >= head_end + 4 + length) break;
      }
    }
  }
  return fds;
}

// A child process running until `stop` is set (then SIGTERM, SIGKILL after a grace period).
struct Child {
  std::atomic<bool> stop{false};
  std::thread thread;
  std::optional<factory::SubprocessResult> result;

  void Start(SubprocessOptions options) {
    options.cancel = &stop;
    options.timeout_ms = 30 * 60 * 1000;
    thread = std::thread([this, options] {
      auto done = RunSubprocess(options);
      if (done) result = *done;
    });
  }
  void Stop() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  ~Child() { Stop(); }
};

bool WaitFor(const std::function<bool()>& ready, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string Arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int index = 1; index + 1 < argc; ++index) {
    if (argv[index] == name) return argv[index + 1];
  }
  return fallback;
}

// The floor of any proxy: a TCP byte relay (no HTTP parsing, no JSON, no ledger), one thread per
// direction per connection with blocking read/write. Its added latency is what the extra hop
// itself costs on this machine (two more wake-ups and four more socket calls per request).
int RunRelay(int listen_port, int upstream_port) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int on = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(listen_port));
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 128) != 0) {
    std::perror("relay: bind");
    return 1;
  }
  auto pump = [](int from, int to) {
    char buffer[16384];
    for (;;) {
      const ssize_t got = read(from, buffer, sizeof(buffer));
      if (got <= 0) break;
      for (ssize_t sent = 0; sent < got;) {
        const ssize_t wrote = write(to, buffer + sent, static_cast<size_t>(got - sent));
        if (wrote <= 0) return;
        sent += wrote;
      }
    }
    shutdown(to, SHUT_WR);
  };
  for (;;) {
    const int client = accept(listener, nullptr, nullptr);
    if (client < 0) continue;
    const int upstream = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in target{};
    target.sin_family = AF_INET;
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    target.sin_port = htons(static_cast<uint16_t>(upstream_port));
    if (connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
      close(client);
      close(upstream);
      continue;
    }
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    std::thread([=] { pump(client, upstream); }).detach();
    std::thread([=] { pump(upstream, client); }).detach();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--relay") {
    return RunRelay(std::stoi(argv[2]), std::stoi(argv[3]));
  }
  const std::string factory_binary = Arg(argc, argv, "--factory", "build/factory");
  std::string portkey_dir = Arg(argc, argv, "--portkey-dir", "");
  const std::string node = Arg(argc, argv, "--node", "node");
  const std::string out_dir = Arg(argc, argv, "--dir", "bench/out/gateway");
  const double seconds = std::stod(Arg(argc, argv, "--seconds", "5"));
  const double warmup = std::stod(Arg(argc, argv, "--warmup", "1"));
  const int idle_count = std::stoi(Arg(argc, argv, "--idle", "1000"));
  const int idle_round_count = std::max(1, std::stoi(Arg(argc, argv, "--idle-rounds", "3")));
  // Only the idle-connection part (no matrix, no Portkey): for profiling that part alone.
  const bool idle_only =
      std::find(argv + 1, argv + argc, std::string("--idle-only")) != argv + argc;
  factory::ReserveDescriptors(4 * idle_count + 1024);
  std::filesystem::remove_all(out_dir);
  std::filesystem::create_directories(out_dir + "/.factory");
  const std::string db = out_dir + "/.factory/factory.db";

  // The upstream.
  httplib::Server upstream;
  upstream.new_task_queue = [] { return new httplib::ThreadPool(64); };
  upstream.set_tcp_nodelay(true);
  upstream.set_keep_alive_max_count(1'000'000);
  upstream.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kUpstreamBody, "application/json");
  });
  const int upstream_port = upstream.bind_to_any_port("127.0.0.1");
  std::thread upstream_thread([&] { upstream.listen_after_bind(); });
  const std::string upstream_url = "http://127.0.0.1:" + std::to_string(upstream_port) + "/v1";

  // factory gateway: a database, a key, a models.yaml naming the upstream.
  auto run = [&](std::vector<std::string> args) {
    SubprocessOptions options;
    options.argv = std::move(args);
    options.timeout_ms = 60'000;
    options.tail_bytes = 1 << 16;
    auto result = RunSubprocess(options);
    if (!result || result->exit_code != 0) {
      std::fprintf(stderr, "failed: %s\n", result ? result->stderr_tail.c_str() : "spawn");
      std::exit(1);
    }
    return result->stdout_tail;
  };
  run({factory_binary, "--db", db, "init"});
  const std::string key = json::parse(
      run({factory_binary, "--db", db, "keys", "create", "--agent", "bench", "--json"}))["key"];
  const std::string models = out_dir + "/models.yaml";
  {
    std::ofstream out(models);
    out << "providers:\n  bench: {kind: openai, base_url: \"" << upstream_url
        << "\", api_key_env: BENCH_UPSTREAM_KEY}\n"
        << "models:\n  gpt-bench: {provider: bench, model: gpt-bench, input_per_mtok: 0.4, "
           "output_per_mtok: 1.6, max_output_tokens: 1000}\n"
        << "aliases:\n  bench/fast: [gpt-bench]\n";
  }
  Child gateway;
  const std::string gateway_out = out_dir + "/gateway.out";
  {
    SubprocessOptions options;
    // The silent idle connections must outlive the measurement: no header timeout in the run.
    options.argv = {factory_binary, "--db",     db,
                    "gateway",      "--listen", "127.0.0.1:0",
                    "--models",     models,     "--header-timeout-ms",
                    "3600000"};
    options.env_set = {{"BENCH_UPSTREAM_KEY", "sk-bench-upstream"}};
    options.stdout_path = gateway_out;
    options.stderr_path = out_dir + "/gateway.err";
    gateway.Start(options);
  }
  int gateway_port = 0;
  WaitFor(
      [&] {
        std::smatch match;
        const std::string text = ReadAll(gateway_out);
        static const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
        if (!std::regex_search(text, match, listening)) return false;
        gateway_port = std::stoi(match[1]);
        return true;
      },
      20'000);
  if (gateway_port == 0) {
    std::fprintf(stderr, "factory gateway did not start: %s\n",
                 ReadAll(out_dir + "/gateway.err").c_str());
    return 1;
  }

  // Portkey, bound to loopback by the preload.
  Child portkey;
  int portkey_port = 0;
  if (idle_only) portkey_dir.clear();
  if (!portkey_dir.empty()) {
    portkey_port = FreePort();
    SubprocessOptions options;
    options.argv = {node,
                    "--require",
                    portkey_dir + "/bind-loopback.cjs",
                    portkey_dir + "/node_modules/@portkey-ai/gateway/build/start-server.js",
                    "--port=" + std::to_string(portkey_port),
                    "--headless"};
    options.env_set = {{"NODE_ENV", "production"}};
    options.stdout_path = out_dir + "/portkey.out";
    options.stderr_path = out_dir + "/portkey.err";
    portkey.Start(options);
    httplib::Client probe("127.0.0.1", portkey_port);
    probe.set_connection_timeout(1, 0);
    probe.set_read_timeout(1, 0);
    if (!WaitFor([&] { return static_cast<bool>(probe.Get("/")); }, 30'000)) {
      std::fprintf(stderr, "portkey did not start: %s\n",
                   ReadAll(out_dir + "/portkey.err").c_str());
      return 1;
    }
  }

  // The byte relay (the floor of any proxy): this program again, in relay mode.
  Child relay;
  const int relay_port = FreePort();
  {
    SubprocessOptions options;
    options.argv = {std::filesystem::canonical("/proc/self/exe").string(), "--relay",
                    std::to_string(relay_port), std::to_string(upstream_port)};
    relay.Start(options);
    httplib::Client probe("127.0.0.1", relay_port);
    probe.set_connection_timeout(1, 0);
    if (!WaitFor([&] { return static_cast<bool>(probe.Get("/")); }, 10'000)) {
      std::fprintf(stderr, "the relay did not start\n");
      return 1;
    }
  }

  std::vector<Target> targets = {
      {"direct", upstream_port, "gpt-bench", {{"Authorization", "Bearer sk-bench-upstream"}}},
      {"tcp relay", relay_port, "gpt-bench", {{"Authorization", "Bearer sk-bench-upstream"}}},
      {"factory gateway", gateway_port, "bench/fast", {{"Authorization", "Bearer " + key}}},
  };
  if (portkey_port != 0) {
    targets.push_back({"portkey gateway",
                       portkey_port,
                       "gpt-bench",
                       {{"Authorization", "Bearer sk-bench-upstream"},
                        {"x-portkey-provider", "openai"},
                        {"x-portkey-custom-host", upstream_url}}});
  }

  std::map<std::pair<std::string, int>, Figures> results;
  for (int concurrency : {1, 32}) {
    if (idle_only) break;
    for (const Target& target : targets) {
      results[{target.name, concurrency}] = Measure(target, concurrency, seconds, warmup);
    }
  }

  // Idle connections: rounds of none, then idle_count open, each phase measured in pairs
  // (direct and gateway alternately); a round's quiet phase follows the previous round's idle
  // one, so drift over the run shows as a difference between rounds, not as an effect.
  const Target& direct_target = targets[0];
  const Target& gateway_target = targets[2];
  const std::string idle_request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + key +
      "\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(
          std::string(R"({"model":"bench/fast","max_tokens":16,"messages":[]})").size()) +
      "\r\n\r\n" + R"({"model":"bench/fast","max_tokens":16,"messages":[]})";
  struct IdleRound {
    PairedFigures quiet;
    PairedFigures idle;
    int still_open = 0;
  };
  std::vector<IdleRound> idle_rounds(static_cast<size_t>(idle_round_count));
  for (IdleRound& round : idle_rounds) {
    round.quiet = MeasurePaired(direct_target, gateway_target, seconds, warmup);
    std::vector<int> idle = OpenIdle(gateway_port, idle_count, idle_request);
    if (idle.size() != static_cast<size_t>(idle_count)) return 1;
    round.idle = MeasurePaired(direct_target, gateway_target, seconds, warmup);
    // Still open and not answered with anything: the silent ones were not closed by the gateway.
    for (int fd : idle) {
      char byte;
      if (recv(fd, &byte, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN) ++round.still_open;
      close(fd);
    }
  }
  gateway.Stop();
  portkey.Stop();
  relay.Stop();
  upstream.stop();
  upstream_thread.join();

  // Every call through the gateway is in the ledger once it stopped.
  const json costs = json::parse(run({factory_binary, "--db", db, "costs", "--json"}));
  const int64_t ledgered = costs["total"]["calls"];

  if (!idle_only) {
    std::printf(
        "| target           | conc |      req/s |  p50 ms |  p99 ms | +p50 ms | +p99 ms | errors "
        "|\n");
    std::printf(
        "|------------------|------|------------|---------|---------|---------|---------|--------|"
        "\n");
    for (int concurrency : {1, 32}) {
      const Figures& direct = results[{"direct", concurrency}];
      for (const Target& target : targets) {
        const Figures& f = results[{target.name, concurrency}];
        std::printf("| %-16s | %4d | %10.0f | %7.3f | %7.3f | %7.3f | %7.3f | %6lld |\n",
                    target.name.c_str(), concurrency, f.requests_per_s, f.p50_ms, f.p99_ms,
                    f.p50_ms - direct.p50_ms, f.p99_ms - direct.p99_ms,
                    static_cast<long long>(f.errors));
      }
    }
    const Figures& ours32 = results[{"factory gateway", 32}];
    const Figures& direct1 = results[{"direct", 1}];
    const Figures& ours1 = results[{"factory gateway", 1}];
    const Figures& relay1 = results[{"tcp relay", 1}];
    std::printf(
        "\nfactory gateway, concurrency 1: added p50 %.3f ms (target <= 0.1), added p99 %.3f ms "
        "(target <= 0.5)\n",
        ours1.p50_ms - direct1.p50_ms, ours1.p99_ms - direct1.p99_ms);
    std::printf(
        "tcp relay (floor of an extra hop), concurrency 1: added p50 %.3f ms, added p99 %.3f ms; "
        "factory gateway's added p50 = %.2fx the relay's\n",
        relay1.p50_ms - direct1.p50_ms, relay1.p99_ms - direct1.p99_ms,
        (ours1.p50_ms - direct1.p50_ms) / (relay1.p50_ms - direct1.p50_ms));
    std::printf("factory gateway, concurrency 32: %.0f req/s = %.2fx direct", ours32.requests_per_s,
                ours32.requests_per_s / results[{"direct", 32}].requests_per_s);
    if (portkey_port != 0) {
      std::printf(", %.1fx portkey (target >= 10x)",
                  ours32.requests_per_s / results[{"portkey gateway", 32}].requests_per_s);
    }
  }
  int64_t sent = 0;
  for (int concurrency : {1, 32}) sent += results[{"factory gateway", concurrency}].requests;
  std::printf(
      "\n\n| round | idle connections | direct p50 | gateway p50 | gateway p99 | +p50 ms | +p99 ms "
      "| errors |\n");
  std::printf(
      "|-------|------------------|------------|-------------|-------------|---------|---------"
      "|--------|\n");
  auto print_phase = [](int round, int idle_open, const PairedFigures& phase) {
    std::printf("| %5d | %16d | %10.3f | %11.3f | %11.3f | %7.3f | %7.3f | %6lld |\n", round,
                idle_open, phase.direct.p50_ms, phase.gateway.p50_ms, phase.gateway.p99_ms,
                phase.gateway.p50_ms - phase.direct.p50_ms,
                phase.gateway.p99_ms - phase.direct.p99_ms,
                static_cast<long long>(phase.gateway.errors + phase.direct.errors));
  };
  std::vector<double> ratios;
  std::vector<double> added_quiet;
  std::vector<double> added_idle;
  int still_open = idle_count;
  for (size_t index = 0; index < idle_rounds.size(); ++index) {
    const IdleRound& round = idle_rounds[index];
    print_phase(static_cast<int>(index + 1), 0, round.quiet);
    print_phase(static_cast<int>(index + 1), idle_count, round.idle);
    added_quiet.push_back(round.quiet.gateway.p50_ms - round.quiet.direct.p50_ms);
    added_idle.push_back(round.idle.gateway.p50_ms - round.idle.direct.p50_ms);
    ratios.push_back(added_idle.back() / added_quiet.back());
    still_open = std::min(still_open, round.still_open);
    sent += round.quiet.gateway.requests + round.idle.gateway.requests;
  }
  auto median = [](std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values.empty() ? 0.0 : values[values.size() / 2];
  };
  // The headline is the ratio of the medians: a round whose quiet figure is near zero (noise
  // on a loaded machine) makes its own ratio meaningless, but not the medians.
  std::printf(
      "idle connections: median added p50 %.3f ms without, %.3f ms with %d idle = %.2fx "
      "(target <= 2x; per round: ",
      median(added_quiet), median(added_idle), idle_count,
      median(added_idle) / median(added_quiet));
  for (size_t index = 0; index < ratios.size(); ++index) {
    std::printf("%s%.2fx", index == 0 ? "" : ", ", ratios[index]);
  }
  std::printf("); at least %d of %d idle connections still open at the end of each round\n",
              still_open, idle_count);
  std::printf("ledger: %lld calls recorded for %lld measured requests (plus warm-up ones)\n",
              static_cast<long long>(ledgered), static_cast<long long>(sent));
  return 0;
}
