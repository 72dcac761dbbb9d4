// Scheduled messages: the hub's checks, apply_one() for the schedule events and the live part
// of a posted one, and the timer (scheduler) that proposes them when due.

#include "schedule.hpp"

#include "hub.hpp"
#include "logging.hpp"

#include <algorithm>
#include <chrono>

namespace jim::server {

namespace json = boost::json;
using proto::code;
using proto::fold;

namespace {

JIM_LOG_MODULE("schedule")

/// A cluster node posts the schedules accepted on another node only once they are this late
/// (that node is down): apply() ignores the second schedule_due of one schedule.
constexpr std::int64_t takeover_after = 60;
/// Pending notices kept per account (the oldest go first).
constexpr std::size_t max_notices = 100;

}  // namespace

// ---------------------------------------------------------------------------------------------
// checks

hub::checked<store::message_scheduled> hub::check_schedule(device& d, proto::msg_req const& req,
                                                           std::int64_t now) {
  account& a = *d.acc;
  const std::int64_t at = *req.at;  // in the window: checked by proto::decode (400 before sign-in)
  std::string to;
  if (!req.to || req.to->is_room) {
    room* r = req.to ? find_room(req.to->name) : d.current;
    if (!r) return fail(code::not_found, "no such room #" + req.to->name);
    if (!is_member(a, *r)) return fail(code::forbidden, "you are not a member of " + r->name);
    to = r->name;
  } else {
    account* u = find_account(req.to->name);
    if (!u) return fail(code::not_found, "no such account " + req.to->name);
    to = u->name;
  }
  // Refused now, as a `msg` would be, rather than accepted and dropped when due.
  if (auto o = muted(a, now)) return std::move(*o);
  const auto pending = std::count_if(schedules_.begin(), schedules_.end(),
                                     [&](auto const& kv) { return kv.second.account == a.name; });
  if (static_cast<std::size_t>(pending) >= lim_.max_scheduled)
    return fail(code::forbidden, "too many scheduled messages (at most " +
                                     std::to_string(lim_.max_scheduled) + " pending)");
  return store::message_scheduled{a.name, std::move(to), req.message, at, node_};
}

outcome hub::scheduled_list(account& a) {
  std::vector<scheduled_message const*> mine;
  for (auto const& [id, s] : schedules_)
    if (s.account == a.name) mine.push_back(&s);
  std::stable_sort(mine.begin(), mine.end(), [](auto x, auto y) { return x->at < y->at; });
  json::array list;
  list.reserve(mine.size());
  for (auto const* s : mine)
    list.emplace_back(
        json::object{{"scheduled", s->id}, {"at", s->at}, {"to", s->to}, {"message", s->message}});
  return outcome{code::ok, {}, json::object{{"scheduled", std::move(list)}}, {}};
}

hub::checked<store::schedule_cancelled> hub::check_cancel(account& a,
                                                          proto::cancel_req const& req) {
  auto it = schedules_.find(req.scheduled);
  if (it == schedules_.end() || it->second.account != a.name)
    return fail(code::not_found, "no scheduled message " + std::to_string(req.scheduled));
  return store::schedule_cancelled{req.scheduled, a.name};
}

// ---------------------------------------------------------------------------------------------
// apply

void hub::schedules_changed() {
  if (schedule_hook_) schedule_hook_();
}

apply_result hub::apply_one(store::message_scheduled const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  const bool to_room = !e.to.empty() && e.to.front() == '#';
  if (to_room ? !find_room(e.to) : !find_account(e.to))
    return refuse(code::not_found, "no such recipient " + e.to);
  if (e.message.empty()) return refuse(code::bad_request, "empty scheduled message");
  const std::uint64_t id = ++last_schedule_;  // from the log's order, like message ids
  schedules_[id] = scheduled_message{id, r.acc->name, e.to, e.message, e.at, e.origin};
  r.scheduled = id;
  schedules_changed();
  return r;
}

apply_result hub::apply_one(store::schedule_cancelled const& e) {
  auto it = schedules_.find(e.scheduled);
  if (it == schedules_.end() || fold(it->second.account) != fold(e.account))
    return refuse(code::not_found, "no scheduled message " + std::to_string(e.scheduled));
  schedules_.erase(it);
  schedules_changed();
  apply_result r;
  r.scheduled = e.scheduled;
  return r;
}

apply_result hub::apply_one(store::schedule_due const& e) {
  auto it = schedules_.find(e.scheduled);
  if (it == schedules_.end())
    return refuse(code::conflict,
                  "scheduled message " + std::to_string(e.scheduled) + " is no longer pending");
  const scheduled_message s = std::move(it->second);
  schedules_.erase(it);
  schedules_changed();
  apply_result r;
  r.scheduled = s.id;
  account* author = find_account(s.account);
  if (!author) return r;  // accounts are never deleted; nothing to tell anyone
  // The rules as they stand at this position in the log (decided by the event's time).
  std::string why;
  const bool to_room = !s.to.empty() && s.to.front() == '#';
  if (author->muted_until > e.time) {
    why = "you are muted";
  } else if (author->banned) {
    why = "your account is banned";
  } else if (to_room) {
    room* rm = find_room(s.to);
    if (!rm)
      why = s.to + " no longer exists";
    else if (!is_member(*author, *rm))
      why = "you are no longer a member of " + rm->name;
  } else if (!find_account(s.to)) {
    why = "no such account " + s.to;
  }
  if (!why.empty()) {
    r.acc = author;
    r.notice = "your scheduled message " + std::to_string(s.id) + " to " + s.to +
               " was not posted: " + why;
    author->notices.push_back(r.notice);
    if (author->notices.size() > max_notices) {
      author->notices.erase(author->notices.begin());
      if (author->notices_pushed > 0) --author->notices_pushed;
    }
    return r;
  }
  store::message_posted posted{
      proto::chat_message{0, e.time, author->name, s.to, s.message, 0, false}, e.queued};
  apply_result p = apply_one(posted);
  p.scheduled = s.id;
  return p;
}

apply_result hub::apply_one(store::notices_delivered const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  auto& list = r.acc->notices;
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(e.count, list.size()));
  list.erase(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(n));
  r.acc->notices_pushed -= std::min(n, r.acc->notices_pushed);
  return r;
}

