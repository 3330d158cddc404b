#include "src/gemm.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <immintrin.h>

#include "src/aligned.hpp"

namespace cllm::gemm {

namespace {

// One SIMD register of floats, per instruction set. The kernel below is written once against this
// interface; which one a binary uses is fixed at compile time (-march), so one binary always sums
// in the same order.
#if defined(__AVX512F__)
struct Simd {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int NR = 12;  // 2 x 12 accumulators + 2 loads of A: 26 of 32 registers
  static V zero() { return _mm512_setzero_ps(); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static __mmask16 mask(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }
  static V load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  // W lanes of two bfloat16 each: the low halves and the high halves as floats.
  static void bf16_pair(const uint32_t* p, V& lo, V& hi) {
    const __m512i v = _mm512_loadu_si512(p);
    lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xFFFF0000u))));
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct Simd {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int NR = 6;  // 2 x 6 accumulators + 2 loads of A + 1 broadcast: 15 of 16
  static V zero() { return _mm256_setzero_ps(); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_n(const float* p, int n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n));
  }
  static void store_n(float* p, V v, int n) {
    if (n >= 8)
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, mask(n), v);
  }
  static void bf16_pair(const uint32_t* p, V& lo, V& hi) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    hi = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int(0xFFFF0000u))));
  }
};
#else
struct Simd {  // SSE (x86-64-v2 builds): no FMA instruction, multiply then add
  using V = __m128;
  static constexpr int W = 4;
  static constexpr int NR = 4;
  static V zero() { return _mm_setzero_ps(); }
  static V loadu(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, V v) { _mm_store_ps(p, v); }
  static V set1(float x) { return _mm_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static V load_n(const float* p, int n) {
    alignas(16) float t[4] = {0, 0, 0, 0};
    for (int i = 0; i < n && i < 4; ++i) t[i] = p[i];
    return _mm_load_ps(t);
  }
  static void store_n(float* p, V v, int n) {
    alignas(16) float t[4];
    _mm_store_ps(t, v);
    for (int i = 0; i < n && i < 4; ++i) p[i] = t[i];
  }
  static void bf16_pair(const uint32_t* p, V& lo, V& hi) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    lo = _mm_castsi128_ps(_mm_slli_epi32(v, 16));
    hi = _mm_castsi128_ps(_mm_and_si128(v, _mm_set1_epi32(int(0xFFFF0000u))));
  }
};
#endif

constexpr int MR = 2 * Simd::W;  // rows of C per kernel call (two registers)
constexpr int NR = Simd::NR;     // columns of C per kernel call
constexpr int64_t KC = 256;      // depth of one packed block of A (a panel of A stays in L1)
constexpr int64_t MC = 256;      // rows of one packed block of A (the block stays in L2)
static_assert(size_t(KC * MC) * sizeof(float) == kScratchBytes, "gemm.hpp's estimate");

// C(0:m, 0:NRt) (+)= A * B(k0:k0+kc, 0:NRt) (+ bias), where column k of A (MR rows) starts at
// Ap + k * sa: a packed panel (sa = MR) or, for few columns of B, A itself in place (sa = lda,
// which then has at least MR rows from Ap). The sum over k runs in order k = 0, 1, ..., one fused
// multiply-add per step.
template <int NRt, bool BT>
void kernel(int64_t kc, const float* __restrict Ap, int64_t sa, const float* __restrict B,
            int64_t ldb, float* __restrict C, int64_t ldc, int m, bool add, const float* bias) {
  using V = typename Simd::V;
  // Every loop over the NRt accumulators is unrolled: a loop left rolled makes the compiler keep
  // the arrays on the stack, zero them with two memset calls per kernel call and spill pointers
  // (measured 1-2% of a step).
  V c0[NRt], c1[NRt];
#pragma GCC unroll 16
  for (int j = 0; j < NRt; ++j) c0[j] = Simd::zero(), c1[j] = Simd::zero();
  for (int64_t k = 0; k < kc; ++k) {
    const V a0 = Simd::loadu(Ap + k * sa), a1 = Simd::loadu(Ap + k * sa + Simd::W);
#pragma GCC unroll 16
    for (int j = 0; j < NRt; ++j) {
      const V b = Simd::set1(BT ? B[k * ldb + j] : B[j * ldb + k]);
      c0[j] = Simd::fma(a0, b, c0[j]);
      c1[j] = Simd::fma(a1, b, c1[j]);
    }
  }
  const int m0 = std::min(m, Simd::W), m1 = std::max(0, m - Simd::W);
  V b0 = Simd::zero(), b1 = Simd::zero();
  if (bias) b0 = Simd::load_n(bias, m0), b1 = Simd::load_n(bias + Simd::W, m1);
#pragma GCC unroll 16
  for (int j = 0; j < NRt; ++j) {
    float* cj = C + j * ldc;
    V x0 = c0[j], x1 = c1[j];
    if (bias) x0 = Simd::add(x0, b0), x1 = Simd::add(x1, b1);
    if (add)
      x0 = Simd::add(x0, Simd::load_n(cj, m0)), x1 = Simd::add(x1, Simd::load_n(cj + Simd::W, m1));
    Simd::store_n(cj, x0, m0);
    if (m1 > 0) Simd::store_n(cj + Simd::W, x1, m1);
  }
}

using KernelFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                          int, bool, const float*);

template <bool BT, int... Ns>
constexpr std::array<KernelFn, sizeof...(Ns)> kernel_table(std::integer_sequence<int, Ns...>) {
  return {&kernel<Ns + 1, BT>...};
}
const auto kKernelsN = kernel_table<false>(std::make_integer_sequence<int, NR>());
const auto kKernelsT = kernel_table<true>(std::make_integer_sequence<int, NR>());

#if defined(__AVX512F__)
// r[i] = row i of a 16 x 16 block of floats; afterwards r[k] = its column k.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2)  // per 128-bit lane: a0 b0 a1 b1, a2 b2 a3 b3
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  for (int i = 0; i < 16; i += 4) {  // per lane: column j of rows i..i+3, in r[i + j]
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; ++j) {  // lane l of r[4g + j] holds column 4l + j of rows 4g..4g+3
    const __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    t[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + j] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[4 + j] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#endif

// Packs op(A)(i0:i0+mc, k0:k0+kc) into panels of MR rows, each kc x MR k-major, zero-padded.
void pack_a(const Args& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* Ap) {
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const int m = int(std::min<int64_t>(MR, mc - ip));
    float* dst = Ap + ip * kc;
    if (a.op_a == Op::N) {
      // Register copies (a memcpy of 128 bytes compiles to `rep movs`, slow to start).
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = a.A + (k0 + k) * a.lda + i0 + ip;
        float* d = dst + k * MR;
        for (int v = 0; v < MR; v += Simd::W)
          Simd::store(d + v, Simd::load_n(src + v, std::max(0, std::min(Simd::W, m - v))));
      }
    } else {
      if (m < MR) std::memset(dst, 0, sizeof(float) * size_t(kc * MR));
#if defined(__AVX512F__)
      if (m == MR) {
        // Blocks of 16 rows x 16 k, read row by row and transposed in registers (gathers cost
        // 3-4% of a step on Zen 4).
        for (int half = 0; half < MR; half += 16) {
          const float* base = a.A + (i0 + ip + half) * a.lda + k0;
          for (int64_t kb = 0; kb < kc; kb += 16) {
            const int n = int(std::min<int64_t>(16, kc - kb));
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = Simd::load_n(base + i * a.lda + kb, n);
            transpose16(r);
            for (int k = 0; k < n; ++k) _mm512_store_ps(dst + (kb + k) * MR + half, r[k]);
          }
        }
        continue;
      }
#endif
      for (int i = 0; i < m; ++i) {
        const float* src = a.A + (i0 + ip + i) * a.lda + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
      }
    }
  }
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
// ---- bfloat16 products (AVX512_BF16). Operands are rounded to bf16 (nearest even) while they
// are packed, as pairs of consecutive k in one 32-bit lane, which is what VDPBF16PS multiplies:
// c += a(2p) b(2p) + a(2p+1) b(2p+1), in float. A panel: [pair][MR rows]; B: pairs in place of
// floats, column-major ([column][pair], "N") or row-major ([pair][column], "T").
constexpr bool kBf16 = true;

