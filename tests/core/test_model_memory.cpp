// The model's workspace: what a layer keeps for the backward pass, and what it recomputes (the
// LayerNorm outputs, the GELU output and the attention weights live once, shared by the layers).
// That the recomputation gives the same bits is checked by the gradient checks and the golden
// test (tests/core), and by every exactness test that compares weights hashes across runs.
#include <catch2/catch.hpp>

#include "src/config.hpp"
#include "src/model.hpp"

using namespace cllm;

TEST_CASE("model workspace: a layer keeps 10 d + 4 scalars per token, nothing per head",
          "[model][memory]") {
  ModelConfig c;  // the GPT-2 body with the byte vocabulary
  c.d_model = 768, c.layers = 12, c.n_heads = 12, c.context = 1024;
  const size_t d = 768, N = 1024;
  ModelConfig deeper = c;
  deeper.layers = 13;
  const size_t per_layer =
      Model<float>::workspace_bytes(deeper, 1, 1024) - Model<float>::workspace_bytes(c, 1, 1024);
  // x_in, qkv (3), att_y, x_mid, fc_pre (4), and two LayerNorms' mean and 1/std.
  CHECK(per_layer == (10 * d + 4) * N * sizeof(float));
  // With recompute a layer keeps its input alone; one set of the rest serves every layer.
  const size_t per_layer_recompute = Model<float>::workspace_bytes(deeper, 1, 1024, true) -
                                     Model<float>::workspace_bytes(c, 1, 1024, true);
  CHECK(per_layer_recompute == d * N * sizeof(float));
  CHECK(Model<float>::workspace_bytes(c, 1, 1024) -
            Model<float>::workspace_bytes(c, 1, 1024, true) ==
        11 * (9 * d + 4) * N * sizeof(float));
  // More heads or a longer batch of sequences cost no attention weights per layer.
  ModelConfig more_heads = c;
  more_heads.n_heads = 24;
  CHECK(Model<float>::workspace_bytes(more_heads, 1, 1024) ==
        Model<float>::workspace_bytes(c, 1, 1024));
  // Under half a GiB at the GPT-2 body, micro-batch 1 (it was 1.25 GiB with every layer's
  // LayerNorm outputs, GELU output and attention weights kept).
  CHECK(Model<float>::workspace_bytes(c, 1, 1024) < size_t(512) << 20);
  // The table and the model agree: a model of that shape allocates (and so can run) with it.
  ModelConfig small = c;
  small.d_model = 32, small.n_heads = 4, small.context = 13;
  const ModelWorkspace w = model_workspace(small, 3, 13);
  CHECK(w.probs >= size_t(13 * 13));
  CHECK(w.ln_out == size_t(32 * 39));
}
