#include "cluster/event_log.hpp"

#include "logging.hpp"

namespace jim::server::cluster {

namespace {
JIM_LOG_MODULE("cluster")
constexpr std::size_t recent_window = 100000;
}  // namespace

event_log::event_log(nats_stream& stream, foreign_fn foreign, applied_fn applied)
    : stream_(stream), foreign_(std::move(foreign)), applied_(std::move(applied)) {}

void event_log::append(store::event e, done_fn done) {
  const std::string id = stream_.next_msg_id();
  pending_.emplace(id, std::move(done));
  stream_.publish(id, store::encode(e, 0),
                  [this, id](std::optional<std::uint64_t> seq, std::string const&) {
                    if (seq) return;  // stored: answered when the consumer hands it back
                    auto it = pending_.find(id);
                    if (it == pending_.end()) return;
                    auto answer = std::move(it->second);
                    pending_.erase(it);
                    answer(nullptr);  // 503; if it was stored after all, it comes back foreign
                  });
}

void event_log::start(std::uint64_t after, std::uint64_t caught_up_at,
                      std::function<void()> ready) {
  position_ = after;
  caught_up_at_ = caught_up_at;
  ready_ = std::move(ready);
  if (position_ >= caught_up_at_ && ready_) std::exchange(ready_, nullptr)();
  stream_.consume(after, [this](stream_entry&& entry) { on_entry(std::move(entry)); });
}

bool event_log::seen_before(std::string const& msg_id) {
  if (msg_id.empty()) return false;
  if (!recent_ids_.insert(msg_id).second) return true;
  recent_order_.push_back(msg_id);
  if (recent_order_.size() > recent_window) {
    recent_ids_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
  return false;
}

void event_log::on_entry(stream_entry&& entry) {
  position_ = entry.seq;
  if (!seen_before(entry.msg_id)) {
    std::optional<store::event> e;
    if (entry.expired) {
      // Stored after its attempt's Jim-Expires: its proposer may have answered 503 already
      // (the NATS client flushed it from its reconnect buffer later). Every node skips it
      // alike; if it is ours and still waiting, it is answered as not stored.
      JIM_LOG(warn, "stream entry {} ({}) was stored after its proposer's deadline, skipped",
              entry.seq, entry.msg_id);
    } else {
      try {
        e = store::decode(entry.payload).e;
      } catch (std::exception const& ex) {
        // Every node skips it alike (a writer that knew more, or damage): state stays the
        // same everywhere, and the operator is told.
        JIM_LOG(err, "stream entry {} ({}) is not an event this jimd knows, skipped: {}",
                entry.seq, entry.msg_id, ex.what());
      }
    }
    auto it = pending_.find(entry.msg_id);
    if (!e && it != pending_.end()) {
      // Ours, yet skipped by every node: not applied, so the change is answered as not stored.
      auto answer = std::move(it->second);
      pending_.erase(it);
      answer(nullptr);
    }
    if (e) {
      if (it != pending_.end()) {
        auto answer = std::move(it->second);
        pending_.erase(it);
        answer(&*e);
      } else if (foreign_) {
        foreign_(*e, entry.seq);
      }
      if (applied_) applied_(*e, entry.seq);
    }
  }
  if (ready_ && position_ >= caught_up_at_) std::exchange(ready_, nullptr)();
}

}  // namespace jim::server::cluster
