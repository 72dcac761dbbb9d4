#pragma once
/// \file
/// The chat's events on the cluster's stream: store::event_log for a node in cluster mode.
///
/// append() publishes the event (store::encode with seq 0: the stream sequence is its
/// position) under a fresh Nats-Msg-Id and remembers the caller. Every node consumes the
/// stream in order and hands every event to the hub exactly once, in stream order, on the
/// I/O thread:
/// - an event this node proposed goes to the `done` given to append() (the hub applies it
///   and answers the proposer's client from what apply() decided: 409 if an earlier entry
///   took the name);
/// - every other event (other nodes', and this node's own whose publish was reported failed
///   but was stored after all) goes to the `foreign` callback: the hub applies it and
///   pushes it to this node's connections.
/// A publish that fails (NATS unreachable, no quorum, past the publish deadline) calls
/// `done(nullptr)`: the client gets 503 and nothing was applied. A Nats-Msg-Id seen again
/// (a retry past JetStream's duplicate window) is skipped on every node alike, and so is an
/// entry stored after its attempt's deadline (stream_entry::expired: a copy that the NATS
/// client flushed from its reconnect buffer after the change was answered 503).
///
/// @par Thread Safety
/// I/O thread only (nats_stream posts everything there).

#include "cluster/nats_stream.hpp"
#include "store/durability.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace jim::server::cluster {

class event_log final : public store::event_log {
 public:
  /// An event another node proposed, at stream sequence `seq`.
  using foreign_fn = std::function<void(store::event const& e, std::uint64_t seq)>;
  /// Called after each event is handed over (own or foreign), with its sequence: the
  /// position a snapshot of the state now covers.
  using applied_fn = std::function<void(store::event const& e, std::uint64_t seq)>;

  event_log(nats_stream& stream, foreign_fn foreign, applied_fn applied = {});

  void append(store::event e, done_fn done) override;

  /// Consumes the stream after `after` (what the local snapshot covers); `ready` runs once,
  /// when everything up to `caught_up_at` (nats_stream::open()'s answer) has been handed over.
  void start(std::uint64_t after, std::uint64_t caught_up_at, std::function<void()> ready);

  std::uint64_t position() const { return position_; }
  std::size_t waiting() const { return pending_.size(); }
  bool caught_up() const { return !ready_; }

 private:
  void on_entry(stream_entry&& entry);
  bool seen_before(std::string const& msg_id);

  nats_stream& stream_;
  foreign_fn foreign_;
  applied_fn applied_;
  std::unordered_map<std::string, done_fn> pending_;  ///< by Nats-Msg-Id
  std::uint64_t position_ = 0;
  std::uint64_t caught_up_at_ = 0;
  std::function<void()> ready_;
  // The last ids applied (a bounded window, the same on every node).
  std::unordered_set<std::string> recent_ids_;
  std::deque<std::string> recent_order_;
};

}  // namespace jim::server::cluster
