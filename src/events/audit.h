#pragma once
// Verification of the hash-chained event log (`factory audit verify`).

#include <cstdint>
#include <optional>
#include <string>

#include "core/result.h"
#include "store/store.h"

namespace factory {

struct AuditReport {
  int64_t events_checked = 0;
  bool ok = true;
  // When not ok: the first event whose stored content, hash or link does not match.
  std::optional<int64_t> broken_seq;
  std::string broken_id;
  std::string problem;    // e.g. "hash mismatch: content was changed after it was written"
  std::string head_hash;  // hash of the last event checked (when ok)
};

// Recomputes the whole chain in order. An error only when the store cannot be read; a broken
// chain is a successful call with ok = false.
Result<AuditReport> VerifyChain(Store& store);

}  // namespace factory
