// The Gate interface and registry: kinds by name, the order gates run in, and the command gate
// through a subject.

#include "verify/gate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_repo.h"

namespace factory {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;

GateConfig Config(std::string name, GateKind kind, std::string command = "true") {
  GateConfig config;
  config.name = std::move(name);
  config.kind = kind;
  config.command = std::move(command);
  config.timeout = std::chrono::seconds(20);
  return config;
}

// A subject whose checkout is a fixed directory; it counts how often it was asked.
class DirSubject final : public GateSubject {
 public:
  explicit DirSubject(std::string dir) : dir_(std::move(dir)) {}
  Result<std::string> Checkout() override {
    ++checkouts;
    return dir_;
  }
  Result<AttemptDiff> Diff() override { return AttemptDiff{.diff = "", .stat = ""}; }
  int checkouts = 0;

 private:
  std::string dir_;
};

TEST(GateRegistryTest, UnknownKindIsAnErrorListingTheKnownOnes) {
  std::unique_ptr<Sandbox> sandbox = MakeSandbox();
  GateRunOptions options;
  options.sandbox = sandbox.get();
  const GateRegistry registry = CommandGateRegistry(options);
  EXPECT_THAT(registry.Kinds(), ElementsAre("command"));
  auto made = registry.Make(Config("judge", GateKind::kReview));
  ASSERT_FALSE(made.has_value());
  EXPECT_EQ(made.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(made.error().message, "gate 'judge': unknown gate kind 'review' (known: command)");
  auto all =
      registry.MakeAll({Config("build", GateKind::kCommand), Config("judge", GateKind::kReview)});
  ASSERT_FALSE(all.has_value());
  EXPECT_THAT(all.error().message, HasSubstr("unknown gate kind 'review'"));
}

TEST(GateRegistryTest, DuplicatesNeedReplace) {
  GateRegistry registry;
  auto factory = [](const GateConfig&) -> Result<std::unique_ptr<Gate>> {
    return InvalidArgument("unused");
  };
  ASSERT_TRUE(registry.Register("command", factory).has_value());
  Status again = registry.Register("command", factory);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  EXPECT_TRUE(registry.Register("command", factory, /*replace=*/true).has_value());
  EXPECT_FALSE(registry.Register("", factory).has_value());
  EXPECT_FALSE(registry.Register("x", nullptr).has_value());
}

// A stand-in reviewer kind: what MakeAll orders, without a model.
class NamedGate final : public Gate {
 public:
  NamedGate(std::string name, std::string kind) : name_(std::move(name)), kind_(std::move(kind)) {}
  const std::string& name() const override { return name_; }
  std::string_view kind() const override { return kind_; }
  Result<GateReport> Run(const GateContext&) override {
    return GateReport{.name = name_, .kind = kind_, .verdict = GateVerdict::kPass};
  }

 private:
  std::string name_;
  std::string kind_;
};

TEST(GateRegistryTest, MakeAllOrdersByStageThenAsConfigured) {
  std::unique_ptr<Sandbox> sandbox = MakeSandbox();
  GateRunOptions options;
  options.sandbox = sandbox.get();
  GateRegistry registry = CommandGateRegistry(options);
  ASSERT_TRUE(registry
                  .Register("review",
                            [](const GateConfig& config) -> Result<std::unique_ptr<Gate>> {
                              return std::unique_ptr<Gate>(
                                  std::make_unique<NamedGate>(config.name, "review"));
                            })
                  .has_value());
  auto gates = registry.MakeAll(
      {Config("judge", GateKind::kReview), Config("build", GateKind::kCommand),
       Config("second-judge", GateKind::kReview), Config("test", GateKind::kCommand)});
  ASSERT_TRUE(gates.has_value()) << gates.error().ToString();
  std::vector<std::string> names;
  for (const auto& gate : *gates) names.push_back(gate->name());
  EXPECT_THAT(names, ElementsAre("build", "test", "judge", "second-judge"));
  EXPECT_EQ(StageOf("command"), 0);
  EXPECT_EQ(StageOf("review"), 1);
}

TEST(CommandGateTest, RunsOnTheSubjectsCheckoutAndReportsAVerdict) {
  testing::TempRepo repo;
  std::unique_ptr<Sandbox> sandbox = MakeSandbox();
  GateRunOptions options;
  options.sandbox = sandbox.get();
  const std::string logs = repo.root() + "/logs";
  DirSubject subject(repo.root());
  GateContext context{.subject = &subject, .logs_dir = logs};

  auto pass =
      MakeCommandGate(Config("build", GateKind::kCommand, "echo built > built.txt"), options);
  EXPECT_EQ(pass->kind(), "command");
  auto passed = pass->Run(context);
  ASSERT_TRUE(passed.has_value()) << passed.error().ToString();
  EXPECT_EQ(passed->verdict, GateVerdict::kPass);
  EXPECT_TRUE(std::filesystem::exists(repo.root() + "/built.txt"));
  ASSERT_TRUE(passed->command.has_value());
  EXPECT_THAT(passed->command->log_path, EndsWith("/logs/1-build.log"));
  context.earlier.push_back(*passed);

  auto fail = MakeCommandGate(Config("test", GateKind::kCommand, "echo broken; exit 3"), options);
  auto failed = fail->Run(context);
  ASSERT_TRUE(failed.has_value()) << failed.error().ToString();
  EXPECT_EQ(failed->verdict, GateVerdict::kFail);
  EXPECT_EQ(failed->error, "gate 'test' failed (exit 3)");
  EXPECT_THAT(failed->feedback, HasSubstr("Gate 'test'"));
  EXPECT_THAT(failed->feedback, HasSubstr("broken"));
  EXPECT_THAT(failed->log, HasSubstr("broken"));
  // Its log is the second command gate's.
  EXPECT_THAT(failed->command->log_path, EndsWith("/logs/2-test.log"));
  EXPECT_EQ(subject.checkouts, 2);
}

}  // namespace
}  // namespace factory
