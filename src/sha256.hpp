#pragma once
// SHA-256 (FIPS 180-4), self-contained: checkpoint checksums and the "weights sha256" that tests
// compare across backends.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cllm {

class ParamLayout;

class Sha256 {
 public:
  Sha256() { reset(); }
  void update(const void* data, size_t n);
  // Returns the digest of everything fed since the last reset; the object is reset afterwards.
  std::array<uint8_t, 32> finish();
  void reset();

 private:
  friend std::string sha256_hex_portable(const void* data, size_t n);
  // Portable compression of one 64-byte block.
  void compress(const uint8_t* block);
  // Compresses nblocks consecutive 64-byte blocks: SHA-NI where the CPU has it, else compress().
  void compress_blocks(const uint8_t* p, size_t nblocks);
  bool portable_ = false;  // tests only: always use compress()
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;  // bytes fed
};

// Lower-case hexadecimal of n bytes.
std::string to_hex(const uint8_t* data, size_t n);
// SHA-256 of n bytes, lower-case hex (64 characters).
std::string sha256_hex(const void* data, size_t n);
// Same, forcing the portable code even where SHA-NI is available (tests only).
std::string sha256_hex_portable(const void* data, size_t n);
// SHA-256 of every tensor's elements (without padding, in layout order) as little-endian float32.
std::string weights_sha256(const ParamLayout& layout, const float* params);

}  // namespace cllm