inline uint16_t bf16_bits(float x) {
  const float r = round_bf16(x);
  uint32_t u;
  std::memcpy(&u, &r, 4);
  return uint16_t(u >> 16);
}
inline uint32_t bf16_pair(float lo, float hi) {
  return uint32_t(bf16_bits(lo)) | (uint32_t(bf16_bits(hi)) << 16);
}
// Sixteen pairs (x0[t], x1[t]) from two registers of floats.
inline __m512i bf16_interleave(__m512 x0, __m512 x1) {
  const __m512i idx =
      _mm512_setr_epi32(0x00100000, 0x00110001, 0x00120002, 0x00130003, 0x00140004, 0x00150005,
                        0x00160006, 0x00170007, 0x00180008, 0x00190009, 0x001a000a, 0x001b000b,
                        0x001c000c, 0x001d000d, 0x001e000e, 0x001f000f);
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);  // low half x0, high half x1
  return _mm512_permutexvar_epi16(idx, both);
}

template <int NRt, bool BT>
void kernel_bf16(int64_t kp, const uint32_t* __restrict Ap, const uint32_t* __restrict B,
                 int64_t ldb, float* __restrict C, int64_t ldc, int m, bool add,
                 const float* bias) {
  __m512 c0[NRt], c1[NRt];
  for (int j = 0; j < NRt; ++j) c0[j] = _mm512_setzero_ps(), c1[j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh a0 = (__m512bh)_mm512_loadu_si512(Ap + p * 32);
    const __m512bh a1 = (__m512bh)_mm512_loadu_si512(Ap + p * 32 + 16);
#pragma GCC unroll 16
    for (int j = 0; j < NRt; ++j) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(int(BT ? B[p * ldb + j] : B[j * ldb + p]));
      c0[j] = _mm512_dpbf16_ps(c0[j], a0, b);
      c1[j] = _mm512_dpbf16_ps(c1[j], a1, b);
    }
  }
  const int m0 = std::min(m, 16), m1 = std::max(0, m - 16);
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  if (bias) b0 = Simd::load_n(bias, m0), b1 = Simd::load_n(bias + 16, m1);
  for (int j = 0; j < NRt; ++j) {
    float* cj = C + j * ldc;
    __m512 x0 = c0[j], x1 = c1[j];
    if (bias) x0 = _mm512_add_ps(x0, b0), x1 = _mm512_add_ps(x1, b1);
    if (add)
      x0 = _mm512_add_ps(x0, Simd::load_n(cj, m0)),
      x1 = _mm512_add_ps(x1, Simd::load_n(cj + 16, m1));
    Simd::store_n(cj, x0, m0);
    if (m1 > 0) Simd::store_n(cj + 16, x1, m1);
  }
}

using KernelBf16Fn = void (*)(int64_t, const uint32_t*, const uint32_t*, int64_t, float*, int64_t,
                              int, bool, const float*);
template <bool BT, int... Ns>
constexpr std::array<KernelBf16Fn, sizeof...(Ns)> kernel_bf16_table(
    std::integer_sequence<int, Ns...>) {
  return {&kernel_bf16<Ns + 1, BT>...};
}
const auto kKernelsBf16N = kernel_bf16_table<false>(std::make_integer_sequence<int, NR>());
const auto kKernelsBf16T = kernel_bf16_table<true>(std::make_integer_sequence<int, NR>());

// A transposed (op T: each of a panel's MR rows has its k contiguous, so consecutive k are already
// pairs): the pairs of 32 k at a time, converted a row at a time by the vector instruction, then
// put in the panel's [pair][row] order. Rounded one by one, strided, these made the W^T products
// 20-30 % slower at the GPT-2 body (cllm-bench-gemm --bf16 --d-model 768 --tokens 1024). Like the
// op N packing, the instruction reads denormal inputs as zero; which path an element takes depends
// on the shapes alone, so no bit depends on the sphere count. Returns the pairs done.
int64_t pack_rows_bf16(const float* rows, int64_t lda, int64_t kc, uint32_t* dst) {
  alignas(64) uint32_t tmp[MR][16];
  int64_t p = 0;
  for (; 2 * p + 32 <= kc; p += 16) {
    for (int i = 0; i < MR; ++i) {
      const float* r = rows + i * lda + 2 * p;
      _mm512_store_si512(tmp[i],
                         (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r + 16), _mm512_loadu_ps(r)));
    }
    for (int t = 0; t < 16; ++t)
      for (int i = 0; i < MR; ++i) dst[(p + t) * MR + i] = tmp[i][t];
  }
  return p;
}

