#pragma once
// `cllm tokenizer train|encode|decode`, and the tokenizer of a training run (--tokenizer).
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "src/checkpoint.hpp"
#include "src/corpus.hpp"
#include "src/tokenizer.hpp"

namespace cllm {

int cmd_tokenizer(const std::vector<std::string>& args);

// The tokenizer of `cllm train --tokenizer SPEC`:
//  - "" : the byte tokenizer; with --resume, the tokenizer of the checkpoint it resumes from;
//  - "byte";
//  - "bpe:N": a byte-level BPE of N tokens trained on the training part of `text` (progress on
//    `out`), as `cllm tokenizer train --vocab N` with the same --val-fraction would;
//  - a tokenizer.json, a checkpoint or a run folder (load_tokenizer).
// Throws ConfigError / CheckpointError.
std::unique_ptr<Tokenizer> run_tokenizer(const std::string& spec, const CorpusText& text,
                                         double val_fraction, const Checkpoint* resume_from,
                                         std::ostream& out);

}  // namespace cllm
