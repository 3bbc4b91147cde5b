#include "events/event_log.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/redact.h"
#include "core/ulid.h"

namespace factory::events {
namespace {

using json = nlohmann::json;

constexpr int kPage = 1000;
// Recent events kept for live delivery; a subscription further behind reads the store.
constexpr size_t kRingCapacity = 4096;

// The process-wide wake-up: a generation bumped after every local append, so every poller in
// the process (one per EventLog, whatever store object it holds) looks at once.
struct WakeSignal {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t generation = 0;  // guarded by mu
};

WakeSignal& Wake() {
  static auto* const signal = new WakeSignal();
  return *signal;
}

// A payload as stored: a JSON object. Our own payloads are objects already (checked without
// building a tree); anything else is kept under "data" instead of being dropped.
std::string NormalizePayload(std::string text) {
  if (text.empty()) return "{}";
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{' && json::accept(text)) return text;
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  json wrapped = value.is_discarded() ? json{{"data", std::move(text)}} : json{{"data", value}};
  return wrapped.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

bool EventFilter::Matches(const Event& event) const {
  if (!run_id.empty() && event.run_id != run_id) return false;
  if (!task_id.empty() && event.task_id != task_id) return false;
  if (kinds.empty()) return true;
  std::optional<EventKind> kind = ParseEventKind(event.kind);
  return kind && std::find(kinds.begin(), kinds.end(), *kind) != kinds.end();
}

// One subscription's state. `mu` is held while its callback runs, so Cancel can wait for a
// delivery in progress.
struct SubscriptionState {
  EventFilter filter;
  EventCallback callback;
  std::mutex mu;
  int64_t cursor = 0;  // guarded by mu; last seq passed
  std::atomic<bool> cancelled{false};
  std::atomic<int64_t> last_seq{0};
};

class EventLog::Impl : public std::enable_shared_from_this<EventLog::Impl> {
 public:
  Impl(Store& store, EventLogOptions options)
      : store_(store),
        clock_(options.clock != nullptr ? *options.clock : SystemClock()),
        actor_(std::move(options.actor)),
        poll_interval_(options.poll_interval),
        ids_(clock_) {}

  Event Build(NewEvent&& draft) {
    Event event{.id = ids_.Next(),
                .ts_ms = clock_.NowMillis(),
                .run_id = std::move(draft.run_id),
                .task_id = std::move(draft.task_id),
                .kind = std::string(EventKindName(draft.kind)),
                .actor = draft.actor.empty() ? actor_ : std::move(draft.actor),
                .payload_json = NormalizePayload(std::move(draft.payload_json))};
    ProcessRedactor().RedactInPlace(event.payload_json);
    return event;
  }

  void Add(const std::shared_ptr<SubscriptionState>& sub) {
    std::lock_guard lock(mu_);
    subs_.push_back(sub);
    if (!poller_.joinable()) {
      poller_ = std::thread([this] { Poll(); });
    }
  }

  void Remove(const SubscriptionState* sub) {
    std::lock_guard lock(mu_);
    std::erase_if(subs_, [&](const auto& held) { return held.get() == sub; });
  }

  void Cancel(SubscriptionState& sub) {
    sub.cancelled = true;
    Remove(&sub);
    // From inside its own callback the poller holds sub.mu already; the flag is enough then.
    if (std::this_thread::get_id() == poller_id_.load()) return;
    std::lock_guard wait_for_delivery(sub.mu);
  }

  int64_t Count() const {
    std::lock_guard lock(mu_);
    return static_cast<int64_t>(subs_.size());
  }

  void Stop() {
    std::vector<std::shared_ptr<SubscriptionState>> subs;
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      subs.swap(subs_);
    }
    for (auto& sub : subs) sub->cancelled = true;
    {
      std::lock_guard lock(Wake().mu);
      Wake().cv.notify_all();
    }
    if (poller_.joinable()) poller_.join();
  }

  Store& store_;
  const Clock& clock_;
  std::string actor_;
  std::chrono::milliseconds poll_interval_;
  UlidGenerator ids_;

 private:
  void Poll() {
    poller_id_ = std::this_thread::get_id();
    bool started = false;
    uint64_t seen = 0;
    while (true) {
      {
        std::unique_lock lock(Wake().mu);
        if (started) {
          Wake().cv.wait_for(lock, poll_interval_,
                             [&] { return Wake().generation != seen || stopping(); });
        }
        seen = Wake().generation;
      }
      if (stopping()) return;
      if (!started) started = Start();
      if (started && ReadNew()) Deliver();
    }
  }

  bool stopping() const {
    std::lock_guard lock(mu_);
    return stop_;
  }

  // The ring starts at the chain's head: older events are read from the store by the
  // subscriptions that ask for them.
  bool Start() {
    Status read = store_.Read([&](StoreTxn& txn) -> Status {
      FACTORY_ASSIGN_OR_RETURN(head_, txn.LastEventSeq());
      return Ok();
    });
    if (!read) {
      spdlog::warn("event log: cannot read the chain head: {}", read.error().ToString());
      std::this_thread::sleep_for(poll_interval_);
      return false;
    }
    ring_base_ = head_;
    return true;
  }

  // Moves events appended since the last poll into the ring. False when the store could not be
  // read (logged; the next poll tries again).
  bool ReadNew() {
    while (true) {
      std::vector<Event> page;
      Status read = store_.Read([&](StoreTxn& txn) -> Status {
        FACTORY_ASSIGN_OR_RETURN(page,
                                 txn.ListEvents(EventQuery{.after_seq = head_, .limit = kPage}));
        return Ok();
      });
      if (!read) {
        spdlog::warn("event log: cannot read new events: {}", read.error().ToString());
        return false;
      }
      for (Event& event : page) {
        head_ = event.seq;
        ring_.push_back(std::move(event));
      }
      while (ring_.size() > kRingCapacity) {
        ring_base_ = ring_.front().seq;
        ring_.pop_front();
      }
      if (static_cast<int>(page.size()) < kPage) return true;
    }
  }

  void Deliver() {
    std::vector<std::shared_ptr<SubscriptionState>> subs;
    {
      std::lock_guard lock(mu_);
      subs = subs_;
    }
    for (const auto& sub : subs) {
      std::lock_guard lock(sub->mu);
      if (sub->cancelled) continue;
      if (!CatchUp(*sub)) continue;
      auto from = std::upper_bound(ring_.begin(), ring_.end(), sub->cursor,
                                   [](int64_t seq, const Event& event) { return seq < event.seq; });
      for (auto it = from; it != ring_.end() && !sub->cancelled; ++it) {
        if (!Offer(*sub, *it)) break;
      }
      if (!sub->cancelled) sub->cursor = std::max(sub->cursor, head_);
      sub->last_seq = sub->cursor;
    }
  }

  // Delivers from the store what a subscription misses before the ring. False when it could
  // not (store error, or it was cancelled).
  bool CatchUp(SubscriptionState& sub) {
    while (sub.cursor < ring_base_ && !sub.cancelled) {
      std::vector<Event> page;
      Status read = store_.Read([&](StoreTxn& txn) -> Status {
        FACTORY_ASSIGN_OR_RETURN(page, txn.ListEvents(EventQuery{.after_seq = sub.cursor,
                                                                 .run_id = sub.filter.run_id,
                                                                 .task_id = sub.filter.task_id,
                                                                 .limit = kPage}));
        return Ok();
      });
      if (!read) {
        spdlog::warn("event log: cannot read events after {}: {}", sub.cursor,
                     read.error().ToString());
        return false;
      }
      for (const Event& event : page) {
        if (!Offer(sub, event)) return false;
      }
      // A short page holds every matching event committed when it was read, which includes
      // everything up to head_ (read before it).
      if (static_cast<int>(page.size()) < kPage) sub.cursor = std::max(sub.cursor, head_);
      sub.last_seq = sub.cursor;
    }
    return !sub.cancelled;
  }

  // Passes one event (seq > cursor) to the subscription. False when it is cancelled.
  bool Offer(SubscriptionState& sub, const Event& event) {
    if (sub.cancelled) return false;
    if (sub.filter.Matches(event)) {
      try {
        sub.callback(event);
      } catch (const std::exception& error) {
        spdlog::warn("event log: a subscriber failed on event {} and is cancelled: {}", event.seq,
                     error.what());
        sub.cancelled = true;
      } catch (...) {
        spdlog::warn("event log: a subscriber failed on event {} and is cancelled", event.seq);
        sub.cancelled = true;
      }
      if (sub.cancelled) {
        Remove(&sub);
        return false;
      }
    }
    sub.cursor = event.seq;
    return true;
  }

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<SubscriptionState>> subs_;  // guarded by mu_
  bool stop_ = false;                                     // guarded by mu_
  std::thread poller_;                                    // started under mu_
  std::atomic<std::thread::id> poller_id_{};
  // Touched by the poller thread only.
  std::deque<Event> ring_;  // events (ring_base_, head_]
  int64_t ring_base_ = 0;
  int64_t head_ = 0;
};

namespace {

class SubscriptionImpl final : public Subscription {
 public:
  SubscriptionImpl(std::shared_ptr<EventLog::Impl> log, std::shared_ptr<SubscriptionState> state)
      : log_(std::move(log)), state_(std::move(state)) {}
  ~SubscriptionImpl() override { Cancel(); }
  void Cancel() override { log_->Cancel(*state_); }
  int64_t last_seq() const override { return state_->last_seq.load(); }

 private:
  std::shared_ptr<EventLog::Impl> log_;
  std::shared_ptr<SubscriptionState> state_;
};

}  // namespace

EventLog::EventLog(Store& store, EventLogOptions options)
    : store_(store), impl_(std::make_shared<Impl>(store, std::move(options))) {}

EventLog::~EventLog() { impl_->Stop(); }

Result<Event> EventLog::AppendInTxn(StoreTxn& txn, NewEvent event) {
  Event built = impl_->Build(std::move(event));
  FACTORY_RETURN_IF_ERROR(txn.AppendEvent(built));
  return built;
}

Result<Event> EventLog::Append(NewEvent event) {
  const Event built = impl_->Build(std::move(event));
  Event stored;
  FACTORY_RETURN_IF_ERROR(store_.Write([&](StoreTxn& txn) -> Status {
    stored = built;  // the transaction may run more than once
    return txn.AppendEvent(stored);
  }));
  NotifyAppended();
  return stored;
}

void EventLog::AppendOrWarn(NewEvent event) {
  std::string kind(EventKindName(event.kind));
  std::string run_id = event.run_id;
  std::string task_id = event.task_id;
  Result<Event> appended = Append(std::move(event));
  if (!appended) {
    spdlog::warn("event log: dropped a {} event (run '{}', task '{}'): {}", kind, run_id, task_id,
                 appended.error().ToString());
  }
}

void EventLog::NotifyAppended() {
  WakeSignal& wake = Wake();
  {
    std::lock_guard lock(wake.mu);
    ++wake.generation;
  }
  wake.cv.notify_all();
}

Result<std::vector<Event>> EventLog::List(const EventQuery& query) {
  std::vector<Event> events;
  FACTORY_RETURN_IF_ERROR(store_.Read([&](StoreTxn& txn) -> Status {
    FACTORY_ASSIGN_OR_RETURN(events, txn.ListEvents(query));
    return Ok();
  }));
  return events;
}

std::unique_ptr<Subscription> EventLog::Subscribe(int64_t after_seq, EventFilter filter,
                                                  EventCallback callback) {
  auto state = std::make_shared<SubscriptionState>();
  state->filter = std::move(filter);
  state->callback = std::move(callback);
  state->cursor = std::max<int64_t>(after_seq, 0);
  state->last_seq = state->cursor;
  impl_->Add(state);
  NotifyAppended();  // deliver the stored backlog now rather than at the next poll
  return std::make_unique<SubscriptionImpl>(impl_, std::move(state));
}

int64_t EventLog::subscriber_count() const { return impl_->Count(); }

}  // namespace factory::events
