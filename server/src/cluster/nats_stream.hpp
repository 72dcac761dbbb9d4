#pragma once
/// \file
/// The cluster's log: one JetStream stream on NATS, written with de-duplicated asynchronous
/// publishes and read back, in stream order, by an ordered push consumer. Bytes in, bytes out:
/// what the payloads mean is the caller's business (cluster/event_stream.hpp puts events in).
///
/// Layout on NATS (for `--nats-stream JIM`):
/// - stream `JIM`, subject `JIM.events`, file storage, `--nats-replicas` replicas, no limits
///   (accounts and rooms must stay rebuildable from it), duplicate window 2 minutes;
/// - every entry carries the header `Nats-Msg-Id: <node>.<instance>.<counter>` (unique per
///   process: a restarted node never reuses an id inside the duplicate window);
/// - core (not stored) subject `JIM.presence` for the heartbeats of cluster/presence.hpp.
///
/// @par Thread Safety
/// The NATS C client runs its own threads (connection reader, flusher, one per
/// subscription). Every one of its callbacks only copies what it needs and posts it to the
/// io_context given to the constructor; every callback given to this class runs there (the
/// I/O thread). Public functions: on the I/O thread, except open() (see there); close() and
/// the destructor also after the io_context stopped.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace jim::server::cluster {

struct nats_settings {
  std::vector<std::string> urls;  ///< "nats://127.0.0.1:4222", tried in this order
  std::string node;               ///< this node's name (the prefix of its message ids)
  std::string stream = "JIM";     ///< stream name; also the subject prefix
  int replicas = 1;               ///< replicas when this node creates the stream
  /// How long one publish attempt waits for the stream's acknowledgement.
  std::chrono::milliseconds ack_wait{2000};
  /// How long a change keeps being retried (same Nats-Msg-Id, every `retry_pause`, also
  /// while disconnected) before it fails: long enough to ride out a server's failover and
  /// the stream leader's re-election (~2-5 s, longer on a loaded machine).
  std::chrono::milliseconds publish_deadline{10000};
  std::chrono::milliseconds retry_pause{250};
  /// How long the node may be without any NATS server before changes fail at once (503)
  /// instead of waiting for it: longer than a reconnect to another server of the list
  /// (~250 ms), so a failover never fails a change, and short enough that a node cut off
  /// from NATS answers 503 within ~2 s rather than after the whole `publish_deadline`.
  std::chrono::milliseconds unreachable_after{2000};
  /// Every attempt of a publish carries the header `Jim-Expires` (its send time plus
  /// `ack_wait`, unix ms); a copy stored later is skipped by every node
  /// (stream_entry::expired). A failure is answered only `expiry_margin` after the last
  /// attempt's expiry, so that nothing answered "failed" is applied later. The margin
  /// covers the difference between this node's clock and the stream leader's.
  std::chrono::milliseconds expiry_margin{500};
  /// How long open() keeps trying to reach NATS and the stream.
  std::chrono::milliseconds open_timeout{20000};
};

/// One stored entry, as delivered by the consumer.
struct stream_entry {
  std::uint64_t seq = 0;  ///< stream sequence, from 1; strictly increasing per delivery
  std::string msg_id;     ///< its Nats-Msg-Id ("" if it had none)
  std::string payload;
  /// Stored after its `Jim-Expires` (the stream's timestamp of the entry is later): its
  /// proposer may have answered the change as failed, so every node must skip it. The
  /// decision depends only on the entry: the same on every node and at every replay.
  bool expired = false;
};

class nats_stream {
 public:
  using entry_fn = std::function<void(stream_entry&&)>;
  /// A publish's outcome: the stream sequence it was stored at, or nullopt and why not.
  using ack_fn = std::function<void(std::optional<std::uint64_t> seq, std::string const& error)>;
  using link_fn = std::function<void(bool connected)>;
  using core_fn = std::function<void(std::string&& payload)>;

  nats_stream(boost::asio::io_context& ioc, nats_settings settings);
  ~nats_stream();
  nats_stream(nats_stream const&) = delete;
  nats_stream& operator=(nats_stream const&) = delete;

  /// Connects and makes sure the stream exists (creates it with `replicas` if missing).
  /// Blocking (NATS round trips): call it before the io_context runs, or on another thread.
  /// Retries until `open_timeout`. Returns the stream's last sequence as it stands now (what a
  /// starting node must have applied before it accepts clients). Throws std::runtime_error
  /// with a plain text.
  std::uint64_t open();

  /// Starts the ordered consumer: every entry with seq > `after`, in stream order, each
  /// delivered once (the consumer's restarts after a lost server are hidden). The consumer
  /// follows the stream across reconnects by itself.
  void consume(std::uint64_t after, entry_fn on_entry);

  /// Publishes `payload` with header Nats-Msg-Id `msg_id`. Never blocks. `done` runs once:
  /// with the sequence once the stream acknowledged it (stored on a quorum of its replicas),
  /// or with nullopt when `publish_deadline` passed without (retried meanwhile, also across
  /// a reconnect), or once the node has been without NATS for `unreachable_after`
  /// (also for a publish already waiting); never before `expiry_margin` after the last
  /// attempt's `Jim-Expires`. A failed publish may still have been stored (a lost
  /// acknowledgement): the consumer then delivers it, as `expired` if it was stored too late
  /// to count. `done` never runs inside publish() (it is posted).
  void publish(std::string const& msg_id, std::string const& payload, ack_fn done);

  /// A message id no other process uses: `<node>.<instance>.<n>`, n counting from 1.
  std::string next_msg_id();

  /// Core NATS (not stored, at most once) on `<stream>.<suffix>`: for presence heartbeats.
  void publish_core(std::string const& suffix, std::string const& payload);
  void subscribe_core(std::string const& suffix, core_fn on_message);

  /// Told (on the I/O thread) when the connection to NATS is lost and when it is back.
  void on_link(link_fn fn) { on_link_ = std::move(fn); }
  bool connected() const { return connected_; }
  std::string const& node() const { return settings_.node; }
  /// This process's instance: 16 hex digits, random at start (in every Nats-Msg-Id; it also
  /// names this process's connections on the cluster-wide device lists).
  std::string const& instance() const { return instance_; }
  std::string const& stream() const { return settings_.stream; }

  /// Stops consuming, waits (bounded) for the publishes in flight, closes the connection.
  /// After it no callback runs.
  void close();

  struct core;  ///< what the NATS threads see (kept alive until they are done with it)

  // Called on the I/O thread by what the NATS threads post.
  void deliver(stream_entry&& e);
  void acked(std::string const& msg_id, std::optional<std::uint64_t> seq, std::string error);
  void link(bool up);

 private:
  struct pending_publish;
  void send(std::shared_ptr<pending_publish> const& p);
  void retry_later(std::shared_ptr<pending_publish> const& p, std::string error);
  /// True once the node has been without NATS for `unreachable_after`.
  bool unreachable() const;
  void fail(std::shared_ptr<pending_publish> const& p, std::string const& error);

  boost::asio::io_context& ioc_;
  nats_settings settings_;
  std::shared_ptr<core> core_;
  std::string instance_;
  std::uint64_t counter_ = 0;
  bool connected_ = false;
  std::chrono::steady_clock::time_point down_since_{};  ///< when connected_ became false
  link_fn on_link_;
  entry_fn on_entry_;
  std::uint64_t delivered_ = 0;  ///< the last seq handed to on_entry_
  std::unordered_map<std::string, std::shared_ptr<pending_publish>> pending_;  ///< by msg id
};

}  // namespace jim::server::cluster
