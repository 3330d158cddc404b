#pragma once
// Lossless packing of exact partial sums (int64 fixed point, src/exact_sum.hpp) for the wire.
//
// A value on a tensor's grid is round(g * 2^e) summed over shards: the largest ones are near the
// grid's top (~2^55) but carry the ~24 significant bits of a float and many trailing zero bits,
// the small ones have few bits at all. So each block of kSumPackBlock values is stored as its
// common number of trailing zero bits z, then zigzag(v >> z) of each value in the block's
// bit width w (the widest value's). Measured on real partial sums of `tiny` and `small`
// (docs/cluster.md): 53-58 % of the raw 8 bytes per value (zigzag + varint per value: 94-102 %;
// the same per block with varints: 62-67 %; larger blocks: slightly worse).
//
// Layout, per block (the last one shorter; the value count is known to both sides): one byte z
// (0..63), one byte w (0..64; w = 0 means every value is 0, and then z = 0), then the block's
// values in w bits each, least significant bit first, in ceil(count * w / 8) bytes whose unused
// high bits are 0. No CAF here.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

constexpr size_t kSumPackBlock = 32;

// The most bytes pack_sums can write for n values (every value 64 bits wide: n * 8 + 2 bytes
// per block).
size_t packed_sums_bound(size_t n);

// `n` values at `values`, packed (appended to nothing: `out` is replaced).
void pack_sums(const int64_t* values, size_t n, std::vector<char>& out);

// Unpacks exactly `n` values from `bytes` bytes at `data` into `out` (n values). Returns "" when
// the bytes were a packing of n values, else what is wrong with them (cut short, bytes left over,
// a shift or width out of range, padding bits set); then `out` holds unspecified values.
std::string unpack_sums(const char* data, size_t bytes, int64_t* out, size_t n);

}  // namespace cllm
