// Budgets: the 16-thread (and 2-process) reservation race, the task cap, the agent's daily cap
// and its pause, the global cap, and the velocity pause.

#include "ledger/budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "ledger/ledger.h"
#include "ledger_fixture.h"

namespace factory::ledger {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMinute = 60'000;

llm::CallContext Ctx(std::string run, std::string task, std::string agent) {
  return llm::CallContext{.run_id = std::move(run),
                          .task_id = std::move(task),
                          .attempt_id = "",
                          .agent = std::move(agent)};
}

class BudgetTest : public LedgerFixture {
 protected:
  double Spend(const SpendQuery& query) {
    double sum = -1;
    EXPECT_TRUE(store_->Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(sum, txn.SumSpend(query));
      return Ok();
    }));
    return sum;
  }
};

// --- the race: reservations are checked and made in one serialised transaction, so the sum of
// admitted worst cases never passes the cap. Amounts are binary fractions, so the sums are exact
// and "never passes" means overshoot exactly zero.

class BudgetRaceTest : public BudgetTest, public ::testing::WithParamInterface<int> {};

TEST_P(BudgetRaceTest, ConcurrentReservationsNeverPassTheRunCap) {
  const int threads = GetParam();
  constexpr double kCap = 10.0;
  constexpr int kTriesPerThread = 40;
  BudgetEnvelope envelope;
  envelope.project.per_run_usd = kCap;
  BudgetGuard guard(*store_, envelope, &clock_);

  std::mutex mu;
  double admitted = 0;  // guarded by mu
  int admitted_calls = 0;
  std::atomic<int> refused{0};
  std::atomic<int> other_errors{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < kTriesPerThread; ++i) {
        const double worst = 0.125 * (1 + (t + i) % 3);  // 0.125, 0.25 or 0.375
        auto reserved = guard.ReserveUsd(Ctx("race", "", "agent" + std::to_string(t)), worst);
        if (reserved) {
          std::lock_guard lock(mu);
          admitted += worst;
          ++admitted_calls;
        } else if (reserved.error().code == ErrorCode::kResourceExhausted) {
          ++refused;
        } else {
          ++other_errors;
        }
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_LE(admitted, kCap);  // overshoot: exactly zero
  EXPECT_EQ(Spend(SpendQuery{.run_id = "race"}), admitted);
  if (threads * kTriesPerThread * 0.125 > kCap * 2) {
    EXPECT_GT(refused.load(), 0);
    EXPECT_GE(admitted, kCap - 0.375);  // the cap was used up, not refused early
  }
  EXPECT_EQ(admitted_calls + refused.load(), threads * kTriesPerThread);
}

INSTANTIATE_TEST_SUITE_P(Workers, BudgetRaceTest, ::testing::Values(1, 2, 8, 16));

// Each thread with its own Store (its own SQLite connection): serialisation comes from
// BEGIN IMMEDIATE in the database, not from the in-process writer mutex.
TEST_F(BudgetTest, SixteenConnectionsNeverPassTheRunCap) {
  constexpr int kThreads = 16;
  constexpr double kCap = 5.0;
  BudgetEnvelope envelope;
  envelope.project.per_run_usd = kCap;
  std::mutex mu;
  double admitted = 0;  // guarded by mu
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
      if (!store) {
        ++failures;
        return;
      }
      BudgetGuard guard(**store, envelope, &clock_);
      for (int i = 0; i < 20; ++i) {
        auto reserved = guard.ReserveUsd(Ctx("race2", "", "a"), 0.25);
        if (reserved) {
          std::lock_guard lock(mu);
          admitted += 0.25;
        } else if (reserved.error().code != ErrorCode::kResourceExhausted) {
          ++failures;
        }
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(admitted, kCap);  // 16 x 20 x 0.25 = 80 offered; exactly the cap admitted
  EXPECT_EQ(Spend(SpendQuery{.run_id = "race2"}), kCap);
}

// Two processes reserving against the same run cap in the same database file.
TEST_F(BudgetTest, TwoProcessesNeverPassTheRunCap) {
  constexpr double kCap = 10.0;
  constexpr int kTries = 60;  // x 0.25 x 2 processes = 30 offered
  // No SQLite connection may cross a fork: close ours first.
  queue_.reset();
  store_.reset();
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child: its own store, guard and clock; exit code = reservations admitted.
      int admitted = 0;
      {
        auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
        if (!store) ::_exit(255);
        FakeClock clock;
        BudgetEnvelope envelope;
        envelope.project.per_run_usd = kCap;
        BudgetGuard guard(**store, envelope, &clock);
        for (int i = 0; i < kTries; ++i) {
          auto reserved = guard.ReserveUsd(Ctx("forked", "", "p"), 0.25);
          if (reserved) {
            ++admitted;
          } else if (reserved.error().code != ErrorCode::kResourceExhausted) {
            ::_exit(254);
          }
        }
      }
      ::_exit(admitted);
    }
    children.push_back(pid);
  }
  int total = 0;
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    const int admitted = WEXITSTATUS(status);
    ASSERT_LT(admitted, 254) << "child failed";
    total += admitted;
  }
  EXPECT_EQ(total, 40);  // exactly 10.0 / 0.25, never more
  auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
  ASSERT_TRUE(store);
  store_ = std::move(*store);
  EXPECT_EQ(Spend(SpendQuery{.run_id = "forked"}), kCap);
}

