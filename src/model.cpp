#include "src/model.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "src/nn_ops.hpp"

namespace cllm {

namespace {

// The four products of a transformer block, for the `linear` callback of block_forward.
enum class Linear { qkv, proj, fc, fc2 };

// Where a block's product `which` finds its weight and bias, and the weight's shape.
struct LinearWeights {
  size_t w, bias;
  int rows, cols;
};
LinearWeights linear_weights(const BlockOffsets& o, Linear which, int d) {
  switch (which) {
    case Linear::qkv:
      return {o.qkv_w, o.qkv_b, 3 * d, d};
    case Linear::proj:
      return {o.proj_w, o.proj_b, d, d};
    case Linear::fc:
      return {o.fc_w, o.fc_b, 4 * d, d};
    case Linear::fc2:
      break;
  }
  return {o.fc2_w, o.fc2_b, d, 4 * d};
}

// The activations of one block's forward pass, N columns (one per token). Training keeps x_mid
// and fc_pre per layer; the decoder passes x as x_mid and x_out (the residual stream updated in
// place). ln1 and ln2 may be one buffer (each is used before the next is written).
template <class Scalar>
struct BlockActs {
  using MapM = typename NnOps<Scalar>::MapM;
  MapM x, ln1, qkv, att, x_mid, ln2, fc_pre, fc_act, x_out;  // d, d, 3d, d, d, d, 4d, 4d, d rows
  Scalar *mean1, *rstd1, *mean2, *rstd2;                     // one value per column
};

}  // namespace

// One GPT-2 block, forward (llm.c's order: pre-LayerNorm, residual connections):
//   x_mid = x + proj(attention(qkv(ln1(x))))
//   x_out = x_mid + fc2(gelu(fc(ln2(x_mid))))
// linear(which, in, out, add): out (+)= W in + b with the block's weights `which`;
// attention(qkv, att): the heads' outputs from q, k, v (training's square or the decoder's cache).
// Training and the decoder both run their blocks here, so they compute the same operations.
template <class Scalar, class LinearFn, class AttentionFn>
void block_forward(const BlockOffsets& o, const Scalar* P, int d, BlockActs<Scalar>& a,
                   LinearFn&& linear, AttentionFn&& attention) {
  using Ops = NnOps<Scalar>;
  using CMapV = typename Ops::CMapV;
  Ops::layernorm_forward(a.x, CMapV(P + o.ln1_w, d), CMapV(P + o.ln1_b, d), a.ln1, a.mean1,
                         a.rstd1);
  linear(Linear::qkv, a.ln1, a.qkv, false);
  attention(a.qkv, a.att);
  if (a.x_mid.data() != a.x.data()) a.x_mid = a.x;
  linear(Linear::proj, a.att, a.x_mid, true);
  Ops::layernorm_forward(a.x_mid, CMapV(P + o.ln2_w, d), CMapV(P + o.ln2_b, d), a.ln2, a.mean2,
                         a.rstd2);
  linear(Linear::fc, a.ln2, a.fc_pre, false);
  Ops::gelu_forward(a.fc_pre, a.fc_act);
  if (a.x_out.data() != a.x_mid.data()) a.x_out = a.x_mid;
  linear(Linear::fc2, a.fc_act, a.x_out, true);
}

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
  int Vp;  // rows of the LM head: V and the padding, whose logits never reach the softmax
  int64_t max_n;

