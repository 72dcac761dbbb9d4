#pragma once
/// \file
/// Header-only helpers for the sign-in, chat and rooms integration tests, on top of harness.hpp.
/// Every wait is bounded by the harness; nothing here sleeps.

#include "harness.hpp"

#include <boost/json.hpp>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace jim::test {

/// Sends `frame` as one line and returns its reply (pushes met on the way are kept).
inline json::object ask(client& c, json::object const& frame) {
  c.send(frame);
  return c.reply();
}

/// `id` of a reply or a `msg` push.
inline std::uint64_t id_of(json::object const& o) {
  return o.at("id").to_number<std::uint64_t>();
}

/// The ids of a `history` reply's messages, in order.
inline std::vector<std::uint64_t> ids_of(json::object const& history_reply) {
  std::vector<std::uint64_t> out;
  for (auto const& m : history_reply.at("messages").as_array()) out.push_back(id_of(m.as_object()));
  return out;
}

/// A string field, or "" when absent or not a string (keeps CHECKs on one line).
inline std::string str(json::object const& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().get_string())
                                                  : std::string();
}

/// Round trip on a signed-in connection that changes nothing (`presence` without status).
/// The server handles one connection's frames in order, so once the reply is read every push
/// queued for `c` before that request has been read too (and kept for `push()`).
inline void barrier(client& c) {
  auto r = c.request(R"({"action":"presence"})");
  if (code_of(r) != 200) throw std::runtime_error("barrier: " + json::serialize(r));
}

/// True when no push was queued for the signed-in `c` so far: a barrier, then nothing kept.
/// Deterministic (no timing): anything queued before the barrier's reply was read with it.
inline bool no_push_pending(client& c) {
  barrier(c);
  return c.silent_for(0ms);
}

/// Sends `message` (to `to` when not empty) and returns the reply.
inline json::object say(client& c, std::string const& message, std::string const& to = {}) {
  json::object req{{"action", "msg"}, {"message", message}};
  if (!to.empty()) req["to"] = to;
  return ask(c, req);
}

/// Sends `n` room messages in one write ("prefix 0", "prefix 1", ...) and returns their ids;
/// every reply must be 200 (use a daemon with `--rate-limit 0` for more than the burst).
inline std::vector<std::uint64_t> post_many(client& c, std::size_t n,
                                            std::string const& prefix = "m") {
  std::string batch;
  for (std::size_t i = 0; i < n; ++i)
    batch += json::serialize(
                 json::object{{"action", "msg"}, {"message", prefix + " " + std::to_string(i)}}) +
             "\n";
  c.send_raw(batch);
  std::vector<std::uint64_t> ids;
  for (std::size_t i = 0; i < n; ++i) {
    auto r = c.reply();
    if (code_of(r) != 200) throw std::runtime_error("post_many: " + json::serialize(r));
    ids.push_back(id_of(r));
  }
  return ids;
}

/// Creates room `name` (reply checked 201) and returns its password.
inline std::string create_room(client& c, std::string const& name) {
  auto r = ask(c, json::object{{"action", "create"}, {"room", name}});
  if (code_of(r) != 201) throw std::runtime_error("create " + name + ": " + json::serialize(r));
  return str(r, "password");
}

/// Joins room `name`, with `password` when not empty, and returns the reply.
inline json::object join(client& c, std::string const& name, std::string const& password = {}) {
  json::object req{{"action", "join"}, {"room", name}};
  if (!password.empty()) req["password"] = password;
  return ask(c, req);
}

/// `owner` creates room `name` (201 checked), `member` joins it with its password (200
/// checked) and the `join` event that reaches `owner` is read (checked). Returns the password.
/// Throws std::runtime_error when a step fails.
inline std::string room_with_member(client& owner, client& member, std::string const& name) {
  const std::string password = create_room(owner, name);
  auto r = join(member, name, password);
  if (code_of(r) != 200) throw std::runtime_error("join " + name + ": " + json::serialize(r));
  auto e = owner.push();
  if (str(e, "event") != "join")
    throw std::runtime_error("join " + name + ": not a join event: " + json::serialize(e));
  return password;
}

/// The daemon options of the tests that read exact pushes: no rate limit, no history pushed at
/// sign-in or join (so the pushes a test reads are the ones it is about); `more` is appended.
inline std::vector<std::string> quiet_args(std::vector<std::string> const& more = {}) {
  std::vector<std::string> a{"--rate-limit", "0", "--history-on-join", "0"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

/// Registers each of `names`, in the order given, on a connection of its own (201 checked, as
/// sign_up) and returns the signed-in clients in that order, for structured bindings:
/// `auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");`.
template <class... Names>
std::array<client, sizeof...(Names)> sign_up_all(std::uint16_t port, Names const&... names) {
  return {sign_up(port, names)...};  // a braced list is evaluated left to right
}

/// Sends `quit` and waits until the server closed the connection (so the account is signed
/// out before the test goes on). Throws when either step fails.
inline void quit(client& c) {
  auto r = c.request(R"({"action":"quit"})");
  if (code_of(r) != 200) throw std::runtime_error("quit: " + json::serialize(r));
  if (!c.closed_within(5s)) throw std::runtime_error("quit: the connection stayed open");
}

/// The next `n` pushes.
inline std::vector<json::object> pushes(client& c, std::size_t n) {
  std::vector<json::object> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(c.push());
  return out;
}

/// `{"action":"authenticate","user":{"account_name":name,"password":pw}}`.
inline json::object authenticate_req(std::string const& name, std::string const& password = "pw") {
  return json::object{{"action", "authenticate"},
                      {"user", {{"account_name", name}, {"password", password}}}};
}

/// `{"action":"register","user":{"account_name":name,"password":pw}}`.
inline json::object register_req(std::string const& name, std::string const& password = "pw") {
  return json::object{{"action", "register"},
                      {"user", {{"account_name", name}, {"password", password}}}};
}

/// `{"action":"presence","user":{"account_name":name}}`.
inline json::object presence_req(std::string const& name) {
  return json::object{{"action", "presence"}, {"user", {{"account_name", name}}}};
}

/// Account names of a `users` reply, in the order given.
inline std::vector<std::string> user_names(json::object const& users_reply) {
  std::vector<std::string> out;
  for (auto const& u : users_reply.at("users").as_array())
    out.emplace_back(u.as_object().at("account_name").as_string());
  return out;
}

/// The entry for `room` ("#name") in a `rooms` reply; throws when absent.
inline json::object room_entry(json::object const& rooms_reply, std::string const& room) {
  for (auto const& r : rooms_reply.at("rooms").as_array())
    if (r.as_object().at("room").as_string() == room) return r.as_object();
  throw std::runtime_error("no " + room + " in " + json::serialize(rooms_reply));
}

}  // namespace jim::test