// op(A)(i0:i0+mc, k0:k0+kc) as bf16 pair panels of MR rows: panel ip holds kp * MR lanes.
void pack_a_bf16(const Args& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, uint32_t* Ap) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const int m = int(std::min<int64_t>(MR, mc - ip));
    uint32_t* dst = Ap + ip * kp;
    auto at = [&](int64_t i, int64_t k) -> float {
      if (i >= m || k >= kc) return 0.0f;
      const int64_t r = i0 + ip + i, c = k0 + k;
      return a.op_a == Op::N ? a.A[c * a.lda + r] : a.A[r * a.lda + c];
    };
    int64_t p = 0;
    if (a.op_a == Op::T && m == MR)
      p = pack_rows_bf16(a.A + (i0 + ip) * a.lda + k0, a.lda, kc, dst);
    for (; p < kp; ++p) {
      if (a.op_a == Op::N && m == MR && 2 * p + 1 < kc) {
        const float* c0 = a.A + (k0 + 2 * p) * a.lda + i0 + ip;
        const float* c1 = c0 + a.lda;
        _mm512_storeu_si512(dst + p * MR,
                            bf16_interleave(_mm512_loadu_ps(c0), _mm512_loadu_ps(c1)));
        _mm512_storeu_si512(dst + p * MR + 16,
                            bf16_interleave(_mm512_loadu_ps(c0 + 16), _mm512_loadu_ps(c1 + 16)));
        continue;
      }
      for (int i = 0; i < MR; ++i) dst[p * MR + i] = bf16_pair(at(i, 2 * p), at(i, 2 * p + 1));
    }
  }
}

