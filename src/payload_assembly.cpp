#include "src/payload_assembly.hpp"

#include <algorithm>

namespace cllm {

PayloadAssembly::PayloadAssembly(uint64_t bytes, uint64_t piece)
    : bytes_(bytes), piece_(std::max<uint64_t>(piece, 1)) {
  seen_.assign(size_t(bytes_ / piece_ + (bytes_ % piece_ != 0)), false);
}

int64_t PayloadAssembly::place(uint64_t total, int64_t index, uint64_t size) {
  if (total != bytes_ || index < 0 || uint64_t(index) >= seen_.size() || seen_[size_t(index)])
    return -1;
  const uint64_t at = uint64_t(index) * piece_;
  if (size != std::min(piece_, bytes_ - at)) return -1;
  seen_[size_t(index)] = true;
  ++received_;
  return int64_t(at);
}

std::vector<int32_t> PayloadAssembly::missing() const {
  std::vector<int32_t> out;
  for (size_t i = 0; i < seen_.size(); ++i)
    if (!seen_[i]) out.push_back(int32_t(i));
  return out;
}

}  // namespace cllm
