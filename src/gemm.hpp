#pragma once
// The model's matrix products in float: C (M x N, column-major) = op(A) op(B), op = as stored or
// transposed, with the epilogues the layers need (store or add, a bias per row) and the causal
// shapes of attention, so that nothing is zero-filled or computed only to be masked.
//
// Why not Eigen: on the model's shapes Eigen spent a third of its GEMM time outside the kernel
// (it packs both operands on every call and zero-fills the destination of `C = A * B`), and it
// cannot skip the masked half of attention. Here only the small operand A is packed (weights, or
// one head's slice); B is read in place with broadcasts.
//
// The summation order of every element depends only on (M, N, K, the options), never on the data,
// the thread or the buffer addresses: results are bit-identical for one binary, as the exact sum
// requires. With `bf16`, A and B are rounded to bfloat16 (round to nearest even) and multiplied
// with the CPU's bf16 dot-product instruction, accumulating in float.
#include <cstdint>
#include <cstring>

#include "src/aligned.hpp"

namespace cllm::gemm {

enum class Op : uint8_t { N, T };  // as stored (column-major) / transposed

// Which part of the product is needed (attention's causal structure; see model.cpp).
enum class Causal : uint8_t {
  none,
  rows_upto_col,  // only C(r, c) with r <= c is needed (others are left unwritten)
  k_upto_col,     // B(k, c) == 0 for k > c: sum over k <= c only
  k_from_col,     // B(k, c) == 0 for k < c: sum over k >= c only
};

struct Args {
  Op op_a = Op::N, op_b = Op::N;
  int64_t M = 0, N = 0, K = 0;
  const float* A = nullptr;  // op_a N: A(i, k) = A[k * lda + i]; T: A[i * lda + k]
  int64_t lda = 0;
  const float* B = nullptr;  // op_b N: B(k, j) = B[j * ldb + k]; T: B[k * ldb + j]
  int64_t ldb = 0;
  float* C = nullptr;  // C(i, j) = C[j * ldc + i]
  int64_t ldc = 0;
  bool accumulate = false;       // C += product (else C = product)
  const float* bias = nullptr;   // optional, M entries: C(i, j) += bias[i]
  Causal causal = Causal::none;  // requires M, N, K <= kMaxCausal
  bool bf16 = false;             // bfloat16 inputs, float accumulation (needs has_bf16())
};

constexpr int64_t kMaxCausal = 4096;

// The per-thread packing buffer run() keeps for float products (one block of A); bf16 products
// also keep one block of B.
constexpr size_t kScratchBytes = 256 * 256 * sizeof(float);

void run(const Args& a);

// A causal product computes whole panels of columns: for column `col` it may read B(k, col) or
// write C(r, col) for k, r in [col + 1, causal_panel_end(col)) too, so those entries of B must be
// zeros (and such entries of C are written, with zeros when B's are).
int64_t causal_panel_end(int64_t col);

// Whether this binary and CPU can run bf16 products (AVX512_BF16).
bool has_bf16();

// x rounded to bfloat16 (nearest, ties to even), as a float: what a bf16 product multiplies.
inline float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // Inf / NaN pass through
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

// Convenience wrapper: C = / += op(A) op(B) (+ bias).
inline void matmul(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                   const float* bias = nullptr, Causal causal = Causal::none, bool bf16 = false) {
  Args a;
  a.op_a = op_a, a.op_b = op_b, a.M = M, a.N = N, a.K = K, a.A = A, a.lda = lda, a.B = B;
  a.ldb = ldb, a.C = C, a.ldc = ldc, a.accumulate = accumulate, a.bias = bias, a.causal = causal;
  a.bf16 = bf16;
  run(a);
}

// A weight matrix W (M x K) repacked for y = W x with ONE column (decoding a token), so that the
// product reads it as a single sequential stream: groups of gemv_group_rows() rows; within a
// group, for each pair of columns (k, k + 1), the group's rows of both columns. With `bf16` the
// entries are rounded to bfloat16 (nearest, ties to even) and a pair of columns shares one 32-bit
// lane per row (column k in the low half), half the bytes of float; x, the sums and y stay float.
// The order of every sum depends only on (M, K): even columns and odd columns are summed in
// column order into two partial sums, added at the end, then the bias, then y (accumulate).
class PackedGemv {
 public:
  PackedGemv() = default;
  // W(i, k) = A[k * lda + i] (op N: A as stored, column-major) or A[i * lda + k] (op T).
  PackedGemv(Op op, int64_t M, int64_t K, const float* A, int64_t lda, bool bf16);
  // y (M entries) = W x (+ bias) (+ y when accumulate); x has K entries.
  void apply(const float* x, const float* bias, float* y, bool accumulate) const;
  int64_t rows() const { return M_; }
  int64_t cols() const { return K_; }
  bool bf16() const { return bf16_; }
  size_t bytes() const { return f32_.size() * 4 + b16_.size() * 4; }

 private:
  int64_t M_ = 0, K_ = 0;
  bool bf16_ = false;
  AlignedVector<float> f32_;
  AlignedVector<uint32_t> b16_;
};
int64_t gemv_group_rows();

// The core's fp32 multiply-add peak in GFLOP/s, measured with the kernels' own SIMD width: 12
// independent chains of fused multiply-adds, 1e5 x `ms` iterations (a few tens of milliseconds
// at the default), best of three. The ceiling every benchmark figure is compared with (a step
// can't run faster than this).
double fma_peak_gflops(double ms = 100);

}  // namespace cllm::gemm
