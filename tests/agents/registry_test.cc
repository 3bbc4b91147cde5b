#include "agents/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "agents/agent.h"
#include "common/test_util.h"

namespace factory {
namespace {

using ::testing::HasSubstr;

AgentSpec Agent(std::string name, std::vector<std::string> capabilities, int cost_tier = 1,
                int concurrency = 1) {
  AgentSpec spec;
  spec.name = std::move(name);
  spec.role = "test agent";
  spec.runner = RunnerKind::kScript;
  spec.command = "true";
  spec.capabilities = std::move(capabilities);
  spec.cost_tier = cost_tier;
  spec.concurrency = concurrency;
  return spec;
}

std::string AgentFile(const std::string& name, const std::string& extra = "") {
  return "---\nname: " + name + "\nrole: r\nrunner: script\ncommand: x\n" + extra + "---\n";
}

// A registry with: cheap (tier 0, [code]), mid (tier 1, [code, docs], 2 slots),
// alpha and beta (tier 2, [code, docs, review]) and solo (tier 5, [deploy]).
class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.Add(Agent("cheap", {"code"}, 0)));
    ASSERT_TRUE(registry_.Add(Agent("mid", {"code", "docs"}, 1, 2)));
    ASSERT_TRUE(registry_.Add(Agent("beta", {"code", "docs", "review"}, 2)));
    ASSERT_TRUE(registry_.Add(Agent("alpha", {"code", "docs", "review"}, 2)));
    ASSERT_TRUE(registry_.Add(Agent("solo", {"deploy"}, 5)));
  }
  std::string Chosen(const AgentRequest& request) {
    auto spec = registry_.Resolve(request);
    return spec ? (*spec)->name : "error: " + spec.error().message;
  }
  AgentRegistry registry_;
};

TEST_F(RegistryTest, ExplicitAgentWinsOverCheaperOnes) {
  EXPECT_EQ(Chosen({"", {"code"}, "beta"}), "beta");
  // Explicit means explicit, even when its capabilities do not list the task's.
  EXPECT_EQ(Chosen({"", {"deploy"}, "cheap"}), "cheap");
}

TEST_F(RegistryTest, UnknownExplicitAgentIsNotFound) {
  auto spec = registry_.Resolve({"", {}, "ghost"});
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(spec.error().message, HasSubstr("unknown agent 'ghost'"));
}

TEST_F(RegistryTest, CheapestAgentCoveringTheCapabilities) {
  EXPECT_EQ(Chosen({"", {}, ""}), "cheap");
  EXPECT_EQ(Chosen({"", {"code"}, ""}), "cheap");
  EXPECT_EQ(Chosen({"", {"docs"}, ""}), "mid");
  EXPECT_EQ(Chosen({"", {"code", "docs"}, ""}), "mid");
  EXPECT_EQ(Chosen({"", {"deploy"}, ""}), "solo");
}

TEST_F(RegistryTest, TiesOnCostAreBrokenByName) {
  EXPECT_EQ(Chosen({"", {"review"}, ""}), "alpha");
}

TEST_F(RegistryTest, NoCapableAgentIsFailedPrecondition) {
  auto spec = registry_.Resolve({"", {"code", "deploy"}, ""});
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(spec.error().message, HasSubstr("[code, deploy]"));
}

TEST_F(RegistryTest, DefaultAgentForTypeWinsWhenItCovers) {
  registry_.SetDefaultAgents({{"docs", "beta"}, {"deploy", "alpha"}, {"ghosts", "ghost"}});
  EXPECT_EQ(Chosen({"docs", {"docs"}, ""}), "beta");
  // alpha cannot deploy: the cheapest capable agent is used instead.
  EXPECT_EQ(Chosen({"deploy", {"deploy"}, ""}), "solo");
  // Types without a default choose by cost.
  EXPECT_EQ(Chosen({"code", {"code"}, ""}), "cheap");
  // An explicit agent still wins over the default.
  EXPECT_EQ(Chosen({"docs", {"docs"}, "mid"}), "mid");
  auto spec = registry_.Resolve({"ghosts", {}, ""});
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(spec.error().message, HasSubstr("default agent 'ghost' for task type 'ghosts'"));
}

