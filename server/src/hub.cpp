#include "hub.hpp"

#include "cluster/presence.hpp"
#include "logging.hpp"
#include "ops/metrics.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <ctime>

namespace jim::server {

namespace json = boost::json;
using proto::code;
using proto::fold;

namespace {

JIM_LOG_MODULE("hub")

/// `alice (23:56): Hello, World!` on the server console and in the log, as --log-messages
/// allows (private texts only with `all`); the logging layer escapes the text.
void echo(proto::chat_message const& m, bool is_private) {
  auto* log = chat_log(is_private);
  if (!log || !log->should_log(spdlog::level::info)) return;
  std::time_t t = static_cast<std::time_t>(m.time);
  std::tm tm{};
  localtime_r(&t, &tm);
  if (is_private)
    log->info("{} -> {} ({:02}:{:02}): {}", m.from, m.to, tm.tm_hour, tm.tm_min, m.message);
  else if (m.to == proto::general_room)
    log->info("{} ({:02}:{:02}): {}", m.from, tm.tm_hour, tm.tm_min, m.message);
  else
    log->info("{} {} ({:02}:{:02}): {}", m.to, m.from, tm.tm_hour, tm.tm_min, m.message);
}

std::string no_room(std::string_view bare) {
  return "no such room #" + std::string(bare);
}

/// The entry of `a`'s cluster-wide device list whose id is `id`, or a.cluster_devices.end().
/// Ids (`"<instance>.<n>"`) are unique on the list.
std::vector<cluster_device>::iterator find_listed(account& a, std::string_view id) {
  return std::ranges::find(a.cluster_devices, id, &cluster_device::id);
}

/// Whether `id` is on `a`'s cluster-wide device list (a connection on some node).
bool listed(account const& a, std::string_view id) {
  return std::ranges::find(a.cluster_devices, id, &cluster_device::id) != a.cluster_devices.end();
}

/// `a`'s live connection on this node whose cluster-wide id is `id` (not empty: ids are unique),
/// or nullptr (on another node, or gone).
device* device_by_id(account const& a, std::string_view id) {
  for (auto const& d : a.devices)
    if (d->id == id) return d.get();
  return nullptr;
}

/// How many of `list`'s messages (by id, ascending) after id `since` are unread for `a`: the
/// others' messages (`from` is always the name as registered: an exact comparison finds one's
/// own) that are not deleted (a deleted message is nothing to read). For the unread counts of
/// rooms and private conversations (contract: "Watching, unread and presence").
std::uint64_t unread_after(std::deque<proto::chat_message> const& list, std::uint64_t since,
                           account const& a) {
  auto first =
      std::upper_bound(list.begin(), list.end(), since,
                       [](std::uint64_t id, proto::chat_message const& m) { return id < m.id; });
  return static_cast<std::uint64_t>(
      std::count_if(first, list.end(),
                    [&](proto::chat_message const& m) { return m.from != a.name && !m.deleted; }));
}


/// An account's read-marker key for a room (account::read): "#" and the folded bare name.
/// Built by appending: `"#" + fold(...)` makes GCC 12 at -O3 warn falsely
/// (-Wstringop-overflow on the inlined memcpy of operator+(char const*, std::string&&)).
std::string room_read_key(std::string_view room_name) {
  std::string key = "#";
  key += fold(proto::strip_hash(room_name));
  return key;
}
}  // namespace

conversation_key make_conversation_key(std::string_view a, std::string_view b) {
  auto fa = fold(a), fb = fold(b);
  if (fb < fa) std::swap(fa, fb);
  return {std::move(fa), std::move(fb)};
}

hub::hub(hub_limits lim) : lim_(lim) {
  general_ = &restore_room(std::string(proto::general_room));
}

account* hub::find_account(std::string_view name) {
  auto it = accounts_.find(fold(name));
  return it == accounts_.end() ? nullptr : it->second.get();
}

room* hub::find_room(std::string_view bare_name) {
  auto it = rooms_.find(fold(proto::strip_hash(bare_name)));
  return it == rooms_.end() ? nullptr : it->second.get();
}

bool hub::is_member(account const& a, room const& r) const {
  return &r == general_ || r.members.count(fold(a.name)) != 0;
}

account& hub::restore_account(std::string name) {
  auto& slot = accounts_[fold(name)];
  if (!slot) slot = std::make_unique<account>();
  slot->name = std::move(name);
  slot->tokens = lim_.rate_burst;
  return *slot;
}

room& hub::restore_room(std::string name) {
  auto& slot = rooms_[fold(proto::strip_hash(name))];
  if (!slot) slot = std::make_unique<room>();
  slot->name = std::move(name);
  return *slot;
}

std::deque<proto::chat_message>& hub::restore_conversation(conversation_key key) {
  return conversations_[std::move(key)];
}

account* hub::register_account(std::string_view name, std::string password_hash) {
  auto r = apply(store::account_registered{std::string(name), std::move(password_hash)});
  if (!r.ok()) return nullptr;
  JIM_LOG(info, "account {} registered", r.acc->name);
  return r.acc;
}

// ---------------------------------------------------------------------------------------------
// apply: the only code that changes persistent state

apply_result hub::apply(store::event const& e) {
  return std::visit([this](auto const& ev) { return apply_one(ev); }, e);
}

void hub::commit(store::event e, std::function<void(apply_result const*)> then) {
  if (!log_) {
    auto r = apply(e);
    if (then) then(&r);
    return;
  }
  const bool general = posts_to_general(e);
  if (general) {
    // The connections not written yet come first in the log: a replay then counts them as
    // signed in when this is posted (see unlogged_).
    log_sign_ins();
    ++general_posts_in_flight_;
  }
  log_->append(std::move(e), [this, general, then = std::move(then)](store::event const* stored) {
    if (general) --general_posts_in_flight_;
    if (!stored) {
      if (then) then(nullptr);
      return;
    }
    auto r = apply(*stored);
    if (r.status == code::internal_error) JIM_LOG(err, "applying a stored event: {}", r.error);
    if (then) then(&r);
  });
}

apply_result hub::apply_one(store::account_registered const& e) {
  apply_result r;
  if (!proto::valid_account_name(e.name))
    return refuse(code::bad_request, "invalid account name " + e.name);
  if (find_account(e.name)) return refuse(code::conflict, "account name " + e.name + " is taken");
  account& a = restore_account(e.name);
  a.password_hash = e.password_hash;
  a.general_seen = general_->posted;
  a.general_since = last_id_;
  r.acc = &a;
  return r;
}

apply_result hub::apply_one(store::room_created const& e) {
  apply_result r;
  auto bare = proto::strip_hash(e.room);
  if (e.room.empty() || e.room.front() != '#' || !proto::valid_room_name(bare))
    return refuse(code::bad_request, "invalid room name " + e.room);
  if (find_room(bare)) return refuse(code::conflict, "room " + e.room + " already exists");
  account* owner = find_account(e.owner);
  if (!owner) return refuse(code::not_found, "no such account " + e.owner);
  room& rm = restore_room(e.room);
  rm.owner = fold(owner->name);
  rm.password_hash = e.password_hash;
  rm.members.insert(rm.owner);
  rm.since[rm.owner] = last_id_;
  watch_new_member(*owner, rm);
  r.acc = owner;
  r.rm = &rm;
  return r;
}

apply_result hub::apply_one(store::member_added const& e) {
  apply_result r;
  r.rm = find_room(e.room);
  if (!r.rm) return refuse(code::not_found, no_room(proto::strip_hash(e.room)));
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  if (r.rm->banned.count(fold(r.acc->name)))
    return refuse(code::forbidden, r.acc->name + " is banned from " + r.rm->name);
  if (r.rm != general_ && r.rm->members.insert(fold(r.acc->name)).second) {
    r.rm->since[fold(r.acc->name)] = last_id_;
    watch_new_member(*r.acc, *r.rm);
  }
  return r;
}

apply_result hub::apply_one(store::message_posted const& e) {
  // The id comes from the log's order, not from the proposer (two cluster nodes propose at
  // once from the same last id): the same on every replica.
  store::message_posted stored = e;
  auto& m = stored.m;
  m.id = last_id_ + 1;
  apply_result r;
  if (!m.to.empty() && m.to.front() == '#') {
    room* to_room = find_room(m.to);
    if (!to_room) return refuse(code::internal_error, "no such room " + m.to);
    ++to_room->posted;
    append(to_room->history, m);
    r.rm = to_room;
  } else {
    account* to_user = find_account(m.to);
    if (!to_user || !find_account(m.from))
      return refuse(code::internal_error, "no such account " + m.to + " or " + m.from);
    if (e.queued) to_user->queued.push_back(m);
    append(conversations_[make_conversation_key(m.from, m.to)], m);
    r.acc = to_user;
  }
  last_id_ = m.id;
  r.message = std::move(stored);
  return r;
}

apply_result hub::apply_one(store::message_queued const& e) {
  apply_result r;
  r.acc = find_account(e.m.to);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.m.to);
  // Kept in id order: a later message may already have been queued.
  auto at = std::upper_bound(
      r.acc->queued.begin(), r.acc->queued.end(), e.m.id,
      [](std::uint64_t id, proto::chat_message const& m) { return id < m.id; });
  if (at != r.acc->queued.begin() && std::prev(at)->id == e.m.id) return r;  // queued already
  r.acc->queued.insert(at, e.m);
  return r;
}

