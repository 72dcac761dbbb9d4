#include "jim/protocol.hpp"

#include <catch2/catch.hpp>

using namespace jim::proto;

TEST_CASE("Account names follow the contract's rule", "[names]") {
  CHECK(valid_account_name("alice"));
  CHECK(valid_account_name("A.b-c_9"));
  CHECK(valid_account_name(std::string(25, 'x')));
  CHECK_FALSE(valid_account_name(std::string(26, 'x')));
  CHECK_FALSE(valid_account_name(""));
  CHECK_FALSE(valid_account_name("al ice"));
  CHECK_FALSE(valid_account_name("#alice"));
  CHECK_FALSE(valid_account_name("ali\xc3\xa9"));
}

TEST_CASE("Room names follow the contract's rule", "[names]") {
  CHECK(valid_room_name("dev-ops_2"));
  CHECK(valid_room_name(std::string(32, 'r')));
  CHECK_FALSE(valid_room_name(std::string(33, 'r')));
  CHECK_FALSE(valid_room_name("a.b"));
  CHECK_FALSE(valid_room_name(""));
  CHECK(strip_hash("#dev") == "dev");
  CHECK(strip_hash("dev") == "dev");
  CHECK(fold("AlIcE.9") == "alice.9");
}
