#include "verify/gates.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>

#include "common/test_repo.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileBytes;

GateConfig Gate(std::string name, std::string command, int timeout_s = 20) {
  GateConfig gate;
  gate.name = std::move(name);
  gate.command = std::move(command);
  gate.timeout = std::chrono::seconds(timeout_s);
  return gate;
}

class GatesTest : public ::testing::Test {
 protected:
  GateRunOptions Options() {
    GateRunOptions options;
    options.sandbox = sandbox_.get();
    return options;
  }
  testing::TempRepo repo_;  // a directory to run in (the gates do not need git here)
  std::unique_ptr<Sandbox> sandbox_ = MakeSandbox();
};

TEST_F(GatesTest, RunInOrderAndStopAtTheFirstFailure) {
  GateRunOptions options = Options();
  options.logs_dir = repo_.Path(".factory/logs/gates");
  auto results =
      RunGates({Gate("build", "echo built > built.txt && echo build ok"),
                Gate("unit tests", "echo 'running'; echo 'assertion failed' >&2; exit 4"),
                Gate("lint", "touch linted.txt")},
               repo_.root(), options);
  ASSERT_TRUE(results.has_value()) << results.error().ToString();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_TRUE((*results)[0].passed);
  EXPECT_EQ((*results)[0].exit_code, 0);
  EXPECT_EQ((*results)[0].output_tail, "build ok\n");
  EXPECT_TRUE(fs::exists(repo_.Path("built.txt")));

  const GateResult& failed = (*results)[1];
  EXPECT_EQ(failed.name, "unit tests");
  EXPECT_FALSE(failed.passed);
  EXPECT_EQ(failed.exit_code, 4);
  EXPECT_FALSE(failed.timed_out);
  EXPECT_EQ(failed.output_tail, "running\nassertion failed\n");  // stderr merged in order
  EXPECT_FALSE(fs::exists(repo_.Path("linted.txt")));            // never ran

  EXPECT_EQ(ReadFileBytes(options.logs_dir + "/1-build.log"), "build ok\n");
  EXPECT_EQ(failed.log_path, options.logs_dir + "/2-unit_tests.log");
  EXPECT_EQ(ReadFileBytes(failed.log_path), "running\nassertion failed\n");
}

TEST_F(GatesTest, AllPassing) {
  auto results = RunGates({Gate("a", "true"), Gate("b", "exit 0")}, repo_.root(), Options());
  ASSERT_TRUE(results.has_value());
  ASSERT_EQ(results->size(), 2u);
  EXPECT_TRUE((*results)[0].passed && (*results)[1].passed);
}

TEST_F(GatesTest, TimeoutMarksTimedOutAndKills) {
  const auto start = std::chrono::steady_clock::now();
  auto results = RunGates({Gate("slow", "echo started; sleep 100 & sleep 100; wait", 1),
                           Gate("after", "touch after.txt")},
                          repo_.root(), Options());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(results.has_value()) << results.error().ToString();
  ASSERT_EQ(results->size(), 1u);
  const GateResult& slow = results->front();
  EXPECT_TRUE(slow.timed_out);
  EXPECT_FALSE(slow.passed);
  EXPECT_EQ(slow.output_tail, "started\n");
  EXPECT_LT(elapsed, std::chrono::seconds(10));
  EXPECT_FALSE(fs::exists(repo_.Path("after.txt")));
  EXPECT_THAT(GateFeedback(slow), HasSubstr("Gate 'slow'"));
  EXPECT_THAT(GateFeedback(slow), HasSubstr("timed out after 1s"));
}

TEST_F(GatesTest, OutputTailIsTheEndOfALongOutput) {
  GateRunOptions options = Options();
  auto results = RunGates(
      {Gate("noisy", "i=0; while [ $i -lt 5000 ]; do echo \"line $i\"; i=$((i+1)); done; exit 1")},
      repo_.root(), options);
  ASSERT_TRUE(results.has_value());
  const std::string& tail = results->front().output_tail;
  EXPECT_LE(tail.size(), 4096u);
  EXPECT_GT(tail.size(), 3000u);
  EXPECT_THAT(tail, EndsWith("line 4999\n"));
  EXPECT_THAT(tail, Not(HasSubstr("line 0\n")));
}

TEST_F(GatesTest, CancelAndMissingSandbox) {
  std::atomic<bool> cancel{true};
  GateRunOptions options = Options();
  options.cancel = &cancel;
  auto results = RunGates({Gate("a", "touch a.txt")}, repo_.root(), options);
  ASSERT_TRUE(results.has_value());
  EXPECT_TRUE(results->empty());
  EXPECT_FALSE(fs::exists(repo_.Path("a.txt")));

  options = GateRunOptions{};
  auto no_sandbox = RunGates({Gate("a", "true")}, repo_.root(), options);
  ASSERT_FALSE(no_sandbox.has_value());
  EXPECT_EQ(no_sandbox.error().code, ErrorCode::kInvalidArgument);
}

TEST(GateFeedbackTest, NamesTheGateAndCarriesTheTail) {
  GateResult failed;
  failed.name = "test";
  failed.command = "make test";
  failed.exit_code = 2;
  failed.output_tail = "FAIL: test_parser (expected 3, got 4)\n";
  std::string feedback = GateFeedback(failed);
  EXPECT_THAT(feedback, HasSubstr("Gate 'test' (`make test`) failed with exit code 2."));
  EXPECT_THAT(feedback, HasSubstr("FAIL: test_parser (expected 3, got 4)\n"));

  failed.output_tail.clear();
  EXPECT_THAT(GateFeedback(failed), HasSubstr("printed nothing"));
}

TEST(ProtectedTest, FlagsProtectedPathsUnlessAllowed) {
  ProjectConfig config;
  config.protected_paths = {"tests/**", ".factory/**"};
  const std::vector<std::string> changed = {"src/parser.cc", "tests/parser_test.cc",
                                            "tests/data/case.txt", "README.md"};
  EXPECT_EQ(ProtectedViolations(config, changed, {}),
            (std::vector<std::string>{"tests/parser_test.cc", "tests/data/case.txt"}));
  EXPECT_EQ(ProtectedViolations(config, changed, {"tests/parser_test.cc"}),
            (std::vector<std::string>{"tests/data/case.txt"}));
  EXPECT_TRUE(ProtectedViolations(config, changed, {"tests/**"}).empty());
  EXPECT_TRUE(ProtectedViolations(config, {"src/a.cc"}, {}).empty());
  EXPECT_EQ(ProtectedViolations(config, {".factory/config.yaml"}, {}),
            (std::vector<std::string>{".factory/config.yaml"}));
  EXPECT_TRUE(ProtectedViolations(ProjectConfig{}, changed, {}).empty());
}

}  // namespace
}  // namespace factory