  // Activations saved by the forward pass for the backward pass, one set per layer. Column-major,
  // one column per token: N = batch * context columns (token n = row n / T, position n % T).
  // What is cheap to recompute exactly (the same operations on the same saved inputs give the
  // same bits) is not kept per layer: the LayerNorm outputs, the GELU output and the attention
  // weights live in the shared buffers below and the backward pass recomputes them.
  struct LayerActs {
    AlignedVector<Scalar> x_in;    // d x N     residual stream entering the block
    AlignedVector<Scalar> mean1;   // N         LayerNorm 1's means
    AlignedVector<Scalar> rstd1;   // N         its 1 / std
    AlignedVector<Scalar> qkv;     // 3d x N    q = rows [0, d), k = [d, 2d), v = [2d, 3d)
    AlignedVector<Scalar> att_y;   // d x N     attention output, heads concatenated
    AlignedVector<Scalar> x_mid;   // d x N     residual stream after attention
    AlignedVector<Scalar> mean2;   // N
    AlignedVector<Scalar> rstd2;   // N
    AlignedVector<Scalar> fc_pre;  // 4d x N    MLP hidden layer before GELU
  };
  // With recompute, every layer keeps its x_in and acts[0] alone holds the rest, for the block
  // the pass is at (the backward pass runs each block's forward again from its x_in).
  std::vector<LayerActs> acts;
  bool recompute = false;
  LayerActs& set_of(int l) { return acts[recompute ? 0 : size_t(l)]; }
  // Shared by the layers (forward, then recomputed in the backward pass):
  AlignedVector<Scalar> ln_out;  // d x N     a LayerNorm's output (1, then 2)
  AlignedVector<Scalar> fc_act;  // 4d x N    GELU(fc_pre)
  // One sequence's and head's attention weights, T x T (key, query). probs_at() places them at
  // the address offset (mod 64 bytes) that a B H T T array would give them, so that the
  // vectorised sums of the softmax, and so the bits, are what they were when every head had its
  // own slot.
  AlignedVector<Scalar> probs;
  AlignedVector<Scalar> x_final;  // d x N     residual stream after the last block
  AlignedVector<Scalar> lnf;      // d x N     final LayerNorm output
  AlignedVector<Scalar> meanf;    // N
  AlignedVector<Scalar> rstdf;    // N
  AlignedVector<Scalar> logits;   // V x N     (dLoss/dlogits after the backward's start)
  // Backward scratch: gradients of the loss with respect to ...
  AlignedVector<Scalar> grad_resid;   // d x N   ... the residual stream (carried down the blocks)
  AlignedVector<Scalar> grad_ln_out;  // d x N   ... a LayerNorm's output
  AlignedVector<Scalar> grad_hidden;  // 4d x N  ... the MLP hidden layer
  AlignedVector<Scalar> grad_qkv;     // 3d x N  ... q, k and v
  AlignedVector<Scalar> grad_att;     // d x N   ... the attention output
  AlignedVector<Scalar> grad_scores;  // T x T   ... one head's attention weights, then scores
  AlignedVector<int32_t> inputs, targets;  // N
  int cur_batch = 0;

  bool bf16 = false;  // the linear layers' products in bfloat16

  Impl(const ModelConfig& c, int mb, int t, bool half, bool again)
      : cfg(c), layout(c), max_b(mb), T(t), recompute(again), bf16(half) {
    if (mb < 1) throw std::invalid_argument("max_batch must be >= 1");
    if (bf16 && (!std::is_same_v<Scalar, float> || !gemm::has_bf16()))
      throw std::invalid_argument("bf16 products need the float model and AVX512_BF16");
    if (t < 1 || t > c.context)
      throw std::invalid_argument("a batch's context must be in [1, the model's context]: got " +
                                  std::to_string(t));
    d = c.d_model, V = c.vocab, H = c.n_heads, hd = c.head_dim(), L = c.layers;
    Vp = c.padded_vocab();
    max_n = int64_t(mb) * t;
    // Every size comes from the one table (model_workspace), which memory estimates read too.
    const ModelWorkspace ws = model_workspace(c, mb, t, recompute);
    acts.resize(L);
    for (size_t l = 0; l < ws.layers; ++l) acts[l].x_in.resize(ws.x_in);
    for (size_t l = 0; l < ws.sets; ++l) {
      auto& a = acts[l];
      a.mean1.resize(ws.mean1), a.rstd1.resize(ws.rstd1);
      a.qkv.resize(ws.qkv), a.att_y.resize(ws.att_y), a.x_mid.resize(ws.x_mid);
      a.mean2.resize(ws.mean2), a.rstd2.resize(ws.rstd2), a.fc_pre.resize(ws.fc_pre);
    }
    ln_out.resize(ws.ln_out), fc_act.resize(ws.fc_act), probs.resize(ws.probs);
    x_final.resize(ws.x_final), lnf.resize(ws.lnf), meanf.resize(ws.meanf);
    rstdf.resize(ws.rstdf), logits.resize(ws.logits);
    grad_resid.resize(ws.grad_resid), grad_ln_out.resize(ws.grad_ln_out);
    grad_hidden.resize(ws.grad_hidden), grad_qkv.resize(ws.grad_qkv);
    grad_att.resize(ws.grad_att), grad_scores.resize(ws.grad_scores);
    inputs.resize(ws.tokens), targets.resize(ws.tokens);
  }

