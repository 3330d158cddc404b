#pragma once
// The CLLM model: a GPT-2 style decoder with a hand-written backward pass.
//
// Layout: activations are column-major Eigen matrices with one column per token (d x N), so a
// token's vector is contiguous and every linear layer is one GEMM  Y = W X + b  with W stored
// [in, out] row-major (= Eigen column-major out x in), exactly GPT-2's Conv1D layout.
//
// Templated on the scalar type: float for training, double for finite-difference checks.
#include <cstdint>
#include <memory>
#include <vector>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/gemm.hpp"
#include "src/params.hpp"

namespace cllm {

// The model's workspace for (cfg, max_batch B, context T), in elements, one entry per buffer
// (N = B T tokens; shapes in model.cpp's LayerActs). The one table: Model allocates exactly these
// sizes and Model::workspace_bytes adds them up for memory planning.
struct ModelWorkspace {
  size_t layers = 0;  // copies of x_in: one per layer
  size_t sets = 0;    // copies of the rest of a layer's activations: one per layer, or one in all
                      // with recompute (the backward pass runs each block's forward again)
  // Per layer, saved by the forward pass for the backward pass.
  size_t x_in = 0, mean1 = 0, rstd1 = 0, qkv = 0, att_y = 0, x_mid = 0;
  size_t mean2 = 0, rstd2 = 0, fc_pre = 0;
  // Once, shared by the layers and recomputed by the backward pass (exactly): a LayerNorm's
  // output, the GELU output, one sequence's and head's attention weights.
  size_t ln_out = 0, fc_act = 0, probs = 0;
  // Once: the final LayerNorm and logits, the backward pass's scratch.
  size_t x_final = 0, lnf = 0, meanf = 0, rstdf = 0, logits = 0;
  size_t grad_resid = 0, grad_ln_out = 0, grad_hidden = 0, grad_qkv = 0, grad_att = 0;
  size_t grad_scores = 0;
  size_t tokens = 0;       // int32 ids, twice (inputs and targets)
  size_t scalars() const;  // every Scalar buffer above, all layers
};
ModelWorkspace model_workspace(const ModelConfig& cfg, int max_batch, int context,
                               bool recompute = false);

template <class Scalar>
class Model {
 public:
  // Allocates a reusable workspace for up to `max_batch` sequences of `context` tokens.
  // Nothing is allocated afterwards: the training step's hot path is allocation-free.
  // `bf16`: the linear layers' products in bfloat16 with float sums (float model only; needs
  // gemm::has_bf16()). `recompute`: keep only each block's input from the forward pass and run
  // the block's forward again in the backward pass (activation checkpointing): less memory, one
  // more forward pass of the blocks, the same bits (the same operations on the same inputs).
  Model(const ModelConfig& cfg, int max_batch, int context, bool bf16 = false,
        bool recompute = false);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Bytes a Model(cfg, max_batch, context) holds (its workspace, from model_workspace(), and the
  // products' per-thread packing scratch), for planning before anything is allocated.
  static size_t workspace_bytes(const ModelConfig& cfg, int max_batch, int context,
                                bool recompute = false);

  const ModelConfig& config() const;
  const ParamLayout& layout() const;
  int max_batch() const;
  int context() const;

  // `tokens` holds `batch` rows of context + 1 ids: row r's inputs are tokens[r][0..context)
  // and its targets tokens[r][1..context]. Returns the SUM over all batch*context tokens of the
  // cross-entropy (natural log), and overwrites `grad` (layout().total() entries) with the
  // gradient of that sum. Ids outside [0, vocab) throw std::invalid_argument.
  double forward_backward(const Scalar* params, const int32_t* tokens, int batch, Scalar* grad);

  // Forward only: the loss sum. Logits stay available through logits() afterwards.
  double forward(const Scalar* params, const int32_t* tokens, int batch);

  // Logits of the last forward(): padded_vocab() x (batch*context), column n = token n (row-major
  // batch); rows past vocab are the padding's, outside the softmax.
  // After forward_backward() the buffer holds dLoss/dlogits instead (it is reused in place).
  const Scalar* logits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The weight matrices of the linear layers and of the LM head, repacked once for decoding one
// token at a time (gemm::PackedGemv: one sequential stream per matrix), in float or, with `bf16`,
// rounded to bfloat16 (half the bytes: for `small` 1.6 MB instead of 3.3 MB, which fits in a
// 2 MiB L2). Biases, LayerNorms and embeddings stay float and are read from the parameters.
struct DecodeWeights {
  struct Layer {
    gemm::PackedGemv qkv, proj, fc, fc2;
  };
  std::vector<Layer> layers;
  gemm::PackedGemv head;  // wte^T: the logits
  DecodeWeights(const ModelConfig& cfg, const float* params, bool bf16);
};

// Incremental decoding with a KV cache, one token at a time. Gives the same logits as a full
// forward over the same prefix (up to float rounding).
template <class Scalar>
class Decoder {
 public:
  explicit Decoder(const ModelConfig& cfg);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  void reset();          // forget the cache
  int position() const;  // tokens consumed so far (< config().context)
  // Consumes `token` at position(); returns the vocab logits for the next token (the real
  // vocabulary only, never the padding's rows).
  const Scalar* step(const Scalar* params, int32_t token);
  // The same through `packed` (float only; built from the same params): another summation order,
  // and with bf16 weights other logits (within bfloat16 rounding).
  const Scalar* step(const Scalar* params, const DecodeWeights& packed, int32_t token);
  // Consumes tokens[0..n) (n >= 1, position() + n <= context) as n step() calls would, but
  // through matrix products when the cache is empty (a prompt, or the sliding window's
  // re-encoding); returns the logits after the last one. Same values as step() up to rounding.
  const Scalar* prefill(const Scalar* params, const int32_t* tokens, int n);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

extern template class Model<float>;
extern template class Model<double>;
extern template class Decoder<float>;
extern template class Decoder<double>;

}  // namespace cllm
