#include "core/redact.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"
#include "core/log.h"
#include "core/subprocess.h"
#include "core/text_file.h"

namespace factory {
namespace {

using testing::ReadFile;
using testing::TempDir;

constexpr char kKey[] = "sk-test-0123456789abcdef";

TEST(RedactorTest, ReplacesEveryOccurrenceWithItsNamedMarker) {
  Redactor redactor;
  ASSERT_TRUE(redactor.Add("OPENAI_API_KEY", kKey));
  EXPECT_EQ(redactor.Redact(std::string("key=") + kKey + ", again " + kKey + "."),
            "key=[REDACTED:OPENAI_API_KEY], again [REDACTED:OPENAI_API_KEY].");
  EXPECT_EQ(redactor.Redact("nothing secret here"), "nothing secret here");
  EXPECT_EQ(redactor.Redact(""), "");
}

TEST(RedactorTest, RedactInPlaceSaysWhetherItChangedTheText) {
  Redactor redactor;
  redactor.Add("OPENAI_API_KEY", kKey);
  std::string clean = "nothing here";
  EXPECT_FALSE(redactor.RedactInPlace(clean));
  EXPECT_EQ(clean, "nothing here");
  std::string leaky = std::string("{\"k\":\"") + kKey + "\"}";
  EXPECT_TRUE(redactor.RedactInPlace(leaky));
  EXPECT_EQ(leaky, "{\"k\":\"[REDACTED:OPENAI_API_KEY]\"}");
}

TEST(RedactorTest, UnnamedSecretsGetThePlainMarkerAndNamesAreSanitised) {
  Redactor redactor;
  redactor.Add("", "plain-secret-value");
  redactor.Add("we]ird name", "another-secret-value");
  EXPECT_EQ(redactor.Redact("a plain-secret-value b another-secret-value"),
            "a [REDACTED] b [REDACTED:we_ird_name]");
}

TEST(RedactorTest, IgnoresShortValuesAndTrimsWhiteSpace) {
  Redactor redactor;
  EXPECT_FALSE(redactor.Add("SHORT_KEY", "1234567"));
  EXPECT_FALSE(redactor.Add("BLANK_KEY", "   \n"));
  EXPECT_TRUE(redactor.Add("PADDED_KEY", "  padded-secret\n"));
  EXPECT_EQ(redactor.Redact("1234567 padded-secret"), "1234567 [REDACTED:PADDED_KEY]");
  Redactor loose(4);
  EXPECT_TRUE(loose.Add("", "abcd"));
  EXPECT_EQ(loose.Redact("xabcdx"), "x[REDACTED]x");
}

TEST(RedactorTest, TheLongestSecretAtAPositionWins) {
  Redactor redactor;
  redactor.Add("SHORT", "secret-value");
  redactor.Add("LONG", "secret-value-longer");
  EXPECT_EQ(redactor.Redact("a=secret-value-longer b=secret-value"),
            "a=[REDACTED:LONG] b=[REDACTED:SHORT]");
}

TEST(RedactorTest, OverlappingOccurrencesLeaveNoByteOfEither) {
  // "CXAB...": the first secret covers the start, the second starts inside it and runs on, the
  // third lies at the end of the second: every byte of each must go.
  Redactor redactor;
  redactor.Add("FIRST", "ccccxxxxaaaa");
  redactor.Add("SECOND", "xxxxaaaabbbb");
  redactor.Add("THIRD", "aaaabbbb");
  EXPECT_EQ(redactor.Redact("<ccccxxxxaaaabbbb>"), "<[REDACTED:FIRST]>");
  // Touching but not overlapping: two markers.
  EXPECT_EQ(redactor.Redact("ccccxxxxaaaaaaaabbbb"), "[REDACTED:FIRST][REDACTED:THIRD]");
}

TEST(RedactorTest, CatchesTheJsonEscapedFormOfAValue) {
  Redactor redactor;
  const std::string value = "pass\"word\\with\nescapes";
  redactor.Add("DB_PASSWORD", value);
  const std::string dumped = nlohmann::json{{"output", "x " + value + " y"}}.dump();
  const std::string redacted = redactor.Redact(dumped);
  EXPECT_EQ(redacted, R"({"output":"x [REDACTED:DB_PASSWORD] y"})");
  EXPECT_EQ(nlohmann::json::parse(redacted)["output"], "x [REDACTED:DB_PASSWORD] y");
}

TEST(RedactorTest, FindNamesTheSecretsATextHolds) {
  Redactor redactor;
  redactor.Add("A_TOKEN", "token-aaaaaaaa");
  redactor.Add("B_TOKEN", "token-bbbbbbbb");
  redactor.Add("C_TOKEN", "token-cccccccc");
  EXPECT_EQ(redactor.Find("token-bbbbbbbb, token-aaaaaaaa, token-bbbbbbbb"),
            (std::vector<std::string>{"B_TOKEN", "A_TOKEN"}));
  EXPECT_TRUE(redactor.Find("token-dddddddd").empty());
}

TEST(RedactorTest, AValueKnownAlreadyKeepsItsFirstName) {
  Redactor redactor;
  redactor.Add("FIRST_KEY", "same-value-123");
  redactor.Add("SECOND_KEY", "same-value-123");
  EXPECT_EQ(redactor.Redact("same-value-123"), "[REDACTED:FIRST_KEY]");
  EXPECT_EQ(redactor.size(), 1u);
  EXPECT_EQ(redactor.max_secret_length(), 14u);
}

TEST(RedactorTest, ManySecretsSharingAPrefix) {
  Redactor redactor;
  std::string text;
  for (int i = 0; i < 500; ++i) {
    const std::string value = "fk-shared-prefix-" + std::to_string(i * 7919);
    redactor.Add("VIRTUAL_KEY", value);
    if (i % 50 == 0) text += value + " ";
  }
  text += "fk-shared-prefix-x";
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += "[REDACTED:VIRTUAL_KEY] ";
  expected += "fk-shared-prefix-x";
  EXPECT_EQ(redactor.Redact(text), expected);
}

struct NameCase {
  const char* name;
  bool secret;
};

TEST(IsSecretVariableNameTest, Table) {
  const NameCase cases[] = {
      {"OPENAI_API_KEY", true},
      {"ANTHROPIC_API_KEY", true},
      {"GITHUB_TOKEN", true},
      {"GH_TOKEN", true},
      {"AWS_SECRET_ACCESS_KEY", true},
      {"AWS_ACCESS_KEY_ID", true},
      {"AWS_SESSION_TOKEN", true},
      {"DB_PASSWORD", true},
      {"MYSQL_PWD_PASSWD", true},
      {"CLIENT_SECRET", true},
      {"SECRET_SAUCE", true},
      {"npm_token", true},
      {"HF_TOKEN", true},
      {"SMTP_PASS", true},
      {"GITLAB_PAT", true},
      {"APIKEY", true},
      {"MY_APIKEY_VALUE", true},
      {"TOKEN", true},
      {"GOOGLE_CREDENTIALS", true},
      {"SSH_PRIVATE_KEY", true},
      {"PATH", false},
      {"HOME", false},
      {"AWS_REGION", false},
      {"AWS_DEFAULT_REGION", false},
      {"AWS_PROFILE", false},
      {"OPENAI_API_KEY_FILE", false},
      {"SSH_KEY_PATH", false},
      {"SECRETS_DIR", false},
      {"TOKEN_URL", false},
      {"KEYBOARD", false},
      {"TOKENIZERS_PARALLELISM", false},
      {"MONKEY", false},
      {"", false},
      {"FACTORY_PROMPT_FILE", false},
  };
  for (const auto& item : cases) {
    EXPECT_EQ(IsSecretVariableName(item.name), item.secret) << item.name;
  }
}

TEST(RedactorTest, AddSecretEnvironmentTakesOnlySecretLookingNames) {
  const char* env[] = {"OPENAI_API_KEY=sk-env-value-1234",
                       "HOME=/home/someone-long",
                       "GITHUB_TOKEN=ghp_short",
                       "EMPTY_TOKEN=",
                       "AWS_REGION=eu-central-1",
                       "not-a-pair",
                       nullptr};
  Redactor redactor;
  EXPECT_EQ(redactor.AddSecretEnvironment(env), 2);
  EXPECT_EQ(redactor.Redact("sk-env-value-1234 /home/someone-long ghp_short eu-central-1"),
            "[REDACTED:OPENAI_API_KEY] /home/someone-long [REDACTED:GITHUB_TOKEN] eu-central-1");
}

// Feeds `text` to a StreamRedactor in the given pieces and returns everything it released.
std::string Stream(const Redactor& redactor, const std::string& text,
                   const std::vector<size_t>& cuts) {
  StreamRedactor stream(redactor);
  std::string out;
  size_t at = 0;
  for (size_t cut : cuts) {
    out += stream.Feed(std::string_view(text).substr(at, cut - at));
    at = cut;
  }
  out += stream.Feed(std::string_view(text).substr(at));
  out += stream.Finish();
  EXPECT_EQ(stream.pending(), 0u);
  return out;
}

TEST(StreamRedactorTest, ASecretSplitAtAnyByteIsCaught) {
  Redactor redactor;
  redactor.Add("OPENAI_API_KEY", kKey);
  const std::string text = std::string("before ") + kKey + " after";
  const std::string expected = "before [REDACTED:OPENAI_API_KEY] after";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    EXPECT_EQ(Stream(redactor, text, {cut}), expected) << "split at " << cut;
  }
  std::vector<size_t> every_byte;
  for (size_t cut = 1; cut < text.size(); ++cut) every_byte.push_back(cut);
  EXPECT_EQ(Stream(redactor, text, every_byte), expected);
}

TEST(StreamRedactorTest, HoldsBackOnlyWhatMayStillBecomeASecret) {
  Redactor redactor;
  redactor.Add("K", "0123456789");  // 10 bytes: 9 held back
  StreamRedactor stream(redactor);
  EXPECT_EQ(stream.Feed("abcdefghijklmnop"), "abcdefg");
  EXPECT_EQ(stream.pending(), 9u);
  EXPECT_EQ(stream.Finish(), "hijklmnop");
}

TEST(StreamRedactorTest, RandomPiecesGiveTheSameTextAsOneRedact) {
  Redactor redactor;
  redactor.Add("FIRST", "ccccxxxxaaaa");
  redactor.Add("SECOND", "xxxxaaaabbbb");
  redactor.Add("THIRD", "aaaabbbb");
  redactor.Add("KEY", kKey);
  std::mt19937 random(42);
  const std::vector<std::string> words = {
      "ccccxxxxaaaabbbb", "aaaabbbb", "xxxx", kKey, " ",
      "sk-test-",         "cccc",     "aaaa", "\n", "plain text"};
  for (int round = 0; round < 200; ++round) {
    std::string text;
    for (int i = 0; i < 40; ++i) text += words[random() % words.size()];
    std::vector<size_t> cuts;
    for (size_t at = random() % 7; at < text.size(); at += 1 + random() % 13) cuts.push_back(at);
    EXPECT_EQ(Stream(redactor, text, cuts), redactor.Redact(text)) << text;
  }
}

TEST(StreamRedactorTest, WithoutSecretsNothingIsHeldBack) {
  Redactor redactor;
  StreamRedactor stream(redactor);
  EXPECT_EQ(stream.Feed("abc"), "abc");
  EXPECT_EQ(stream.pending(), 0u);
}

// Adds and searches from several threads at once: every search sees at least the secrets added
// before it started, and none crashes on an index being replaced.
void ConcurrentAddAndRedact(int threads) {
  Redactor redactor;
  redactor.Add("BASE_KEY", kKey);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&redactor, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string value = "thread-" + std::to_string(t) + "-secret-" + std::to_string(i);
        redactor.Add("T", value);
        EXPECT_EQ(redactor.Redact(value + " " + kKey), "[REDACTED:T] [REDACTED:BASE_KEY]");
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(redactor.size(), 1u + 200u * static_cast<size_t>(threads));
}

TEST(RedactorTest, ConcurrentAddAndRedactAt1Thread) { ConcurrentAddAndRedact(1); }
TEST(RedactorTest, ConcurrentAddAndRedactAt2Threads) { ConcurrentAddAndRedact(2); }
TEST(RedactorTest, ConcurrentAddAndRedactAt8Threads) { ConcurrentAddAndRedact(8); }

TEST(RedactorTest, ProcessRedactorIsOneInstance) {
  EXPECT_EQ(&ProcessRedactor(), &ProcessRedactor());
}

// The child prints the key in two writes with a pause between them, so the parent reads the two
// halves separately: the file and the tail hold the marker, never the key or a part of it.
TEST(SubprocessRedactionTest, OutputFilesAndTailsAreRedactedAcrossReads) {
  TempDir dir;
  Redactor redactor;
  redactor.Add("OPENAI_API_KEY", kKey);
  const std::string key(kKey);
  const std::string first = key.substr(0, 10);
  const std::string second = key.substr(10);
  SubprocessOptions options;
  options.argv = {"/bin/sh", "-c",
                  "printf 'out %s' \"$A\"; sleep 0.2; printf '%s end\\n' \"$B\"; "
                  "printf 'err %s%s\\n' \"$A\" \"$B\" >&2"};
  options.env_set = {{"A", first}, {"B", second}};
  options.stdout_path = (dir.path() / "out.log").string();
  options.stderr_path = (dir.path() / "err.log").string();
  options.redactor = &redactor;
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(ReadFile(dir.path() / "out.log"), "out [REDACTED:OPENAI_API_KEY] end\n");
  EXPECT_EQ(ReadFile(dir.path() / "err.log"), "err [REDACTED:OPENAI_API_KEY]\n");
  EXPECT_EQ(result->stdout_tail, "out [REDACTED:OPENAI_API_KEY] end\n");
  EXPECT_EQ(result->stderr_tail, "err [REDACTED:OPENAI_API_KEY]\n");
  // What the child wrote, not what was kept.
  EXPECT_EQ(result->stdout_bytes, static_cast<int64_t>(4 + key.size() + 5));
}

TEST(SubprocessRedactionTest, WithoutARedactorOutputIsKeptAsWritten) {
  Redactor redactor;
  redactor.Add("OPENAI_API_KEY", kKey);
  SubprocessOptions options;
  options.argv = {"/bin/echo", kKey};
  auto result = RunSubprocess(options);
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(result->stdout_tail, std::string(kKey) + "\n");
}

// The process redactor guards what the factory writes and logs. These two tests add a secret
// of their own to it; no other test of this binary uses the process redactor.
TEST(ProcessRedactionTest, TextFilesAreWrittenRedacted) {
  TempDir dir;
  ProcessRedactor().Add("FILE_TEST_TOKEN", "file-test-token-value");
  ASSERT_TRUE(WriteTextFile(dir / "prompt.md", "feedback: file-test-token-value\n"));
  EXPECT_EQ(ReadFile(dir.path() / "prompt.md"), "feedback: [REDACTED:FILE_TEST_TOKEN]\n");
}

TEST(ProcessRedactionTest, LogLinesAreRedacted) {
  ProcessRedactor().Add("LOG_TEST_TOKEN", "log-test-token-value");
  ASSERT_TRUE(InitLogging("info"));
  ::testing::internal::CaptureStderr();
  spdlog::info("gate said: {}", "log-test-token-value");
  spdlog::default_logger()->flush();
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(logged.find("gate said: [REDACTED:LOG_TEST_TOKEN]"), std::string::npos) << logged;
  EXPECT_EQ(logged.find("log-test-token-value"), std::string::npos) << logged;
}

}  // namespace
}  // namespace factory