  // The attention weights of sequence b, head h (see `probs`).
  MapM probs_at(int b, int h) {
    constexpr size_t kAlignScalars = 64 / sizeof(Scalar);
    const size_t slot = (size_t(b) * H + size_t(h)) * size_t(T) * size_t(T);
    return MapM(probs.data() + slot % kAlignScalars, T, T);
  }
  // p = causal softmax(k^T q / sqrt(hd)) for sequence b, head h (forward, and again backward).
  template <class QKV>
  MapM attention_weights(const QKV& qkv, int b, int h, Scalar scale) {
    auto q = qkv.block(h * hd, int64_t(b) * T, hd, T);
    auto k = qkv.block(d + h * hd, int64_t(b) * T, hd, T);
    MapM p = probs_at(b, h);
    // p(j, i) = softmax_j (k_j . q_i) over keys j <= i: column i is query i. Only the causal half
    // is computed.
    Ops::product(Op::T, Op::N, k, q, p, false, nullptr, Causal::rows_upto_col);
    Ops::causal_softmax_columns(p, scale);
    return p;
  }

  // Causal multi-head self-attention over cur_batch sequences of T tokens (llm.c's
  // attention_forward): qkv is 3d x N (rows: q, k, v; heads of hd rows each; column n = token n),
  // att is d x N, the heads' outputs concatenated: att_h = v_h p_h with p_h the attention weights.
  void attention_forward(const MapM& qkv, MapM& att, Scalar scale) {
    for (int b = 0; b < cur_batch; ++b) {
      for (int h = 0; h < H; ++h) {
        auto v = qkv.block(2 * d + h * hd, int64_t(b) * T, hd, T);
        const MapM p = attention_weights(qkv, b, h, scale);
        Ops::product(Op::N, Op::N, v, p, att.block(h * hd, int64_t(b) * T, hd, T), false, nullptr,
                     Causal::k_upto_col);
      }
    }
  }
  // Its backward pass (llm.c's attention_backward): from datt (d x N, dLoss/d att) to dqkv
  // (3d x N). The attention weights are recomputed from qkv (the same bits as
  // forward); one T x T scratch (grad_scores) serves every sequence and head.
  void attention_backward(const MapM& qkv, const MapM& datt, MapM& dqkv, Scalar scale) {
    MapM dscores(grad_scores.data(), T, T);
    for (int b = 0; b < cur_batch; ++b) {
      for (int h = 0; h < H; ++h) {
        const int64_t c0 = int64_t(b) * T;
        auto q = qkv.block(h * hd, c0, hd, T);
        auto k = qkv.block(d + h * hd, c0, hd, T);
        auto v = qkv.block(2 * d + h * hd, c0, hd, T);
        const MapM p = attention_weights(qkv, b, h, scale);  // recomputed: the same bits
        auto dy = datt.block(h * hd, c0, hd, T);
        Ops::product(Op::N, Op::T, dy, p, dqkv.block(2 * d + h * hd, c0, hd, T), false, nullptr,
                     Causal::k_from_col);
        Ops::product(Op::T, Op::N, v, dy, dscores, false, nullptr, Causal::rows_upto_col);
        Ops::softmax_backward_columns(p, dscores,
                                      scale);  // now dLoss/d(scores), the 1/sqrt(hd) folded in
        Ops::product(Op::N, Op::N, k, dscores, dqkv.block(h * hd, c0, hd, T), false, nullptr,
                     Causal::k_upto_col);
        Ops::product(Op::N, Op::T, q, dscores, dqkv.block(d + h * hd, c0, hd, T), false, nullptr,
                     Causal::k_from_col);
      }
    }
  }

