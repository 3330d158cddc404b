#include "src/model.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "src/nn_ops.hpp"

namespace cllm {

template <class Scalar>
struct Model<Scalar>::Impl {
  using Ops = NnOps<Scalar>;
  using Mat = typename Ops::Mat;
  using MapM = typename Ops::MapM;
  using CMapM = typename Ops::CMapM;
  using MapV = typename Ops::MapV;
  using CMapV = typename Ops::CMapV;
  using Op = gemm::Op;
  using Causal = gemm::Causal;

  ModelConfig cfg;
  ParamLayout layout;
  int max_b, T;
  int d, V, H, hd, L;
  int64_t max_n;

  // Activations saved by the forward pass for the backward pass, one set per layer.
  struct LayerActs {
    AlignedVector<Scalar> x_in, ln1, mean1, rstd1, qkv, probs, att_y, x_mid, ln2, mean2, rstd2,
        fc_pre, fc_act;
  };
  std::vector<LayerActs> acts;
  AlignedVector<Scalar> x_final, lnf, meanf, rstdf, logits;
  // Backward scratch.
  AlignedVector<Scalar> dx, dtmp, d4, dqkv, datt, dprobs;
  AlignedVector<int32_t> inputs, targets;
  int cur_batch = 0;

  bool bf16 = false;  // the linear layers' products in bfloat16

  Impl(const ModelConfig& c, int mb, int t, bool half)
      : cfg(c), layout(c), max_b(mb), T(t), bf16(half) {
    if (mb < 1) throw std::invalid_argument("max_batch must be >= 1");
    if (bf16 && (!std::is_same_v<Scalar, float> || !gemm::has_bf16()))
      throw std::invalid_argument("bf16 products need the float model and AVX512_BF16");
    if (t < 1 || t > c.context)
      throw std::invalid_argument("seq_len must be in [1, context]: got " + std::to_string(t));
    d = c.d_model, V = c.vocab, H = c.n_heads, hd = c.head_dim(), L = c.n_layers;
    max_n = int64_t(mb) * t;
    const size_t N = size_t(max_n), D = size_t(d);
    acts.resize(L);
    for (auto& a : acts) {
      a.x_in.resize(D * N), a.ln1.resize(D * N), a.mean1.resize(N), a.rstd1.resize(N);
      a.qkv.resize(3 * D * N), a.probs.resize(size_t(mb) * H * T * T), a.att_y.resize(D * N);
      a.x_mid.resize(D * N), a.ln2.resize(D * N), a.mean2.resize(N), a.rstd2.resize(N);
      a.fc_pre.resize(4 * D * N), a.fc_act.resize(4 * D * N);
    }
    x_final.resize(D * N), lnf.resize(D * N), meanf.resize(N), rstdf.resize(N);
    logits.resize(size_t(V) * N);
    dx.resize(D * N), dtmp.resize(D * N), d4.resize(4 * D * N), dqkv.resize(3 * D * N);
    datt.resize(D * N), dprobs.resize(size_t(T) * T);
    inputs.resize(N), targets.resize(N);
  }

  MapM m(AlignedVector<Scalar>& v, int rows, int64_t cols) { return MapM(v.data(), rows, cols); }
  CMapM w(const Scalar* p, size_t off, int rows, int cols) const {
    return CMapM(p + off, rows, cols);
  }

  void load_tokens(const int32_t* tokens, int batch) {
    if (batch < 1 || batch > max_b)
      throw std::invalid_argument("batch " + std::to_string(batch) + " outside [1, " +
                                  std::to_string(max_b) + "]");
    for (int b = 0; b < batch; ++b) {
      const int32_t* row = tokens + size_t(b) * (T + 1);
      for (int t = 0; t <= T; ++t)
        if (row[t] < 0 || row[t] >= V)
          throw std::invalid_argument("token id " + std::to_string(row[t]) +
                                      " outside the vocabulary [0, " + std::to_string(V) + ")");
      std::memcpy(&inputs[size_t(b) * T], row, sizeof(int32_t) * T);
      std::memcpy(&targets[size_t(b) * T], row + 1, sizeof(int32_t) * T);
    }
    cur_batch = batch;
  }

