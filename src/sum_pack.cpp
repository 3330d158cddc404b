#include "src/sum_pack.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace cllm {

namespace {

uint64_t zigzag(int64_t v) {
  return (uint64_t(v) << 1) ^ uint64_t(v >> 63);
}
int64_t unzigzag(uint64_t u) {
  return int64_t((u >> 1) ^ (~(u & 1) + 1));
}
int bit_width(uint64_t x) {
  return x ? 64 - __builtin_clzll(x) : 0;
}

}  // namespace

size_t packed_sums_bound(size_t n) {
  return n * 8 + 2 * ((n + kSumPackBlock - 1) / kSumPackBlock);
}

void pack_sums(const int64_t* values, size_t n, std::vector<char>& out) {
  out.resize(packed_sums_bound(n));
  uint8_t* o = reinterpret_cast<uint8_t*>(out.data());
  size_t at = 0;
  for (size_t b = 0; b < n; b += kSumPackBlock) {
    const size_t count = std::min(kSumPackBlock, n - b);
    const int64_t* v = values + b;
    uint64_t any = 0;  // the OR of the values: its trailing zeros are the block's common ones
    for (size_t i = 0; i < count; ++i) any |= uint64_t(v[i]);
    const int z = any ? __builtin_ctzll(any) : 0;
    uint64_t widest = 0;
    // v >> z is exact: the low z bits of every value are 0.
    for (size_t i = 0; i < count; ++i) widest |= zigzag(v[i] >> z);
    const int w = bit_width(widest);
    o[at++] = uint8_t(z);
    o[at++] = uint8_t(w);
    // A little-endian bit stream: `acc` holds `have` pending bits.
    unsigned __int128 acc = 0;
    int have = 0;
    for (size_t i = 0; i < count && w > 0; ++i) {
      acc |= (unsigned __int128)zigzag(v[i] >> z) << have;
      have += w;
      while (have >= 8) {
        o[at++] = uint8_t(acc);
        acc >>= 8;
        have -= 8;
      }
    }
    if (have > 0) o[at++] = uint8_t(acc);
  }
  out.resize(at);
}

std::string unpack_sums(const char* data, size_t bytes, int64_t* out, size_t n) {
  const uint8_t* in = reinterpret_cast<const uint8_t*>(data);
  size_t at = 0;
  for (size_t b = 0; b < n; b += kSumPackBlock) {
    const size_t count = std::min(kSumPackBlock, n - b);
    if (bytes - at < 2) return fmt::format("packed sums cut short in the block at value {}", b);
    const int z = in[at], w = in[at + 1];
    at += 2;
    if (z > 63 || w > 64 || (w == 0 && z != 0))
      return fmt::format("packed sums with a shift {} or width {} out of range at value {}", z, w,
                         b);
    const size_t len = (count * size_t(w) + 7) / 8;
    if (bytes - at < len) return fmt::format("packed sums cut short in the block at value {}", b);
    const uint64_t mask = w == 64 ? ~uint64_t(0) : (uint64_t(1) << w) - 1;
    unsigned __int128 acc = 0;
    int have = 0;
    size_t next = at;
    for (size_t i = 0; i < count; ++i) {
      while (have < w) {
        acc |= (unsigned __int128)in[next++] << have;
        have += 8;
      }
      const uint64_t u = uint64_t(acc) & mask;
      acc >>= w;
      have -= w;
      out[b + i] = int64_t(uint64_t(unzigzag(u)) << z);
    }
    if (acc != 0) return fmt::format("packed sums with padding bits set at value {}", b);
    at += len;
  }
  if (at != bytes) return fmt::format("packed sums with {} bytes left over", bytes - at);
  return {};
}

}  // namespace cllm
