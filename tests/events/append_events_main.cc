// A second process for the event log tests: appends events to a database the test process
// tails. Usage: append_events DB_PATH COUNT RUN_ID
#include <cstdio>
#include <cstdlib>
#include <string>

#include "events/event_log.h"
#include "store/store.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DB_PATH COUNT RUN_ID\n", argv[0]);
    return 2;
  }
  auto store = factory::OpenSqliteStore(factory::SqliteOptions{.path = argv[1]});
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().ToString().c_str());
    return 1;
  }
  factory::events::EventLog log(**store, {.actor = "helper"});
  const int count = std::atoi(argv[2]);
  for (int index = 0; index < count; ++index) {
    auto appended = log.Append({.kind = factory::events::EventKind::kAgentStep,
                                .run_id = argv[3],
                                .payload_json = "{\"index\":" + std::to_string(index) + "}"});
    if (!appended) {
      std::fprintf(stderr, "%s\n", appended.error().ToString().c_str());
      return 1;
    }
  }
  return 0;
}
