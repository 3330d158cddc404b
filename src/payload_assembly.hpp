#pragma once
// A large payload received in pieces (the cluster's weights and partial sums, in chunks of a fixed
// size, in any order): where each piece goes, and whether every piece came. A piece that does not
// belong is refused before anything is written: another payload size, an index out of range, a
// size that is not the one of that piece, a piece that already came. So a complete payload has
// every byte written exactly once, whatever arrived. No CAF here: the cluster actors and the fuzz
// target (fuzz/fuzz_cluster.cpp) check pieces with it alike.
#include <cstdint>
#include <vector>

namespace cllm {

class PayloadAssembly {
 public:
  PayloadAssembly() = default;
  // A payload of `bytes` bytes in pieces of `piece` bytes (the last one shorter): ceil(bytes /
  // piece) pieces. `piece` > 0.
  PayloadAssembly(uint64_t bytes, uint64_t piece);

  // The byte offset where piece `index` (`size` bytes of a payload of `total` bytes, as its sender
  // says) goes, or -1 when it does not belong here. An accepted piece counts as received.
  int64_t place(uint64_t total, int64_t index, uint64_t size);

  uint64_t bytes() const { return bytes_; }
  uint64_t pieces() const { return seen_.size(); }
  uint64_t received() const { return received_; }
  bool complete() const { return received_ == seen_.size(); }
  // The pieces not received yet.
  std::vector<int32_t> missing() const;

 private:
  uint64_t bytes_ = 0, piece_ = 1, received_ = 0;
  std::vector<bool> seen_;
};

}  // namespace cllm
