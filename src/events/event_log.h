#pragma once
// The event log: the one writer of the hash-chained event chain, and subscriptions that tail it.
//
// Every event passes the process redactor before the chain hashes it (a hashed secret could
// never be scrubbed). The chain itself (seq, prev_hash, hash) is assigned by the store inside
// the write transaction, so appends from several threads and processes stay one chain.
//
// Subscriptions see events from every process writing the same database: one poller per
// EventLog reads the events after the last one it saw (an indexed range read, nothing when
// idle) every poll_interval, and at once when this process appends (a process-wide wake-up).
// Hundreds of subscriptions share that one poller.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "events/event_kind.h"
#include "store/store.h"

namespace factory::events {

// An event to append. The log fills id, ts_ms and the chain.
struct NewEvent {
  EventKind kind = EventKind::kRunCreated;
  std::string run_id;   // may be empty
  std::string task_id;  // may be empty
  std::string actor;    // who caused it ("cli", "worker:<id>", "budget"...); empty: the log's
  // A JSON object. Empty means {}. Text that is not JSON, or JSON that is not an object, is kept
  // under "data" rather than dropped; ill-formed UTF-8 becomes U+FFFD.
  std::string payload_json;
};

// Which events a subscription delivers. Every non-empty field must match.
struct EventFilter {
  std::string run_id;
  std::string task_id;
  std::vector<EventKind> kinds;  // empty: any kind, unknown ones included

  bool Matches(const Event& event) const;
};

struct EventLogOptions {
  const Clock* clock = nullptr;  // null: SystemClock(). Must outlive the log.
  std::string actor = "factory";
  // How often subscriptions look for events other processes appended.
  std::chrono::milliseconds poll_interval{20};
};

// Called on the log's poller thread, one event at a time, in seq order, never concurrently for
// one subscription. It must return quickly (hand the event to the consumer's own queue or
// executor): every subscription of the log waits for it. An exception thrown by it cancels
// its subscription (logged).
using EventCallback = std::function<void(const Event& event)>;

// A live subscription. Destroying it cancels it.
class Subscription {
 public:
  virtual ~Subscription() = default;
  // After Cancel returns, the callback is not running and will not be called again (unless
  // Cancel is called from inside the callback itself, which is allowed). Idempotent.
  virtual void Cancel() = 0;
  // The seq of the last event this subscription has passed (delivered or filtered out).
  virtual int64_t last_seq() const = 0;
};

class EventLog {
 public:
  // REQUIRES: store outlives the log.
  explicit EventLog(Store& store, EventLogOptions options = {});
  // Stops the poller; subscriptions still alive are cancelled.
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Appends in its own write transaction and returns the stored event (seq, hash set).
  // Errors are the store's. Thread-safe.
  Result<Event> Append(NewEvent event);

  // As Append, but a failure is logged (spdlog warn naming kind, run and task) instead of
  // returned: for events whose loss must not fail the operation that records them.
  void AppendOrWarn(NewEvent event);

  // Appends inside the caller's write transaction, so the event commits (or not) with the
  // change it records. Returns the event as it will be stored. Call NotifyAppended() after the
  // transaction committed so subscriptions in this process see it at once. Thread-safe.
  Result<Event> AppendInTxn(StoreTxn& txn, NewEvent event);

  // Wakes every subscription poller in this process (events were committed). Cheap.
  static void NotifyAppended();

  // Stored events matching query, in seq order (a read transaction).
  Result<std::vector<Event>> List(const EventQuery& query);

  // Delivers every event with seq > after_seq that matches filter, in seq order, with no gap
  // and no duplicate: first the stored ones, then new ones as they are appended by this process
  // or another. after_seq 0: from the first event. Store errors while tailing are logged and
  // retried at the next poll. Thread-safe.
  std::unique_ptr<Subscription> Subscribe(int64_t after_seq, EventFilter filter,
                                          EventCallback callback);

  // Live subscriptions (for metrics).
  int64_t subscriber_count() const;

  Store& store() { return store_; }

  class Impl;  // opaque: shared with the subscriptions, which may outlive the log

 private:
  Store& store_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace factory::events