// B(k0:k0+kc, 0:N) as bf16 pairs. op N: [column][pair], ld kp; op T: [pair][column], ld N.
void pack_b_bf16(const Args& a, int64_t k0, int64_t kc, uint32_t* Bp) {
  const int64_t kp = (kc + 1) / 2, N = a.N;
  if (a.op_b == Op::N) {
    for (int64_t j = 0; j < N; ++j) {
      const float* col = a.B + j * a.ldb + k0;
      uint32_t* dst = Bp + j * kp;
      int64_t p = 0;
      for (; 2 * p + 32 <= kc; p += 16) {  // 32 consecutive k: already in pair order
        const __m512 lo = _mm512_loadu_ps(col + 2 * p), hi = _mm512_loadu_ps(col + 2 * p + 16);
        _mm512_storeu_si512(dst + p, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
      for (; p < kp; ++p) dst[p] = bf16_pair(col[2 * p], 2 * p + 1 < kc ? col[2 * p + 1] : 0.0f);
    }
  } else {
    for (int64_t p = 0; p < kp; ++p) {
      const float* r0 = a.B + (k0 + 2 * p) * a.ldb;
      const bool has1 = 2 * p + 1 < kc;
      const float* r1 = r0 + a.ldb;
      uint32_t* dst = Bp + p * N;
      int64_t j = 0;
      if (has1)
        for (; j + 16 <= N; j += 16)
          _mm512_storeu_si512(dst + j,
                              bf16_interleave(_mm512_loadu_ps(r0 + j), _mm512_loadu_ps(r1 + j)));
      for (; j < N; ++j) dst[j] = bf16_pair(r0[j], has1 ? r1[j] : 0.0f);
    }
  }
}

void run_bf16(const Args& a) {
  thread_local std::vector<uint32_t, AlignedAllocator<uint32_t>> pa, pb;
  const int64_t K = a.K, kc_max = std::min(KC, std::max<int64_t>(K, 1)), kp_max = (kc_max + 1) / 2;
  pa.resize(size_t(std::min(MC, (a.M + MR - 1) / MR * MR) * kp_max));
  pb.resize(size_t(a.N * kp_max));
  const auto& kernels = a.op_b == Op::T ? kKernelsBf16T : kKernelsBf16N;
  for (int64_t pc = 0; pc < std::max<int64_t>(K, 1); pc += kc_max) {
    const int64_t kc = std::min(kc_max, K - pc), kp = (std::max<int64_t>(kc, 0) + 1) / 2;
    const bool first = pc == 0 && !a.accumulate;
    const bool last = pc + kc_max >= K;
    if (kc > 0) pack_b_bf16(a, pc, kc, pb.data());
    const int64_t ldb = a.op_b == Op::T ? a.N : kp;
    for (int64_t ic = 0; ic < a.M; ic += MC) {
      const int64_t mc = std::min(MC, a.M - ic);
      if (kc > 0) pack_a_bf16(a, ic, mc, pc, kc, pa.data());
      for (int64_t jr = 0; jr < a.N; jr += NR) {
        const int n = int(std::min<int64_t>(NR, a.N - jr));
        const uint32_t* Bk = a.op_b == Op::T ? pb.data() + jr : pb.data() + jr * kp;
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int m = int(std::min<int64_t>(MR, mc - ir));
          kernels[size_t(n - 1)](kp, pa.data() + ir * kp, Bk, ldb, a.C + (jr * a.ldc + ic + ir),
                                 a.ldc, m, !first, last && a.bias ? a.bias + ic + ir : nullptr);
        }
      }
    }
  }
}
#else
constexpr bool kBf16 = false;
void run_bf16(const Args&) {}
#endif

void check(const Args& a) {
  if (a.M < 0 || a.N < 0 || a.K < 0) throw std::invalid_argument("gemm: negative size");
  if (a.causal != Causal::none && (a.M > kMaxCausal || a.N > kMaxCausal || a.K > kMaxCausal))
    throw std::invalid_argument("gemm: causal product too large");
  if (a.bf16 && !has_bf16())
    throw std::invalid_argument("gemm: bf16 products need AVX512_BF16 (not in this build/CPU)");
  if (a.bf16 && a.causal != Causal::none)
    throw std::invalid_argument("gemm: bf16 products have no causal shapes");
}

// y = op(A) x for op(A) = A^T and one column: dot products along A's contiguous rows (packing
// would cost more than the product).
void gemv_t(const Args& a) {
  using V = typename Simd::V;
  constexpr int W = Simd::W;
  auto dot = [&](int64_t i) {
    const float* r = a.A + i * a.lda;
    V acc = Simd::zero();
    for (int64_t k = 0; k < a.K; k += W) {
      const int n = int(std::min<int64_t>(W, a.K - k));
      acc = Simd::fma(Simd::load_n(r + k, n), Simd::load_n(a.B + k, n), acc);
    }
    alignas(64) float lanes[W];
    Simd::store_n(lanes, acc, W);
    float s = 0;
    for (int l = 0; l < W; ++l) s += lanes[l];
    return s;
  };
  for (int64_t i = 0; i < a.M; ++i) {
    float y = dot(i);
    if (a.bias) y += a.bias[i];
    if (a.accumulate) y += a.C[i];
    a.C[i] = y;
  }
}

// y = A x for A as stored and one column (decoding): columns of A scaled and added, NV registers
// of rows at a time. With few rows the sum over k is split into KS interleaved partial sums
// (added in a fixed order at the end) so that several multiply-adds are in flight.
template <int NV, int KS>
void gemv_n_block(const Args& a, int64_t i0, int rows) {
  using V = typename Simd::V;
  constexpr int W = Simd::W;
  V acc[KS][NV];
  for (int s = 0; s < KS; ++s)
    for (int r = 0; r < NV; ++r) acc[s][r] = Simd::zero();
  const float* __restrict A = a.A + i0;
  const float* __restrict x = a.B;
  const int64_t K = a.K, KK = K / KS * KS, lda = a.lda;
  const int tail = rows - (NV - 1) * W;  // rows in the last register (1..W)
  if (tail == W) {
    for (int64_t k = 0; k < KK; k += KS)
#pragma GCC unroll 4
      for (int s = 0; s < KS; ++s) {
        const V b = Simd::set1(x[k + s]);
        const float* col = A + (k + s) * lda;
#pragma GCC unroll 8
        for (int r = 0; r < NV; ++r) acc[s][r] = Simd::fma(Simd::loadu(col + r * W), b, acc[s][r]);
      }
  } else {
    for (int64_t k = 0; k < KK; k += KS)
#pragma GCC unroll 4
      for (int s = 0; s < KS; ++s) {
        const V b = Simd::set1(x[k + s]);
        const float* col = A + (k + s) * lda;
#pragma GCC unroll 8
        for (int r = 0; r < NV - 1; ++r)
          acc[s][r] = Simd::fma(Simd::loadu(col + r * W), b, acc[s][r]);
        acc[s][NV - 1] = Simd::fma(Simd::load_n(col + (NV - 1) * W, tail), b, acc[s][NV - 1]);
      }
  }
  for (int64_t k = KK; k < K; ++k) {
    const V b = Simd::set1(x[k]);
    const float* col = A + k * lda;
    for (int r = 0; r < NV; ++r)
      acc[0][r] = Simd::fma(Simd::load_n(col + r * W, std::min(W, rows - r * W)), b, acc[0][r]);
  }
  for (int r = 0; r < NV; ++r) {
    V y = acc[0][r];
    if constexpr (KS == 2) y = Simd::add(acc[0][r], acc[1][r]);
    if constexpr (KS == 4)
      y = Simd::add(Simd::add(acc[0][r], acc[1][r]), Simd::add(acc[2][r], acc[3][r]));
    const int n = std::min(W, rows - r * W);
    if (a.bias) y = Simd::add(y, Simd::load_n(a.bias + i0 + r * W, n));
    if (a.accumulate) y = Simd::add(y, Simd::load_n(a.C + i0 + r * W, n));
    Simd::store_n(a.C + i0 + r * W, y, n);
  }
}

void gemv_n(const Args& a) {
  constexpr int W = Simd::W;
  for (int64_t i0 = 0; i0 < a.M; i0 += 8 * W) {
    const int rows = int(std::min<int64_t>(8 * W, a.M - i0));
    switch ((rows + W - 1) / W) {
      case 1:
        gemv_n_block<1, 4>(a, i0, rows);
        break;
      case 2:
        gemv_n_block<2, 4>(a, i0, rows);
        break;
      case 3:
        gemv_n_block<3, 2>(a, i0, rows);
        break;
      case 4:
        gemv_n_block<4, 2>(a, i0, rows);
        break;
      case 5:
        gemv_n_block<5, 1>(a, i0, rows);
        break;
      case 6:
        gemv_n_block<6, 1>(a, i0, rows);
        break;
      case 7:
        gemv_n_block<7, 1>(a, i0, rows);
        break;
      default:
        gemv_n_block<8, 1>(a, i0, rows);
        break;
    }
  }
}

// PackedGemv: one group of kGemvRegs registers of rows. Even columns sum into e, odd ones into o
// (two chains per register: 2 * kGemvRegs multiply-adds in flight), then y = (e + o) + bias
// (+ y).
constexpr int kGemvRegs = 4;
constexpr int64_t kGemvRows = kGemvRegs * Simd::W;

template <bool BF16>
void gemv_packed_group(const void* group, int64_t K, const float* __restrict x, float* __restrict y,
                       int rows, const float* bias, bool add) {
  using V = typename Simd::V;
  constexpr int W = Simd::W, R = kGemvRegs;
  constexpr int64_t G = kGemvRows;
  V e[R], o[R];
  for (int r = 0; r < R; ++r) e[r] = Simd::zero(), o[r] = Simd::zero();
  auto pair = [&](int64_t kk, V b0, V b1) {
    if constexpr (BF16) {
      const uint32_t* p = static_cast<const uint32_t*>(group) + kk * G;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        V lo, hi;
        Simd::bf16_pair(p + r * W, lo, hi);
        e[r] = Simd::fma(lo, b0, e[r]);
        o[r] = Simd::fma(hi, b1, o[r]);
      }
    } else {
      const float* p = static_cast<const float*>(group) + kk * 2 * G;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        e[r] = Simd::fma(Simd::loadu(p + r * W), b0, e[r]);
        o[r] = Simd::fma(Simd::loadu(p + G + r * W), b1, o[r]);
      }
    }
  };
  const int64_t full = K / 2;
  // Software prefetch 1 KiB ahead in the stream: with bf16 weights held in L2 the hardware
  // prefetchers alone left the kernel waiting (measured: 10.5 -> 13.9 thousand tokens/s).
  constexpr int64_t bytes = (BF16 ? 4 : 8) * G, ahead = 1024;
  const char* base = static_cast<const char*>(group);
  for (int64_t kk = 0; kk < full; ++kk) {
    for (int64_t c = 0; c < bytes; c += 64)
      _mm_prefetch(base + kk * bytes + ahead + c, _MM_HINT_T0);
    pair(kk, Simd::set1(x[2 * kk]), Simd::set1(x[2 * kk + 1]));
  }
  if (K % 2) pair(full, Simd::set1(x[K - 1]), Simd::zero());  // the padding column is zero
  for (int r = 0; r < R && r * W < rows; ++r) {
    const int n = std::min(W, rows - r * W);
    V v = Simd::add(e[r], o[r]);
    if (bias) v = Simd::add(v, Simd::load_n(bias + r * W, n));
    if (add) v = Simd::add(v, Simd::load_n(y + r * W, n));
    Simd::store_n(y + r * W, v, n);
  }
}

}  // namespace

