// Redaction throughput: factory::Redactor over a log-like text with 1 to 1,000 secrets, beside
// two same-run baselines: copying the text (the least any redaction costs) and the naive
// approach, one std::string::find pass per secret.
//
// Usage: redact_bench [--mib N]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/redact.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string RandomToken(std::mt19937_64& random, const std::string& prefix, int length) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string token = prefix;
  for (int i = 0; i < length; ++i) token += kAlphabet[random() % 64];
  return token;
}

// Compiler and test output: mostly plain words and paths, with a secret every ~64 KiB.
std::string MakeText(std::mt19937_64& random, size_t bytes,
                     const std::vector<std::string>& secrets) {
  static const char* kLines[] = {
      "[ 42%] Building CXX object src/core/CMakeFiles/factory_core.dir/subprocess.cc.o\n",
      "test_parser.py::test_sk_prefixed_keys PASSED                               [ 12%]\n",
      "src/orchestrator/pipeline.cc:548:3: warning: unused variable 'prompt_bytes'\n",
      "  File \"/usr/lib/python3/dist-packages/skimage/io/_io.py\", line 53, in imread\n",
      "fk-style ids and sk-style words appear in ordinary output too\n"};
  std::string text;
  text.reserve(bytes + 256);
  size_t next_secret = 64 * 1024;
  while (text.size() < bytes) {
    text += kLines[random() % 5];
    if (!secrets.empty() && text.size() >= next_secret) {
      text += "token=" + secrets[random() % secrets.size()] + "\n";
      next_secret += 64 * 1024;
    }
  }
  return text;
}

template <typename Fn>
double MibPerSecond(size_t bytes, Fn&& fn) {
  size_t sink = 0;
  const auto start = Clock::now();
  int rounds = 0;
  do {
    sink += fn();
    ++rounds;
  } while (Clock::now() - start < std::chrono::milliseconds(500));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (sink == 1) std::puts("");  // keeps the work observable
  return static_cast<double>(bytes) * rounds / seconds / (1024.0 * 1024.0);
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 16;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--mib") == 0) mib = static_cast<size_t>(std::atoi(argv[i + 1]));
  }
  std::mt19937_64 random(7);
  std::printf(
      "| secrets | Redactor MiB/s | copy baseline MiB/s | ratio | naive N x find MiB/s |\n");
  std::printf(
      "|--------:|---------------:|--------------------:|------:|---------------------:|\n");
  for (int count : {1, 10, 100, 1000}) {
    std::vector<std::string> secrets;
    factory::Redactor redactor;
    for (int i = 0; i < count; ++i) {
      secrets.push_back(RandomToken(random, i % 2 == 0 ? "sk-proj-" : "fk-", 43));
      redactor.Add("KEY_" + std::to_string(i), secrets.back());
    }
    const std::string text = MakeText(random, mib * 1024 * 1024, secrets);
    const double redacted = MibPerSecond(text.size(), [&] { return redactor.Redact(text).size(); });
    const double copied = MibPerSecond(text.size(), [&] { return std::string(text).size(); });
    // The naive way, on a sixteenth of the text when there are many secrets (it is that slow).
    const size_t naive_bytes = count >= 100 ? text.size() / 16 : text.size();
    const std::string naive_text = text.substr(0, naive_bytes);
    const double naive = MibPerSecond(naive_bytes, [&] {
      std::string out = naive_text;
      for (const auto& secret : secrets) {
        for (size_t pos = out.find(secret); pos != std::string::npos; pos = out.find(secret, pos)) {
          out.replace(pos, secret.size(), "[REDACTED]");
        }
      }
      return out.size();
    });
    std::printf("| %7d | %14.0f | %19.0f | %4.2fx | %20.0f |\n", count, redacted, copied,
                redacted / copied, naive);
  }
  return 0;
}