// --- caps

TEST_F(BudgetTest, SettlingReplacesTheWorstCaseWithTheActualCost) {
  BudgetEnvelope envelope;
  envelope.project.per_run_usd = 1.0;
  BudgetGuard guard(*store_, envelope, &clock_);
  auto first = guard.ReserveUsd(Ctx("r", "t", "a"), 0.75);
  ASSERT_TRUE(first);
  // Unsettled, the worst case holds the room.
  EXPECT_FALSE(guard.ReserveUsd(Ctx("r", "t", "a"), 0.5));
  ASSERT_TRUE(guard.SettleUsd(*first, 0.25));
  EXPECT_EQ(Spend(SpendQuery{.run_id = "r"}), 0.25);
  EXPECT_EQ(Spend(SpendQuery{.run_id = "r", .settled_only = true}), 0.25);
  auto second = guard.ReserveUsd(Ctx("r", "t", "a"), 0.5);
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_EQ(guard.SettleUsd(12345, 0.1).error().code, ErrorCode::kNotFound);
}

TEST_F(BudgetTest, PerCallCapRefusesAnExpensiveCall) {
  BudgetEnvelope envelope;
  envelope.project.per_call_usd = 0.5;
  BudgetGuard guard(*store_, envelope, &clock_);
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "t", "a"), 0.5));
  auto refused = guard.ReserveUsd(Ctx("r", "t", "a"), 0.75);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_THAT(refused.error().message, HasSubstr("per-call"));
  EXPECT_FALSE(*guard.IsPaused("a"));
}

TEST_F(BudgetTest, TaskCapEndsTheAttemptAsBudgetExceeded) {
  BudgetEnvelope envelope;
  envelope.project.per_task_usd = 1.0;
  envelope.project.per_run_usd = 100.0;
  BudgetGuard guard(*store_, envelope, &clock_);
  for (int i = 0; i < 2; ++i) {
    auto reserved = guard.ReserveUsd(Ctx("r", "task-1", "coder"), 0.5);
    ASSERT_TRUE(reserved) << reserved.error().ToString();
    ASSERT_TRUE(guard.SettleUsd(*reserved, 0.375));
  }
  auto refused = guard.ReserveUsd(Ctx("r", "task-1", "coder"), 0.5);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_THAT(refused.error().message, HasSubstr("budget_exceeded"));
  EXPECT_THAT(refused.error().message, HasSubstr("task task-1"));
  EXPECT_THAT(refused.error().message, HasSubstr("$0.750000"));  // spent
  EXPECT_THAT(refused.error().message, HasSubstr("$1.000000"));  // limit
  // A smaller call still fits; another task of the same run is unaffected; nobody is paused.
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "task-1", "coder"), 0.25));
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "task-2", "coder"), 0.5));
  EXPECT_FALSE(*guard.IsPaused("coder"));
}

TEST_F(BudgetTest, TaskTokenCapEndsTheAttemptAsBudgetExceeded) {
  BudgetEnvelope envelope;
  envelope.agents["coder"].per_task_tokens = 1'000;
  BudgetGuard guard(*store_, envelope, &clock_);
  Ledger ledger(*store_);
  llm::CallRecord record;
  record.context = Ctx("r", "task-1", "coder");
  record.ok = true;
  record.usage = llm::Usage{600, 300, 0, 0};
  ASSERT_TRUE(ledger.Record(record));
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "task-1", "coder"), 0.01));
  ASSERT_TRUE(ledger.Record(record));  // 1,800 tokens now
  auto refused = guard.ReserveUsd(Ctx("r", "task-1", "coder"), 0.01);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message, HasSubstr("budget_exceeded"));
  EXPECT_THAT(refused.error().message, HasSubstr("1800 tokens"));
  // The cap is the coder's own: another agent on the same task is not limited.
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "task-1", "tester"), 0.01));
}