  // A workspace buffer as a rows x cols matrix.
  MapM mat(AlignedVector<Scalar>& v, int rows, int64_t cols) { return MapM(v.data(), rows, cols); }
  // A parameter tensor (at `off` in the flat buffer P) as a rows x cols matrix.
  CMapM param(const Scalar* P, size_t off, int rows, int cols) const {
    return CMapM(P + off, rows, cols);
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

  // Block l's forward pass from its saved x_in: its activations into set_of(l), its output into
  // the next block's x_in (or x_final). Run again by the backward pass with recompute, it writes
  // the same bits.
  void run_block(const Scalar* P, int l, int64_t N, Scalar scale) {
    auto& a = set_of(l);
    const auto& o = layout.blocks[l];
    BlockActs<Scalar> b{mat(acts[l].x_in, d, N),
                        mat(ln_out, d, N),
                        mat(a.qkv, 3 * d, N),
                        mat(a.att_y, d, N),
                        mat(a.x_mid, d, N),
                        mat(ln_out, d, N),
                        mat(a.fc_pre, 4 * d, N),
                        mat(fc_act, 4 * d, N),
                        (l + 1 < L) ? mat(acts[l + 1].x_in, d, N) : mat(x_final, d, N),
                        a.mean1.data(),
                        a.rstd1.data(),
                        a.mean2.data(),
                        a.rstd2.data()};
    block_forward(
        o, P, d, b,
        [&](Linear which, const MapM& in, MapM& out, bool add) {
          const LinearWeights lw = linear_weights(o, which, d);
          Ops::product(Op::N, Op::N, param(P, lw.w, lw.rows, lw.cols), in, out, add, P + lw.bias,
                       Causal::none, bf16);
        },
        [&](const MapM& qkv, MapM& att) { attention_forward(qkv, att, scale); });
  }

  // Runs the forward pass over cur_batch sequences; returns the summed cross-entropy.
  // With `for_backward`, logits are overwritten by dLoss/dlogits.
  double forward(const Scalar* P, bool for_backward) {
    const int64_t N = int64_t(cur_batch) * T;
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(hd));
    // Embeddings.
    {
      MapM x = mat(acts[0].x_in, d, N);
      CMapM wte = param(P, layout.wte, d, V), wpe = param(P, layout.wpe, d, cfg.context);
      for (int64_t n = 0; n < N; ++n) x.col(n) = wte.col(inputs[n]) + wpe.col(n % T);
    }
    for (int l = 0; l < L; ++l) run_block(P, l, N, scale);
    MapM xf = mat(x_final, d, N), lf = mat(lnf, d, N), lg = mat(logits, Vp, N);
    Ops::layernorm_forward(xf, CMapV(P + layout.lnf_w, d), CMapV(P + layout.lnf_b, d), lf,
                           meanf.data(), rstdf.data());
    Ops::product(Op::T, Op::N, param(P, layout.wte, d, Vp), lf, lg, false, nullptr, Causal::none,
                 bf16);
    if (Vp == V) return Ops::cross_entropy(lg, targets.data(), for_backward);
    // Padded vocabulary: the softmax runs over the V real rows; the padding gets no gradient.
    const double loss = Ops::cross_entropy(lg.topRows(V), targets.data(), for_backward);
    if (for_backward) lg.bottomRows(Vp - V).setZero();
    return loss;
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
    auto grad_mat = [&](size_t off, int rows, int cols) { return MapM(G + off, rows, cols); };
    auto grad_vec = [&](size_t off, int n) { return MapV(G + off, n); };
    MapM lg = mat(logits, Vp, N), lf = mat(lnf, d, N), dresid = mat(grad_resid, d, N),
         dln = mat(grad_ln_out, d, N);
    // Tied LM head: logits = wte^T lnf (over the padded rows too: their dlogits are zero).
    Ops::product(Op::N, Op::T, lf, lg, grad_mat(layout.wte, d, Vp), false, nullptr, Causal::none,
                 bf16);
    Ops::product(Op::N, Op::N, param(P, layout.wte, d, Vp), lg, dln, false, nullptr, Causal::none,
                 bf16);
    Ops::layernorm_backward(mat(x_final, d, N), CMapV(P + layout.lnf_w, d), meanf.data(),
                            rstdf.data(), dln, grad_vec(layout.lnf_w, d), grad_vec(layout.lnf_b, d),
                            dresid, false);
    for (int l = L - 1; l >= 0; --l) {
      // The top block's activations are still there from the forward pass.
      if (recompute && l + 1 < L) run_block(P, l, N, scale);
      auto& a = set_of(l);
      const auto& o = layout.blocks[l];
      MapM x = mat(acts[l].x_in, d, N), ln1 = mat(ln_out, d, N), qkv = mat(a.qkv, 3 * d, N);
      MapM att = mat(a.att_y, d, N), xm = mat(a.x_mid, d, N), ln2 = mat(ln_out, d, N);
      MapM fact = mat(fc_act, 4 * d, N), fpre = mat(a.fc_pre, 4 * d, N);
      MapM dhidden = mat(grad_hidden, 4 * d, N), dqkv = mat(grad_qkv, 3 * d, N),
           datt = mat(grad_att, d, N);
      // The forward pass's GELU output and LayerNorm 2 output again (the same bits).
      Ops::gelu_forward(fpre, fact);
      Ops::layernorm_forward(xm, CMapV(P + o.ln2_w, d), CMapV(P + o.ln2_b, d), ln2, a.mean2.data(),
                             a.rstd2.data());
      // MLP: dresid is dLoss/d(block output); the residual passes it through unchanged.
      Ops::linear_backward(param(P, o.fc2_w, d, 4 * d), fact, dresid, grad_mat(o.fc2_w, d, 4 * d),
                           grad_vec(o.fc2_b, d), dhidden, bf16);
      Ops::gelu_backward(fpre, dhidden);
      Ops::linear_backward(param(P, o.fc_w, 4 * d, d), ln2, dhidden, grad_mat(o.fc_w, 4 * d, d),
                           grad_vec(o.fc_b, 4 * d), dln, bf16);
      Ops::layernorm_backward(xm, CMapV(P + o.ln2_w, d), a.mean2.data(), a.rstd2.data(), dln,
                              grad_vec(o.ln2_w, d), grad_vec(o.ln2_b, d), dresid, true);
      // Attention.
      Ops::linear_backward(param(P, o.proj_w, d, d), att, dresid, grad_mat(o.proj_w, d, d),
                           grad_vec(o.proj_b, d), datt, bf16);
      attention_backward(qkv, datt, dqkv, scale);
      Ops::layernorm_forward(x, CMapV(P + o.ln1_w, d), CMapV(P + o.ln1_b, d), ln1, a.mean1.data(),
                             a.rstd1.data());
      Ops::linear_backward(param(P, o.qkv_w, 3 * d, d), ln1, dqkv, grad_mat(o.qkv_w, 3 * d, d),
                           grad_vec(o.qkv_b, 3 * d), dln, bf16);
      Ops::layernorm_backward(x, CMapV(P + o.ln1_w, d), a.mean1.data(), a.rstd1.data(), dln,
                              grad_vec(o.ln1_w, d), grad_vec(o.ln1_b, d), dresid, true);
    }
    // Embeddings.
    MapM gte = grad_mat(layout.wte, d, V), gpe = grad_mat(layout.wpe, d, cfg.context);
    for (int64_t n = 0; n < N; ++n) {
      gte.col(inputs[n]) += dresid.col(n);
      gpe.col(n % T) += dresid.col(n);
    }
  }
};

