#include "src/sum_pack.hpp"

#include <algorithm>
#include <cstring>

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
// The packing is little-endian whatever the host.
uint64_t load_le(const uint8_t* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  if constexpr (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__) x = __builtin_bswap64(x);
  return x;
}
void store_le(uint8_t* p, uint64_t x) {
  if constexpr (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__) x = __builtin_bswap64(x);
  std::memcpy(p, &x, 8);
}

}  // namespace

size_t packed_sums_bound(size_t n) {
  return n * 8 + 2 * ((n + kSumPackBlock - 1) / kSumPackBlock);
}

void pack_sums(const int64_t* values, size_t n, std::vector<char>& out) {
  out.resize(packed_sums_bound(n) + 8);  // 8 bytes of slack: whole words are stored
  uint8_t* o = reinterpret_cast<uint8_t*>(out.data());
  size_t at = 0;
  for (size_t b = 0; b < n; b += kSumPackBlock) {
    const size_t count = std::min(kSumPackBlock, n - b);
    const int64_t* v = values + b;
    uint64_t any = 0;  // the OR of the values: its trailing zeros are the block's common ones
    for (size_t i = 0; i < count; ++i) any |= uint64_t(v[i]);
    const int z = any ? __builtin_ctzll(any) : 0;
    uint64_t u[kSumPackBlock];
    uint64_t widest = 0;
    // v >> z is exact: the low z bits of every value are 0.
    for (size_t i = 0; i < count; ++i) widest |= u[i] = zigzag(v[i] >> z);
    const int w = bit_width(widest);
    o[at++] = uint8_t(z);
    o[at++] = uint8_t(w);
    // `acc` holds `have` < 64 pending bits; whole words go out as they fill.
    uint8_t* q = o + at;
    uint64_t acc = 0;
    int have = 0;
    for (size_t i = 0; i < count && w > 0; ++i) {
      acc |= u[i] << have;
      if (have + w < 64) {
        have += w;
        continue;
      }
      store_le(q, acc);
      q += 8;
      const int used = 64 - have;  // bits of u[i] already out
      acc = used < 64 ? u[i] >> used : 0;
      have = have + w - 64;
    }
    store_le(q, acc);  // the last bits (within the slack)
    at += (count * size_t(w) + 7) / 8;
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
    const size_t bits = count * size_t(w), len = (bits + 7) / 8;
    if (bytes - at < len) return fmt::format("packed sums cut short in the block at value {}", b);
    const uint8_t* blk = in + at;
    const uint64_t mask = w == 64 ? ~uint64_t(0) : (uint64_t(1) << w) - 1;
    for (size_t i = 0; i < count; ++i) {
      const size_t pos = i * size_t(w), byte = pos >> 3;
      const int sh = int(pos & 7);
      // Eight bytes at once where the block has them, else its last few; a value that straddles
      // them takes a ninth (always inside the block: its bits are).
      uint64_t word = 0;
      if (byte + 8 <= len) {
        word = load_le(blk + byte);
      } else {
        for (size_t k = byte; k < len; ++k) word |= uint64_t(blk[k]) << (8 * (k - byte));
      }
      uint64_t u = word >> sh;
      if (sh + w > 64) u |= uint64_t(blk[byte + 8]) << (64 - sh);
      out[b + i] = int64_t(uint64_t(unzigzag(u & mask)) << z);
    }
    if ((bits & 7) != 0 && (blk[len - 1] >> (bits & 7)) != 0)
      return fmt::format("packed sums with padding bits set at value {}", b);
    at += len;
  }
  if (at != bytes) return fmt::format("packed sums with {} bytes left over", bytes - at);
  return {};
}

}  // namespace cllm