TEST_F(BudgetTest, AgentDailyCapRefusesAWorstCaseWithoutPausing) {
  BudgetEnvelope envelope;
  envelope.project.per_agent_daily_usd = 5.0;
  envelope.agents["coder"].per_agent_daily_usd = 1.0;  // the agent's own budget wins
  BudgetGuard guard(*store_, envelope, &clock_);
  ASSERT_TRUE(guard.ReserveUsd(Ctx("r", "t1", "coder"), 0.625));
  auto refused = guard.ReserveUsd(Ctx("r", "t2", "coder"), 0.5);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_THAT(refused.error().message, HasSubstr("agent coder daily"));
  EXPECT_THAT(refused.error().message, HasSubstr("worst case $0.500000"));
  EXPECT_FALSE(*guard.IsPaused("coder"));
  EXPECT_TRUE(EventsOfKind("agent.paused").empty());
  // What is left today still fits; the refusal did not stop the agent.
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "t2", "coder"), 0.25));
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "t3", "tester"), 2.0));
}

TEST_F(BudgetTest, AgentDailyCapPausesTheAgentOnceSettledSpendReachesIt) {
  BudgetEnvelope envelope;
  envelope.agents["coder"].per_agent_daily_usd = 1.0;
  BudgetGuard guard(*store_, envelope, &clock_);
  auto first = guard.ReserveUsd(Ctx("r", "t1", "coder"), 0.5);
  ASSERT_TRUE(first);
  ASSERT_TRUE(guard.SettleUsd(*first, 0.5));
  EXPECT_FALSE(*guard.IsPaused("coder"));
  auto second = guard.ReserveUsd(Ctx("r", "t1", "coder"), 0.5);
  ASSERT_TRUE(second);
  ASSERT_TRUE(guard.SettleUsd(*second, 0.5));  // $1.00 settled: the cap is reached
  EXPECT_TRUE(*guard.IsPaused("coder"));
  EXPECT_FALSE(*guard.IsPaused("tester"));

  auto paused = EventsOfKind("agent.paused");
  ASSERT_EQ(paused.size(), 1u);
  auto payload = nlohmann::json::parse(paused[0].payload_json);
  EXPECT_EQ(payload["agent"], "coder");
  EXPECT_EQ(payload["by"], "budget");
  EXPECT_THAT(payload["reason"].get<std::string>(), HasSubstr("settled spend $1.000000"));
  EXPECT_EQ(paused[0].actor, "budget");

  // Paused: even a tiny call is refused, with the way out in the message; other agents go on.
  auto tiny = guard.ReserveUsd(Ctx("r", "t2", "coder"), 0.001);
  ASSERT_FALSE(tiny);
  EXPECT_THAT(tiny.error().message, HasSubstr("factory agents resume coder"));
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "t3", "tester"), 2.0));

  ASSERT_TRUE(guard.Resume("coder"));
  EXPECT_FALSE(*guard.IsPaused("coder"));
  EXPECT_EQ(EventsOfKind("agent.resumed").size(), 1u);
  EXPECT_EQ(guard.Resume("coder").error().code, ErrorCode::kNotFound);
  // Resumed, but the day's cap is spent: refused (not paused) until tomorrow.
  EXPECT_FALSE(guard.ReserveUsd(Ctx("r", "t2", "coder"), 0.001));
  EXPECT_FALSE(*guard.IsPaused("coder"));
  clock_.Advance(24 * 60 * kMinute);
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "t2", "coder"), 1.0));
}

TEST_F(BudgetTest, GlobalDailyCapPausesEveryAgentOnceSettledSpendReachesIt) {
  BudgetEnvelope envelope;
  envelope.global_daily_usd = 1.0;
  BudgetGuard guard(*store_, envelope, &clock_);
  auto first = guard.ReserveUsd(Ctx("r1", "t1", "coder"), 0.75);
  ASSERT_TRUE(first);
  // A worst case that does not fit beside it is refused; nobody is paused for that.
  auto refused = guard.ReserveUsd(Ctx("r2", "t2", "tester"), 0.5);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message, HasSubstr("global daily"));
  EXPECT_FALSE(*guard.IsPaused("tester"));
  EXPECT_FALSE(*guard.IsPaused("coder"));
  // Settled above what was reserved, the spend reaches the cap: every agent is paused.
  ASSERT_TRUE(guard.SettleUsd(*first, 1.25));
  for (const char* agent : {"coder", "tester", "someone-else", ""}) {
    EXPECT_TRUE(*guard.IsPaused(agent)) << agent;
    EXPECT_FALSE(guard.ReserveUsd(Ctx("r3", "t3", agent), 0.001)) << agent;
  }
  auto pauses = guard.Pauses();
  ASSERT_TRUE(pauses);
  ASSERT_EQ(pauses->size(), 1u);
  EXPECT_EQ((*pauses)[0].agent, kAllAgents);
  auto events = EventsOfKind("agent.paused");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(events[0].payload_json)["agent"], "*");

  ASSERT_TRUE(guard.Resume(kAllAgents));
  EXPECT_FALSE(*guard.IsPaused("coder"));
  clock_.Advance(24 * 60 * kMinute);
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r3", "t3", "coder"), 0.25));
}