apply_result hub::apply_one(store::queue_delivered const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  auto& q = r.acc->queued;
  auto end = std::partition_point(q.begin(), q.end(),
                                  [&](proto::chat_message const& m) { return m.id <= e.upto; });
  r.delivered.assign(std::make_move_iterator(q.begin()), std::make_move_iterator(end));
  q.erase(q.begin(), end);
  return r;
}

apply_result hub::apply_one(store::general_seen const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  r.acc->general_seen = e.general;
  if (r.acc->connections > 0) --r.acc->connections;
  if (!e.device.empty()) {
    auto it = find_listed(*r.acc, e.device);
    if (it != r.acc->cluster_devices.end()) drop_listed(*r.acc, it);  // else evicted or gone
  }
  return r;
}

apply_result hub::apply_one(store::signed_in const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  ++r.acc->connections;
  if (!e.device.empty()) {
    const std::uint64_t own_max = std::max<std::size_t>(1, lim_.max_sessions);
    if (session_limits_.differs_first_time(e.node, e.max, node_, own_max))
      JIM_LOG(warn,
              "node {} signs in with --max-sessions {}, this node ({}) has {}: each sign-in is "
              "limited by its own node's value (docs/CLUSTER.md); give every node the same",
              e.node, e.max, node_, own_max);
    if (listed(*r.acc, e.device)) return r;  // announced again (a retry): it keeps its place
    auto& list = r.acc->cluster_devices;
    list.push_back(cluster_device{e.device, e.node});
    ++device_instances_[{e.node, std::string(list.back().instance())}];
    // Beyond the proposer's --max-sessions the oldest go (contract: "Sign-in").
    while (list.size() > std::max<std::uint64_t>(1, e.max)) {
      r.evicted.push_back(list.front().id);
      drop_listed(*r.acc, list.begin());
    }
  }
  return r;
}

apply_result hub::apply_one(store::node_gone const& e) {
  apply_result r;
  auto it = device_instances_.find({e.node, e.instance});
  if (it == device_instances_.end()) return r;  // none listed (a second one, or never any)
  for (auto& [key, a] : accounts_) {
    auto& list = a->cluster_devices;
    for (auto d = list.begin(); d != list.end();)
      d = d->node == e.node && d->instance() == e.instance ? drop_listed(*a, d) : d + 1;
  }
  return r;
}

std::vector<cluster_device>::iterator hub::drop_listed(account& a,
                                                      std::vector<cluster_device>::iterator it) {
  auto count = device_instances_.find({it->node, std::string(it->instance())});
  if (count != device_instances_.end() && --count->second == 0) device_instances_.erase(count);
  return a.cluster_devices.erase(it);
}

void hub::restore_devices(account& a, std::vector<cluster_device> list) {
  while (!a.cluster_devices.empty()) drop_listed(a, a.cluster_devices.begin());
  a.cluster_devices = std::move(list);
  for (auto const& d : a.cluster_devices) ++device_instances_[{d.node, std::string(d.instance())}];
}

apply_result hub::apply_one(store::token_issued const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  if (e.hash.empty() || e.expires <= e.issued)
    return refuse(code::bad_request, "invalid token for " + e.account);
  auto& list = r.acc->resume_tokens;
  // The event's own time, not a clock: every replica forgets the same tokens.
  std::erase_if(list, [&e](resume_token const& t) { return t.expires <= e.issued; });
  while (list.size() >= max_resume_tokens) list.erase(list.begin());
  list.push_back(resume_token{e.hash, e.issued, e.expires});
  return r;
}

apply_result hub::apply_one(store::tokens_revoked const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  if (e.all)
    r.acc->resume_tokens.clear();
  else
    std::erase_if(r.acc->resume_tokens, [&e](resume_token const& t) { return t.hash == e.hash; });
  return r;
}

apply_result hub::apply_one(store::password_rehashed const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  if (e.hash.empty()) return refuse(code::bad_request, "empty password hash for " + e.account);
  // Changed meanwhile (by an earlier event): the newer hash stays.
  if (r.acc->password_hash != e.was)
    return refuse(code::conflict, "the password of " + e.account + " changed meanwhile");
  r.acc->password_hash = e.hash;
  return r;
}

resume_token const* hub::find_token(account const& a, std::string_view hash,
                                    std::int64_t now) const {
  resume_token const* found = nullptr;
  for (auto const& t : a.resume_tokens)
    if (t.hash.size() == hash.size() && CRYPTO_memcmp(t.hash.data(), hash.data(), hash.size()) == 0)
      found = &t;
  return found && found->expires > now ? found : nullptr;
}

std::optional<double> hub::sign_in_throttled(account const& a, steady::time_point now) const {
  // The failures still inside the window, oldest first.
  std::array<steady::time_point, max_failed_sign_ins> recent{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < max_failed_sign_ins; ++i) {
    auto const t = a.failed_at[(a.failed_next + i) % max_failed_sign_ins];
    if (t != steady::time_point{} && t + failed_sign_in_window > now) recent[n++] = t;
  }
  if (n + a.checking < max_failed_sign_ins) return std::nullopt;
  // Allowed again once enough of them have left the window: the (n + checking - 2)nd oldest
  // (1-based). Checks under way alone: they end within a hash's time.
  const std::size_t must_leave = n + a.checking - (max_failed_sign_ins - 1);
  if (must_leave > n) return 1.0;
  const auto at = recent[must_leave - 1] + failed_sign_in_window;
  return std::max(0.001, std::chrono::duration<double>(at - now).count());
}

