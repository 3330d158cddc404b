#include "src/hmac.hpp"

#include <sys/random.h>

#include <stdexcept>
#include <vector>

#include "src/sha256.hpp"

namespace cllm {

std::array<uint8_t, 32> hmac_sha256(std::string_view key, std::string_view message) {
  constexpr size_t kBlock = 64;
  std::array<uint8_t, kBlock> k{};
  Sha256 sha;
  if (key.size() > kBlock) {  // long keys are hashed first
    sha.update(key.data(), key.size());
    const auto d = sha.finish();
    std::copy(d.begin(), d.end(), k.begin());
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  std::array<uint8_t, kBlock> pad;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  sha.update(pad.data(), kBlock);
  sha.update(message.data(), message.size());
  const auto inner = sha.finish();
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  sha.update(pad.data(), kBlock);
  sha.update(inner.data(), inner.size());
  return sha.finish();
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  const auto d = hmac_sha256(key, message);
  return to_hex(d.data(), d.size());
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;  // (sizes differing by 2^32 are unequal too)
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= unsigned(uint8_t(a[i]) ^ uint8_t(b[i]));
  return diff == 0;
}

std::string random_hex(size_t n) {
  std::vector<uint8_t> buf(n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::getrandom(buf.data() + got, n - got, 0);
    if (r < 0) throw std::runtime_error("getrandom failed");
    got += size_t(r);
  }
  return to_hex(buf.data(), n);
}

}  // namespace cllm
