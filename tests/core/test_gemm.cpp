// src/gemm: every operand layout, epilogue and causal shape against a double-precision reference.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <catch2/catch.hpp>

#include "src/gemm.hpp"
#include "src/rng.hpp"

namespace {

using cllm::gemm::Causal;
using cllm::gemm::Op;

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(cllm::normal_at(seed, i));
  return v;
}

// Runs one product with random operands (padded leading dimensions) and compares every element
// that the options define against a double-precision sum, within a float tolerance.
void check_product(Op oa, Op ob, int64_t M, int64_t N, int64_t K, bool acc, bool bias, Causal cz,
                   bool bf16 = false) {
  const int64_t lda = (oa == Op::N ? M : K) + 3, ldb = (ob == Op::N ? K : N) + 5, ldc = M + 7;
  const auto A = random_floats(size_t(lda * (oa == Op::N ? K : M)), 1);
  auto B = random_floats(size_t(ldb * (ob == Op::N ? N : K)), 2);
  const auto bv = random_floats(size_t(M), 3);
  auto at = [&](int64_t i, int64_t k) { return oa == Op::N ? A[k * lda + i] : A[i * lda + k]; };
  auto bref = [&](int64_t k, int64_t j) -> float& {
    return ob == Op::N ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)];
  };
  // The causal options promise zeros in B: make them true.
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j)
      if ((cz == Causal::k_upto_col && k > j) || (cz == Causal::k_from_col && k < j))
        bref(k, j) = 0;
  const auto C0 = random_floats(size_t(ldc * N), 4);
  auto C = C0;
  cllm::gemm::matmul(oa, ob, M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, acc,
                     bias ? bv.data() : nullptr, cz, bf16);
  double worst = 0;
  for (int64_t j = 0; j < N; ++j)
    for (int64_t i = 0; i < M; ++i) {
      const float got = C[size_t(j * ldc + i)];
      if (cz == Causal::rows_upto_col && i > j) continue;
      double want = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = at(i, k), b = bref(k, j);
        if (bf16) {  // the reference rounds its inputs the same way
          a = double(cllm::gemm::round_bf16(float(a)));
          b = double(cllm::gemm::round_bf16(float(b)));
        }
        want += a * b, mag += std::fabs(a * b);
      }
      if (bias) want += bv[size_t(i)], mag += std::fabs(bv[size_t(i)]);
      if (acc) want += C0[size_t(j * ldc + i)], mag += std::fabs(C0[size_t(j * ldc + i)]);
      worst = std::max(worst, std::fabs(got - want) / (mag + 1e-30));
    }
  // Padding rows of C (beyond M) are never written.
  for (int64_t j = 0; j < N; ++j)
    for (int64_t i = M; i < ldc; ++i) REQUIRE(C[size_t(j * ldc + i)] == C0[size_t(j * ldc + i)]);
  CHECK(worst < (bf16 ? 1e-5 : 1e-6));
}

}  // namespace

TEST_CASE("gemm matches a double-precision product for every layout and epilogue", "[gemm]") {
  const int64_t sizes[][3] = {{1, 1, 1},     {5, 3, 7},     {32, 12, 16},   {33, 13, 17},
                              {64, 40, 300}, {300, 29, 64}, {17, 100, 520}, {0, 3, 4},
                              {3, 0, 4},     {4, 3, 0},     {300, 1, 130},  {40, 12, 520},
                              {31, 1, 7}};
  for (const auto& s : sizes)
    for (Op oa : {Op::N, Op::T})
      for (Op ob : {Op::N, Op::T})
        for (bool acc : {false, true})
          for (bool bias : {false, true}) {
            INFO("M " << s[0] << " N " << s[1] << " K " << s[2] << " opA " << int(oa) << " opB "
                      << int(ob) << " acc " << acc << " bias " << bias);
            check_product(oa, ob, s[0], s[1], s[2], acc, bias, Causal::none);
          }
}

TEST_CASE("gemm's causal shapes compute what attention needs", "[gemm]") {
  for (int64_t T : {1, 7, 32, 45, 130, 300})
    for (int64_t hd : {8, 32, 40}) {
      INFO("T " << T << " hd " << hd);
      check_product(Op::T, Op::N, T, T, hd, false, false, Causal::rows_upto_col);  // k^T q
      check_product(Op::N, Op::N, hd, T, T, false, false, Causal::k_upto_col);     // v p
      check_product(Op::N, Op::T, hd, T, T, true, false, Causal::k_from_col);      // dy p^T
      check_product(Op::N, Op::N, hd, T, T, true, false, Causal::k_upto_col);      // k dp
    }
}

TEST_CASE("gemm is bit-for-bit repeatable", "[gemm]") {
  const int64_t M = 70, N = 50, K = 600;
  const auto A = random_floats(size_t(M * K), 5), B = random_floats(size_t(K * N), 6);
  std::vector<float> C1(size_t(M * N)), C2(size_t(M * N), 1.0f);
  cllm::gemm::matmul(Op::N, Op::N, M, N, K, A.data(), M, B.data(), K, C1.data(), M, false);
  cllm::gemm::matmul(Op::N, Op::N, M, N, K, A.data(), M, B.data(), K, C2.data(), M, false);
  CHECK(C1 == C2);
}