static_assert(std::tuple_size_v<decltype(account::failed_at)> == hub::max_failed_sign_ins);

void hub::sign_in_failed(account& a, steady::time_point now) {
  a.failed_at[a.failed_next] = now;
  a.failed_next = static_cast<std::uint8_t>((a.failed_next + 1) % max_failed_sign_ins);
}

apply_result hub::apply_one(store::read_marked const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  std::string key;
  if (!e.room.empty()) {
    r.rm = find_room(e.room);
    if (!r.rm) return refuse(code::not_found, no_room(proto::strip_hash(e.room)));
    if (!is_member(*r.acc, *r.rm))
      return refuse(code::forbidden, "you are not a member of " + r.rm->name);
    key = room_read_key(r.rm->name);
  } else {
    account* other = find_account(e.with);
    if (!other) return refuse(code::not_found, "no such account " + e.with);
    key = fold(other->name);
  }
  auto& marker = r.acc->read[key];
  marker = std::max(marker, e.id);
  return r;
}

apply_result hub::apply_one(store::invitation_queued const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  r.rm = find_room(e.room);
  if (!r.rm) return refuse(code::not_found, no_room(proto::strip_hash(e.room)));
  auto& list = r.acc->invitations;
  // One per room: the invitations of a room owner to a room are not a growing queue.
  const bool known = std::any_of(list.begin(), list.end(), [&](pending_invitation const& i) {
    return fold(i.room) == fold(r.rm->name);
  });
  if (!known) list.push_back(pending_invitation{e.from, r.rm->name});
  return r;
}

apply_result hub::apply_one(store::invitations_delivered const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  auto& list = r.acc->invitations;
  list.erase(list.begin(),
             list.begin() + static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(e.count, list.size())));
  return r;
}

void hub::recover_connections() {
  for (auto& [key, a] : accounts_)
    if (std::exchange(a->connections, 0) > 0) a->general_seen = general_->posted;
}

// ---------------------------------------------------------------------------------------------
// the live part

namespace {

/// Whether another device of `d`'s account than `d` is in `r` (the account is listed once:
/// its `join` is told when its first device enters, its `leave` when its last one leaves).
bool other_device_in(device const& d, room const& r) {
  for (auto const& o : d.acc->devices)
    if (o.get() != &d && o->current == &r) return true;
  return false;
}

}  // namespace

void hub::enter(device& d, room& r) {
  touch_presence();
  if (&r != general_ && !other_device_in(d, r)) {
    auto ev = proto::share(proto::encode_event("join", r.name, d.acc->name));
    for (device* other : r.present) other->p->push(ev);
    if (!r.watchers.empty()) push_watchers(r, ev, d.p);
  }
  d.current = &r;
  d.slot = r.present.size();
  r.present.push_back(&d);
  if (&r == general_) general_changed();
}

void hub::exit_current(device& d) {
  room* r = std::exchange(d.current, nullptr);
  if (!r) return;
  // Swap-remove keeps leaving O(1) in a big room.
  device* last = r->present.back();
  r->present[d.slot] = last;
  last->slot = d.slot;
  r->present.pop_back();
  if (r == general_) {
    general_changed();
  } else if (!other_device_in(d, *r)) {
    auto ev = proto::share(proto::encode_event("leave", r->name, d.acc->name));
    for (device* other : r->present) other->p->push(ev);
    if (!r->watchers.empty()) push_watchers(*r, ev, d.p);
  }
}

std::vector<shared_frame> hub::recent(room const& r) const {
  // The cache holds the frames of consecutive messages ending at recent_upto: encode only the
  // messages posted since, then keep the last n.
  const std::size_t n = std::min(lim_.history_on_join, r.history.size());
  auto fresh = std::upper_bound(
      r.history.end() - static_cast<std::ptrdiff_t>(n), r.history.end(), r.recent_upto,
      [](std::uint64_t id, proto::chat_message const& m) { return id < m.id; });
  for (; fresh != r.history.end(); ++fresh) {
    r.recent_frames.push_back(proto::share(proto::encode_msg(*fresh, true)));
    r.recent_upto = fresh->id;
  }
  while (r.recent_frames.size() > n) r.recent_frames.pop_front();
  return {r.recent_frames.begin(), r.recent_frames.end()};
}

device* hub::find_device(account const& a, peer const& p) const {
  for (auto const& d : a.devices)
    if (d->p == &p) return d.get();
  return nullptr;
}

peer* hub::take_over(account& a, device* which) {
  if (a.devices.empty()) return nullptr;
  peer* old = which ? which->p : a.devices.front()->p;
  sign_out(*old, a);
  old->replaced(proto::share(proto::encode_notice("signed in from another connection")));
  return old;
}

hub::sign_in_result hub::sign_in(peer& p, account& a, code status) {
  std::vector<proto::chat_message> delivered;
  if (!a.queued.empty())
    delivered = apply(store::queue_delivered{a.name, a.queued.back().id}).delivered;
  auto res = attach(p, a, status, delivered);
  // Invitations made while offline follow the history and the queued messages.
  if (!a.invitations.empty()) {
    auto pending = a.invitations;
    apply(store::invitations_delivered{a.name, pending.size()});
    for (auto const& i : pending)
      res.reply.then.push_back(proto::share(proto::encode_invite(i.from, i.room)));
  }
  return res;
}

hub::sign_in_result hub::attach(peer& p, account& a, code status,
                                std::vector<proto::chat_message> const& delivered) {
  sign_in_result res;
  if (find_device(a, p)) sign_out(p, a);  // cannot happen: a connection signs in once
  while (at_session_limit(a)) res.replaced = take_over(a);
  // `missed` counts from the end of the account's last connection: 0 while another is live
  // (here, or on another node of a cluster).
  const bool other_live =
      !a.devices.empty() || (presence_ && online_elsewhere(fold(a.name)));  // fold: allocates
  if (a.devices.empty()) {
    a.flushed = 0;
    ++online_;
  }
  a.devices.push_back(std::make_unique<device>());
  device& d = *a.devices.back();
  d.p = &p;
  d.acc = &a;
  res.dev = &d;
  enter(d, *general_);
  if (log_ && !instance_.empty()) {
    // Cluster: the connection joins the account's cluster-wide device list.
    d.id = instance_ + "." + std::to_string(++device_counter_);
    announce(d);
  } else if (log_) {
    if (!presence_ && general_posts_in_flight_ == 0 && a.general_seen == general_->posted) {
      // Nothing for a replay to count from yet: written before the next post to #general, if
      // this connection lasts until then (see unlogged_).
      d.unlogged = unlogged_.size();
      unlogged_.push_back(&d);
    } else {
      log_sign_in(d);
    }
  }
  std::uint64_t missed =
      other_live ? 0 : general_->posted - std::min(a.general_seen, general_->posted);
  // The last `missed` posted are the newest of the history (those still kept): the deleted
  // ones among them were not missed.
  {
    auto const& h = general_->history;
    const auto kept = static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(missed, h.size()));
    missed -= static_cast<std::uint64_t>(std::count_if(
        h.end() - kept, h.end(), [](proto::chat_message const& m) { return m.deleted; }));
  }
  res.reply.status = status;
  res.reply.fields =
      json::object{{"room", general_->name}, {"missed", missed}, {"account_name", a.name}};
  res.reply.then = recent(*general_);
  for (auto const& m : delivered) res.reply.then.push_back(proto::share(proto::encode_msg(m)));
  // Queued while the sign-in was taking the queue over (another node's message, or a race
  // here): they follow too, and leave the queue by their own queue_delivered. (With nothing
  // delivered the queue was empty, or taking it over could not be stored: then it stays.)
  if (!delivered.empty() && !a.queued.empty()) {
    for (auto const& m : a.queued) res.reply.then.push_back(proto::share(proto::encode_msg(m)));
    a.flushed = a.queued.back().id;
    commit(store::queue_delivered{a.name, a.flushed}, {});
  }
  JIM_LOG(info, "{} signed in ({} connections; {} accounts online)", a.name, a.devices.size(),
          online_);
  return res;
}