ModelWorkspace model_workspace(const ModelConfig& cfg, int max_batch, int context, bool recompute) {
  const size_t d = size_t(cfg.d_model), V = size_t(cfg.padded_vocab());
  const size_t B = size_t(std::max(0, max_batch)), T = size_t(std::max(0, context)), N = B * T;
  ModelWorkspace w;
  w.layers = size_t(std::max(0, cfg.layers));
  w.sets = recompute ? std::min<size_t>(w.layers, 1) : w.layers;
  w.x_in = d * N, w.mean1 = N, w.rstd1 = N, w.qkv = 3 * d * N;
  w.att_y = d * N, w.x_mid = d * N, w.mean2 = N;
  w.rstd2 = N, w.fc_pre = 4 * d * N;
  // One T x T slot, and room to place it at any 64-byte offset (Model::Impl::probs_at).
  w.ln_out = d * N, w.fc_act = 4 * d * N, w.probs = T * T + 64 / sizeof(float);
  w.x_final = d * N, w.lnf = d * N, w.meanf = N, w.rstdf = N, w.logits = V * N;
  w.grad_resid = d * N, w.grad_ln_out = d * N, w.grad_hidden = 4 * d * N, w.grad_qkv = 3 * d * N;
  w.grad_att = d * N, w.grad_scores = T * T;
  w.tokens = N;
  return w;
}

