#pragma once
// Import of a Hugging Face GPT-2 folder (transformers' GPT2LMHeadModel: config.json +
// model.safetensors, the layout `cllm export --format hf` writes; docs/export.md): its model
// shape, its weights in cllm's flat layout and its tokenizer. Anything cllm would compute
// differently (another activation, an untied LM head, another LayerNorm epsilon) or cannot hold
// (a missing or extra tensor, a wrong shape or dtype) is refused with one line naming it.
#include <memory>
#include <string>

#include "src/aligned.hpp"
#include "src/checkpoint.hpp"
#include "src/config.hpp"
#include "src/tokenizer.hpp"

namespace cllm {

// The model of DIR/config.json, its vocabulary padded as GPT-2 models are here
// (gpt2_padded_vocab). Throws ConfigError.
ModelConfig read_hf_gpt2_config(const std::string& dir);

// DIR/model.safetensors in the flat layout of `cfg` (read_hf_gpt2_config(dir)): tensor names with
// or without the "transformer." prefix; Conv1D weights [in, out] as stored (cllm's layout too);
// F32, or F16/BF16 widened exactly; the attention-mask buffers older files carry are skipped; an
// lm_head.weight must equal wte (tied). The padded rows are zero. Throws ConfigError or
// CheckpointError (a damaged file).
AlignedVector<float> read_hf_gpt2_weights(const std::string& dir, const ModelConfig& cfg);

// The folder's tokenizer: GPT-2's vocab.json + merges.txt when present, else tokenizer.json; a
// BPE without merges over the 256 bytes in byte order is the byte tokenizer. nullptr when the
// folder has none. Throws ConfigError.
std::unique_ptr<Tokenizer> read_hf_tokenizer(const std::string& dir);

// The whole folder as a checkpoint of step 0 (moments zero): `tokenizer_spec` (load_tokenizer)
// or, when empty, the folder's own. Throws ConfigError when the tokenizer is missing or its
// vocabulary is not the model's.
Checkpoint import_hf_gpt2(const std::string& dir, const std::string& tokenizer_spec);

}  // namespace cllm
