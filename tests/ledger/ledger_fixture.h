#pragma once
// A real SQLite store in a temporary directory, a Queue over it and a FakeClock.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/test_util.h"
#include "core/clock.h"
#include "queue/queue.h"
#include "store/store.h"

namespace factory::ledger {

class LedgerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(SqliteOptions{.path = db_path()});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    queue_ = std::make_unique<Queue>(*store_, QueueOptions{.clock = &clock_});
  }

  std::string db_path() const { return dir_ / "factory.db"; }

  std::vector<Event> EventsOfKind(const std::string& kind) {
    std::vector<Event> matching;
    auto events = queue_->ListEvents(EventQuery{});
    EXPECT_TRUE(events) << events.error().ToString();
    if (!events) return matching;
    for (auto& event : *events) {
      if (event.kind == kind) matching.push_back(event);
    }
    return matching;
  }

  testing::TempDir dir_;
  FakeClock clock_{1'790'000'000'000};  // 2026-09-21T...Z
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
};

}  // namespace factory::ledger