  // Runs the forward pass over cur_batch sequences; returns the summed cross-entropy.
  // With `for_backward`, logits are overwritten by dLoss/dlogits.
  double forward(const Scalar* P, bool for_backward) {
    const int64_t N = int64_t(cur_batch) * T;
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(hd));
    // Embeddings.
    {
      MapM x = m(acts[0].x_in, d, N);
      CMapM wte = w(P, layout.wte, d, V), wpe = w(P, layout.wpe, d, cfg.context);
      for (int64_t n = 0; n < N; ++n) x.col(n) = wte.col(inputs[n]) + wpe.col(n % T);
    }
    for (int l = 0; l < L; ++l) {
      auto& a = acts[l];
      const auto& o = layout.blocks[l];
      MapM x = m(a.x_in, d, N), ln1 = m(a.ln1, d, N), qkv = m(a.qkv, 3 * d, N);
      MapM att = m(a.att_y, d, N), xm = m(a.x_mid, d, N), ln2 = m(a.ln2, d, N);
      MapM fpre = m(a.fc_pre, 4 * d, N), fact = m(a.fc_act, 4 * d, N);
      Ops::layernorm_forward(x, CMapV(P + o.ln1_w, d), CMapV(P + o.ln1_b, d), ln1, a.mean1.data(),
                             a.rstd1.data());
      Ops::linear_forward(w(P, o.qkv_w, 3 * d, d), CMapV(P + o.qkv_b, 3 * d), ln1, qkv, bf16);
      for (int b = 0; b < cur_batch; ++b) {
        for (int h = 0; h < H; ++h) {
          auto q = qkv.block(h * hd, int64_t(b) * T, hd, T);
          auto k = qkv.block(d + h * hd, int64_t(b) * T, hd, T);
          auto v = qkv.block(2 * d + h * hd, int64_t(b) * T, hd, T);
          MapM p(a.probs.data() + (size_t(b) * H + h) * T * T, T, T);
          // p(j, i) = softmax_j (k_j . q_i) over keys j <= i: column i is query i. Only the
          // causal half is computed.
          Ops::product(Op::T, Op::N, k, q, p, false, nullptr, Causal::rows_upto_col);
          Ops::causal_softmax_columns(p, scale);
          Ops::product(Op::N, Op::N, v, p, att.block(h * hd, int64_t(b) * T, hd, T), false, nullptr,
                       Causal::k_upto_col);
        }
      }
      xm = x;
      Ops::linear_forward_add(w(P, o.proj_w, d, d), CMapV(P + o.proj_b, d), att, xm, bf16);
      Ops::layernorm_forward(xm, CMapV(P + o.ln2_w, d), CMapV(P + o.ln2_b, d), ln2, a.mean2.data(),
                             a.rstd2.data());
      Ops::linear_forward(w(P, o.fc_w, 4 * d, d), CMapV(P + o.fc_b, 4 * d), ln2, fpre, bf16);
      Ops::gelu_forward(fpre, fact);
      MapM xn = (l + 1 < L) ? m(acts[l + 1].x_in, d, N) : m(x_final, d, N);
      xn = xm;
      Ops::linear_forward_add(w(P, o.fc2_w, d, 4 * d), CMapV(P + o.fc2_b, d), fact, xn, bf16);
    }
    MapM xf = m(x_final, d, N), lf = m(lnf, d, N), lg = m(logits, V, N);
    Ops::layernorm_forward(xf, CMapV(P + layout.lnf_w, d), CMapV(P + layout.lnf_b, d), lf,
                           meanf.data(), rstdf.data());
    Ops::product(Op::T, Op::N, w(P, layout.wte, d, V), lf, lg, false, nullptr, Causal::none, bf16);
    return Ops::cross_entropy(lg, targets.data(), for_backward);
  }