void hub::sign_out(peer& p, account& a) {
  auto it = std::find_if(a.devices.begin(), a.devices.end(),
                         [&p](auto const& d) { return d->p == &p; });
  if (it == a.devices.end()) return;
  drop_watches(p);
  exit_current(**it);
  // Set now too: a sign-in right after this one must not wait for the event to count `missed`.
  // Every connection ends its signed_in with one; the last one's counts.
  a.general_seen = general_->posted;
  std::string id = std::move((*it)->id);
  const bool unlogged = (*it)->unlogged != device::npos;
  if (unlogged) forget_unlogged(**it);
  a.devices.erase(it);
  if (unlogged) {
    // Its signed_in was never written and #general has not moved since it was made: a
    // general_seen would set what the account had seen already.
  } else if (id.empty()) {
    commit(store::general_seen{a.name, general_->posted}, {});
  } else {
    propose_signed_out(a, general_->posted, id);  // cluster: off the device list
  }
  if (a.devices.empty()) --online_;
  touch_presence();
  JIM_LOG(info, "{} signed out ({} connections left; {} accounts online)", a.name,
          a.devices.size(), online_);
}

std::optional<double> hub::retry_after(account& a, steady::time_point now) const {
  if (lim_.rate_limit <= 0) return std::nullopt;
  const double elapsed = std::chrono::duration<double>(now - a.refilled).count();
  a.tokens = std::min(lim_.rate_burst, a.tokens + std::max(0.0, elapsed) * lim_.rate_limit);
  a.refilled = now;
  if (a.tokens >= 1) return std::nullopt;
  return (1 - a.tokens) / lim_.rate_limit;
}

void hub::append(std::deque<proto::chat_message>& h, proto::chat_message const& m) const {
  h.push_back(m);
  while (h.size() > lim_.history_limit) h.pop_front();
}

hub::checked<store::message_posted> hub::check_post(device& dev, proto::msg_req const& req,
                                                    steady::time_point now) {
  account& from = *dev.acc;
  room* to_room = nullptr;
  account* to_user = nullptr;
  if (!req.to || req.to->is_room) {
    to_room = req.to ? find_room(req.to->name) : dev.current;
    if (!to_room) return fail(code::not_found, no_room(req.to->name));
    if (to_room != dev.current)
      return fail(code::forbidden, "you are not in " + to_room->name + " (join it first)");
  } else {
    to_user = find_account(req.to->name);
    if (!to_user) return fail(code::not_found, "no such account " + req.to->name);
    if (!to_user->online() && to_user->queued.size() >= lim_.max_queued)
      return fail(code::unavailable, to_user->name + "'s offline queue is full");
  }
  if (auto m = muted(from, proto::unix_now())) return std::move(*m);
  if (auto wait = retry_after(from, now)) {
    outcome o = fail(code::rate_limited, "too many messages, slow down");
    o.fields.emplace("retry_after", std::max(*wait, 0.001));
    return o;
  }
  if (lim_.rate_limit > 0) from.tokens -= 1;
  store::message_posted ev{
      proto::chat_message{0, proto::unix_now(), from.name, to_room ? to_room->name : to_user->name,
                          req.message},
      to_user && to_user != &from && !to_user->online()};
  return ev;
}

void hub::abandon_post(account& from) {
  if (lim_.rate_limit > 0) from.tokens = std::min(lim_.rate_burst, from.tokens + 1);
}

outcome hub::posted(device* from, store::message_posted const& ev,
                    std::optional<store::message_queued>& queue) {
  auto const& m = ev.m;
  std::uint64_t delivered = 0;
  code status = code::ok;
  auto frame = proto::share(proto::encode_msg(m));
  const bool to_self = !m.to.empty() && m.to.front() != '#' && fold(m.to) == fold(m.from);
  peer const* sender = from ? from->p : nullptr;
  if (!m.to.empty() && m.to.front() == '#') {
    if (room* to_room = find_room(m.to)) {
      for (device* other : to_room->present)
        if (other != from && other->p->push(frame)) ++delivered;
      if (!to_room->watchers.empty()) delivered += push_watchers(*to_room, frame, sender);
    }
  } else if (ev.queued) {
    account* to_user = find_account(m.to);
    if (to_user && to_user->online()) {
      flush_queue(*to_user);  // signed in here while the message was being stored
      status = code::ok;
    } else {
      status = online_elsewhere(fold(m.to)) ? code::ok : code::accepted;
    }
  } else if (to_self) {
    ++delivered;  // the sender's own push, after its reply (own output never drops it)
  } else {
    account* to_user = find_account(m.to);
    std::uint64_t took = 0;
    if (to_user)
      for (auto const& d : to_user->devices)
        if (d->p->push(frame)) ++took;
    if (took > 0) {
      delivered += took;
    } else {
      // Its connection is ending (or ended meanwhile) and will never write the push: queue the
      // message for the next sign-in instead of acknowledging a lost delivery.
      queue = store::message_queued{m};
      status = code::accepted;
    }
  }
  if (!m.to.empty() && m.to.front() != '#') {
    // A private message also reaches the sender's other connections (contract: "Devices"), so
    // the conversation reads the same on each of them (not counted in `delivered`, which
    // counts the recipient's connections).
    if (account* author = find_account(m.from))
      for (auto const& d : author->devices)
        if (d->p != sender) d->p->push(frame);
  }
  ops::stats.posted(delivered);
  echo(m, m.to.empty() || m.to.front() != '#');
  outcome o{status, {}, json::object{{"id", m.id}, {"delivered", delivered}}, {}};
  if (to_self) o.then.push_back(std::move(frame));
  return o;
}

outcome hub::post(account& from, proto::msg_req const& req, steady::time_point now) {
  device* dev = newest(from);
  if (!dev) return fail(code::unauthorized, from.name + " is not signed in");
  auto c = check_post(*dev, req, now);
  if (auto* refused = std::get_if<outcome>(&c)) return std::move(*refused);
  auto r = apply(std::get<store::message_posted>(c));
  if (!r.message) return fail(r.status, r.error);
  std::optional<store::message_queued> queue;
  outcome o = posted(dev, *r.message, queue);
  if (queue) apply(*queue);
  return o;
}

