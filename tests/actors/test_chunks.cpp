// Large payloads between the root and its nodes travel as chunks: split without copies, written
// raw, refused by the deserializer when a piece claims more than a chunk, and put together (by
// PayloadAssembly, as the link and the node do) into the payload that was sent.
#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "messages/cluster.hpp"
#include "src/payload_assembly.hpp"

using namespace cllm;

namespace {

// Serialises a sender's chunk and reads it back as a receiver would.
Chunk over_the_wire(caf::actor_system& sys, const Chunk& c) {
  std::vector<char> buf;
  caf::binary_serializer out(sys, buf);
  Chunk copy = c;
  REQUIRE(!out(copy));
  Chunk back;
  caf::binary_deserializer in(sys, buf);
  REQUIRE(!in(back));
  return back;
}

}  // namespace

TEST_CASE("chunks: a payload split, sent and put together is the payload", "[chunks]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  // Two whole chunks and a short last one.
  const size_t n = 2 * kChunkBytes / sizeof(int64_t) + 1000;
  auto sent = std::make_shared<std::vector<int64_t>>(n);
  std::iota(sent->begin(), sent->end(), int64_t(-7));
  const uint64_t bytes = n * sizeof(int64_t);
  const auto chunks = Chunk::split(42, sent, sent->data(), bytes);
  REQUIRE(chunks.size() == 3);
  CHECK(chunks[0].data == reinterpret_cast<const char*>(sent->data()));  // no copy

  std::vector<int64_t> got(n, 0);
  PayloadAssembly whole(bytes, kChunkBytes);
  for (size_t i : {2, 0, 2, 1}) {  // out of order, one twice
    const Chunk c = over_the_wire(sys, chunks[i]);
    CHECK(c.id == 42);
    const int64_t at = whole.place(c.total, c.index, c.bytes.size());
    if (at < 0) continue;
    std::memcpy(reinterpret_cast<char*>(got.data()) + at, c.bytes.data(), c.bytes.size());
  }
  CHECK(whole.complete());
  CHECK(got == *sent);
}

TEST_CASE("chunks: a piece claiming more than a chunk is refused before allocation", "[chunks]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto owner = std::make_shared<std::vector<char>>(kChunkBytes + 1);
  Chunk big;
  big.id = 1, big.index = 0, big.total = uint64_t(1) << 40;
  big.payload = owner, big.data = owner->data(), big.size = owner->size();
  std::vector<char> buf;
  caf::binary_serializer out(sys, buf);
  REQUIRE(!out(big));
  Chunk back;
  caf::binary_deserializer in(sys, buf);
  CHECK(in(back));  // an error
  CHECK(back.bytes.empty());
  CHECK(Chunk::split(5, nullptr, nullptr, 0).empty());
}