size_t ModelWorkspace::scalars() const {
  const size_t set = mean1 + rstd1 + qkv + att_y + x_mid + mean2 + rstd2 + fc_pre;
  return layers * x_in + sets * set + ln_out + fc_act + probs + x_final + lnf + meanf + rstdf +
         logits + grad_resid + grad_ln_out + grad_hidden + grad_qkv + grad_att + grad_scores;
}

template <class Scalar>
size_t Model<Scalar>::workspace_bytes(const ModelConfig& cfg, int max_batch, int context,
                                      bool recompute) {
  const ModelWorkspace w = model_workspace(cfg, max_batch, context, recompute);
  return w.scalars() * sizeof(Scalar) + 2 * w.tokens * sizeof(int32_t) + gemm::kScratchBytes;
}

template <class Scalar>
Model<Scalar>::Model(const ModelConfig& cfg, int max_batch, int context, bool bf16, bool recompute)
    : impl_(std::make_unique<Impl>(cfg, max_batch, context, bf16, recompute)) {}
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
int Model<Scalar>::context() const {
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

namespace {

const gemm::PackedGemv& packed_product(const DecodeWeights::Layer& l, Linear which) {
  switch (which) {
    case Linear::qkv:
      return l.qkv;
    case Linear::proj:
      return l.proj;
    case Linear::fc:
      return l.fc;
    case Linear::fc2:
      break;
  }
  return l.fc2;
}

}  // namespace

DecodeWeights::DecodeWeights(const ModelConfig& cfg, const float* P, bool bf16) {
  const ParamLayout layout(cfg);
  const int64_t d = cfg.d_model;
  using gemm::Op;
  for (const auto& o : layout.blocks) {
    Layer l;
    l.qkv = gemm::PackedGemv(Op::N, 3 * d, d, P + o.qkv_w, 3 * d, bf16);
    l.proj = gemm::PackedGemv(Op::N, d, d, P + o.proj_w, d, bf16);
    l.fc = gemm::PackedGemv(Op::N, 4 * d, d, P + o.fc_w, 4 * d, bf16);
    l.fc2 = gemm::PackedGemv(Op::N, d, 4 * d, P + o.fc2_w, d, bf16);
    layers.push_back(std::move(l));
  }
  head = gemm::PackedGemv(Op::T, cfg.vocab, d, P + layout.wte, d, bf16);
}

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
    d = c.d_model, V = c.vocab, H = c.n_heads, hd = c.head_dim(), L = c.layers, Tmax = c.context;
    kcache_t.assign(L, AlignedVector<Scalar>(size_t(d) * Tmax));
    vcache.assign(L, AlignedVector<Scalar>(size_t(d) * Tmax));
    const size_t D = size_t(d), T = size_t(Tmax);
    x.resize(D * T), ln.resize(D * T), qkv.resize(3 * D * T), att.resize(D * T);
    hid.resize(4 * D * T), act.resize(4 * D * T), scores.resize(T * T), logits.resize(V);
    mean.resize(T), rstd.resize(T);
  }

  // y (+)= W x + b over x's columns: through the packed weights when given (one column), else
  // through the products.
  template <class X, class Y>
  void linear(const gemm::PackedGemv* pw, CMapM w, const Scalar* b, const X& x, Y&& y, bool add) {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (pw) return pw->apply(x.data(), b, y.data(), add);
    }
    Ops::product(Op::N, Op::N, w, x, y, add, b);
  }

  // Layer l's attention for n new tokens at positions pos.. (qkv: 3d x n; att: d x n): their keys
  // and values go into the cache, then each query attends to every cached key up to its own.
  void attention(int l, const MapM& qkv, MapM& att, int n, Scalar scale) {
    const int keys = pos + n;
    MapM kt(kcache_t[l].data(), Tmax, d), vc(vcache[l].data(), d, Tmax);
    kt.block(pos, 0, n, d) = qkv.block(d, 0, d, n).transpose();
    vc.block(0, pos, d, n) = qkv.block(2 * d, 0, d, n);
    for (int h = 0; h < H; ++h) {
      MapM s(scores.data(), keys, n);  // s(j, i): key j against query i (at position pos + i)
      auto q = qkv.block(h * hd, 0, hd, n);
      auto att_h = att.block(h * hd, 0, hd, n);
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
  }

  // Consumes tokens[0..n) at positions pos, pos + 1, ...: the same layers as Model::forward, over
  // n columns at once (products instead of n matrix-vector passes). Returns the logits after the
  // last token.
  const Scalar* run(const Scalar* P, const int32_t* tokens, int n,
                    const DecodeWeights* packed = nullptr) {
    if (n < 1) throw std::invalid_argument("decoder: no tokens to consume");
    for (int i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= V)
        throw std::invalid_argument("token id " + std::to_string(tokens[i]) +
                                    " outside the vocabulary");
    if (pos + n > Tmax) throw std::out_of_range("decoder context is full; reset() first");
    if (n > 1 && packed) throw std::invalid_argument("decoder: packed weights take one token");
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
    for (int l = 0; l < L; ++l) {
      const auto& o = layout.blocks[l];
      const DecodeWeights::Layer* pl = packed ? &packed->layers[size_t(l)] : nullptr;
      BlockActs<Scalar> b{xv,   lv, qv,          av,          xv,          lv,         hv,
                          actv, xv, mean.data(), rstd.data(), mean.data(), rstd.data()};
      block_forward(
          o, P, d, b,
          [&](Linear which, const MapM& in, MapM& out, bool add) {
            const LinearWeights lw = linear_weights(o, which, d);
            linear(pl ? &packed_product(*pl, which) : nullptr, W(lw.w, lw.rows, lw.cols),
                   P + lw.bias, in, out, add);
          },
          [&](const MapM& q_all, MapM& att) { attention(l, q_all, att, n, scale); });
    }
    // Only the last token's logits are needed, and only the V real ones (the padded rows of wte
    // are left out: sampling never sees them).
    auto last = xv.block(0, n - 1, d, 1);
    MapM lf(ln.data(), d, 1);
    Ops::layernorm_forward(last, CMapV(P + layout.lnf_w, d), CMapV(P + layout.lnf_b, d), lf,
                           mean.data(), rstd.data());
    MapM lg(logits.data(), V, 1);
    if constexpr (std::is_same_v<Scalar, float>) {
      if (packed) {
        packed->head.apply(lf.data(), nullptr, lg.data(), false);
        pos += n;
        return logits.data();
      }
    }
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
const Scalar* Decoder<Scalar>::step(const Scalar* params, const DecodeWeights& packed,
                                    int32_t token) {
  if constexpr (!std::is_same_v<Scalar, float>)
    throw std::invalid_argument("decoder: packed weights are float");
  const auto& c = impl_->cfg;
  if (packed.layers.size() != size_t(c.layers) || packed.head.rows() != c.vocab ||
      packed.head.cols() != c.d_model)
    throw std::invalid_argument("decoder: packed weights of another model");
  return impl_->run(params, &token, 1, &packed);
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
