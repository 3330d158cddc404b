// A payload in pieces (the cluster's weights and partial sums): every byte written exactly once
// when complete, whatever arrives.
#include <catch2/catch.hpp>

#include "src/payload_assembly.hpp"

using cllm::PayloadAssembly;

TEST_CASE("payload assembly: pieces in any order, each once, of their own size", "[payload]") {
  PayloadAssembly a(10, 4);  // pieces of 4, 4 and 2 bytes
  CHECK(a.pieces() == 3);
  CHECK(a.place(10, 2, 2) == 8);
  CHECK(a.place(10, 0, 4) == 0);
  CHECK_FALSE(a.complete());
  CHECK(a.place(10, 0, 4) == -1);  // a repeat
  CHECK(a.place(10, 1, 2) == -1);  // not that piece's size
  CHECK(a.place(12, 1, 4) == -1);  // another payload
  CHECK(a.place(10, 3, 4) == -1);  // past the end
  CHECK(a.place(10, -1, 4) == -1);
  CHECK(a.received() == 2);
  CHECK(a.place(10, 1, 4) == 4);
  CHECK(a.complete());
}

TEST_CASE("payload assembly: an empty payload is complete; a default one takes nothing",
          "[payload]") {
  PayloadAssembly empty(0, 4);
  CHECK(empty.pieces() == 0);
  CHECK(empty.complete());
  CHECK(empty.place(0, 0, 0) == -1);
  PayloadAssembly none;
  CHECK(none.place(0, 0, 0) == -1);
  PayloadAssembly exact(8, 4);
  CHECK(exact.pieces() == 2);
  CHECK(exact.place(8, 1, 4) == 4);
  CHECK(exact.place(8, 0, 4) == 0);
  CHECK(exact.complete());
}
