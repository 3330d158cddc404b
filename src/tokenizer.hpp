#pragma once
// Tokenizers turn text into model ids and back. The checkpoint stores kind() + serialize(), and
// make_tokenizer() rebuilds the same tokenizer from them, so a checkpoint is self-contained.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cllm {

// Interface, so that a trained byte-level BPE can replace the byte tokenizer without touching the
// corpus, sampler or checkpoint code.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte"
  virtual int vocab_size() const = 0;    // 256 for byte
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Throws std::invalid_argument for an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string serialize() const = 0;  // "" for byte
  // Average text bytes per token, for turning token counts into byte estimates in messages.
  virtual double bytes_per_token_hint() const { return 1.0; }
};

// One token per byte: every byte string round-trips, no training needed.
class ByteTokenizer final : public Tokenizer {
 public:
  std::string kind() const override { return "byte"; }
  int vocab_size() const override { return 256; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string serialize() const override { return ""; }
};

// Rebuilds a tokenizer from a checkpoint's (kind, data). Throws ConfigError for an unknown kind or
// for data the kind cannot take.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::string& data);

}  // namespace cllm