  void backward(const Scalar* P, Scalar* G) {
    const int64_t N = int64_t(cur_batch) * T;
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(hd));
    // No zeroing pass over the gradient: every 2-D weight's gradient is stored by exactly one
    // product below (wte's by the LM head, before the embedding adds to it); only the 1-D
    // tensors (LayerNorm and bias gradients, summed over columns) and wpe start from zero.
    // The padding between tensors is zeroed too: the whole buffer is defined.
    size_t end = 0;
    for (const auto& t : layout.tensors()) {
      std::fill(G + end, G + t.offset, Scalar(0));
      if (t.shape.size() == 1 || t.offset == layout.wpe)
        std::fill(G + t.offset, G + t.offset + t.size, Scalar(0));
      end = t.offset + t.size;
    }
    std::fill(G + end, G + layout.total(), Scalar(0));
    auto gw = [&](size_t off, int rows, int cols) { return MapM(G + off, rows, cols); };
    auto gv = [&](size_t off, int n) { return MapV(G + off, n); };
    MapM lg = m(logits, V, N), lf = m(lnf, d, N), g = m(dx, d, N), tmp = m(dtmp, d, N);
    // Tied LM head: logits = wte^T lnf.
    Ops::product(Op::N, Op::T, lf, lg, gw(layout.wte, d, V), false, nullptr, Causal::none, bf16);
    Ops::product(Op::N, Op::N, w(P, layout.wte, d, V), lg, tmp, false, nullptr, Causal::none, bf16);
    Ops::layernorm_backward(m(x_final, d, N), CMapV(P + layout.lnf_w, d), meanf.data(),
                            rstdf.data(), tmp, gv(layout.lnf_w, d), gv(layout.lnf_b, d), g, false);
    for (int l = L - 1; l >= 0; --l) {
      auto& a = acts[l];
      const auto& o = layout.blocks[l];
      MapM x = m(a.x_in, d, N), ln1 = m(a.ln1, d, N), qkv = m(a.qkv, 3 * d, N);
      MapM att = m(a.att_y, d, N), xm = m(a.x_mid, d, N), ln2 = m(a.ln2, d, N);
      MapM fact = m(a.fc_act, 4 * d, N), fpre = m(a.fc_pre, 4 * d, N);
      MapM dh = m(d4, 4 * d, N), dq = m(dqkv, 3 * d, N), da = m(datt, d, N);
      // MLP: g is dLoss/d(x_out); the residual passes it through unchanged.
      Ops::linear_backward(w(P, o.fc2_w, d, 4 * d), fact, g, gw(o.fc2_w, d, 4 * d), gv(o.fc2_b, d),
                           dh, bf16);
      Ops::gelu_backward(fpre, dh);
      Ops::linear_backward(w(P, o.fc_w, 4 * d, d), ln2, dh, gw(o.fc_w, 4 * d, d), gv(o.fc_b, 4 * d),
                           tmp, bf16);
      Ops::layernorm_backward(xm, CMapV(P + o.ln2_w, d), a.mean2.data(), a.rstd2.data(), tmp,
                              gv(o.ln2_w, d), gv(o.ln2_b, d), g, true);
      // Attention.
      Ops::linear_backward(w(P, o.proj_w, d, d), att, g, gw(o.proj_w, d, d), gv(o.proj_b, d), da,
                           bf16);
      MapM dp(dprobs.data(), T, T);
      for (int b = 0; b < cur_batch; ++b) {
        for (int h = 0; h < H; ++h) {
          const int64_t c0 = int64_t(b) * T;
          auto q = qkv.block(h * hd, c0, hd, T);
          auto k = qkv.block(d + h * hd, c0, hd, T);
          auto v = qkv.block(2 * d + h * hd, c0, hd, T);
          MapM p(a.probs.data() + (size_t(b) * H + h) * T * T, T, T);
          auto dy = da.block(h * hd, c0, hd, T);
          Ops::product(Op::N, Op::T, dy, p, dq.block(2 * d + h * hd, c0, hd, T), false, nullptr,
                       Causal::k_from_col);
          Ops::product(Op::T, Op::N, v, dy, dp, false, nullptr, Causal::rows_upto_col);
          Ops::softmax_backward_columns(p, dp, scale);  // dp := dLoss/dscores (pre-scale folded)
          Ops::product(Op::N, Op::N, k, dp, dq.block(h * hd, c0, hd, T), false, nullptr,
                       Causal::k_upto_col);
          Ops::product(Op::N, Op::T, q, dp, dq.block(d + h * hd, c0, hd, T), false, nullptr,
                       Causal::k_from_col);
        }
      }
      Ops::linear_backward(w(P, o.qkv_w, 3 * d, d), ln1, dq, gw(o.qkv_w, 3 * d, d),
                           gv(o.qkv_b, 3 * d), tmp, bf16);
      Ops::layernorm_backward(x, CMapV(P + o.ln1_w, d), a.mean1.data(), a.rstd1.data(), tmp,
                              gv(o.ln1_w, d), gv(o.ln1_b, d), g, true);
    }
    // Embeddings.
    MapM gte = gw(layout.wte, d, V), gpe = gw(layout.wpe, d, cfg.context);
    for (int64_t n = 0; n < N; ++n) {
      gte.col(inputs[n]) += g.col(n);
      gpe.col(n % T) += g.col(n);
    }
  }
};