// ---------------------------------------------------------------------------------------------
// the live part

std::optional<std::int64_t> hub::next_due() const {
  std::optional<std::int64_t> next;
  for (auto const& [id, s] : schedules_) {
    if (due_in_flight_.count(id)) continue;
    std::int64_t at = s.at;
    if (!node_.empty() && s.origin != node_) at += takeover_after;
    if (!next || at < *next) next = at;
  }
  if (next) next = std::max(*next, due_retry_);
  return next;
}

void hub::post_due(std::int64_t now) {
  if (now < due_retry_) return;
  std::vector<scheduled_message const*> due;
  for (auto const& [id, s] : schedules_) {
    if (due_in_flight_.count(id)) continue;
    const bool mine = node_.empty() || s.origin == node_ || now >= s.at + takeover_after;
    if (mine && s.at <= now) due.push_back(&s);
  }
  std::stable_sort(due.begin(), due.end(), [](auto x, auto y) { return x->at < y->at; });
  for (auto const* s : due) {
    const std::uint64_t id = s->id;
    bool queued = false;
    if (s->to.empty() || s->to.front() != '#') {
      account* to = find_account(s->to);
      queued = to && fold(to->name) != fold(s->account) && !to->online();
    }
    due_in_flight_.insert(id);
    commit(store::schedule_due{id, now, queued}, [this, id](apply_result const* r) {
      due_in_flight_.erase(id);
      if (!r) {
        // Not stored (disk full, no quorum): tried again in a second.
        due_retry_ = proto::unix_now() + 1;
        JIM_LOG(warn, "scheduled message {} could not be stored; retrying", id);
        schedules_changed();
        return;
      }
      due_posted(*r);
    });
  }
}

std::vector<shared_frame> hub::take_notices(account& a) {
  std::vector<shared_frame> out;
  // The first notices_pushed were pushed by an earlier call whose notices_delivered is still
  // being stored (two schedules dropped in one batch): only the newer ones are pushed.
  if (a.notices_pushed >= a.notices.size()) return out;
  for (std::size_t i = a.notices_pushed; i < a.notices.size(); ++i)
    out.push_back(proto::share(proto::encode_notice(a.notices[i])));
  // The events apply in order: the earlier one takes off the first notices_pushed, this one
  // the ones after them.
  const std::size_t count = a.notices.size() - a.notices_pushed;
  a.notices_pushed = a.notices.size();
  std::string name = a.name;
  commit(store::notices_delivered{name, count}, [this, name](apply_result const* r) {
    // Not stored: they stay pending, and are pushed again at the next sign-in.
    if (!r)
      if (account* acc = find_account(name)) acc->notices_pushed = 0;
  });
  return out;
}

void hub::due_posted(apply_result const& r) {
  if (!r.ok()) return;  // a duplicate (another node posted it) or a refusal
  if (!r.notice.empty()) {
    JIM_LOG(info, "scheduled message {} of {} dropped: {}", r.scheduled,
            r.acc ? r.acc->name : std::string("?"), r.notice);
    if (r.acc && !connections(*r.acc).empty()) {
      auto frames = take_notices(*r.acc);
      for (peer* p : connections(*r.acc))
        for (auto const& f : frames) p->push(f);
    }
    return;
  }
  if (!r.message) return;
  auto const& m = r.message->m;
  JIM_LOG(info, "scheduled message {} posted as {} by {} to {}", r.scheduled, m.id, m.from, m.to);
  std::optional<store::message_queued> queue;
  // No sending connection: in a room everyone present gets it, the author's connections too;
  // a private one also reaches every connection of the author (posted() does that for the
  // sender's devices other than the sending one, and here there is none).
  posted(nullptr, *r.message, queue);
  if (queue) commit(std::move(*queue), {});
}

// ---------------------------------------------------------------------------------------------
// scheduler

scheduler::scheduler(boost::asio::io_context& ioc, hub& h) : timer_(ioc), hub_(h) {
  hub_.set_schedule_hook([this] {
    if (running_) arm();
  });
}

scheduler::~scheduler() {
  hub_.set_schedule_hook({});
}

void scheduler::start() {
  running_ = true;
  arm();
}

void scheduler::stop() {
  running_ = false;
  timer_.cancel();
}

void scheduler::arm() {
  auto next = hub_.next_due();
  if (!next) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(std::chrono::system_clock::time_point(std::chrono::seconds(*next)));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && running_) fire();
  });
}

void scheduler::fire() {
  // The timer may fire a little early by the whole second: post what is due by then.
  const auto now = proto::unix_now();
  hub_.post_due(now);
  arm();
}

}  // namespace jim::server
