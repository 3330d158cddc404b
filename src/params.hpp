#pragma once
// One flat parameter buffer with named tensor views. The order and names follow GPT-2
// (Hugging Face layout: Conv1D weights stored [in, out] row-major), so a checkpoint opens in
// other tools without renaming. Gradients and optimizer moments use the same layout.
#include <cstdint>
#include <string>
#include <vector>

#include "src/aligned.hpp"
#include "src/config.hpp"

namespace cllm {

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // row-major shape as stored in a checkpoint
  size_t offset = 0;           // into the flat buffer, in elements (multiple of 16)
  size_t size = 0;             // number of elements
  bool decay = false;          // AdamW weight decay applies (2-D weights only)
};

// Offsets of one transformer block's tensors.
struct BlockOffsets {
  size_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg);

  const ModelConfig& config() const { return cfg_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  size_t total() const { return total_; }           // flat buffer length (with padding)
  size_t num_parameters() const { return count_; }  // real parameters, without padding

  // wte has config().padded_vocab() rows; the rows past config().vocab are padding (zero).
  size_t wte = 0, wpe = 0, lnf_w = 0, lnf_b = 0;
  std::vector<BlockOffsets> blocks;

 private:
  size_t add(const std::string& name, std::vector<int64_t> shape, bool decay);
  ModelConfig cfg_;
  std::vector<TensorInfo> tensors_;
  size_t total_ = 0, count_ = 0;
};

// GPT-2 initialisation from a seed: N(0, 0.02), residual projections scaled by 1/sqrt(2 layers),
// biases 0, LayerNorm gain 1. Deterministic (counter-based RNG), independent of thread count.
template <class Scalar>
void init_parameters(const ParamLayout& layout, uint64_t seed, Scalar* params);

}  // namespace cllm
