#pragma once
// Counter-based randomness: every draw is a pure function of (key, counter), so results never
// depend on which thread, sphere or process asks, or in which order.
#include <cmath>
#include <cstdint>

namespace cllm {

// SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Hash of a tuple of integers (order matters).
inline uint64_t hash_words(uint64_t a) {
  return mix64(a);
}
template <class... Rest>
inline uint64_t hash_words(uint64_t a, uint64_t b, Rest... rest) {
  return hash_words(mix64(a) ^ (b + 0x632be59bd9b4e019ULL), static_cast<uint64_t>(rest)...);
}

// Uniform double in [0, 1) with 53 random bits.
inline double uniform01(uint64_t bits) {
  return double(bits >> 11) * 0x1.0p-53;
}

// Standard normal for (key, counter), Box-Muller on two derived words.
inline double normal_at(uint64_t key, uint64_t counter) {
  double u1 = uniform01(hash_words(key, counter, 1));
  double u2 = uniform01(hash_words(key, counter, 2));
  u1 = 1.0 - u1;  // (0, 1]
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace cllm
