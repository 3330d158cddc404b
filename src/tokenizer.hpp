#pragma once
// Tokenizers turn text into model ids and back. The checkpoint stores kind() + serialize(), and
// make_tokenizer() rebuilds the same tokenizer from them, so a checkpoint is self-contained.
// Kinds: "byte" (vocabulary 256, no state) and "bpe" (byte-level BPE, src/bpe.hpp; its data is
// a Hugging Face tokenizer.json).
#include <cstdint>
#include <cstring>
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
  virtual std::string kind() const = 0;  // "byte", "bpe"
  virtual int vocab_size() const = 0;    // 256 for byte
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Throws std::invalid_argument for an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string serialize() const = 0;  // "" for byte
  // Average text bytes per token, for turning token counts into byte estimates in messages.
  virtual double bytes_per_token_hint() const { return 1.0; }
  // Bytes of text that token `id` stands for (validation counts bits per byte with it). Throws
  // std::invalid_argument for an id outside [0, vocab_size()).
  virtual size_t token_length(int32_t id) const = 0;
};

// One token per byte: every byte string round-trips, no training needed.
class ByteTokenizer final : public Tokenizer {
 public:
  std::string kind() const override { return "byte"; }
  int vocab_size() const override { return 256; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string serialize() const override { return ""; }
  size_t token_length(int32_t id) const override;
};

// Rebuilds a tokenizer from a checkpoint's (kind, data). Throws ConfigError for an unknown kind or
// for data the kind cannot take.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::string& data);

// The largest tokenizer.json load_tokenizer reads (GPT-2's is 1.4 MB); checked before reading.
constexpr uint64_t kMaxTokenizerJsonBytes = uint64_t(64) << 20;

// A saved tokenizer: "byte"; a Hugging Face tokenizer.json (byte-level BPE); a checkpoint
// (.safetensors written by cllm train); or a run folder (its newest readable checkpoint).
// "bpe:N" needs a corpus and is handled by the caller. Throws ConfigError (or CheckpointError
// for a damaged checkpoint) with one line naming the problem; anything but a folder or a regular
// file (a FIFO, /dev/zero) is refused before a byte is read.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

// ---------------------------------------------------------------------------------------------
// Token sequences. A corpus stores its ids in 2 bytes each when the vocabulary allows (up to
// 65,536 tokens) and in 4 bytes otherwise; the model reads int32 windows copied out of them.

class TokenSeq;

// Read-only view of non-negative ids stored as uint16, uint32 or int32.
class TokenView {
 public:
  TokenView() = default;
  TokenView(const std::vector<int32_t>& v) : data_(v.data()), size_(v.size()), width_(4) {}
  TokenView(const std::vector<uint32_t>& v) : data_(v.data()), size_(v.size()), width_(4) {}
  TokenView(const std::vector<uint16_t>& v) : data_(v.data()), size_(v.size()), width_(2) {}
  TokenView(const TokenSeq& s);  // NOLINT: implicit on purpose

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int width() const { return width_; }  // bytes per id: 2 or 4
  int64_t operator[](size_t i) const {
    return width_ == 2 ? int64_t(static_cast<const uint16_t*>(data_)[i])
                       : int64_t(static_cast<const int32_t*>(data_)[i]);
  }
  // Writes ids [first, first + n) into out as int32 (the caller checks the range).
  void copy_to(size_t first, size_t n, int32_t* out) const {
    if (width_ == 4) {
      std::memcpy(out, static_cast<const int32_t*>(data_) + first, n * sizeof(int32_t));
    } else {
      const uint16_t* p = static_cast<const uint16_t*>(data_) + first;
      for (size_t i = 0; i < n; ++i) out[i] = int32_t(p[i]);
    }
  }
  std::vector<int32_t> to_vector() const {
    std::vector<int32_t> v(size_);
    copy_to(0, size_, v.data());
    return v;
  }

 private:
  const void* data_ = nullptr;
  size_t size_ = 0;
  int width_ = 4;
};

// Owning sequence of ids: uint16 when every id fits the vocabulary of <= 65,536, else uint32.
class TokenSeq {
 public:
  TokenSeq() = default;
  // Throws std::invalid_argument for an id outside [0, vocab).
  TokenSeq(const std::vector<int32_t>& ids, int vocab);

  size_t size() const { return wide_ ? u32_.size() : u16_.size(); }
  bool empty() const { return size() == 0; }
  int width() const { return wide_ ? 4 : 2; }
  int64_t operator[](size_t i) const { return wide_ ? int64_t(u32_[i]) : int64_t(u16_[i]); }
  std::vector<int32_t> to_vector() const { return TokenView(*this).to_vector(); }
  bool operator==(const std::vector<int32_t>& ids) const;
  bool operator==(const TokenSeq& o) const {
    return wide_ == o.wide_ && u16_ == o.u16_ && u32_ == o.u32_;
  }

 private:
  friend class TokenView;
  bool wide_ = false;
  std::vector<uint16_t> u16_;
  std::vector<uint32_t> u32_;
};

inline TokenView::TokenView(const TokenSeq& s)
    : data_(s.wide_ ? static_cast<const void*>(s.u32_.data()) : s.u16_.data()),
      size_(s.size()),
      width_(s.width()) {}

}  // namespace cllm
