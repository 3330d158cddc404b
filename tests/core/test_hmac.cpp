// HMAC-SHA256 against the RFC 4231 test vectors.
#include <catch2/catch.hpp>

#include <string>

#include "src/hmac.hpp"

using namespace cllm;

TEST_CASE("hmac-sha256: RFC 4231 test vectors", "[hmac]") {
  // Test case 1: key = 0x0b * 20, "Hi There".
  REQUIRE(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There") ==
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: key = "Jefe".
  REQUIRE(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block (131 bytes of 0xaa) is hashed first.
  REQUIRE(hmac_sha256_hex(std::string(131, '\xaa'),
                          "Test Using Larger Than Block-Size Key - Hash Key First") ==
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("constant-time comparison and random nonces", "[hmac]") {
  REQUIRE(constant_time_equal("abc", "abc"));
  REQUIRE_FALSE(constant_time_equal("abc", "abd"));
  REQUIRE_FALSE(constant_time_equal("abc", "abcd"));
  REQUIRE_FALSE(constant_time_equal("", "a"));
  const std::string a = random_hex(16), b = random_hex(16);
  REQUIRE(a.size() == 32);
  REQUIRE(a != b);
}
