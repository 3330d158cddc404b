#pragma once
// Model and training configuration: plain data, validated in one place.
#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cllm {

// Thrown for any user-facing configuration problem; the message is one line naming it.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  int vocab = 256;
  // Rows of the embedding and the LM head: the vocabulary rounded up so that the head's product
  // has a friendly shape (GPT-2's 50257 -> 50304, as llm.c pads it). 0 = no padding. The padded
  // rows are zero, never an input and never a prediction: softmax, loss and sampling see `vocab`
  // logits only, and export/import strip/add the padding.
  int vocab_padded = 0;
  int d_model = 128;
  int layers = 4;
  int n_heads = 4;
  int context = 128;  // maximum sequence length (positional table size)

  int head_dim() const { return d_model / n_heads; }
  int padded_vocab() const { return vocab_padded > vocab ? vocab_padded : vocab; }
  bool operator==(const ModelConfig& o) const {
    return vocab == o.vocab && padded_vocab() == o.padded_vocab() && d_model == o.d_model &&
           layers == o.layers && n_heads == o.n_heads && context == o.context;
  }
  bool operator!=(const ModelConfig& o) const { return !(*this == o); }
  // Throws ConfigError when a size is impossible (non-positive, heads not dividing d_model...).
  void validate() const;
  std::string describe() const;  // "d 128, 4 layers, 4 heads, context 128, vocab 256"
};

// {"vocab", "d_model", "layers", "n_heads", "context"} and, only for a padded model,
// "vocab_padded" (so that the records of every other model keep their bytes), as run settings
// and checkpoints store the model.
nlohmann::json model_json(const ModelConfig& m);
// The key of `layers` in a stored model object: "layers", or "n_layers" in the checkpoints and
// run folders written before docs/glossary.md (JSON compatibility: they must stay readable).
const char* layers_key(const nlohmann::json& model);

// Named presets: tiny, small (default), base, and GPT-2's shapes gpt2 (124 M) and gpt2-medium
// (355 M) with GPT-2's vocabulary (50257, padded to 50304). Throws ConfigError for an unknown name.
ModelConfig model_preset(const std::string& name);
// Whether the preset is GPT-2's and needs GPT-2's tokenizer (its vocabulary of 50257 tokens).
bool preset_has_gpt2_vocab(const std::string& name);
constexpr int kGpt2Vocab = 50257;
// GPT-2 models (the gpt2 presets, imported folders) pad their vocabulary to a multiple of 128.
int gpt2_padded_vocab(int vocab);

// The defaults here and in RunConfig / BatchConfig are `cllm train`'s (run/settings.hpp reads
// them from these initialisers); the schedule's length is the run's steps (RunConfig::steps).
struct OptimConfig {
  double lr = 1e-3;      // peak learning rate
  double min_lr = 1e-4;  // floor of the cosine decay
  int64_t warmup = 100;  // linear warm-up steps
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled, 2-D weights only
  double clip = 1.0;          // global gradient-norm clip; <= 0 disables

  void validate() const;
};

// The shape of one training step: the global batch is cut into fixed shards.
struct BatchConfig {
  int batch = 16;       // sequences per step
  int micro_batch = 2;  // sequences per shard
  int context = 128;    // tokens per sequence (<= ModelConfig::context)

  int shards() const { return batch / micro_batch; }
  int64_t tokens_per_step() const { return int64_t(batch) * context; }
  void validate(const ModelConfig& m) const;
};

}  // namespace cllm