TEST_F(BudgetTest, VelocityPausesAnAgentSpendingThreeTimesItsTrailingRate) {
  BudgetEnvelope envelope;  // defaults: 3x, 10-minute window, 60-minute baseline
  BudgetGuard guard(*store_, envelope, &clock_);
  auto spend = [&](const std::string& agent, double usd) {
    auto reserved = guard.ReserveUsd(Ctx("r", "t", agent), usd);
    ASSERT_TRUE(reserved) << reserved.error().ToString();
    ASSERT_TRUE(guard.SettleUsd(*reserved, usd));
  };
  // History: $0.75 at T0. With no earlier spend there is no baseline, so no check yet.
  for (int i = 0; i < 6; ++i) spend("coder", 0.125);
  EXPECT_FALSE(*guard.IsPaused("coder"));
  // 15 minutes later the trailing rate is $0.75 / 60 min = $0.125 per 10 min; 3x = $0.375.
  clock_.Advance(15 * kMinute);
  spend("coder", 0.25);
  spend("coder", 0.125);  // exactly 3x: not more than 3x
  EXPECT_FALSE(*guard.IsPaused("coder"));
  EXPECT_TRUE(EventsOfKind("agent.paused").empty());
  clock_.Advance(kMinute);
  spend("coder", 0.125);  // $0.5 in the last 10 minutes > $0.375
  EXPECT_TRUE(*guard.IsPaused("coder"));

  auto events = EventsOfKind("agent.paused");
  ASSERT_EQ(events.size(), 1u);
  auto payload = nlohmann::json::parse(events[0].payload_json);
  EXPECT_EQ(payload["agent"], "coder");
  EXPECT_EQ(payload["by"], "velocity");
  const std::string reason = payload["reason"];
  EXPECT_THAT(reason, HasSubstr("velocity"));
  EXPECT_THAT(reason, HasSubstr("$0.500000 in the last 10 min"));
  EXPECT_THAT(reason, HasSubstr("3x"));
  EXPECT_THAT(reason, HasSubstr("$0.125000 per 10 min"));
  EXPECT_FALSE(guard.ReserveUsd(Ctx("r", "t", "coder"), 0.01));

  ASSERT_TRUE(guard.Resume("coder"));
  EXPECT_TRUE(guard.ReserveUsd(Ctx("r", "t", "coder"), 0.01));
}

TEST_F(BudgetTest, VelocityUsesTheConfiguredMinimumBaselineForANewAgent) {
  BudgetEnvelope envelope;
  envelope.velocity_min_baseline_usd = 0.25;  // per 10 minutes: pause above $0.75
  BudgetGuard guard(*store_, envelope, &clock_);
  for (int i = 0; i < 3; ++i) {
    auto reserved = guard.ReserveUsd(Ctx("r", "t", "fresh"), 0.25);
    ASSERT_TRUE(reserved);
    ASSERT_TRUE(guard.SettleUsd(*reserved, 0.25));
  }
  EXPECT_FALSE(*guard.IsPaused("fresh"));
  auto reserved = guard.ReserveUsd(Ctx("r", "t", "fresh"), 0.25);
  ASSERT_TRUE(reserved);
  ASSERT_TRUE(guard.SettleUsd(*reserved, 0.25));
  EXPECT_TRUE(*guard.IsPaused("fresh"));
  auto events = EventsOfKind("agent.paused");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].payload_json, HasSubstr("minimum baseline"));
}

TEST(BudgetEnvelopeTest, AgentLimitsOverrideTheProjectsFieldByField) {
  BudgetEnvelope envelope;
  envelope.project.per_task_usd = 2.0;
  envelope.project.per_run_usd = 20.0;
  envelope.agents["coder"].per_task_usd = 0.5;
  BudgetLimits coder = envelope.For("coder");
  EXPECT_EQ(coder.per_task_usd, 0.5);
  EXPECT_EQ(coder.per_run_usd, 20.0);
  EXPECT_FALSE(coder.per_call_usd.has_value());
  EXPECT_EQ(envelope.For("tester").per_task_usd, 2.0);
}

}  // namespace
}  // namespace factory::ledger
