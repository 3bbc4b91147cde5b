// The full transition table, written out independently of the implementation: every pair of
// states is either listed here as legal or must be rejected.

#include "queue/state_machine.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace factory {
namespace {

using S = TaskState;

const std::set<std::pair<S, S>> kLegal = {
    {S::kPending, S::kReady},       {S::kPending, S::kBlocked},   {S::kPending, S::kCancelled},
    {S::kReady, S::kClaimed},       {S::kReady, S::kBlocked},     {S::kReady, S::kCancelled},
    {S::kClaimed, S::kRunning},     {S::kClaimed, S::kDone},      {S::kClaimed, S::kReady},
    {S::kClaimed, S::kFailed},      {S::kClaimed, S::kCancelled}, {S::kRunning, S::kVerifying},
    {S::kRunning, S::kReview},      {S::kRunning, S::kDone},      {S::kRunning, S::kReady},
    {S::kRunning, S::kFailed},      {S::kRunning, S::kCancelled}, {S::kVerifying, S::kReview},
    {S::kVerifying, S::kDone},      {S::kVerifying, S::kReady},   {S::kVerifying, S::kFailed},
    {S::kVerifying, S::kCancelled}, {S::kReview, S::kDone},       {S::kReview, S::kReady},
    {S::kReview, S::kFailed},       {S::kReview, S::kCancelled},  {S::kFailed, S::kReady},
    {S::kFailed, S::kPending},      {S::kBlocked, S::kReady},     {S::kBlocked, S::kPending},
    {S::kBlocked, S::kCancelled},
};

TEST(StateMachineTest, EveryPairMatchesTheTable) {
  int legal_count = 0;
  for (S from : kAllTaskStates) {
    for (S to : kAllTaskStates) {
      bool expected = kLegal.contains({from, to});
      EXPECT_EQ(IsLegalTransition(from, to), expected)
          << TaskStateName(from) << " -> " << TaskStateName(to);
      auto status = CheckTransition(from, to);
      EXPECT_EQ(status.has_value(), expected);
      if (!expected) {
        EXPECT_EQ(status.error().code, ErrorCode::kFailedPrecondition);
        EXPECT_NE(status.error().message.find(std::string(TaskStateName(from)) + " -> " +
                                              std::string(TaskStateName(to))),
                  std::string::npos);
      }
      legal_count += expected;
    }
  }
  EXPECT_EQ(legal_count, static_cast<int>(kLegal.size()));
}

TEST(StateMachineTest, TerminalStatesHaveNoWayOut) {
  for (S to : kAllTaskStates) {
    EXPECT_FALSE(IsLegalTransition(S::kDone, to));
    EXPECT_FALSE(IsLegalTransition(S::kCancelled, to));
  }
  EXPECT_TRUE(IsTerminalState(S::kDone));
  EXPECT_TRUE(IsTerminalState(S::kCancelled));
  EXPECT_FALSE(IsTerminalState(S::kFailed));
}

TEST(StateMachineTest, StateNamesRoundTrip) {
  for (S state : kAllTaskStates) {
    EXPECT_EQ(ParseTaskState(TaskStateName(state)), state);
  }
  EXPECT_FALSE(ParseTaskState("finished").has_value());
}

}  // namespace
}  // namespace factory
