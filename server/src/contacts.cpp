/// \file
/// The contact list of the JIM course protocol (`get_contacts`, `add_contact`, `del_contact`):
/// the hub's part, kept apart from hub.cpp. A contact list is persistent state: changed only
/// by the contact_added / contact_removed events (journaled, snapshotted, replicated).
#include "hub.hpp"

#include <algorithm>

namespace jim::server {

namespace json = boost::json;
using proto::code;
using proto::fold;

namespace {

/// Where `name` (any case) is in `list`, or its end.
std::vector<std::string>::const_iterator find_contact(std::vector<std::string> const& list,
                                                      std::string_view name) {
  const std::string key = fold(name);
  return std::find_if(list.begin(), list.end(),
                      [&key](std::string const& c) { return fold(c) == key; });
}

}  // namespace

apply_result hub::apply_one(store::contact_added const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  account const* other = find_account(e.contact);
  if (!other) return refuse(code::not_found, "no such account " + e.contact);
  if (other == r.acc) return refuse(code::bad_request, "you cannot be your own contact");
  auto& list = r.acc->contacts;
  if (find_contact(list, other->name) == list.end()) list.push_back(other->name);
  return r;
}

apply_result hub::apply_one(store::contact_removed const& e) {
  apply_result r;
  r.acc = find_account(e.account);
  if (!r.acc) return refuse(code::not_found, "no such account " + e.account);
  auto& list = r.acc->contacts;
  auto it = find_contact(list, e.contact);
  if (it == list.end()) return refuse(code::not_found, e.contact + " is not a contact");
  list.erase(it);
  return r;
}

outcome hub::contacts(account& a) const {
  outcome o{code::accepted, {}, json::object{{"quantity", a.contacts.size()}}, {}};
  o.then.reserve(a.contacts.size());
  for (auto const& c : a.contacts) o.then.push_back(proto::share(proto::encode_contact(c)));
  return o;
}

hub::checked<store::event> hub::check_contact(account& a, proto::contact_req const& req) {
  if (req.remove) {
    auto it = find_contact(a.contacts, req.user_id);
    if (it == a.contacts.end()) return fail(code::not_found, req.user_id + " is not a contact");
    return store::event{store::contact_removed{a.name, *it}};
  }
  account* other = find_account(req.user_id);
  if (!other) return fail(code::not_found, "no such account " + req.user_id);
  if (other == &a) return fail(code::bad_request, "you cannot be your own contact");
  if (find_contact(a.contacts, other->name) != a.contacts.end())
    return outcome{code::ok, "already a contact", json::object{{"user_id", other->name}}, {}};
  return store::event{store::contact_added{a.name, other->name}};
}

outcome hub::contact_changed(store::event const& ev) const {
  if (auto const* added = std::get_if<store::contact_added>(&ev))
    return outcome{code::ok, {}, json::object{{"user_id", added->contact}}, {}};
  auto const& removed = std::get<store::contact_removed>(ev);
  return outcome{code::ok, {}, json::object{{"user_id", removed.contact}}, {}};
}

}  // namespace jim::server