TEST_F(RegistryTest, AcquireSpillsToTheNextCheapestThenReportsBusy) {
  AgentRequest request{"", {"code"}, ""};
  std::vector<std::string> taken;
  for (int i = 0; i < 5; ++i) {
    auto spec = registry_.Acquire(request);
    ASSERT_TRUE(spec) << spec.error().message;
    taken.push_back((*spec)->name);
  }
  // cheap (1 slot), mid (2 slots), then alpha and beta by name.
  EXPECT_EQ(taken, (std::vector<std::string>{"cheap", "mid", "mid", "alpha", "beta"}));
  auto busy = registry_.Acquire(request);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(busy.error().message, HasSubstr("busy"));
  // "Busy, retry later" is not "never": a task nobody can take is still a different error.
  auto never = registry_.Acquire({"", {"gardening"}, ""});
  ASSERT_FALSE(never);
  EXPECT_EQ(never.error().code, ErrorCode::kFailedPrecondition);

  registry_.Release("mid");
  auto again = registry_.Acquire(request);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->name, "mid");
}

TEST_F(RegistryTest, BusyDefaultAgentMakesTheTaskWait) {
  registry_.SetDefaultAgents({{"docs", "beta"}});
  ASSERT_TRUE(registry_.Acquire({"docs", {"docs"}, ""}));
  auto busy = registry_.Acquire({"docs", {"docs"}, ""});
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(busy.error().message, HasSubstr("beta busy(1/1)"));
}

TEST_F(RegistryTest, ExplicitBusyAgentIsUnavailable) {
  ASSERT_TRUE(registry_.TryAcquire("solo"));
  auto busy = registry_.Acquire({"", {}, "solo"});
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(registry_.TryAcquire("solo").error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(registry_.TryAcquire("ghost").error().code, ErrorCode::kNotFound);
}

TEST_F(RegistryTest, PausedAgentsAreSkippedUntilResumed) {
  ASSERT_TRUE(registry_.Pause("cheap", "daily budget reached"));
  auto spec = registry_.Acquire({"", {"code"}, ""});
  ASSERT_TRUE(spec);
  EXPECT_EQ((*spec)->name, "mid");
  // Resolve ignores pauses: a paused agent can still take the task later.
  EXPECT_EQ(Chosen({"", {"code"}, ""}), "cheap");
  EXPECT_EQ(registry_.StatusOf("cheap")->ToString(), "paused: daily budget reached");
  ASSERT_TRUE(registry_.Resume("cheap"));
  EXPECT_EQ((*registry_.Acquire({"", {"code"}, ""}))->name, "cheap");
  EXPECT_EQ(registry_.Pause("ghost", "x").error().code, ErrorCode::kNotFound);
}

TEST_F(RegistryTest, StatusesForListing) {
  ASSERT_TRUE(registry_.TryAcquire("mid"));
  ASSERT_TRUE(registry_.Pause("solo", ""));
  std::vector<std::string> shown;
  for (const auto& status : registry_.Statuses()) {
    shown.push_back(status.name + "=" + status.ToString());
  }
  EXPECT_EQ(shown, (std::vector<std::string>{"alpha=idle", "beta=idle", "cheap=idle",
                                             "mid=busy(1/2)", "solo=paused"}));
  registry_.Release("mid");
  registry_.Release("mid");  // an extra release never goes below zero
  EXPECT_EQ(registry_.StatusOf("mid")->ToString(), "idle");
}

TEST_F(RegistryTest, DuplicateAddIsAlreadyExists) {
  auto status = registry_.Add(Agent("cheap", {}));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kAlreadyExists);
}

// Slots are never over-granted under contention, at several worker counts.
class RegistryConcurrencyTest : public ::testing::TestWithParam<int> {};