double fma_peak_gflops(double ms) {
  using V = typename Simd::V;
  constexpr int kChains = 12;  // more than latency x throughput of every x86 core's FMA units
  const int64_t iters = std::max<int64_t>(1000, int64_t(ms * 1e5));
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    V acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = Simd::set1(1.0f + 1e-7f * float(c));
    const V mul = Simd::set1(0.9999999f), add = Simd::set1(1e-7f);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
      for (int c = 0; c < kChains; ++c) {
        acc[c] = Simd::fma(acc[c], mul, add);
      }
      // An empty asm that "reads and writes" every register: the chains can't be folded away.
      // (In a separate loop: inside the first one GCC kept the accumulators in memory.)
#pragma GCC unroll 12
      for (int c = 0; c < kChains; ++c) {
        asm volatile("" : "+v"(acc[c]));
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(iters) * kChains * Simd::W * 2 / s / 1e9);
  }
  return best;
}

int64_t gemv_group_rows() {
  return kGemvRows;
}

PackedGemv::PackedGemv(Op op, int64_t M, int64_t K, const float* A, int64_t lda, bool bf16)
    : M_(M), K_(K), bf16_(bf16) {
  if (M < 0 || K < 0) throw std::invalid_argument("PackedGemv: negative size");
  const int64_t G = kGemvRows, groups = (M + G - 1) / G, pairs = (K + 1) / 2;
  auto at = [&](int64_t i, int64_t k) {
    if (i >= M || k >= K) return 0.0f;
    return op == Op::N ? A[k * lda + i] : A[i * lda + k];
  };
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  if (bf16)
    b16_.assign(size_t(groups * pairs * G), 0u);
  else
    f32_.assign(size_t(groups * pairs * 2 * G), 0.0f);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t kk = 0; kk < pairs; ++kk)
      for (int64_t i = 0; i < G; ++i) {
        const float lo = at(g * G + i, 2 * kk), hi = at(g * G + i, 2 * kk + 1);
        if (bf16) {
          b16_[size_t((g * pairs + kk) * G + i)] =
              (bits(round_bf16(lo)) >> 16) | (bits(round_bf16(hi)) & 0xFFFF0000u);
        } else {
          f32_[size_t(((g * pairs + kk) * 2) * G + i)] = lo;
          f32_[size_t(((g * pairs + kk) * 2 + 1) * G + i)] = hi;
        }
      }
}

