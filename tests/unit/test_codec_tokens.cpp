// The decoder for resume-token sign-ins and logout (issue 14).

#include "jim/codec.hpp"

#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

using namespace jim::proto;
namespace json = boost::json;

namespace {

decode_result decode_text(std::string_view text) {
  const json::value v = json::parse(text);
  REQUIRE(v.is_object());
  return decode(v.as_object(), limits{});
}

template <class T>
T body_ok(std::string_view text) {
  INFO(text);
  auto r = decode_text(text);
  if (auto const* e = std::get_if<decode_error>(&r))
    FAIL("unexpected error " << to_int(e->status) << ": " << e->message);
  auto& req = std::get<request>(r);
  REQUIRE(std::holds_alternative<T>(req.body));
  return std::get<T>(req.body);
}

std::string fails(std::string_view text) {
  INFO(text);
  auto r = decode_text(text);
  REQUIRE(std::holds_alternative<decode_error>(r));
  CHECK(std::get<decode_error>(r).status == code::bad_request);
  return std::get<decode_error>(r).message;
}

}  // namespace

TEST_CASE("authenticate takes a token instead of a password", "[codec][tokens]") {
  auto a = body_ok<authenticate_req>(
      R"({"action":"authenticate","user":{"account_name":"alice","token":"abc-_1"}})");
  CHECK(a.account_name == "alice");
  REQUIRE(a.token);
  CHECK(*a.token == "abc-_1");
  CHECK(a.password.empty());
  a = body_ok<authenticate_req>(R"({"action":"authenticate","user":{"token":"t"}})");
  CHECK_FALSE(a.account_name);
  a = body_ok<authenticate_req>(R"({"action":"authenticate","user":{"password":"pw"}})");
  CHECK_FALSE(a.token);
  CHECK(a.password == "pw");
  // A null token is no token (null fields count as absent).
  a = body_ok<authenticate_req>(
      R"({"action":"authenticate","user":{"password":"pw","token":null}})");
  CHECK_FALSE(a.token);

  CHECK(fails(R"({"action":"authenticate","user":{"password":"pw","token":"t"}})")
            .find("exclude each other") != std::string::npos);
  CHECK(fails(R"({"action":"authenticate","user":{"token":""}})").find("user.token") !=
        std::string::npos);
  CHECK(fails(R"({"action":"authenticate","user":{"token":7}})").find("user.token") !=
        std::string::npos);
  fails(R"({"action":"authenticate","user":{"token":")" + std::string(max_token + 1, 'a') +
        R"("}})");
  body_ok<authenticate_req>(R"({"action":"authenticate","user":{"token":")" +
                            std::string(max_token, 'a') + R"("}})");
  fails(R"({"action":"authenticate","user":{}})");  // neither
}

TEST_CASE("logout, with or without all", "[codec][tokens]") {
  CHECK_FALSE(body_ok<logout_req>(R"({"action":"logout"})").all);
  CHECK(body_ok<logout_req>(R"({"action":"logout","all":true})").all);
  CHECK_FALSE(body_ok<logout_req>(R"({"action":"logout","all":false})").all);
  CHECK(fails(R"({"action":"logout","all":"yes"})").find("\"all\"") != std::string::npos);
  CHECK(fails(R"({"action":"logout","all":1})").find("\"all\"") != std::string::npos);
}
