// The JIM course contact list: get_contacts, add_contact, del_contact (contract: "Edits,
// schedules, moderation, contacts").
#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <string>
#include <vector>

using namespace jim::test;

namespace {

json::object add(client& c, std::string const& who) {
  return ask(c, json::object{{"action", "add_contact"}, {"user_id", who}});
}

json::object del(client& c, std::string const& who) {
  return ask(c, json::object{{"action", "del_contact"}, {"user_id", who}});
}

/// get_contacts: checks the 202 and its quantity, then returns the names of the pushes.
std::vector<std::string> contacts(client& c) {
  auto r = c.request(R"({"action":"get_contacts"})");
  if (code_of(r) != 202) throw std::runtime_error("get_contacts: " + json::serialize(r));
  std::vector<std::string> names;
  const auto n = r.at("quantity").to_number<std::size_t>();
  for (std::size_t i = 0; i < n; ++i) {
    auto p = c.push();
    if (str(p, "action") != "contact_list") throw std::runtime_error(json::serialize(p));
    names.push_back(str(p, "user_id"));
  }
  return names;
}

}  // namespace

TEST_CASE("Contacts: add, list in the order added, remove", "[integration][contacts]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  sign_up(d.port(), "Bob");
  sign_up(d.port(), "carol");
  CHECK(contacts(alice).empty());
  CHECK(no_push_pending(alice));

  auto r = add(alice, "carol");
  CHECK(code_of(r) == 200);
  CHECK(str(r, "user_id") == "carol");
  r = add(alice, "bob");  // any case; listed as registered
  CHECK(code_of(r) == 200);
  CHECK(str(r, "user_id") == "Bob");
  CHECK(contacts(alice) == std::vector<std::string>{"carol", "Bob"});

  // Already a contact: 200, and its place is unchanged.
  CHECK(code_of(add(alice, "CAROL")) == 200);
  CHECK(contacts(alice) == std::vector<std::string>{"carol", "Bob"});

  CHECK(code_of(del(alice, "carol")) == 200);
  CHECK(contacts(alice) == std::vector<std::string>{"Bob"});
  CHECK(code_of(add(alice, "carol")) == 200);  // added again: at the end
  CHECK(contacts(alice) == std::vector<std::string>{"Bob", "carol"});
  CHECK(no_push_pending(alice));
}

TEST_CASE("Contacts: every refusal", "[integration][contacts]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  sign_up(d.port(), "bob");
  CHECK(code_of(add(alice, "nobody")) == 404);
  CHECK(code_of(add(alice, "alice")) == 400);  // yourself
  CHECK(code_of(add(alice, "ALICE")) == 400);
  CHECK(code_of(add(alice, "not a name!")) == 400);
  CHECK(code_of(alice.request(R"({"action":"add_contact"})")) == 400);
  CHECK(code_of(alice.request(R"({"action":"add_contact","user_id":7})")) == 400);
  CHECK(code_of(del(alice, "bob")) == 404);  // not a contact
  CHECK(code_of(del(alice, "nobody")) == 404);
  CHECK(code_of(alice.request(R"({"action":"del_contact"})")) == 400);
  CHECK(contacts(alice).empty());

  client anonymous(d.port());
  CHECK(code_of(anonymous.request(R"({"action":"get_contacts"})")) == 401);
  CHECK(code_of(anonymous.request(R"({"action":"add_contact","user_id":"bob"})")) == 401);
  CHECK(code_of(anonymous.request(R"({"action":"del_contact","user_id":"bob"})")) == 401);
}

TEST_CASE("Contacts survive a crash (journal) and a restart (snapshot)", "[integration][contacts]") {
  temp_dir dir;
  const std::vector<std::string> args{"--autosave", "0"};
  {
    jimd_process d(args, dir.path());
    client alice = sign_up(d.port(), "alice");
    sign_up(d.port(), "bob");
    sign_up(d.port(), "carol");
    sign_up(d.port(), "dave");
    REQUIRE(code_of(add(alice, "dave")) == 200);
    REQUIRE(code_of(add(alice, "bob")) == 200);
    REQUIRE(code_of(add(alice, "carol")) == 200);
    REQUIRE(code_of(del(alice, "bob")) == 200);
    REQUIRE(d.stop(SIGKILL) == 128 + SIGKILL);  // nothing saved but the journal
  }
  {
    jimd_process d(args, dir.path());
    client alice = sign_in(d.port(), "alice");
    CHECK(contacts(alice) == std::vector<std::string>{"dave", "carol"});
    REQUIRE(d.stop(SIGINT) == 0);  // a snapshot
  }
  jimd_process d(args, dir.path());
  client alice = sign_in(d.port(), "alice");
  CHECK(contacts(alice) == std::vector<std::string>{"dave", "carol"});
  CHECK(code_of(add(alice, "bob")) == 200);
  CHECK(contacts(alice) == std::vector<std::string>{"dave", "carol", "bob"});
}
