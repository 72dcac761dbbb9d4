#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace jim::test;

TEST_CASE("Guided registration asks for the password twice and signs in", "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  auto r = c.request(R"({"action":"presence","user":{"account_name":"alice","status":"here"}})");
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "register");
  r = c.request(R"({"action":"authenticate","user":{"password":"one"}})");
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "confirm");
  r = c.request(R"({"action":"authenticate","user":{"password":"two"}})");
  CHECK(code_of(r) == 400);
  r = c.request(R"({"action":"authenticate","user":{"password":"one"}})");
  CHECK(code_of(r) == 100);
  r = c.request(R"({"action":"authenticate","user":{"password":"one"}})");
  CHECK(code_of(r) == 201);
  CHECK(r.at("room") == "#general");
  CHECK(r.at("missed") == 0);
}

TEST_CASE("A wrong password gets 402 and the connection is closed", "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "bob", "right");
  client c(d.port());
  auto r = c.request(R"({"action":"presence","user":{"account_name":"BOB"}})");
  CHECK(r.at("auth") == "login");
  r = c.request(R"({"action":"authenticate","user":{"password":"wrong"}})");
  CHECK(code_of(r) == 402);
  CHECK(c.closed_within(5s));
}
