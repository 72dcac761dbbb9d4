#include "hub.hpp"

#include "logging.hpp"

#include <algorithm>
#include <ctime>

namespace jim::server {

namespace json = boost::json;
using proto::code;
using proto::fold;

namespace {

JIM_LOG_MODULE("hub")

/// `alice (23:56): Hello, World!` on the server console (logger "chat").
void echo(proto::chat_message const& m, bool is_private) {
  auto log = spdlog::get("chat");
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
  if (find_account(name)) return nullptr;
  account& a = restore_account(std::string(name));
  a.password_hash = std::move(password_hash);
  a.general_seen = general_->posted;
  JIM_LOG(info, "account {} registered", a.name);
  return &a;
}

void hub::enter(account& a, room& r) {
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
  sign_in_result res;
  if (a.online != &p) res.replaced = take_over(a);
  a.online = &p;
  ++online_;
  enter(a, *general_);
  const std::uint64_t missed = general_->posted - std::min(a.general_seen, general_->posted);
  res.reply.status = status;
  res.reply.fields =
      json::object{{"room", general_->name}, {"missed", missed}, {"account_name", a.name}};
  res.reply.then = recent(*general_);
  for (auto const& m : a.queued) res.reply.then.push_back(proto::share(proto::encode_msg(m)));
  a.queued.clear();
  JIM_LOG(info, "{} signed in ({} online)", a.name, online_);
  return res;
}

void hub::sign_out(peer& p, account& a) {
  if (a.online != &p) return;
  exit_current(a);
  a.online = nullptr;
  a.general_seen = general_->posted;
  --online_;
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

outcome hub::post(account& from, proto::msg_req const& req, steady::time_point now) {
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

  proto::chat_message m{++last_id_, proto::unix_now(), from.name,
                        to_room ? to_room->name : to_user->name, req.message};
  std::uint64_t delivered = 0;
  code status = code::ok;
  auto frame = proto::share(proto::encode_msg(m));
  if (to_room) {
    ++to_room->posted;
    for (account* other : to_room->present)
      if (other != &from && other->online->push(frame)) ++delivered;
    append(to_room->history, m);
  } else {
    if (to_user == &from) {
      // To oneself: the sender's own push, after its reply (own output never drops it).
      ++delivered;
    } else if (to_user->online && to_user->online->push(frame)) {
      ++delivered;
    } else {
      // Offline, or its connection is ending and will never write the push (a goodbye, a
      // failed write): keep it for the next sign-in instead of acknowledging a lost delivery.
      to_user->queued.push_back(m);
      status = code::accepted;
    }
    append(conversations_[make_conversation_key(from.name, to_user->name)], m);
  }
  echo(m, to_user != nullptr);
  outcome o{status, {}, json::object{{"id", m.id}, {"delivered", delivered}}, {}};
  if (to_user == &from) o.then.push_back(std::move(frame));
  return o;
}

outcome hub::create_room(account& owner, std::string_view bare_name, std::string password_hash,
                         std::string const& password) {
  if (find_room(bare_name))
    return fail(code::conflict, "room #" + std::string(bare_name) + " already exists");
  std::string name = "#";  // not "#" + std::string(...): GCC 12 -O3 warns falsely there
  name += bare_name;
  room& r = restore_room(std::move(name));
  r.owner = fold(owner.name);
  r.password_hash = std::move(password_hash);
  r.members.insert(r.owner);
  exit_current(owner);
  enter(owner, r);
  JIM_LOG(info, "{} created room {}", owner.name, r.name);
  return outcome{code::created, {}, json::object{{"room", r.name}, {"password", password}}, {}};
}

outcome hub::join(account& a, std::string_view bare_name, bool password_ok) {
  room* r = find_room(bare_name);
  if (!r) return fail(code::not_found, no_room(bare_name));
  if (!is_member(a, *r)) {
    if (!password_ok) return fail(code::forbidden, "wrong password for " + r->name);
    r->members.insert(fold(a.name));
  }
  if (a.current != r) {
    exit_current(a);
    enter(a, *r);
  }
  return outcome{code::ok, {}, json::object{{"room", r->name}}, recent(*r)};
}

outcome hub::leave(account& a) {
  if (a.current != general_) {
    exit_current(a);
    enter(a, *general_);
  }
  return outcome{code::ok, {}, json::object{{"room", general_->name}}, {}};
}

outcome hub::invite(account& a, proto::invite_req const& req) {
  room* r = req.room ? find_room(*req.room) : a.current;
  if (!r) return fail(code::not_found, no_room(*req.room));
  if (r == general_ || r->owner != fold(a.name))
    return fail(code::forbidden, "only the owner of " + r->name + " can invite to it");
  account* guest = find_account(req.user);
  if (!guest) return fail(code::not_found, "no such account " + req.user);
  r->members.insert(fold(guest->name));
  if (guest->online) guest->online->push(proto::share(proto::encode_invite(a.name, r->name)));
  return outcome{code::ok, {}, json::object{{"room", r->name}, {"user", guest->name}}, {}};
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
  json::array list;
  list.reserve(sorted.size());
  for (room const* r : sorted) {
    json::value owner = nullptr;
    if (!r->owner.empty()) {
      auto it = accounts_.find(r->owner);
      owner = it == accounts_.end() ? json::value(r->owner) : json::value(it->second->name);
    }
    list.emplace_back(json::object{{"room", r->name},
                                   {"owner", std::move(owner)},
                                   {"online", r->present.size()},
                                   {"member", is_member(a, *r)}});
  }
  return outcome{code::ok, {}, json::object{{"rooms", std::move(list)}}, {}};
}

std::size_t hub::prune(std::int64_t unix_now) {
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