std::optional<outcome> hub::check_create(std::string_view bare_name) {
  if (fold(bare_name) == fold(proto::strip_hash(proto::general_room)))
    return fail(code::conflict, std::string(proto::general_room) + " is built in");
  if (find_room(bare_name))
    return fail(code::conflict, "room #" + std::string(bare_name) + " already exists");
  return std::nullopt;
}

outcome hub::created(device* owner, room& r, std::string const& password) {
  if (owner) {
    exit_current(*owner);
    enter(*owner, r);
  }
  JIM_LOG(info, "{} created room {}", owner ? owner->acc->name : r.owner, r.name);
  return outcome{code::created, {}, json::object{{"room", r.name}, {"password", password}}, {}};
}

outcome hub::create_room(account& owner, std::string_view bare_name, std::string password_hash,
                         std::string const& password) {
  if (auto refused = check_create(bare_name)) return std::move(*refused);
  std::string name = "#";  // not "#" + std::string(...): GCC 12 -O3 warns falsely there
  name += bare_name;
  auto r = apply(store::room_created{std::move(name), owner.name, std::move(password_hash)});
  if (!r.ok()) return fail(r.status, r.error);
  return created(newest(owner), *r.rm, password);
}

outcome hub::enter_room(device& d, room& r) {
  if (d.current != &r) {
    exit_current(d);
    enter(d, r);
  }
  return outcome{code::ok, {}, json::object{{"room", r.name}}, recent(r)};
}

outcome hub::join(account& a, std::string_view bare_name, bool password_ok) {
  room* r = find_room(bare_name);
  if (!r) return fail(code::not_found, no_room(bare_name));
  if (r->banned.count(fold(a.name)))
    return fail(code::forbidden, "you are banned from " + r->name);
  if (!is_member(a, *r)) {
    if (!password_ok) return fail(code::forbidden, "wrong password for " + r->name);
    apply(store::member_added{r->name, a.name});
  }
  device* d = newest(a);
  if (!d) return outcome{code::ok, {}, json::object{{"room", r->name}}, recent(*r)};
  return enter_room(*d, *r);
}

outcome hub::leave(device& d) {
  if (d.current != general_) {
    exit_current(d);
    enter(d, *general_);
  }
  return outcome{code::ok, {}, json::object{{"room", general_->name}}, {}};
}

hub::checked<store::member_added> hub::check_invite(device& d, proto::invite_req const& req) {
  account& a = *d.acc;
  room* r = req.room ? find_room(*req.room) : d.current;
  if (!r) return fail(code::not_found, no_room(*req.room));
  if (r == general_)
    return fail(code::forbidden, "everyone is already a member of " + r->name);
  if (r->owner != fold(a.name))
    return fail(code::forbidden, "only the owner of " + r->name + " can invite to it");
  account* guest = find_account(req.user);
  if (!guest) return fail(code::not_found, "no such account " + req.user);
  if (r->banned.count(fold(guest->name)))
    return fail(code::forbidden, guest->name + " is banned from " + r->name + " (unban first)");
  return store::member_added{r->name, guest->name};
}

outcome hub::invited(account& a, store::member_added const& ev) {
  std::optional<store::invitation_queued> queue;
  outcome o = invited(a, ev, queue);
  if (queue) apply(*queue);
  return o;
}

outcome hub::invited(account& a, store::member_added const& ev,
                     std::optional<store::invitation_queued>& queue) {
  account* guest = find_account(ev.account);
  auto frame = proto::share(proto::encode_invite(a.name, ev.room));
  bool online = false;
  if (guest)
    for (peer* p : connections(*guest)) online = p->push(frame) || online;
  if (guest && !online) queue = store::invitation_queued{guest->name, a.name, ev.room};
  return outcome{
      code::ok,
      {},
      json::object{{"room", ev.room}, {"user", ev.account}, {"online", online}},
      {}};
}

outcome hub::invite(account& a, proto::invite_req const& req) {
  device* d = newest(a);
  if (!d) return fail(code::unauthorized, a.name + " is not signed in");
  auto c = check_invite(*d, req);
  if (auto* refused = std::get_if<outcome>(&c)) return std::move(*refused);
  auto& ev = std::get<store::member_added>(c);
  auto r = apply(ev);
  if (!r.ok()) return fail(r.status, r.error);
  return invited(a, ev);
}

outcome hub::history(device& d, proto::history_req const& req) {
  account& a = *d.acc;
  std::deque<proto::chat_message> const* h = nullptr;
  json::object fields;
  static const std::deque<proto::chat_message> empty;
  if (req.with) {
    account* other = find_account(*req.with);
    if (!other) return fail(code::not_found, "no such account " + *req.with);
    auto it = conversations_.find(make_conversation_key(a.name, other->name));
    h = it == conversations_.end() ? &empty : &it->second;
    fields.emplace("with", other->name);
  } else {
    room* r = req.room ? find_room(*req.room) : d.current;
    if (!r) return fail(code::not_found, no_room(*req.room));
    if (!is_member(a, *r)) return fail(code::forbidden, "you are not a member of " + r->name);
    h = &r->history;
    fields.emplace("room", r->name);
  }
  // Ids increase along the deque: find the end of the ids < before, take `limit` before it.
  auto end = h->end();
  if (req.before)
    end =
        std::lower_bound(h->begin(), h->end(), *req.before,
                         [](proto::chat_message const& m, std::uint64_t id) { return m.id < id; });
  const auto n = std::min<std::ptrdiff_t>(req.limit, end - h->begin());
  json::array messages;
  messages.reserve(static_cast<std::size_t>(n));
  for (auto it = end - n; it != end; ++it) messages.emplace_back(proto::msg_object(*it));
  fields.emplace("messages", std::move(messages));
  return outcome{code::ok, {}, std::move(fields), {}};
}

outcome hub::users(device& d, proto::users_req const& req) {
  account& a = *d.acc;
  if (req.everyone) return everyone();
  room* r = req.room ? find_room(*req.room) : d.current;
  if (!r) return fail(code::not_found, no_room(*req.room));
  if (!is_member(a, *r)) return fail(code::forbidden, "you are not a member of " + r->name);
  json::array list;
  list.reserve(r->present.size());
  // An account once, however many of its connections are in the room (in the order its
  // first one is found).
  std::unordered_set<account const*> seen;
  for (device const* u : r->present)
    if (u->acc->devices.size() == 1 || seen.insert(u->acc).second)
      list.emplace_back(json::object{{"account_name", u->acc->name}, {"status", u->acc->status}});
  if (presence_) {
    // Signed in on other nodes; an account listed here already (moving between nodes) once.
    std::unordered_set<std::string> listed;
    for (device const* u : r->present) listed.insert(fold(u->acc->name));
    for (auto const& u : presence_->users())
      if (u.room == r->name && listed.insert(fold(u.name)).second)
        list.emplace_back(json::object{{"account_name", u.name}, {"status", u.status}});
  }
  return outcome{code::ok, {}, json::object{{"room", r->name}, {"users", std::move(list)}}, {}};
}