template <class Scalar>
Model<Scalar>::Model(const ModelConfig& cfg, int max_batch, int seq_len, bool bf16)
    : impl_(std::make_unique<Impl>(cfg, max_batch, seq_len, bf16)) {}
template <class Scalar>
Model<Scalar>::~Model() = default;
template <class Scalar>
const ModelConfig& Model<Scalar>::config() const {
  return impl_->cfg;
}
template <class Scalar>
const ParamLayout& Model<Scalar>::layout() const {
  return impl_->layout;
}
template <class Scalar>
int Model<Scalar>::max_batch() const {
  return impl_->max_b;
}
template <class Scalar>
int Model<Scalar>::seq_len() const {
  return impl_->T;
}
template <class Scalar>
double Model<Scalar>::forward_backward(const Scalar* params, const int32_t* tokens, int batch,
                                       Scalar* grad) {
  impl_->load_tokens(tokens, batch);
  double loss = impl_->forward(params, true);
  impl_->backward(params, grad);
  return loss;
}
template <class Scalar>
double Model<Scalar>::forward(const Scalar* params, const int32_t* tokens, int batch) {
  impl_->load_tokens(tokens, batch);
  return impl_->forward(params, false);
}
template <class Scalar>
const Scalar* Model<Scalar>::logits() const {
  return impl_->logits.data();
}

// ---------------------------------------------------------------------------------------------
// Decoder with a KV cache.

template <class Scalar>
struct Decoder<Scalar>::Impl {
  using Ops = NnOps<Scalar>;
  using MapM = typename Ops::MapM;
  using CMapM = typename Ops::CMapM;
  using MapV = typename Ops::MapV;
  using CMapV = typename Ops::CMapV;
  using Op = gemm::Op;
  using Causal = gemm::Causal;

  ModelConfig cfg;
  ParamLayout layout;
  int d, V, H, hd, L, Tmax;
  int pos = 0;
  // Per layer. Keys are kept transposed (Tmax x d: row = position), so that one query's scores
  // are a product with the cache as stored; values as d x Tmax (column = position).
  std::vector<AlignedVector<Scalar>> kcache_t, vcache;
  // Activations of up to Tmax tokens at once (prefill), one column per token; step() uses column 0.
  AlignedVector<Scalar> x, ln, qkv, att, hid, act, scores, logits, mean, rstd;

  explicit Impl(const ModelConfig& c) : cfg(c), layout(c) {
    d = c.d_model, V = c.vocab, H = c.n_heads, hd = c.head_dim(), L = c.n_layers, Tmax = c.context;
    kcache_t.assign(L, AlignedVector<Scalar>(size_t(d) * Tmax));
    vcache.assign(L, AlignedVector<Scalar>(size_t(d) * Tmax));
    const size_t D = size_t(d), T = size_t(Tmax);
    x.resize(D * T), ln.resize(D * T), qkv.resize(3 * D * T), att.resize(D * T);
    hid.resize(4 * D * T), act.resize(4 * D * T), scores.resize(T * T), logits.resize(V);
    mean.resize(T), rstd.resize(T);
  }

