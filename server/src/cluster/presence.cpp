#include "cluster/presence.hpp"

#include "jim/protocol.hpp"
#include "logging.hpp"

#include <boost/json.hpp>

namespace jim::server::cluster {

namespace json = boost::json;
using clock = std::chrono::steady_clock;

namespace {
JIM_LOG_MODULE("cluster")
constexpr auto soon = std::chrono::milliseconds(100);
}  // namespace

presence::presence(boost::asio::io_context& ioc, nats_stream& stream, local_fn local,
                   std::chrono::milliseconds interval, std::chrono::milliseconds ttl)
    : ioc_(ioc), stream_(stream), local_(std::move(local)), interval_(interval), ttl_(ttl),
      timer_(ioc) {}

void presence::start() {
  stream_.subscribe_core("presence", [this](std::string&& p) { received(std::move(p)); });
  schedule(std::chrono::milliseconds(0));
}

void presence::stop() {
  stopped_ = true;
  timer_.cancel();
  json::object o{
      {"node", stream_.node()}, {"instance", stream_.instance()}, {"users", json::array()}};
  stream_.publish_core("presence", json::serialize(o));
}

void presence::touch() {
  if (stopped_ || soon_) return;
  soon_ = true;
  schedule(soon);
}

void presence::schedule(std::chrono::milliseconds after) {
  timer_.expires_after(after);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    beat();
  });
}

void presence::beat() {
  soon_ = false;
  json::array users;
  for (auto const& u : local_())
    users.emplace_back(
        json::object{{"account_name", u.name}, {"status", u.status}, {"room", u.room}});
  json::object o{
      {"node", stream_.node()}, {"instance", stream_.instance()}, {"users", std::move(users)}};
  stream_.publish_core("presence", json::serialize(o));
  // Expire the nodes that went quiet: their users are gone.
  const auto now = clock::now();
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (now - it->second.at > ttl_) {
      auto gone = std::move(it->second.users);
      it = nodes_.erase(it);
      diff(gone, {});
    } else {
      ++it;
    }
  }
  schedule(interval_);
  if (on_beat_) on_beat_();
}

void presence::received(std::string&& payload) {
  boost::system::error_code ec;
  auto v = json::parse(payload, ec);
  if (ec || !v.is_object()) return;
  auto const& o = v.get_object();
  auto const* node = o.if_contains("node");
  auto const* list = o.if_contains("users");
  if (!node || !node->is_string() || !list || !list->is_array()) return;
  const std::string name(node->get_string());
  if (name == stream_.node()) {
    const auto now = clock::now();
    auto const* from = o.if_contains("instance");
    if (from && from->is_string() && from->get_string() != stream_.instance()) {
      // Another live process under this node's name: each takes the other's devices for
      // those of a dead instance of itself, over and over (docs/CLUSTER.md: names are unique).
      if (twin_logged_ == clock::time_point{} || now - twin_logged_ > std::chrono::minutes(1)) {
        twin_logged_ = now;
        JIM_LOG(err,
                "another jimd (instance {}) runs under this node's name {} on this cluster: "
                "--node-name must be unique, or device counts and presence go wrong",
                std::string(from->get_string()), name);
      }
      return;
    }
    // Our own heartbeat back: this node hears the others (see alive()). A gap of more than
    // two intervals (cut off from NATS) starts the count again.
    if (echo_at_ == clock::time_point{} || now - echo_at_ > 2 * interval_) echo_since_ = now;
    echo_at_ = now;
    return;
  }
  entry e;
  e.at = clock::now();
  auto const* instance = o.if_contains("instance");
  heard_[name] = heard{e.at, instance && instance->is_string() ? std::string(instance->get_string())
                                                               : std::string()};
  for (auto const& u : list->get_array()) {
    if (!u.is_object()) continue;
    auto const& uo = u.get_object();
    auto str = [&](char const* k) {
      auto const* f = uo.if_contains(k);
      return f && f->is_string() ? std::string(f->get_string()) : std::string();
    };
    e.users.push_back(remote_user{str("account_name"), str("status"), str("room")});
  }
  std::vector<remote_user> before;
  if (auto it = nodes_.find(name); it != nodes_.end()) {
    before = std::move(it->second.users);
    nodes_.erase(it);
  }
  diff(before, e.users);
  if (!e.users.empty()) nodes_[name] = std::move(e);
}

void presence::diff(std::vector<remote_user> const& before, std::vector<remote_user> const& after) {
  if (!on_moved_) return;
  std::map<std::string, std::string> was;  // folded name -> room
  for (auto const& u : before) was[proto::fold(u.name)] = u.room;
  for (auto const& u : after) {
    auto it = was.find(proto::fold(u.name));
    if (it == was.end()) {
      on_moved_(u.name, {}, u.room);
    } else {
      if (it->second != u.room) on_moved_(u.name, it->second, u.room);
      was.erase(it);
    }
  }
  for (auto const& u : before)
    if (was.count(proto::fold(u.name))) on_moved_(u.name, u.room, {});
}

std::vector<remote_user> presence::users() const {
  // A node that went quiet is dropped by beat() (not filtered here): the moment its users go
  // is the heartbeat whose sweep also proposes its devices' `gone` (hub::sweep_devices).
  std::vector<remote_user> all;
  for (auto const& [name, e] : nodes_) all.insert(all.end(), e.users.begin(), e.users.end());
  return all;
}

bool presence::alive(std::string const& node, std::string const& instance) const {
  if (node == stream_.node() && instance == stream_.instance()) return true;
  const auto now = clock::now();
  // Only a node that has heard its own heartbeats without a gap for longer than the TTL can
  // tell that another one went quiet: else it may be this node that was cut off (or has just
  // started), and the others' heartbeats may simply not have reached it.
  if (echo_at_ == clock::time_point{} || now - echo_at_ > 2 * interval_ ||
      now - echo_since_ <= ttl_)
    return true;
  auto it = heard_.find(node);
  return it != heard_.end() && it->second.instance == instance && now - it->second.at <= ttl_;
}

bool presence::online(std::string const& folded_name) const {
  for (auto const& [name, e] : nodes_) {  // (dropped by beat(), as in users())
    for (auto const& u : e.users)
      if (proto::fold(u.name) == folded_name) return true;
  }
  return false;
}

}  // namespace jim::server::cluster
