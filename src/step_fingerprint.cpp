#include "src/step_fingerprint.hpp"

#include <cstring>

#include <fmt/format.h>

namespace cllm {

namespace {

constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;  // odd: multiplying by it is a bijection
constexpr int kLanes = 8;                         // independent chains: one AVX-512 register

inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

// Final avalanche (the splitmix64 finaliser's constants): every input bit reaches every output bit.
inline uint64_t avalanche(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Each step of a lane (xor the word, rotate, multiply by an odd constant) is a bijection of the
// lane's state, so a changed word always leaves a changed lane behind it.
inline uint64_t absorb(uint64_t lane, uint64_t word) {
  return rotl(lane ^ word, 29) * kMul;
}

}  // namespace

uint64_t hash_floats(const float* p, size_t n) {
  uint64_t lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = kMul * uint64_t(j + 1);
  const size_t words = n / 2, blocks = words / kLanes;
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p);
  for (size_t b = 0; b < blocks; ++b) {
    uint64_t w[kLanes];
    std::memcpy(w, bytes + b * sizeof w, sizeof w);
    for (int j = 0; j < kLanes; ++j) lane[j] = absorb(lane[j], w[j]);
  }
  // The floats after the last whole block, one 32-bit word each.
  uint64_t tail = 0x2545F4914F6CDD1DULL;
  for (size_t i = blocks * kLanes * 2; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    tail = absorb(tail, bits);
  }
  uint64_t h = avalanche(uint64_t(n));
  for (int j = 0; j < kLanes; ++j) h = absorb(h, avalanche(lane[j]));
  return avalanche(absorb(h, tail));
}

StepFingerprint step_fingerprint(const ParamLayout& layout, const float* params) {
  StepFingerprint f;
  f.tensors.reserve(layout.tensors().size());
  uint64_t h = avalanche(uint64_t(layout.tensors().size()));
  for (const auto& t : layout.tensors()) {
    const uint64_t th = hash_floats(params + t.offset, t.size);
    f.tensors.push_back(uint32_t(th >> 32));
    h = absorb(h, th);
  }
  f.weights = avalanche(h);
  return f;
}

std::string StepFingerprint::weights_hex() const {
  return fmt::format("{:016x}", weights);
}

std::string StepFingerprint::tensors_hex() const {
  std::string out;
  out.reserve(tensors.size() * 8);
  for (uint32_t t : tensors) out += fmt::format("{:08x}", t);
  return out;
}

}  // namespace cllm
