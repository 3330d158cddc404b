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
  TokenSeq train, val;                       // token ids (2 or 4 bytes each)
  size_t bytes = 0;                          // text bytes read from files (separators not counted)
  size_t files_read = 0, files_skipped = 0;  // files_skipped = binary files (== skipped.size())
  std::vector<std::string> skipped;          // paths skipped as binary (for a note to the user)
  std::vector<std::string> files;            // paths read, in order
  size_t hidden_skipped = 0;  // dot-files and dot-folders left out of a folder corpus
};

// True when `data` (the start of a file) looks binary: a NUL byte, or more than 30% bytes that
// are neither printable ASCII, whitespace nor part of valid UTF-8. Only the first 8 KiB count.
bool looks_binary(const char* data, size_t size);

// The text of a corpus before tokenization, with what was read.
struct CorpusText {
  std::string text;  // the files concatenated (with separators)
  size_t bytes = 0, files_read = 0, files_skipped = 0, hidden_skipped = 0;
  std::vector<std::string> skipped, files;
  std::string path;
};

// path: a text file, or a folder read recursively in sorted (byte-wise path) order so the result
// is deterministic. Files are concatenated, each followed by "\n" unless it already ends with one.
// In a folder, binary files are skipped (and listed), entries whose name starts with '.' (.git,
// editor lock files) are left out, symlinks to files are followed and symlinks to folders are not
// (no cycles). Throws CorpusError.
CorpusText read_corpus(const std::string& path);

// The text is cut at byte train_bytes(text, val_fraction): the last `val_fraction` (in [0, 0.5];
// 0 = none) of the BYTES is held out for validation (for the byte tokenizer that is the same
// share of tokens). A tokenizer trained for the run sees only the training part
// (training_text). Throws CorpusError for a fraction out of range.
size_t train_bytes(const CorpusText& text, double val_fraction);
std::string_view training_text(const CorpusText& text, double val_fraction);

// Encodes both parts (each on its own, so nothing of the validation text leaks into training
// windows). Both must hold at least `min_tokens` tokens (the caller passes context + 1). Throws
// CorpusError.
Corpus encode_corpus(CorpusText text, const Tokenizer& tok, double val_fraction, size_t min_tokens);

// read_corpus + encode_corpus.
Corpus load_corpus(const std::string& path, const Tokenizer& tok, double val_fraction,
                   size_t min_tokens);

// The fingerprint of a run's training data (RunConfig::data_sha256): SHA-256 of the training ids
// as little-endian int32, preceded for a tokenizer with state by its kind and the SHA-256 of its
// serialized form (so the same ids from another tokenizer do not match).
std::string data_fingerprint(const Corpus& corpus, const Tokenizer& tok);

}  // namespace cllm