TEST_CASE("a transposed A gives the bits of its explicit transpose", "[gemm]") {
  // Packing only moves data (16 x 16 register transposes for op(A) = A^T), so both layouts must
  // sum the same products in the same order: equality, not a tolerance. The sizes cover whole and
  // partial panels of rows, and depths that are not multiples of 16 or of the packed block.
  const int64_t sizes[][3] = {{32, 12, 16}, {70, 50, 600}, {128, 37, 129}, {64, 2048, 128}};
  for (const auto& s : sizes) {
    const int64_t M = s[0], N = s[1], K = s[2], lda = K + 3;
    const auto At = random_floats(size_t(lda * M), 7), B = random_floats(size_t(K * N), 8);
    std::vector<float> A(size_t(M * K));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) A[size_t(k * M + i)] = At[size_t(i * lda + k)];
    std::vector<float> C1(size_t(M * N)), C2(size_t(M * N));
    cllm::gemm::matmul(Op::T, Op::N, M, N, K, At.data(), lda, B.data(), K, C1.data(), M, false);
    cllm::gemm::matmul(Op::N, Op::N, M, N, K, A.data(), M, B.data(), K, C2.data(), M, false);
    INFO("M " << M << " N " << N << " K " << K);
    CHECK(C1 == C2);
  }
}

TEST_CASE("the FMA peak probe measures a positive, finite rate", "[gemm]") {
  const double peak = cllm::gemm::fma_peak_gflops(1);
  CHECK(std::isfinite(peak));
  CHECK(peak > 0);
}

TEST_CASE("bf16 products: rounded inputs, float sums (where the CPU has AVX512_BF16)", "[gemm]") {
  if (!cllm::gemm::has_bf16()) {
    // Refused with an exception, never computed some other way.
    std::vector<float> A(4, 1.0f), B(4, 1.0f), C(4);
    CHECK_THROWS_AS(cllm::gemm::matmul(Op::N, Op::N, 2, 2, 2, A.data(), 2, B.data(), 2, C.data(), 2,
                                       false, nullptr, Causal::none, true),
                    std::invalid_argument);
    return;
  }
  const int64_t sizes[][3] = {{1, 1, 1},      {5, 3, 7},     {32, 12, 16},
                              {33, 13, 17},   {64, 40, 300}, {300, 29, 64},
                              {17, 100, 521}, {4, 3, 0},     {128, 2048, 128}};
  for (const auto& s : sizes)
    for (Op oa : {Op::N, Op::T})
      for (Op ob : {Op::N, Op::T})
        for (bool acc : {false, true}) {
          INFO("M " << s[0] << " N " << s[1] << " K " << s[2] << " opA " << int(oa) << " opB "
                    << int(ob) << " acc " << acc);
          check_product(oa, ob, s[0], s[1], s[2], acc, true, Causal::none, true);
        }
}

TEST_CASE("bf16 products of a transposed A equal those of its copy, bit for bit", "[gemm]") {
  if (!cllm::gemm::has_bf16()) return;  // refused without AVX512_BF16: the case above checks it
  // Op T packs A's rows with the vector conversion, op N its columns: the same pairs must result,
  // whole panels, a panel's tail rows (M % 32) and the k tail (K % 32) included.
  const int64_t sizes[][3] = {{32, 7, 32}, {64, 5, 96}, {96, 3, 301}, {45, 9, 77}, {768, 4, 1024}};
  for (const auto& s : sizes) {
    const int64_t M = s[0], N = s[1], K = s[2], lda = K + 3, ldn = M + 1;
    const auto At = random_floats(size_t(lda * M), 5), B = random_floats(size_t(K * N), 6);
    std::vector<float> An(size_t(ldn * K));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) An[size_t(k * ldn + i)] = At[size_t(i * lda + k)];
    std::vector<float> Ct(size_t(M * N)), Cn(size_t(M * N));
    cllm::gemm::matmul(Op::T, Op::N, M, N, K, At.data(), lda, B.data(), K, Ct.data(), M, false,
                       nullptr, Causal::none, true);
    cllm::gemm::matmul(Op::N, Op::N, M, N, K, An.data(), ldn, B.data(), K, Cn.data(), M, false,
                       nullptr, Causal::none, true);
    INFO("M " << M << " N " << N << " K " << K);
    CHECK(std::memcmp(Ct.data(), Cn.data(), Ct.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("round_bf16 rounds to nearest, ties to even", "[gemm]") {
  using cllm::gemm::round_bf16;
  CHECK(round_bf16(1.0f) == 1.0f);
  CHECK(round_bf16(1.0f + 1.0f / 256) == 1.0f);               // tie: to even (down)
  CHECK(round_bf16(1.0f + 3.0f / 256) == 1.0f + 4.0f / 256);  // tie: to even (up)
  CHECK(round_bf16(1.0f + 1.5f / 256) == 1.0f + 2.0f / 256);  // above the tie
  CHECK(round_bf16(-2.5f) == -2.5f);
}
