#pragma once
/// \file
/// Who is online on the other nodes: heartbeats on core NATS, not stored.
///
/// Every `interval` (and soon after a local change: touch()) each node publishes on
/// `<stream>.presence` one JSON object naming itself and its signed-in users:
/// ```
/// {"node":"n1","instance":"6f0c…e2","users":[{"account_name":"alice","status":"online","room":"#general"},...]}
/// ```
/// (`instance`: nats_stream::instance(), the process; a heartbeat without it, from an older
/// jimd, is read as instance "").
/// A node's entry is replaced by its next heartbeat and dropped `ttl` after the last one, so
/// the users of a node that died (or lost NATS) are shown offline within `ttl` + `interval`
/// (defaults 10 s + 2 s; the contract's bound is 30 s). A node that stops cleanly publishes an
/// empty list first. A node's own users are never in this table (its hub knows them).
///
/// Changes between two heartbeats of a node (a user signed in, moved to another room, signed
/// out, or the node went quiet) are reported to `on_moved`, so that the hub can push the
/// `join`/`leave` events of other nodes' users to its own connections (within a heartbeat:
/// ~100 ms after the change, or the node's expiry).
///
/// @par Thread Safety
/// I/O thread only.

#include "cluster/nats_stream.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace jim::server::cluster {

struct remote_user {
  std::string name;  ///< as registered
  std::string status;
  std::string room;  ///< "#name" of the room the connection is in
};

class presence {
 public:
  using local_fn = std::function<std::vector<remote_user>()>;
  /// `user` (signed in on another node) left room `from` and entered room `to`; either is
  /// empty when the user was not (is no longer) signed in there.
  using moved_fn =
      std::function<void(std::string const& user, std::string const& from, std::string const& to)>;

  presence(boost::asio::io_context& ioc, nats_stream& stream, local_fn local,
           std::chrono::milliseconds interval = std::chrono::seconds(2),
           std::chrono::milliseconds ttl = std::chrono::seconds(10));

  /// Subscribes and starts the heartbeats.
  void start();
  /// Publishes an empty list (this node's users go offline everywhere now) and stops.
  void stop();
  /// A local sign-in, sign-out or room change: the next heartbeat goes out within 100 ms.
  void touch();
  void on_moved(moved_fn fn) { on_moved_ = std::move(fn); }
  /// Called after each heartbeat this node publishes (every `interval`, and soon after a
  /// touch()): for the hub's device-list sweep (hub::sweep_devices).
  void on_beat(std::function<void()> fn) { on_beat_ = std::move(fn); }

  /// Whether process `instance` of node `node` may still be alive: its last heartbeat (with
  /// an empty user list too) is at most `ttl` old and no later heartbeat of `node` named
  /// another instance. Always true unless this node has heard its own heartbeats come back,
  /// without a gap of two intervals, for more than `ttl` (just started, or cut off from NATS:
  /// the others' heartbeats may not have reached it). This process itself: always.
  bool alive(std::string const& node, std::string const& instance) const;

  /// The users signed in on other nodes (a node is dropped by the first heartbeat of this node
  /// after its entry is `ttl` old: at most `ttl` + `interval`).
  std::vector<remote_user> users() const;
  /// True if `folded_name` is signed in on another node.
  bool online(std::string const& folded_name) const;

 private:
  void beat();
  void schedule(std::chrono::milliseconds after);
  void received(std::string&& payload);
  /// Reports the differences between a node's previous and new list of users.
  void diff(std::vector<remote_user> const& before, std::vector<remote_user> const& after);

  boost::asio::io_context& ioc_;
  nats_stream& stream_;
  local_fn local_;
  std::chrono::milliseconds interval_, ttl_;
  boost::asio::steady_timer timer_;
  bool soon_ = false;
  bool stopped_ = false;
  struct entry {
    std::chrono::steady_clock::time_point at;
    std::vector<remote_user> users;
  };
  std::map<std::string, entry> nodes_;  ///< by node name
  moved_fn on_moved_;
  std::function<void()> on_beat_;
  /// The last heartbeat of every node ever heard (empty lists too), by node name: when, and
  /// its instance. One entry per node name: bounded by the nodes of the cluster.
  struct heard {
    std::chrono::steady_clock::time_point at;
    std::string instance;
  };
  std::map<std::string, heard> heard_;
  /// This node's own heartbeats coming back: the last one, and the start of the run without a
  /// gap of more than two intervals.
  std::chrono::steady_clock::time_point echo_at_{}, echo_since_{};
  /// When a heartbeat under this node's name from another live process was last logged as
  /// an error (at most one a minute): node names must be unique in a cluster.
  std::chrono::steady_clock::time_point twin_logged_{};
};

}  // namespace jim::server::cluster
