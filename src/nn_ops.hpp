#pragma once
// The model's building blocks on column-major token matrices (one column per token). Shared by
// the training model and the KV-cache decoder so both compute with the same code.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "src/gemm.hpp"

namespace cllm {

template <class Scalar>
struct NnOps {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using MapM = Eigen::Map<Mat>;
  using CMapM = Eigen::Map<const Mat>;
  using MapV = Eigen::Map<Vec>;
  using CMapV = Eigen::Map<const Vec>;
  static constexpr Scalar kLnEps = Scalar(1e-5);
  using Op = gemm::Op;
  using Causal = gemm::Causal;

  // C (+)= op(A) op(B) (+ bias per row). A, B and C are column-major Eigen maps or blocks of
  // what is stored (op T reads A or B transposed). float goes through src/gemm (bf16 products
  // when asked); double, the precision of the tests' references, through Eigen, which computes
  // every element whatever `causal` says (the skipped terms are zeros).
  template <class MA, class MB, class MC>
  static void product(Op oa, Op ob, const MA& A, const MB& B, MC&& C, bool accumulate,
                      const Scalar* bias = nullptr, Causal causal = Causal::none,
                      bool bf16 = false) {
    if constexpr (std::is_same_v<Scalar, float>) {
      gemm::matmul(oa, ob, C.rows(), C.cols(), oa == Op::N ? A.cols() : A.rows(), A.data(),
                   A.outerStride(), B.data(), B.outerStride(), C.data(), C.outerStride(),
                   accumulate, bias, causal, bf16);
    } else {
      (void)causal, (void)bf16;
      if (!accumulate) C.setZero();
      if (oa == Op::N && ob == Op::N) C.noalias() += A * B;
      if (oa == Op::T && ob == Op::N) C.noalias() += A.transpose() * B;
      if (oa == Op::N && ob == Op::T) C.noalias() += A * B.transpose();
      if (oa == Op::T && ob == Op::T) C.noalias() += A.transpose() * B.transpose();
      if (bias) C.colwise() += CMapV(bias, C.rows());
    }
  }
  // Rows (of a causal product's column `col`) that the float products may touch above the
  // diagonal: [col + 1, causal_end). Those must hold zeros; Eigen's products touch all of them.
  static Eigen::Index causal_end(Eigen::Index col, Eigen::Index rows) {
    if constexpr (std::is_same_v<Scalar, float>)
      return std::min<Eigen::Index>(rows, gemm::causal_panel_end(col));
    else
      return rows;
  }

  // y = LN(x) * w + b per column; saves mean and 1/std for the backward pass.
  template <class X, class Y>
  static void layernorm_forward(const X& x, const CMapV& w, const CMapV& b, Y y, Scalar* mean,
                                Scalar* rstd) {
    const Scalar inv_d = Scalar(1) / Scalar(x.rows());
    for (Eigen::Index n = 0; n < x.cols(); ++n) {
      const auto xc = x.col(n);
      const Scalar mu = xc.sum() * inv_d;
      const Scalar var = (xc.array() - mu).square().sum() * inv_d;
      const Scalar rs = Scalar(1) / std::sqrt(var + kLnEps);
      mean[n] = mu, rstd[n] = rs;
      y.col(n) = ((xc.array() - mu) * rs * w.array() + b.array()).matrix();
    }
  }

  // Given dy = dLoss/dLN(x): dw += sum dy*xhat, db += sum dy, and dx (+)= the input gradient.
  template <class X, class DY, class DX>
  static void layernorm_backward(const X& x, const CMapV& w, const Scalar* mean, const Scalar* rstd,
                                 const DY& dy, MapV dw, MapV db, DX dx, bool accumulate) {
    const Scalar inv_d = Scalar(1) / Scalar(x.rows());
    for (Eigen::Index n = 0; n < x.cols(); ++n) {
      const auto xhat = ((x.col(n).array() - mean[n]) * rstd[n]).eval();
      const auto g = dy.col(n).array();
      dw.array() += g * xhat;
      db.array() += g;
      const auto dxhat = (g * w.array()).eval();
      const Scalar m1 = dxhat.sum() * inv_d;
      const Scalar m2 = (dxhat * xhat).sum() * inv_d;
      if (accumulate)
        dx.col(n).array() += (dxhat - m1 - xhat * m2) * rstd[n];
      else
        dx.col(n).array() = (dxhat - m1 - xhat * m2) * rstd[n];
    }
  }