TEST_P(RegistryConcurrencyTest, SlotsNeverExceedConcurrency) {
  AgentRegistry registry;
  ASSERT_TRUE(registry.Add(Agent("a", {"code"}, 0, 2)));
  ASSERT_TRUE(registry.Add(Agent("b", {"code"}, 1, 1)));
  std::atomic<int> in_a{0}, in_b{0}, max_a{0}, max_b{0}, granted{0};
  auto bump_max = [](std::atomic<int>& max, int value) {
    int seen = max.load();
    while (value > seen && !max.compare_exchange_weak(seen, value)) {
    }
  };
  std::vector<std::thread> threads;
  for (int worker = 0; worker < GetParam(); ++worker) {
    threads.emplace_back([&] {
      for (int round = 0; round < 2000; ++round) {
        auto spec = registry.Acquire({"", {"code"}, ""});
        if (!spec) {
          ASSERT_EQ(spec.error().code, ErrorCode::kUnavailable);
          continue;
        }
        ++granted;
        std::atomic<int>& in = (*spec)->name == "a" ? in_a : in_b;
        bump_max((*spec)->name == "a" ? max_a : max_b, ++in);
        --in;
        registry.Release((*spec)->name);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(max_a.load(), 2);
  EXPECT_LE(max_b.load(), 1);
  EXPECT_GT(granted.load(), 0);
  for (const auto& status : registry.Statuses()) EXPECT_EQ(status.in_use, 0);
}

INSTANTIATE_TEST_SUITE_P(Workers, RegistryConcurrencyTest, ::testing::Values(1, 2, 8));

TEST(RegistryLoadTest, LoadsMarkdownFilesSortedAndCollectsWarnings) {
  testing::TempDir dir;
  dir.Write("b.md", AgentFile("bravo", "colour: red\n"));
  dir.Write("a.md", AgentFile("alpha"));
  dir.Write("notes.txt", "not an agent");
  auto loaded = AgentRegistry::LoadDirectory(dir.path());
  ASSERT_TRUE(loaded) << loaded.error().message;
  const AgentRegistry& registry = *loaded->value;
  ASSERT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.agents()[0]->name, "alpha");
  EXPECT_NE(registry.Find("bravo"), nullptr);
  EXPECT_EQ(registry.Find("notes"), nullptr);
  ASSERT_EQ(loaded->warnings.size(), 1u);
  EXPECT_EQ(
      loaded->warnings[0].ToString(),
      (dir.path() / "b.md").string() + ":6: warning: field 'colour': unknown field (ignored)");
}

TEST(RegistryLoadTest, CollectsErrorsFromEveryFileAndRejectsDuplicateNames) {
  testing::TempDir dir;
  dir.Write("a.md", AgentFile("same"));
  dir.Write("b.md", AgentFile("same"));
  dir.Write("c.md", "---\nname: c\nrole: r\n---\n");
  dir.Write("d.md", AgentFile("d", "concurrency: 0\n"));
  auto loaded = AgentRegistry::LoadDirectory(dir.path());
  ASSERT_FALSE(loaded);
  const std::string& message = loaded.error().message;
  EXPECT_THAT(message, HasSubstr((dir.path() / "b.md").string() +
                                 ":2: field 'name': duplicate agent name 'same' (also defined in " +
                                 (dir.path() / "a.md").string() + ")"));
  EXPECT_THAT(message,
              HasSubstr((dir.path() / "c.md").string() + ":1: missing required field 'runner'"));
  EXPECT_THAT(message, HasSubstr((dir.path() / "d.md").string() + ":6: field 'concurrency'"));
}

TEST(RegistryLoadTest, MissingDirectoryIsNotFoundEmptyIsEmpty) {
  testing::TempDir dir;
  auto missing = AgentRegistry::LoadDirectory(dir.path() / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto empty = AgentRegistry::LoadDirectory(dir.path());
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->value->size(), 0u);
}

TEST(RegistryModelsTest, UnknownModelAliasesNameFileAndLine) {
  AgentRegistry registry;
  auto coder = ParseAgentFile(
      "---\nname: coder\nrole: r\nrunner: llm\nmodel: cloud/mid\n"
      "fallbacks: [cloud/frontier, cloud/huge]\n---\n",
      "agents/coder.md");
  ASSERT_TRUE(coder) << coder.error().message;
  EXPECT_EQ(coder->value.field_lines.at("model"), 5);
  ASSERT_TRUE(registry.Add(coder->value));
  ASSERT_TRUE(registry.Add(Agent("script-only", {})));  // no model: nothing to check
  auto known = [](std::string_view alias) {
    return alias == "cloud/mid" || alias == "cloud/frontier";
  };
  auto status = registry.CheckModelAliases(known);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message,
            "agents/coder.md:6: field 'fallbacks[1]': unknown model alias 'cloud/huge'");
  EXPECT_TRUE(registry.CheckModelAliases([](std::string_view) { return true; }));
}

}  // namespace
}  // namespace factory
