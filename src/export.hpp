#pragma once
// Export of a checkpoint to the formats other tools load (docs/export.md):
//  - a Hugging Face GPT-2 folder (GPT2LMHeadModel + tokenizers): config.json, model.safetensors
//    ("transformer.*" names, Conv1D [in, out] weights, tied LM head, __metadata__ format pt),
//    tokenizer.json, tokenizer_config.json, generation_config.json;
//  - one GGUF file for llama.cpp's "gpt2" architecture.
// Nothing is left at the output path when an export fails: everything is written under a
// temporary name and renamed into place at the end.
#include <string>

#include "src/checkpoint.hpp"

namespace cllm {

// What an export wrote, for the message to the user.
struct ExportSummary {
  std::string path;
  size_t tensors = 0;
  size_t bytes = 0;  // total size of the files written
};

// Throws ConfigError when the checkpoint cannot be expressed in the target (a tokenizer that is
// not byte-level BPE, a model whose vocabulary differs from its tokenizer's) or when `out`
// already exists; std::runtime_error for an I/O failure.
ExportSummary export_hf(const Checkpoint& ck, const std::string& out_dir);
ExportSummary export_gguf(const Checkpoint& ck, const std::string& out_path);

// The checkpoint a user named: a checkpoint file, or a run folder (its newest checkpoint that
// loads, from RUN_DIR/checkpoints or the folder itself), without its AdamW moments. Throws
// CheckpointError / ConfigError.
Checkpoint load_checkpoint_or_run(const std::string& path);

}  // namespace cllm
