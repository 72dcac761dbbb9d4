// The hub's edits and moderation (contract: "Edits, schedules, moderation, contacts"): edit and
// delete of messages, reports and mutes, room kick/ban/unban, server-wide bans by admins. The
// checks run on the proposing node; apply_one() validates again (the actor may have lost the
// right meanwhile) and changes the state; the live parts push and move connections.

#include "hub.hpp"
#include "logging.hpp"

#include <algorithm>
#include <unordered_set>

namespace jim::server {

namespace json = boost::json;
using proto::code;
using proto::fold;

namespace {

JIM_LOG_MODULE("moderation")

proto::chat_message* find_in(std::deque<proto::chat_message>& h, std::uint64_t id) {
  auto it =
      std::lower_bound(h.begin(), h.end(), id,
                       [](proto::chat_message const& m, std::uint64_t x) { return m.id < x; });
  return it != h.end() && it->id == id ? &*it : nullptr;
}

}  // namespace

proto::chat_message* hub::locate(std::uint64_t id, room** in) {
  *in = nullptr;
  if (id == 0 || id > last_id_) return nullptr;
  for (auto& [key, r] : rooms_)
    if (auto* m = find_in(r->history, id)) {
      *in = r.get();
      return m;
    }
  for (auto& [key, c] : conversations_)
    if (auto* m = find_in(c, id)) return m;
  return nullptr;
}

bool hub::is_admin(account const& a) const {
  const auto key = fold(a.name);
  return std::find(lim_.admins.begin(), lim_.admins.end(), key) != lim_.admins.end();
}

std::optional<outcome> hub::muted(account const& a, std::int64_t now) const {
  if (a.muted_until <= now) return std::nullopt;
  outcome o = fail(code::forbidden, "you are muted (reported by other users)");
  o.fields.emplace("until", a.muted_until);
  return o;
}

// ---------------------------------------------------------------------------------------------
// edit and delete

hub::checked<store::message_edited> hub::check_edit(account& a, proto::edit_req const& req) {
  room* in = nullptr;
  proto::chat_message* m = locate(req.id, &in);
  if (!m || m->deleted) return fail(code::not_found, "no message " + std::to_string(req.id));
  if (m->from != a.name) return fail(code::forbidden, "only its author can edit a message");
  const auto now = proto::unix_now();
  if (auto o = muted(a, now)) return std::move(*o);  // a muted spammer cannot edit either
  return store::message_edited{req.id, a.name, req.message, now};
}

hub::checked<store::message_deleted> hub::check_delete(account& a, proto::delete_req const& req) {
  room* in = nullptr;
  proto::chat_message* m = locate(req.id, &in);
  if (!m || m->deleted) return fail(code::not_found, "no message " + std::to_string(req.id));
  const bool author = m->from == a.name;
  const bool owner = in && !in->owner.empty() && in->owner == fold(a.name);
  const bool admin = !author && !owner && is_admin(a);
  if (!author && !owner && !admin)
    return fail(code::forbidden,
                "only its author, the room's owner or an admin can delete a message");
  return store::message_deleted{req.id, a.name, admin};
}

apply_result hub::apply_one(store::message_edited const& e) {
  room* in = nullptr;
  proto::chat_message* m = locate(e.id, &in);
  if (!m || m->deleted) return refuse(code::not_found, "no message " + std::to_string(e.id));
  if (m->from != e.by) return refuse(code::forbidden, "only its author can edit a message");
  if (account const* by = find_account(e.by); by && by->muted_until > e.time)
    return refuse(code::forbidden, "you are muted (reported by other users)");
  m->message = e.message;
  m->edited = e.time;
  if (!in) {
    // Still queued for an offline recipient: it gets the text as it is now.
    if (account* to = find_account(m->to))
      for (auto& q : to->queued)
        if (q.id == e.id) q = *m;
  } else {
    in->recent_frames.clear();  // re-encoded by the next recent()
    in->recent_upto = 0;
  }
  apply_result r;
  r.rm = in;
  r.changed = *m;
  return r;
}

apply_result hub::apply_one(store::message_deleted const& e) {
  room* in = nullptr;
  proto::chat_message* m = locate(e.id, &in);
  if (!m || m->deleted) return refuse(code::not_found, "no message " + std::to_string(e.id));
  const bool owner = in && !in->owner.empty() && in->owner == fold(e.by);
  if (m->from != e.by && !owner && !e.admin)
    return refuse(code::forbidden,
                  "only its author, the room's owner or an admin can delete a message");
  m->deleted = true;
  m->message.clear();
  m->message.shrink_to_fit();
  m->edited = 0;
  if (!in) {
    // Not delivered yet: the recipient will never see it.
    if (account* to = find_account(m->to))
      std::erase_if(to->queued, [&e](proto::chat_message const& q) { return q.id == e.id; });
  } else {
    in->recent_frames.clear();
    in->recent_upto = 0;
  }
  apply_result r;
  r.rm = in;
  r.changed = *m;
  return r;
}

outcome hub::changed(peer const* by, account* actor, apply_result const& r, bool deleted) {
  auto const& m = *r.changed;
  auto frame = proto::share(deleted ? proto::encode_deleted(m.id)
                                    : proto::encode_edited(m.id, m.message, m.edited));
  std::unordered_set<peer const*> sent;
  auto send = [&](peer* p) {
    if (p && p != by && sent.insert(p).second) p->push(frame);
  };
  if (r.rm) {
    for (device* other : r.rm->present) send(other->p);
    for (auto const& w : r.rm->watchers) send(w.p);
  } else {
    for (auto const* name : {&m.from, &m.to})
      if (account* party = find_account(*name))
        for (peer* p : connections(*party)) send(p);
  }
  if (actor)
    for (peer* p : connections(*actor)) send(p);
  if (actor)
    JIM_LOG(info, "{} {} message {} ({})", actor->name, deleted ? "deleted" : "edited", m.id,
            r.rm ? r.rm->name : "private");
  return outcome{code::ok, {}, json::object{{"id", m.id}}, {}};
}

// ---------------------------------------------------------------------------------------------
// reports and mutes

hub::checked<store::user_reported> hub::check_report(account& a, proto::report_req const& req) {
  account* target = find_account(req.user);
  if (!target) return fail(code::not_found, "no such account " + req.user);
  if (target == &a) return fail(code::bad_request, "you cannot report yourself");
  return store::user_reported{target->name,
                              a.name,
                              req.reason,
                              proto::unix_now(),
                              lim_.report_threshold,
                              lim_.report_window.count(),
                              lim_.mute_duration.count()};
}

apply_result hub::apply_one(store::user_reported const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  account* by = find_account(e.by);
  if (!r.acc || !by) return refuse(code::not_found, "no such account " + e.account + " or " + e.by);
  if (r.acc == by) return refuse(code::bad_request, "you cannot report yourself");
  auto& list = r.acc->reports;
  // The event's time, not a clock: every replica forgets the same reports.
  std::erase_if(list, [&e](report_entry const& x) { return x.time <= e.time - e.window; });
  const std::string key = fold(by->name);
  auto it =
      std::find_if(list.begin(), list.end(), [&](report_entry const& x) { return x.by == key; });
  if (it != list.end())
    it->time = e.time;  // a second report by the same account counts once
  else
    list.push_back(report_entry{key, e.time});
  if (list.size() >= std::max<std::uint64_t>(e.threshold, 1)) {
    // Muted; the next mute needs as many new reports (Yandex: complaints -> ban).
    r.acc->muted_until = std::max(r.acc->muted_until, e.time + e.mute);
    r.muted_until = r.acc->muted_until;
    list.clear();
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// room owners: kick, ban, unban

hub::checked<store::room_moderated> hub::check_room_moderation(account& a,
                                                               proto::moderate_req const& req) {
  room* r = find_room(*req.room);
  if (!r) return fail(code::not_found, "no such room #" + *req.room);
  if (r->owner.empty() || r->owner != fold(a.name))
    return fail(code::forbidden, "only the owner of " + r->name + " can do that");
  account* target = find_account(req.user);
  if (!target) return fail(code::not_found, "no such account " + req.user);
  if (target == &a) return fail(code::bad_request, "you cannot do that to yourself");
  using kind = proto::moderate_req::kind;
  const char* action = req.what == kind::kick ? "kick" : req.what == kind::ban ? "ban" : "unban";
  return store::room_moderated{r->name, target->name, a.name, action};
}

apply_result hub::apply_one(store::room_moderated const& e) {
  apply_result r;
  r.rm = find_room(e.room);
  if (!r.rm) return refuse(code::not_found, "no such room " + e.room);
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  if (r.rm->owner.empty() || r.rm->owner != fold(e.by))
    return refuse(code::forbidden, "only the owner of " + r.rm->name + " can do that");
  const std::string key = fold(r.acc->name);
  if (key == r.rm->owner) return refuse(code::bad_request, "the owner cannot be banned");
  if (e.action == "ban") {
    r.rm->banned.insert(key);
    r.rm->members.erase(key);
    r.rm->since.erase(key);
    std::erase_if(r.acc->invitations,
                  [&](pending_invitation const& i) { return fold(i.room) == fold(r.rm->name); });
  } else if (e.action == "unban") {
    r.rm->banned.erase(key);
  }
  return r;
}

outcome hub::room_moderated(store::room_moderated const& ev) {
  room* r = find_room(ev.room);
  account* a = find_account(ev.account);
  if (r && a && ev.action != "unban") {
    if (ev.action == "ban") unwatch_room(*a, *r);
    // Each of the account's connections in the room moves to #general with a notice; its
    // other connections stay where they are (contract: "Devices").
    const std::string text = "you were " + std::string(ev.action == "ban" ? "banned" : "kicked") +
                             " from " + r->name + " by " + ev.by + "; you are in " +
                             general_->name;
    shared_frame notice;
    for (auto const& d : a->devices) {
      if (d->current != r) continue;
      exit_current(*d);
      enter(*d, *general_);
      if (!notice) notice = proto::share(proto::encode_notice(text));
      d->p->push(notice);
    }
  }
  JIM_LOG(info, "{} {} {} in {}", ev.by,
          ev.action == "kick"  ? "kicked"
          : ev.action == "ban" ? "banned"
                               : "unbanned",
          ev.account, ev.room);
  return outcome{code::ok, {}, json::object{{"room", ev.room}, {"user", ev.account}}, {}};
}

// ---------------------------------------------------------------------------------------------
// server admins: ban, unban

hub::checked<store::account_banned> hub::check_account_ban(account& a,
                                                           proto::moderate_req const& req) {
  if (!is_admin(a)) return fail(code::forbidden, "only a server admin can ban an account");
  account* target = find_account(req.user);
  if (!target) return fail(code::not_found, "no such account " + req.user);
  if (target == &a) return fail(code::bad_request, "you cannot ban yourself");
  const bool ban = req.what == proto::moderate_req::kind::ban;
  std::string reason = req.reason.empty() && ban ? "banned by an administrator" : req.reason;
  return store::account_banned{target->name, a.name, std::move(reason), ban};
}

apply_result hub::apply_one(store::account_banned const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  if (e.banned)
    r.acc->banned = e.reason;
  else
    r.acc->banned.reset();
  return r;
}

outcome hub::account_banned(store::account_banned const& ev) {
  account* a = find_account(ev.account);
  if (a && ev.banned) {
    auto notice = proto::share(proto::encode_notice("your account was banned: " + ev.reason));
    const auto live = connections(*a);
    const std::vector<peer*> conns(live.begin(), live.end());  // sign_out changes the list
    for (peer* p : conns) {
      sign_out(*p, *a);
      p->replaced(notice);  // queues the notice, then closes
    }
  }
  JIM_LOG(warn, "{} {} account {}{}", ev.by, ev.banned ? "banned" : "unbanned", ev.account,
          ev.banned ? " (" + ev.reason + ")" : std::string());
  return outcome{code::ok, {}, json::object{{"user", ev.account}, {"banned", ev.banned}}, {}};
}

}  // namespace jim::server