outcome hub::rooms(account& a) {
  std::vector<room const*> sorted;
  sorted.reserve(rooms_.size());
  for (auto const& [key, r] : rooms_) sorted.push_back(r.get());
  std::sort(sorted.begin(), sorted.end(), [this](room const* x, room const* y) {
    if ((x == general_) != (y == general_)) return x == general_;
    return fold(x->name) < fold(y->name);
  });
  std::unordered_map<std::string, std::size_t> elsewhere;  ///< by room name: other nodes' users
  if (presence_)
    for (auto const& u : presence_->users()) ++elsewhere[u.room];
  json::array list;
  list.reserve(sorted.size());
  for (room const* r : sorted) {
    const auto other = elsewhere.find(r->name);
    json::value owner = nullptr;
    if (!r->owner.empty()) {
      auto it = accounts_.find(r->owner);
      owner = it == accounts_.end() ? json::value(r->owner) : json::value(it->second->name);
    }
    const bool member = is_member(a, *r);
    std::uint64_t last = 0;
    if (member) {
      auto it = a.read.find(room_read_key(r->name));
      if (it != a.read.end()) last = it->second;
    }
    list.emplace_back(
        json::object{{"room", r->name},
                     {"owner", std::move(owner)},
                     {"online", r->present.size() + (other == elsewhere.end() ? 0 : other->second)},
                     {"member", member},
                     {"last_read", last},
                     {"unread", member ? unread(a, *r) : 0}});
  }
  return outcome{code::ok, {}, json::object{{"rooms", std::move(list)}}, {}};
}

void hub::flush_queue(account& a) {
  if (!a.online()) return;
  std::uint64_t upto = 0;
  for (auto const& m : a.queued) {
    if (m.id <= a.flushed) continue;
    auto frame = proto::share(proto::encode_msg(m));
    bool took = false;
    for (auto const& d : a.devices) took = d->p->push(frame) || took;
    if (!took) break;  // stays queued
    upto = m.id;
  }
  if (upto == 0) return;
  a.flushed = upto;
  commit(store::queue_delivered{a.name, upto}, {});
}

bool hub::online_elsewhere(std::string const& folded_name) const {
  return presence_ && presence_->online(folded_name);
}

void hub::touch_presence() {
  if (presence_) presence_->touch();
}

void hub::remote(store::event const& e) {
  auto r = apply(e);
  if (!r.ok()) {
    // Refused alike on every node (a name an earlier entry took): nothing to do. Anything else
    // is a divergence the operator must hear about.
    if (r.status == code::internal_error) JIM_LOG(err, "applying a stream entry: {}", r.error);
    return;
  }
  if (std::holds_alternative<store::schedule_due>(e)) return due_posted(r);
  if (r.changed) {
    // Edited or deleted on another node: told to this node's readers and the actor's
    // connections here.
    std::string const* by = nullptr;
    if (auto* ed = std::get_if<store::message_edited>(&e)) by = &ed->by;
    if (auto* del = std::get_if<store::message_deleted>(&e)) by = &del->by;
    changed(nullptr, by ? find_account(*by) : nullptr, r,
            std::holds_alternative<store::message_deleted>(e));
    return;
  }
  if (auto* rm = std::get_if<store::room_moderated>(&e)) {
    room_moderated(*rm);
    return;
  }
  if (auto* ban = std::get_if<store::account_banned>(&e)) {
    account_banned(*ban);
    return;
  }
  if (r.message) {
    auto const& m = r.message->m;
    if (r.rm) {
      auto frame = proto::share(proto::encode_msg(m));
      for (device* other : r.rm->present) other->p->push(frame);
      push_watchers(*r.rm, frame, nullptr);
    } else {
      // Private: the sender's connections here (another device of the author), and the
      // recipient's: a queued message is pushed and taken off the queue, one that was not
      // queued (the recipient also had connections on the proposing node) is pushed.
      std::optional<shared_frame> frame;
      auto push_all = [&](account const& a) {
        if (a.devices.empty()) return;
        if (!frame) frame = proto::share(proto::encode_msg(m));
        for (auto const& d : a.devices) d->p->push(*frame);
      };
      account* author = find_account(m.from);
      if (author && author != r.acc) push_all(*author);
      if (r.acc && r.message->queued)
        flush_queue(*r.acc);  // signed in here: pushed now, taken off the queue
      else if (r.acc)
        push_all(*r.acc);
    }
  } else if (std::holds_alternative<store::message_queued>(e)) {
    if (r.acc) flush_queue(*r.acc);
  } else if (std::holds_alternative<store::member_added>(e)) {
    // Only a room's owner invites; a member joining with the password does it on the node it
    // is connected to, which is not this one.
    if (r.acc && r.acc->online() && r.rm && r.rm != general_) {
      auto owner = accounts_.find(r.rm->owner);
      auto frame = proto::share(proto::encode_invite(
          owner == accounts_.end() ? r.rm->owner : owner->second->name, r.rm->name));
      for (peer* p : connections(*r.acc)) p->push(frame);
    }
  } else if (auto* in = std::get_if<store::signed_in>(&e)) {
    if (!in->device.empty()) {
      // Beyond the proposer's --max-sessions cluster-wide: the oldest devices went off the
      // list; those that are connections here are taken over.
      if (r.acc) {
        devices_evicted(*r.acc, r.evicted);
        forget_if_gone(*r.acc, in->device);  // ours, stored after all, but signed out since
      }
    } else if (r.acc && lim_.max_sessions <= 1) {
      // From a node without device lists, with --max-sessions 1: the same account signed in on
      // another node after the connection here did: taken over.
      while (!r.acc->devices.empty() && r.acc->devices.front()->in_log) take_over(*r.acc);
    }
  } else if (auto* gone = std::get_if<store::node_gone>(&e)) {
    node_gone_applied(*gone);
  }
}

void hub::devices_evicted(account& a, std::vector<std::string> const& ids) {
  for (auto const& id : ids) {
    device* d = device_by_id(a, id);
    if (!d) continue;  // on another node, or gone already
    JIM_LOG(info, "{}: device {} is the oldest beyond --max-sessions cluster-wide, taken over",
            a.name, id);
    take_over(a, d);
  }
}

void hub::announce(device& d) {
  account& a = *d.acc;
  // Captured by value: `d` may be gone when the event is applied (compared, never used).
  commit(store::signed_in{a.name, d.id, node_, std::max<std::size_t>(1, lim_.max_sessions)},
         [this, &a, id = d.id](apply_result const* r) {
           if (!r) {
             // Not stored (NATS unreachable): sweep_devices tries again while it is connected.
             if (retry_in_.size() < max_retries) retry_in_.emplace_back(fold(a.name), id);
             return;
           }
           // (in_log: for an older node's signed_in)
           if (device* dev = device_by_id(a, id)) dev->in_log = true;
           devices_evicted(a, r->evicted);
           forget_if_gone(a, id);
         });
}

void hub::log_sign_in(device& d) {
  account& a = *d.acc;
  // Compared, never dereferenced: the connection may be gone by the time the event is applied.
  commit(store::signed_in{a.name}, [this, &a, conn = d.p](apply_result const* r) {
    if (!r) return;
    for (auto const& dev : a.devices)
      if (dev->p == conn) dev->in_log = true;
  });
}

