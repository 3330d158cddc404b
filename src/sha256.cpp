#include "src/sha256.hpp"

#include <cstring>

#include "src/params.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weights_sha256 hashes the in-memory floats: a little-endian host is assumed"
#endif

namespace cllm {

namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) {
  return (x >> n) | (x << (32 - n));
}

#if defined(__x86_64__)

// SHA-NI: SHA256RNDS2 does two rounds on the state split as ABEF / CDGH (A in the top lane), taking
// W[i] + K[i] for the two rounds in the low two lanes of its third operand. SHA256MSG1 and
// SHA256MSG2 compute four new schedule words from the sixteen before them.
__attribute__((target("sha,sse4.1"))) void compress_shani(uint32_t h[8], const uint8_t* p,
                                                          size_t nblocks) {
  // Byte order within each 32-bit lane: the message words are big-endian.
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);

  // h[0..3] = (A B C D), h[4..7] = (E F G H), lane 0 first.
  const __m128i abcd = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h));
  const __m128i efgh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4));
  const __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);  // lanes (B A D C)
  const __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);  // lanes (H G F E)
  __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);       // lanes (F E B A)
  __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);    // lanes (H G D C)

  for (; nblocks > 0; --nblocks, p += 64) {
    const __m128i abef0 = abef, cdgh0 = cdgh;
    // w0..w3 hold the next sixteen schedule words, four per register.
    __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), bswap);
    __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)), bswap);
    __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32)), bswap);
    __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 48)), bswap);
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      // Rounds 4g .. 4g+3.
      __m128i wk = _mm_add_epi32(w0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kK + 4 * g)));
      // RNDS2 takes (CDGH, ABEF) and returns ABEF two rounds on; the ABEF it was given is then
      // the CDGH. So the registers trade roles twice and end as they began.
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);  // ABEF after rounds 4g, 4g+1
      wk = _mm_shuffle_epi32(wk, 0x0E);              // the upper two words into the low lanes
      abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);  // ABEF after 4g+3; cdgh now holds CDGH
      if (g < 12) {
        // W[t..t+3] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16], with t = 4g + 16:
        // MSG1 adds sigma0 of the next words to w0, the W[t-7] words are w3:w2 shifted by one
        // word, and MSG2 adds the sigma1 terms (which depend on the words being computed).
        __m128i t = _mm_sha256msg1_epu32(w0, w1);
        t = _mm_add_epi32(t, _mm_alignr_epi8(w3, w2, 4));
        const __m128i w4 = _mm_sha256msg2_epu32(t, w3);
        w0 = w1;
        w1 = w2;
        w2 = w3;
        w3 = w4;
      } else {
        w0 = w1;
        w1 = w2;
        w2 = w3;
      }
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
  }

  const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);  // lanes (A B E F)
  const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);  // lanes (G H C D)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h + 4), _mm_alignr_epi8(dchg, feba, 8));
}

bool have_shani() {
  static const bool has = [] {
#if defined(__clang__)
    // Older clang (14) rejects "sha" in __builtin_cpu_supports: read CPUID directly.
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1)) return false;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
#else
    __builtin_cpu_init();
    return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1");
#endif
  }();
  return has;
}

#endif

}  // namespace

void Sha256::reset() {
  static constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::memcpy(h_, kInit, sizeof(h_));
  buf_len_ = 0;
  total_ = 0;
}

void Sha256::compress(const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 |
           uint32_t(p[4 * i + 3]);
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const uint32_t ch = (e & f) ^ (~e & g);
    const uint32_t t1 = h + S1 + ch + kK[i] + w[i];
    const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    const uint32_t t2 = S0 + maj;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
}

void Sha256::compress_blocks(const uint8_t* p, size_t nblocks) {
#if defined(__x86_64__)
  if (!portable_ && have_shani()) {
    compress_shani(h_, p, nblocks);
    return;
  }
#endif
  for (; nblocks > 0; --nblocks, p += 64) compress(p);
}

void Sha256::update(const void* data, size_t n) {
  if (n == 0) return;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_ += n;
  if (buf_len_ > 0) {
    const size_t take = n < 64 - buf_len_ ? n : 64 - buf_len_;
    std::memcpy(buf_ + buf_len_, p, take);
    buf_len_ += take;
    p += take;
    n -= take;
    if (buf_len_ < 64) return;
    compress_blocks(buf_, 1);
    buf_len_ = 0;
  }
  if (n >= 64) {
    compress_blocks(p, n / 64);
    p += n / 64 * 64;
    n %= 64;
  }
  if (n > 0) {
    std::memcpy(buf_, p, n);
    buf_len_ = n;
  }
}

std::array<uint8_t, 32> Sha256::finish() {
  const uint64_t bits = total_ * 8;
  uint8_t pad[72] = {0x80};
  const size_t pad_len = (buf_len_ < 56 ? 56 : 120) - buf_len_;
  for (int i = 0; i < 8; ++i) pad[pad_len + i] = uint8_t(bits >> (56 - 8 * i));
  update(pad, pad_len + 8);
  std::array<uint8_t, 32> out;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = uint8_t(h_[i] >> (24 - 8 * j));
  reset();
  return out;
}

std::string to_hex(const uint8_t* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[data[i] >> 4];
    s[2 * i + 1] = kDigits[data[i] & 15];
  }
  return s;
}

std::string sha256_hex(const void* data, size_t n) {
  Sha256 h;
  h.update(data, n);
  const auto d = h.finish();
  return to_hex(d.data(), d.size());
}

std::string sha256_hex_portable(const void* data, size_t n) {
  Sha256 h;
  h.portable_ = true;
  h.update(data, n);
  const auto d = h.finish();
  return to_hex(d.data(), d.size());
}

std::string weights_sha256(const ParamLayout& layout, const float* params) {
  Sha256 h;
  for (const auto& t : layout.tensors()) h.update(params + t.offset, t.size * sizeof(float));
  const auto d = h.finish();
  return to_hex(d.data(), d.size());
}

}  // namespace cllm