  // y = W x + b, W is out x in.
  template <class W, class X, class Y>
  static void linear_forward(const W& w, const CMapV& b, const X& x, Y y, bool bf16 = false) {
    product(Op::N, Op::N, w, x, y, false, b.data(), Causal::none, bf16);
  }
  // y += W x + b (a residual connection).
  template <class W, class X, class Y>
  static void linear_forward_add(const W& w, const CMapV& b, const X& x, Y y, bool bf16 = false) {
    product(Op::N, Op::N, w, x, y, true, b.data(), Causal::none, bf16);
  }
  // dW = dy x^T, db = rowsum(dy), dx = W^T dy. (Each layer's weights get their gradient here
  // only, so it is stored, not added: the gradient buffer needs no zeroing pass.)
  template <class W, class X, class DY, class DW, class DX>
  static void linear_backward(const W& w, const X& x, const DY& dy, DW dw, MapV db, DX dx,
                              bool bf16 = false) {
    product(Op::N, Op::T, dy, x, dw, false, nullptr, Causal::none, bf16);
    db = dy.rowwise().sum();
    product(Op::T, Op::N, w, dy, dx, false, nullptr, Causal::none, bf16);
  }

  static constexpr Scalar kGeluC = Scalar(0.7978845608028654);  // sqrt(2/pi)
  static constexpr Scalar kGeluA = Scalar(0.044715);
  template <class X, class Y>
  static void gelu_forward(const X& x, Y y) {
    const auto a = x.array();
    y.array() = Scalar(0.5) * a * (Scalar(1) + (kGeluC * (a + kGeluA * a.cube())).tanh());
  }
  // d := d * gelu'(x)
  template <class X, class D>
  static void gelu_backward(const X& x, D d) {
    const auto a = x.array();
    const auto t = (kGeluC * (a + kGeluA * a.cube())).tanh();
    d.array() *= Scalar(0.5) * (Scalar(1) + t) + Scalar(0.5) * a * (Scalar(1) - t.square()) *
                                                     kGeluC *
                                                     (Scalar(1) + Scalar(3) * kGeluA * a.square());
  }

  // Column i holds the scores of query i against keys j; keys j > i are masked (future): zeros,
  // as far as the products read them (causal_end).
  template <class P>
  static void causal_softmax_columns(P p, Scalar scale) {
    const Eigen::Index T = p.rows();
    for (Eigen::Index i = 0; i < T; ++i) {
      auto c = p.col(i).head(i + 1);
      const Scalar mx = c.maxCoeff();
      c.array() = ((c.array() - mx) * scale).exp();
      c *= Scalar(1) / c.sum();
      p.col(i).segment(i + 1, causal_end(i, T) - i - 1).setZero();
    }
  }
  // Softmax of a single query over all of its (already causal) keys.
  template <class S>
  static void causal_softmax_last(S s, Scalar scale) {
    const Scalar mx = s.maxCoeff();
    s.array() = ((s.array() - mx) * scale).exp();
    s *= Scalar(1) / s.sum();
  }
  // dp := dLoss/d(raw scores) given probs p and dp = dLoss/dp; scale is the 1/sqrt(hd) factor.
  template <class P, class DP>
  static void softmax_backward_columns(const P& p, DP dp, Scalar scale) {
    const Eigen::Index T = p.rows();
    for (Eigen::Index i = 0; i < T; ++i) {
      auto pc = p.col(i).head(i + 1);
      auto dc = dp.col(i).head(i + 1);
      const Scalar dot = pc.dot(dc);
      dc.array() = pc.array() * (dc.array() - dot) * scale;
      dp.col(i).segment(i + 1, causal_end(i, T) - i - 1).setZero();
    }
  }

  // Sum of -log softmax(logits)[target] over columns. With `to_grad`, logits become
  // softmax - onehot (the gradient of the sum).
  template <class LG>
  static double cross_entropy(LG lg, const int32_t* targets, bool to_grad) {
    double loss = 0;
    for (Eigen::Index n = 0; n < lg.cols(); ++n) {
      auto c = lg.col(n);
      const Scalar mx = c.maxCoeff();
      const Scalar tgt = c(targets[n]);
      if (!to_grad) {  // keep the logits readable (evaluation, sampling)
        loss += double(std::log((c.array() - mx).exp().sum()) + mx - tgt);
        continue;
      }
      c.array() = (c.array() - mx).exp();
      const Scalar sum = c.sum();
      loss += double(std::log(sum) + mx - tgt);
      c *= Scalar(1) / sum;
      c(targets[n]) -= Scalar(1);
    }
    return loss;
  }
};

}  // namespace cllm