void hub::log_sign_ins() {
  // commit() of a signed_in never comes back here (it posts nothing): the list holds still.
  for (device* d : unlogged_) {
    d->unlogged = device::npos;
    log_sign_in(*d);
  }
  unlogged_.clear();
}

void hub::forget_unlogged(device& d) {
  device* last = unlogged_.back();
  unlogged_[d.unlogged] = last;
  last->unlogged = d.unlogged;
  unlogged_.pop_back();
  d.unlogged = device::npos;
}

bool hub::posts_to_general(store::event const& e) {
  if (auto const* p = std::get_if<store::message_posted>(&e))
    return !p->m.to.empty() && p->m.to.front() == '#' && find_room(p->m.to) == general_;
  return std::holds_alternative<store::schedule_due>(e);  // its target is looked up at apply
}

void hub::forget_if_gone(account& a, std::string const& id) {
  if (instance_.empty() || !id.starts_with(instance_ + ".")) return;  // not this process's
  if (device_by_id(a, id)) return;  // still connected
  if (!listed(a, id)) return;        // not listed
  // Signed out before its signed_in was applied (its general_seen came first, or could not be
  // stored): off the list again.
  propose_signed_out(a, a.general_seen, id);
}

void hub::propose_signed_out(account& a, std::uint64_t seen, std::string const& id) {
  commit(store::general_seen{a.name, seen, id},
         [this, key = fold(a.name), id](apply_result const* r) {
           if (!r && retry_out_.size() < max_retries) retry_out_.emplace_back(key, id);
         });
}

void hub::node_gone_applied(store::node_gone const& e) {
  if (e.node != node_ || e.instance != instance_) return;
  // Taken for dead (this node lost NATS for the presence TTL, or a node could not hear it):
  // this process's connections are on no list now. They are announced again, at the end.
  JIM_LOG(warn, "the cluster took this node ({}) for gone: its connections are announced again",
          node_);
  for (auto& [key, a] : accounts_)
    for (auto& d : a->devices)
      if (!d->id.empty()) announce(*d);
}

void hub::sweep_devices() {
  if (!presence_ || instance_.empty()) return;
  // Announcements and sign-outs that could not be stored (each retried once per sweep; a
  // failure puts it back).
  for (auto& [key, id] : std::exchange(retry_in_, {})) {
    auto it = accounts_.find(key);
    if (it == accounts_.end()) continue;
    if (device* d = device_by_id(*it->second, id)) announce(*d);  // still connected here
  }
  for (auto& [key, id] : std::exchange(retry_out_, {}))
    if (auto it = accounts_.find(key); it != accounts_.end()) forget_if_gone(*it->second, id);
  // Process instances with devices listed that are gone: each taken off once (node_gone).
  std::vector<store::node_gone> gone;
  for (auto const& [which, count] : device_instances_) {
    auto const& [node, instance] = which;
    if (instance == instance_ || gone_in_flight_.count(instance)) continue;
    if (node == node_ || !presence_->alive(node, instance)) gone.push_back({node, instance});
  }
  for (auto& g : gone) {
    JIM_LOG(info, "node {} (instance {}) is gone: its devices are taken off the lists", g.node,
            g.instance);
    gone_in_flight_.insert(g.instance);
    std::string instance = g.instance;
    commit(std::move(g), [this, instance = std::move(instance)](apply_result const*) {
      gone_in_flight_.erase(instance);
    });
  }
}

void hub::remote_moved(std::string const& user, std::string const& from, std::string const& to) {
  if (account* a = find_account(user); a && a->online()) return;
  auto tell = [&](std::string const& name, char const* what) {
    room* r = name.empty() ? nullptr : find_room(name);
    if (!r || r == general_ || (r->present.empty() && r->watchers.empty())) return;
    auto ev = proto::share(proto::encode_event(what, r->name, user));
    for (device* other : r->present) other->p->push(ev);
    push_watchers(*r, ev, nullptr);
  };
  tell(from, "leave");
  tell(to, "join");
}

// ---------------------------------------------------------------------------------------------
// watching, unread and presence

void hub::add_watch(peer& p, watch_set& w, room& r) {
  if (w.rooms.count(&r)) return;
  w.rooms.emplace(&r, r.watchers.size());
  r.watchers.push_back(room::watcher{&p, w.dev});
}

void hub::drop_watch(peer& p, watch_set& w, room& r) {
  auto it = w.rooms.find(&r);
  if (it == w.rooms.end()) return;
  // Swap-remove keeps unwatching O(1) in a room many connections watch.
  const std::size_t slot = it->second;
  w.rooms.erase(it);
  room::watcher moved = r.watchers.back();
  r.watchers[slot] = moved;
  r.watchers.pop_back();
  if (moved.p != &p) watches_.at(moved.p).rooms.at(&r) = slot;
}

void hub::drop_watches(peer& p) {
  auto it = watches_.find(&p);
  if (it == watches_.end()) return;
  watch_set& w = it->second;
  while (!w.rooms.empty()) drop_watch(p, w, *w.rooms.begin()->first);
  watches_.erase(it);
}

void hub::watch_new_member(account& a, room& r) {
  for (peer* p : connections(a)) {
    auto it = watches_.find(p);
    if (it != watches_.end() && it->second.all) add_watch(*p, it->second, r);
  }
}

void hub::unwatch_room(account& a, room& r) {
  for (peer* p : connections(a)) {
    auto it = watches_.find(p);
    if (it != watches_.end()) drop_watch(*p, it->second, r);
  }
}

std::uint64_t hub::push_watchers(room const& r, shared_frame const& frame, peer const* skip) {
  std::uint64_t n = 0;
  for (auto const& w : r.watchers) {
    if (w.p == skip) continue;
    if (w.dev->current == &r) continue;  // in the room: has it already
    if (w.p->push(frame)) ++n;
  }
  return n;
}

void hub::general_changed() {
  if (general_->watchers.empty() || count_pending_) return;
  if (!arm_count_) return flush_counts();
  count_pending_ = true;
  // At most one count a second (issue 15: joins and leaves in a big main chat cost O(n^2)
  // pushes otherwise): the first change after a quiet second waits for nothing.
  const auto now = steady::now();
  const auto next = count_sent_ + std::chrono::seconds(1);
  arm_count_(next > now ? next - now : steady::duration::zero());
}

void hub::flush_counts() {
  count_pending_ = false;
  const std::uint64_t online = general_->present.size();
  if (online == count_last_ || general_->watchers.empty()) return;
  count_last_ = online;
  count_sent_ = steady::now();
  auto frame = proto::share(proto::encode_online(general_->name, online));
  for (auto const& w : general_->watchers) w.p->push(frame);
}