void PackedGemv::apply(const float* x, const float* bias, float* y, bool accumulate) const {
  const int64_t G = kGemvRows, pairs = (K_ + 1) / 2;
  for (int64_t g = 0; g * G < M_; ++g) {
    const int rows = int(std::min(G, M_ - g * G));
    const float* b = bias ? bias + g * G : nullptr;
    if (bf16_)
      gemv_packed_group<true>(b16_.data() + g * pairs * G, K_, x, y + g * G, rows, b, accumulate);
    else
      gemv_packed_group<false>(f32_.data() + g * pairs * 2 * G, K_, x, y + g * G, rows, b,
                               accumulate);
  }
}

void run(const Args& a) {
  check(a);
  if (a.M == 0 || a.N == 0) return;
  if (a.bf16) return run_bf16(a);
  if (a.op_a == Op::T && a.N == 1 && (a.op_b == Op::N || a.ldb == 1) && !a.bf16 &&
      a.causal == Causal::none)
    return gemv_t(a);
  if (a.op_a == Op::N && a.N == 1 && (a.op_b == Op::N || a.ldb == 1) && !a.bf16 &&
      a.causal == Causal::none)
    return gemv_n(a);
  thread_local AlignedVector<float> packed;
  const auto& kernels = a.op_b == Op::T ? kKernelsT : kKernelsN;
  const int64_t K = a.K;
  // Few columns of B (decoding: one): A is read once, in place, over the whole depth.
  const bool direct = a.op_a == Op::N && a.N <= NR;
  const int64_t kc_max = direct ? std::max<int64_t>(K, 1) : std::min(KC, std::max<int64_t>(K, 1));
  const size_t need = size_t((direct ? MR : std::min(MC, (a.M + MR - 1) / MR * MR)) * kc_max);
  if (packed.size() < need) packed.resize(need);
  // K == 0: the product is zero; one pass with an empty sum still stores (or adds) the bias.
  for (int64_t pc = 0; pc < std::max<int64_t>(K, 1); pc += kc_max) {
    const int64_t kc = std::min(kc_max, K - pc);
    const bool first = pc == 0 && !a.accumulate;
    const bool last = pc + kc_max >= K;
    const int64_t mc_max = direct ? a.M : MC;
    for (int64_t ic = 0; ic < a.M; ic += mc_max) {
      const int64_t mc = std::min(mc_max, a.M - ic);
      if (kc > 0 && !direct) pack_a(a, ic, mc, pc, kc, packed.data());
      for (int64_t jr = 0; jr < a.N; jr += NR) {
        const int n = int(std::min<int64_t>(NR, a.N - jr));
        int64_t k0 = pc, k1 = pc + kc;
        if (a.causal == Causal::k_upto_col) k1 = std::min(k1, jr + n);
        if (a.causal == Causal::k_from_col) k0 = std::max(k0, jr);
        const int64_t kn = std::max<int64_t>(0, k1 - k0);
        int64_t rows = mc;
        if (a.causal == Causal::rows_upto_col) rows = std::min(mc, jr + n - ic);
        const float* Bk = a.op_b == Op::T ? a.B + k0 * a.ldb + jr : a.B + jr * a.ldb + k0;
        for (int64_t ir = 0; ir < rows; ir += MR) {
          const int m = int(std::min<int64_t>(MR, mc - ir));
          const float* Ap = packed.data() + ir * kc + (k0 - pc) * MR;
          int64_t sa = MR;
          if (direct && m == MR) {
            Ap = a.A + k0 * a.lda + ic + ir, sa = a.lda;
          } else if (direct && kn > 0) {  // the last rows: pack them (no reads past A)
            pack_a(a, ic + ir, m, k0, kn, packed.data());
            Ap = packed.data();
          }
          kernels[size_t(n - 1)](kn, Ap, sa, Bk, a.ldb, a.C + (jr * a.ldc + ic + ir), a.ldc, m,
                                 !first, last && a.bias ? a.bias + ic + ir : nullptr);
        }
      }
    }
  }
}

int64_t causal_panel_end(int64_t col) {
  return (col / NR + 1) * NR;
}

bool has_bf16() {
  // The binary must have been built for it (-march with AVX512_BF16), and the CPU must run it.
  if constexpr (!kBf16) return false;
  static const bool cpu = __builtin_cpu_supports("avx512bf16");
  return cpu;
}

}  // namespace cllm::gemm
