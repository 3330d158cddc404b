#pragma once
// Loading a training corpus: a text file, or a folder of them, tokenized once and split into a
// training part and a held-out validation tail.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/tokenizer.hpp"

namespace cllm {

// Any problem with the corpus; what() is one line naming the problem and the path.
struct CorpusError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Corpus {
  std::vector<int32_t> train, val;           // token ids
  size_t bytes = 0;                          // text bytes read from files (separators not counted)
  size_t files_read = 0, files_skipped = 0;  // files_skipped = binary files (== skipped.size())
  std::vector<std::string> skipped;          // paths skipped as binary (for a note to the user)
  std::vector<std::string> files;            // paths read, in order
  size_t hidden_skipped = 0;  // dot-files and dot-folders left out of a folder corpus
};

// True when `data` (the start of a file) looks binary: a NUL byte, or more than 30% bytes that
// are neither printable ASCII, whitespace nor part of valid UTF-8. Only the first 8 KiB count.
bool looks_binary(const char* data, size_t size);

// path: a text file, or a folder read recursively in sorted (byte-wise path) order so the result
// is deterministic. Files are concatenated, each followed by "\n" unless it already ends with one.
// In a folder, binary files are skipped (and listed), entries whose name starts with '.' (.git,
// editor lock files) are left out, symlinks to files are followed and symlinks to folders are not
// (no cycles). The last `val_fraction` (in [0, 0.5]; 0 = none) of the TOKENS is held out for
// validation. Both parts must hold at least `min_tokens` tokens (the caller passes context + 1).
// Throws CorpusError.
Corpus load_corpus(const std::string& path, const Tokenizer& tok, double val_fraction,
                   size_t min_tokens);

}  // namespace cllm