outcome hub::watch(peer& p, account& a, proto::watch_req const& req) {
  // Check every room first: a request that fails watches nothing.
  std::vector<room*> named;
  named.reserve(req.rooms.size());
  for (auto const& bare : req.rooms) {
    room* r = find_room(bare);
    if (!r) return fail(code::not_found, no_room(bare));
    if (!req.unwatch && !is_member(a, *r))
      return fail(code::forbidden, "you are not a member of " + r->name);
    named.push_back(r);
  }
  auto it = watches_.find(&p);
  if (req.unwatch) {
    if (it != watches_.end()) {
      if (req.all) it->second.all = false;
      auto& rooms = it->second.rooms;
      if (req.all) {
        while (!rooms.empty()) drop_watch(p, it->second, *rooms.begin()->first);
      } else {
        for (room* r : named) drop_watch(p, it->second, *r);
      }
      if (!it->second.all && rooms.empty()) {
        watches_.erase(it);
        it = watches_.end();
      }
    }
  } else {
    if (it == watches_.end()) {
      device* d = find_device(a, p);
      if (!d) return fail(code::unauthorized, "signed out");
      it = watches_.emplace(&p, watch_set{d, false, {}}).first;
    }
    watch_set& w = it->second;
    if (req.all) {
      w.all = true;
      for (auto& [key, r] : rooms_)
        if (is_member(a, *r)) add_watch(p, w, *r);
    }
    for (room* r : named) add_watch(p, w, *r);
  }
  std::vector<std::string const*> names;
  if (it != watches_.end())
    for (auto const& [r, slot] : it->second.rooms) names.push_back(&r->name);
  std::sort(names.begin(), names.end(),
            [](auto x, auto y) { return fold(*x) < fold(*y); });
  json::array list;
  list.reserve(names.size());
  for (auto const* n : names) list.emplace_back(*n);
  json::object fields{{"rooms", std::move(list)}};
  if (it != watches_.end() && it->second.all) fields.emplace("all", true);
  return outcome{code::ok, {}, std::move(fields), {}};
}

hub::checked<store::read_marked> hub::check_read(account& a, proto::read_req const& req) {
  // Ids above the newest message were never assigned: a marker there would hide every later
  // message for good (markers never move back), so it stops at the newest id.
  store::read_marked ev{a.name, {}, {}, std::min(req.id, last_id_)};
  if (req.room) {
    room* r = find_room(*req.room);
    if (!r) return fail(code::not_found, no_room(*req.room));
    if (!is_member(a, *r)) return fail(code::forbidden, "you are not a member of " + r->name);
    ev.room = r->name;
  } else {
    account* other = find_account(*req.with);
    if (!other) return fail(code::not_found, "no such account " + *req.with);
    ev.with = other->name;
  }
  return ev;
}

std::uint64_t hub::last_read(account const& a, store::read_marked const& ev) const {
  const std::string key =
      ev.room.empty() ? fold(ev.with) : room_read_key(ev.room);
  auto it = a.read.find(key);
  return it == a.read.end() ? 0 : it->second;
}

outcome hub::marked(peer const* by, account& a, store::read_marked const& ev,
                    std::uint64_t before) {
  const std::uint64_t now = last_read(a, ev);
  const bool is_room = !ev.room.empty();
  std::string_view name = is_room ? std::string_view(ev.room) : std::string_view(ev.with);
  if (now > before) {
    auto frame = proto::share(proto::encode_read(is_room, name, now));
    for (peer* p : connections(a))
      if (p != by) p->push(frame);
  }
  return outcome{code::ok,
                 {},
                 json::object{{is_room ? "room" : "with", name}, {"last_read", now}},
                 {}};
}

std::uint64_t hub::unread(account const& a, room const& r) const {
  std::uint64_t since = 0;
  if (&r == general_) {
    since = a.general_since;
  } else if (auto s = r.since.find(fold(a.name)); s != r.since.end()) {
    since = s->second;
  }
  if (auto it = a.read.find(room_read_key(r.name)); it != a.read.end())
    since = std::max(since, it->second);
  return unread_after(r.history, since, a);
}

outcome hub::conversations(account& a) {
  const std::string me = fold(a.name);
  struct entry {
    proto::chat_message const* last;
    std::string const* with;
    std::uint64_t unread;
  };
  std::vector<entry> list;
  for (auto const& [key, messages] : conversations_) {
    if ((key.first != me && key.second != me) || messages.empty()) continue;
    std::string const& other_key = key.first == me ? key.second : key.first;
    auto other = accounts_.find(other_key);
    if (other == accounts_.end()) continue;
    std::uint64_t upto = 0;
    if (auto it = a.read.find(other_key); it != a.read.end()) upto = it->second;
    list.push_back(entry{&messages.back(), &other->second->name, unread_after(messages, upto, a)});
  }
  std::sort(list.begin(), list.end(),
            [](entry const& x, entry const& y) { return x.last->id > y.last->id; });
  json::array out;
  out.reserve(list.size());
  for (auto const& e : list)
    out.emplace_back(json::object{
        {"with", *e.with}, {"last", proto::msg_object(*e.last)}, {"unread", e.unread}});
  return outcome{code::ok, {}, json::object{{"conversations", std::move(out)}}, {}};
}

outcome hub::everyone() {
  // By folded name: this node's signed-in accounts, then (cluster mode) other nodes' users
  // that are not also signed in here.
  std::map<std::string, std::pair<std::string const*, std::string const*>> online;
  for (auto const& [key, a] : accounts_)
    if (a->online()) online.emplace(key, std::pair{&a->name, &a->status});
  std::vector<cluster::remote_user> remote;
  if (presence_) remote = presence_->users();
  for (auto const& u : remote) online.emplace(fold(u.name), std::pair{&u.name, &u.status});
  json::array list;
  list.reserve(online.size());
  for (auto const& [key, u] : online)
    list.emplace_back(json::object{{"account_name", *u.first}, {"status", *u.second}});
  return outcome{code::ok, {}, json::object{{"room", "*"}, {"users", std::move(list)}}, {}};
}

outcome hub::set_status(peer& p, account& a, std::string const& status) {
  // Empty or over max_status_chars: refused by proto::decode (400 in every state).
  if (status == a.status) return outcome{};
  a.status = status;
  // The rooms where the account's connections are, and everyone in or watching them.
  std::vector<room const*> where;
  for (auto const& d : a.devices)
    if (d->current && std::find(where.begin(), where.end(), d->current) == where.end())
      where.push_back(d->current);
  auto frame = proto::share(proto::encode_status(a.name, status));
  std::unordered_set<peer const*> sent;  // a connection in one of them and watching another
  auto send = [&](peer* to) {
    if (to == &p || (where.size() > 1 && !sent.insert(to).second)) return;
    to->push(frame);
  };
  for (room const* r : where) {
    for (device* other : r->present) send(other->p);
    for (auto const& w : r->watchers)
      if (w.dev->current != r) send(w.p);
  }
  return outcome{};
}

std::size_t hub::prune(std::int64_t unix_now) {
  for (auto& [key, a] : accounts_)
    std::erase_if(a->resume_tokens,
                  [unix_now](resume_token const& t) { return t.expires <= unix_now; });
  if (lim_.message_ttl.count() <= 0) return 0;
  const std::int64_t oldest = unix_now - lim_.message_ttl.count();
  std::size_t dropped = 0;
  auto trim = [&](std::deque<proto::chat_message>& h) {
    while (!h.empty() && h.front().time < oldest) {
      h.pop_front();
      ++dropped;
    }
  };
  // recent_frames needs nothing: pruning only shortens a room's history from the front.
  for (auto& [key, r] : rooms_) trim(r->history);
  for (auto& [key, c] : conversations_) trim(c);
  for (auto& [key, a] : accounts_)
    dropped += std::erase_if(a->queued,
                             [oldest](proto::chat_message const& m) { return m.time < oldest; });
  return dropped;
}

}  // namespace jim::server
