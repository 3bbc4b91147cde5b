#include "events/audit.h"

#include <vector>

namespace factory {

Result<AuditReport> VerifyChain(Store& store) {
  AuditReport report;
  int64_t expected_seq = 1;
  std::string prev_hash;
  constexpr int kBatch = 10'000;
  while (true) {
    std::vector<Event> batch;
    FACTORY_RETURN_IF_ERROR(store.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(
          batch, txn.ListEvents(EventQuery{.after_seq = expected_seq - 1, .limit = kBatch}));
      return Ok();
    }));
    for (const Event& event : batch) {
      std::string problem;
      if (event.seq != expected_seq) {
        problem = "missing event(s): expected seq " + std::to_string(expected_seq) + " but found " +
                  std::to_string(event.seq);
      } else if (event.prev_hash != prev_hash) {
        problem = "broken link: prev_hash does not match the hash of the event before it";
      } else if (ComputeEventHash(event) != event.hash) {
        problem = "hash mismatch: the event's content was changed after it was written";
      }
      if (!problem.empty()) {
        report.ok = false;
        report.broken_seq = event.seq;
        report.broken_id = event.id;
        report.problem = problem;
        return report;
      }
      prev_hash = event.hash;
      ++expected_seq;
      ++report.events_checked;
    }
    if (static_cast<int>(batch.size()) < kBatch) break;
  }
  report.head_hash = prev_hash;
  return report;
}

}  // namespace factory
