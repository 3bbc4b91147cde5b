#include "queue/dag.h"

#include <gtest/gtest.h>

namespace factory {
namespace {

TEST(DagTest, AcyclicGraphHasNoCycleAndOrdersDependenciesFirst) {
  DependencyGraph graph{
      {"package", {"compile", "lint"}}, {"compile", {"fetch"}}, {"lint", {"fetch"}}, {"fetch", {}}};
  EXPECT_FALSE(FindCycle(graph).has_value());
  auto order = TopologicalOrder(graph);
  ASSERT_TRUE(order.has_value()) << order.error().message;
  EXPECT_EQ(*order, (std::vector<std::string>{"fetch", "compile", "lint", "package"}));
}

TEST(DagTest, FindsAndNamesACycle) {
  DependencyGraph graph{{"a", {"b"}}, {"b", {"c"}}, {"c", {"a"}}, {"d", {}}};
  auto cycle = FindCycle(graph);
  ASSERT_TRUE(cycle.has_value());
  EXPECT_EQ(FormatCycle(*cycle), "a -> b -> c -> a");
  auto order = TopologicalOrder(graph);
  ASSERT_FALSE(order.has_value());
  EXPECT_EQ(order.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(order.error().message.find("a -> b -> c -> a"), std::string::npos);
}

TEST(DagTest, SelfLoopIsACycle) {
  DependencyGraph graph{{"x", {"x"}}};
  auto cycle = FindCycle(graph);
  ASSERT_TRUE(cycle.has_value());
  EXPECT_EQ(FormatCycle(*cycle), "x -> x");
}

TEST(DagTest, CycleReachableOnlyThroughAnAcyclicPrefix) {
  DependencyGraph graph{{"top", {"mid"}}, {"mid", {"p"}}, {"p", {"q"}}, {"q", {"p"}}};
  auto cycle = FindCycle(graph);
  ASSERT_TRUE(cycle.has_value());
  EXPECT_EQ(FormatCycle(*cycle), "p -> q -> p");
}

TEST(DagTest, UnknownDependencyIsNamed) {
  DependencyGraph graph{{"a", {"ghost"}}};
  auto order = TopologicalOrder(graph);
  ASSERT_FALSE(order.has_value());
  EXPECT_NE(order.error().message.find("'a' depends on unknown 'ghost'"), std::string::npos);
}

TEST(DagTest, LongChainDoesNotOverflowTheStack) {
  DependencyGraph graph;
  constexpr int kLength = 200'000;
  for (int i = 0; i < kLength; ++i) {
    graph["n" + std::to_string(i)] =
        i == 0 ? std::vector<std::string>{} : std::vector<std::string>{"n" + std::to_string(i - 1)};
  }
  EXPECT_FALSE(FindCycle(graph).has_value());
  graph["n0"] = {"n" + std::to_string(kLength - 1)};
  EXPECT_TRUE(FindCycle(graph).has_value());
}

}  // namespace
}  // namespace factory
