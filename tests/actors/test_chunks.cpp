// Large payloads between the root and its nodes travel as chunks: split without copies, written
// raw, refused when a piece claims more than a chunk, and put together only from each piece
// once, at its place and size, so a duplicate or short chunk never leaves a gap that is summed.
#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "messages/cluster.hpp"

using namespace cllm;

namespace {

// Serialises a sender's chunk and reads it back as a receiver would.
Chunk over_the_wire(caf::actor_system& sys, Chunk c) {
  std::vector<char> buf;
  caf::binary_serializer out(sys, buf);
  REQUIRE(!out(c));
  Chunk back;
  caf::binary_deserializer in(sys, buf);
  REQUIRE(!in(back));
  return back;
}

std::shared_ptr<std::vector<int64_t>> counting(size_t n) {
  auto v = std::make_shared<std::vector<int64_t>>(n);
  std::iota(v->begin(), v->end(), int64_t(-7));
  return v;
}

}  // namespace

TEST_CASE("chunks: a payload split, sent and put together is the payload", "[chunks]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  // Two whole chunks and a short last one.
  const size_t n = 2 * kChunkBytes / sizeof(int64_t) + 1000;
  const auto sent = counting(n);
  const uint64_t bytes = n * sizeof(int64_t);
  auto chunks = Chunk::split(42, sent, sent->data(), bytes);
  REQUIRE(chunks.size() == 3);
  REQUIRE(ChunkAssembly::chunks_for(bytes) == 3);

  std::vector<int64_t> got(n, 0);
  ChunkAssembly whole(42, bytes, reinterpret_cast<char*>(got.data()));
  // Out of order, with a duplicate and a stray one for another payload.
  const Chunk last = over_the_wire(sys, chunks[2]);
  CHECK(whole.add(last));
  CHECK(!whole.add(last));  // a duplicate counts once
  Chunk stray = over_the_wire(sys, chunks[0]);
  stray.id = 41;
  CHECK(!whole.add(stray));
  CHECK(!whole.complete());
  CHECK(whole.add(over_the_wire(sys, chunks[0])));
  CHECK(!whole.complete());
  CHECK(whole.add(over_the_wire(sys, chunks[1])));
  CHECK(whole.complete());
  CHECK(whole.received_bytes() == bytes);
  CHECK(got == *sent);
}

TEST_CASE("chunks: a short, misplaced or oversized piece is never taken", "[chunks]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  const size_t n = kChunkBytes / sizeof(int64_t) + 10;
  const auto sent = counting(n);
  const uint64_t bytes = n * sizeof(int64_t);
  auto chunks = Chunk::split(1, sent, sent->data(), bytes);
  REQUIRE(chunks.size() == 2);
  std::vector<int64_t> got(n, 0);
  ChunkAssembly whole(1, bytes, reinterpret_cast<char*>(got.data()));

  Chunk shorter = over_the_wire(sys, chunks[0]);
  shorter.bytes.pop_back();
  CHECK(!whole.add(shorter));
  Chunk beyond = over_the_wire(sys, chunks[1]);
  beyond.index = 2;
  CHECK(!whole.add(beyond));
  Chunk other_total = over_the_wire(sys, chunks[1]);
  other_total.total += 8;
  CHECK(!whole.add(other_total));
  // Two copies of the first piece do not make two pieces.
  CHECK(whole.add(over_the_wire(sys, chunks[0])));
  CHECK(!whole.add(over_the_wire(sys, chunks[0])));
  CHECK(!whole.complete());

  // A piece that claims more than a chunk is refused by the deserializer before allocating.
  std::vector<char> buf;
  caf::binary_serializer out(sys, buf);
  Chunk big;
  big.id = 1, big.index = 0, big.total = uint64_t(1) << 40;
  auto owner = std::make_shared<std::vector<char>>(kChunkBytes + 1);
  big.payload = owner, big.data = owner->data(), big.size = owner->size();
  REQUIRE(!out(big));
  Chunk back;
  caf::binary_deserializer in(sys, buf);
  CHECK(in(back));  // an error
  CHECK(back.bytes.empty());
}

TEST_CASE("chunks: an empty payload is complete with no chunk", "[chunks]") {
  ChunkAssembly none(5, 0, reinterpret_cast<char*>(&none));
  CHECK(none.complete());
  CHECK(Chunk::split(5, nullptr, nullptr, 0).empty());
  ChunkAssembly unset;
  CHECK(!unset.complete());
  Chunk c;
  CHECK(!unset.add(c));
}
