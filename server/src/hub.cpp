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

outcome fail(code c, std::string text) {
  return outcome{c, std::move(text), {}, {}};
}

/// What apply() returns for an event it refuses (nothing changed).
apply_result refuse(code c, std::string text) {
  apply_result r;
  r.status = c;
  r.error = std::move(text);
  return r;
}

std::string no_room(std::string_view bare) {
  return "no such room #" + std::string(bare);
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
  log_->append(std::move(e), [this, then = std::move(then)](store::event const* stored) {
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
  if (r.rm != general_) r.rm->members.insert(fold(r.acc->name));
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
  return r;
}

apply_result hub::apply_one(store::signed_in const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  ++r.acc->connections;
  return r;
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

void hub::recover_connections() {
  for (auto& [key, a] : accounts_)
    if (std::exchange(a->connections, 0) > 0) a->general_seen = general_->posted;
}

// ---------------------------------------------------------------------------------------------
// the live part

void hub::enter(account& a, room& r) {
  touch_presence();
  if (&r != general_) {
    auto ev = proto::share(proto::encode_event("join", r.name, a.name));
    for (account* other : r.present) other->online->push(ev);
  }
  a.current = &r;
  a.slot = r.present.size();
  r.present.push_back(&a);
}

void hub::exit_current(account& a) {
  room* r = std::exchange(a.current, nullptr);
  if (!r) return;
  // Swap-remove keeps leaving O(1) in a big room.
  account* last = r->present.back();
  r->present[a.slot] = last;
  last->slot = a.slot;
  r->present.pop_back();
  if (r != general_) {
    auto ev = proto::share(proto::encode_event("leave", r->name, a.name));
    for (account* other : r->present) other->online->push(ev);
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

peer* hub::take_over(account& a) {
  peer* old = a.online;
  if (!old) return nullptr;
  sign_out(*old, a);
  old->replaced(proto::share(proto::encode_notice("signed in from another connection")));
  return old;
}

hub::sign_in_result hub::sign_in(peer& p, account& a, code status) {
  std::vector<proto::chat_message> delivered;
  if (!a.queued.empty())
    delivered = apply(store::queue_delivered{a.name, a.queued.back().id}).delivered;
  return attach(p, a, status, delivered);
}

hub::sign_in_result hub::attach(peer& p, account& a, code status,
                                std::vector<proto::chat_message> const& delivered) {
  sign_in_result res;
  if (a.online != &p) res.replaced = take_over(a);
  a.online = &p;
  a.in_log = false;
  a.flushed = 0;
  ++online_;
  enter(a, *general_);
  if (log_) {
    // Compared, never dereferenced: `p` may be gone by the time the event is applied.
    commit(store::signed_in{a.name}, [&a, conn = &p](apply_result const* r) {
      if (r && a.online == conn) a.in_log = true;
    });
  }
  const std::uint64_t missed = general_->posted - std::min(a.general_seen, general_->posted);
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
  JIM_LOG(info, "{} signed in ({} online)", a.name, online_);
  return res;
}

void hub::sign_out(peer& p, account& a) {
  if (a.online != &p) return;
  exit_current(a);
  a.online = nullptr;
  // Set now too: a sign-in right after this one must not wait for the event to count `missed`.
  a.general_seen = general_->posted;
  commit(store::general_seen{a.name, general_->posted}, {});
  --online_;
  touch_presence();
  JIM_LOG(info, "{} signed out ({} online)", a.name, online_);
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

hub::checked<store::message_posted> hub::check_post(account& from, proto::msg_req const& req,
                                                    steady::time_point now) {
  room* to_room = nullptr;
  account* to_user = nullptr;
  if (!req.to || req.to->is_room) {
    to_room = req.to ? find_room(req.to->name) : from.current;
    if (!to_room) return fail(code::not_found, no_room(req.to->name));
    if (to_room != from.current)
      return fail(code::forbidden, "you are not in " + to_room->name + " (join it first)");
  } else {
    to_user = find_account(req.to->name);
    if (!to_user) return fail(code::not_found, "no such account " + req.to->name);
    if (!to_user->online && to_user->queued.size() >= lim_.max_queued)
      return fail(code::unavailable, to_user->name + "'s offline queue is full");
  }
  if (auto wait = retry_after(from, now)) {
    outcome o = fail(code::rate_limited, "too many messages, slow down");
    o.fields.emplace("retry_after", std::max(*wait, 0.001));
    return o;
  }
  if (lim_.rate_limit > 0) from.tokens -= 1;
  store::message_posted ev{
      proto::chat_message{0, proto::unix_now(), from.name, to_room ? to_room->name : to_user->name,
                          req.message},
      to_user && to_user != &from && !to_user->online};
  return ev;
}

void hub::abandon_post(account& from) {
  if (lim_.rate_limit > 0) from.tokens = std::min(lim_.rate_burst, from.tokens + 1);
}

outcome hub::posted(account* from, store::message_posted const& ev,
                    std::optional<store::message_queued>& queue) {
  auto const& m = ev.m;
  std::uint64_t delivered = 0;
  code status = code::ok;
  auto frame = proto::share(proto::encode_msg(m));
  const bool to_self = !m.to.empty() && m.to.front() != '#' && fold(m.to) == fold(m.from);
  if (!m.to.empty() && m.to.front() == '#') {
    if (room* to_room = find_room(m.to))
      for (account* other : to_room->present)
        if (other != from && other->online->push(frame)) ++delivered;
  } else if (ev.queued) {
    account* to_user = find_account(m.to);
    if (to_user && to_user->online) {
      flush_queue(*to_user);  // signed in here while the message was being stored
      status = code::ok;
    } else {
      status = online_elsewhere(fold(m.to)) ? code::ok : code::accepted;
    }
  } else if (to_self) {
    ++delivered;  // the sender's own push, after its reply (own output never drops it)
  } else {
    account* to_user = find_account(m.to);
    if (to_user && to_user->online && to_user->online->push(frame)) {
      ++delivered;
    } else {
      // Its connection is ending (or ended meanwhile) and will never write the push: queue the
      // message for the next sign-in instead of acknowledging a lost delivery.
      queue = store::message_queued{m};
      status = code::accepted;
    }
  }
  ops::stats.posted(delivered);
  echo(m, m.to.empty() || m.to.front() != '#');
  outcome o{status, {}, json::object{{"id", m.id}, {"delivered", delivered}}, {}};
  if (to_self) o.then.push_back(std::move(frame));
  return o;
}

outcome hub::post(account& from, proto::msg_req const& req, steady::time_point now) {
  auto c = check_post(from, req, now);
  if (auto* refused = std::get_if<outcome>(&c)) return std::move(*refused);
  auto r = apply(std::get<store::message_posted>(c));
  if (!r.message) return fail(r.status, r.error);
  std::optional<store::message_queued> queue;
  outcome o = posted(&from, *r.message, queue);
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

outcome hub::created(account* owner, room& r, std::string const& password) {
  if (owner && owner->online) {
    exit_current(*owner);
    enter(*owner, r);
  }
  JIM_LOG(info, "{} created room {}", owner ? owner->name : r.owner, r.name);
  return outcome{code::created, {}, json::object{{"room", r.name}, {"password", password}}, {}};
}

outcome hub::create_room(account& owner, std::string_view bare_name, std::string password_hash,
                         std::string const& password) {
  if (auto refused = check_create(bare_name)) return std::move(*refused);
  std::string name = "#";  // not "#" + std::string(...): GCC 12 -O3 warns falsely there
  name += bare_name;
  auto r = apply(store::room_created{std::move(name), owner.name, std::move(password_hash)});
  if (!r.ok()) return fail(r.status, r.error);
  return created(&owner, *r.rm, password);
}

outcome hub::enter_room(account& a, room& r) {
  if (a.online && a.current != &r) {
    exit_current(a);
    enter(a, r);
  }
  return outcome{code::ok, {}, json::object{{"room", r.name}}, recent(r)};
}

outcome hub::join(account& a, std::string_view bare_name, bool password_ok) {
  room* r = find_room(bare_name);
  if (!r) return fail(code::not_found, no_room(bare_name));
  if (!is_member(a, *r)) {
    if (!password_ok) return fail(code::forbidden, "wrong password for " + r->name);
    apply(store::member_added{r->name, a.name});
  }
  return enter_room(a, *r);
}

outcome hub::leave(account& a) {
  if (a.current != general_) {
    exit_current(a);
    enter(a, *general_);
  }
  return outcome{code::ok, {}, json::object{{"room", general_->name}}, {}};
}

hub::checked<store::member_added> hub::check_invite(account& a, proto::invite_req const& req) {
  room* r = req.room ? find_room(*req.room) : a.current;
  if (!r) return fail(code::not_found, no_room(*req.room));
  if (r == general_)
    return fail(code::forbidden, "everyone is already a member of " + r->name);
  if (r->owner != fold(a.name))
    return fail(code::forbidden, "only the owner of " + r->name + " can invite to it");
  account* guest = find_account(req.user);
  if (!guest) return fail(code::not_found, "no such account " + req.user);
  return store::member_added{r->name, guest->name};
}

outcome hub::invited(account& a, store::member_added const& ev) {
  account* guest = find_account(ev.account);
  if (guest && guest->online)
    guest->online->push(proto::share(proto::encode_invite(a.name, ev.room)));
  return outcome{code::ok, {}, json::object{{"room", ev.room}, {"user", ev.account}}, {}};
}

outcome hub::invite(account& a, proto::invite_req const& req) {
  auto c = check_invite(a, req);
  if (auto* refused = std::get_if<outcome>(&c)) return std::move(*refused);
  auto& ev = std::get<store::member_added>(c);
  auto r = apply(ev);
  if (!r.ok()) return fail(r.status, r.error);
  return invited(a, ev);
}

outcome hub::history(account& a, proto::history_req const& req) {
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
    room* r = req.room ? find_room(*req.room) : a.current;
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

outcome hub::users(account& a, proto::users_req const& req) {
  room* r = req.room ? find_room(*req.room) : a.current;
  if (!r) return fail(code::not_found, no_room(*req.room));
  if (!is_member(a, *r)) return fail(code::forbidden, "you are not a member of " + r->name);
  json::array list;
  list.reserve(r->present.size());
  for (account const* u : r->present)
    list.emplace_back(json::object{{"account_name", u->name}, {"status", u->status}});
  if (presence_) {
    // Signed in on other nodes; an account listed here already (moving between nodes) once.
    std::unordered_set<std::string> listed;
    for (account const* u : r->present) listed.insert(fold(u->name));
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
    list.emplace_back(
        json::object{{"room", r->name},
                     {"owner", std::move(owner)},
                     {"online", r->present.size() + (other == elsewhere.end() ? 0 : other->second)},
                     {"member", is_member(a, *r)}});
  }
  return outcome{code::ok, {}, json::object{{"rooms", std::move(list)}}, {}};
}

void hub::flush_queue(account& a) {
  if (!a.online) return;
  std::uint64_t upto = 0;
  for (auto const& m : a.queued) {
    if (m.id <= a.flushed) continue;
    if (!a.online->push(proto::share(proto::encode_msg(m)))) break;  // stays queued
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
  if (r.message) {
    auto const& m = r.message->m;
    if (r.rm) {
      auto frame = proto::share(proto::encode_msg(m));
      for (account* other : r.rm->present) other->online->push(frame);
    } else if (r.message->queued && r.acc) {
      flush_queue(*r.acc);  // signed in here: pushed now, taken off the queue
    }
  } else if (std::holds_alternative<store::message_queued>(e)) {
    if (r.acc) flush_queue(*r.acc);
  } else if (std::holds_alternative<store::member_added>(e)) {
    // Only a room's owner invites; a member joining with the password does it on the node it
    // is connected to, which is not this one.
    if (r.acc && r.acc->online && r.rm && r.rm != general_) {
      auto owner = accounts_.find(r.rm->owner);
      r.acc->online->push(proto::share(proto::encode_invite(
          owner == accounts_.end() ? r.rm->owner : owner->second->name, r.rm->name)));
    }
  } else if (std::holds_alternative<store::signed_in>(e)) {
    // The same account signed in on another node after the connection here did: taken over.
    if (r.acc && r.acc->online && r.acc->in_log) take_over(*r.acc);
  }
}

void hub::remote_moved(std::string const& user, std::string const& from, std::string const& to) {
  if (account* a = find_account(user); a && a->online) return;
  auto tell = [&](std::string const& name, char const* what) {
    room* r = name.empty() ? nullptr : find_room(name);
    if (!r || r == general_ || r->present.empty()) return;
    auto ev = proto::share(proto::encode_event(what, r->name, user));
    for (account* other : r->present) other->online->push(ev);
  };
  tell(from, "leave");
  tell(to, "join");
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