  // Consumes tokens[0..n) at positions pos, pos + 1, ...: the same layers as Model::forward, over
  // n columns at once (products instead of n matrix-vector passes). Returns the logits after the
  // last token.
  const Scalar* run(const Scalar* P, const int32_t* tokens, int n) {
    if (n < 1) throw std::invalid_argument("decoder: no tokens to consume");
    for (int i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= V)
        throw std::invalid_argument("token id " + std::to_string(tokens[i]) +
                                    " outside the vocabulary");
    if (pos + n > Tmax) throw std::out_of_range("decoder context is full; reset() first");
    if (n > 1 && pos > 0) {  // the causal products assume the block starts at position 0
      const Scalar* out = nullptr;
      for (int i = 0; i < n; ++i) out = run(P, tokens + i, 1);
      return out;
    }
    auto W = [&](size_t off, int rows, int cols) { return CMapM(P + off, rows, cols); };
    MapM xv(x.data(), d, n), lv(ln.data(), d, n), qv(qkv.data(), 3 * d, n);
    MapM av(att.data(), d, n), hv(hid.data(), 4 * d, n), actv(act.data(), 4 * d, n);
    for (int i = 0; i < n; ++i)
      xv.col(i) = W(layout.wte, d, V).col(tokens[i]) + W(layout.wpe, d, Tmax).col(pos + i);
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(hd));
    const int keys = pos + n;
    for (int l = 0; l < L; ++l) {
      const auto& o = layout.blocks[l];
      Ops::layernorm_forward(xv, CMapV(P + o.ln1_w, d), CMapV(P + o.ln1_b, d), lv, mean.data(),
                             rstd.data());
      Ops::linear_forward(W(o.qkv_w, 3 * d, d), CMapV(P + o.qkv_b, 3 * d), lv, qv);
      MapM kt(kcache_t[l].data(), Tmax, d), vc(vcache[l].data(), d, Tmax);
      kt.block(pos, 0, n, d) = qv.block(d, 0, d, n).transpose();
      vc.block(0, pos, d, n) = qv.block(2 * d, 0, d, n);
      for (int h = 0; h < H; ++h) {
        MapM s(scores.data(), keys, n);  // s(j, i): key j against query i (at position pos + i)
        auto q = qv.block(h * hd, 0, hd, n);
        auto att_h = av.block(h * hd, 0, hd, n);
        if (n == 1) {
          Ops::product(Op::N, Op::N, kt.block(0, h * hd, keys, hd), q, s, false);
          Ops::causal_softmax_last(s, scale);
          Ops::product(Op::N, Op::N, vc.block(h * hd, 0, hd, keys), s, att_h, false);
        } else {  // pos == 0: keys == n, the causal square of training
          Ops::product(Op::N, Op::N, kt.block(0, h * hd, keys, hd), q, s, false, nullptr,
                       Causal::rows_upto_col);
          Ops::causal_softmax_columns(s, scale);
          Ops::product(Op::N, Op::N, vc.block(h * hd, 0, hd, keys), s, att_h, false, nullptr,
                       Causal::k_upto_col);
        }
      }
      Ops::linear_forward_add(W(o.proj_w, d, d), CMapV(P + o.proj_b, d), av, xv);
      Ops::layernorm_forward(xv, CMapV(P + o.ln2_w, d), CMapV(P + o.ln2_b, d), lv, mean.data(),
                             rstd.data());
      Ops::linear_forward(W(o.fc_w, 4 * d, d), CMapV(P + o.fc_b, 4 * d), lv, hv);
      Ops::gelu_forward(hv, actv);
      Ops::linear_forward_add(W(o.fc2_w, d, 4 * d), CMapV(P + o.fc2_b, d), actv, xv);
    }
    // Only the last token's logits are needed.
    auto last = xv.block(0, n - 1, d, 1);
    MapM lf(ln.data(), d, 1);
    Ops::layernorm_forward(last, CMapV(P + layout.lnf_w, d), CMapV(P + layout.lnf_b, d), lf,
                           mean.data(), rstd.data());
    MapM lg(logits.data(), V, 1);
    Ops::product(Op::T, Op::N, W(layout.wte, d, V), lf, lg, false);
    pos += n;
    return logits.data();
  }
};

template <class Scalar>
Decoder<Scalar>::Decoder(const ModelConfig& cfg) : impl_(std::make_unique<Impl>(cfg)) {}
template <class Scalar>
Decoder<Scalar>::~Decoder() = default;
template <class Scalar>
void Decoder<Scalar>::reset() {
  impl_->pos = 0;
}
template <class Scalar>
int Decoder<Scalar>::position() const {
  return impl_->pos;
}
template <class Scalar>
const Scalar* Decoder<Scalar>::step(const Scalar* params, int32_t token) {
  return impl_->run(params, &token, 1);
}
template <class Scalar>
const Scalar* Decoder<Scalar>::prefill(const Scalar* params, const int32_t* tokens, int n) {
  return impl_->run(params, tokens, n);
}

template class Model<float>;
template class Model<double>;
template class Decoder<float>;
template class Decoder<double>;

}  // namespace cllm
