#include "src/tokenizer.hpp"

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

#include "src/bpe.hpp"
#include "src/checkpoint.hpp"
#include "src/config.hpp"
#include "src/export.hpp"
#include "src/regular_file.hpp"
#include "src/safetensors.hpp"

namespace cllm {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  // Through unsigned char: bytes >= 0x80 must map to 128..255, not to negative ids.
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    if (id < 0 || id > 255) {
      throw std::invalid_argument(fmt::format(
          "token id {} at position {} is out of range for the byte tokenizer (vocabulary 256)", id,
          i));
    }
    text[i] = static_cast<char>(static_cast<unsigned char>(id));
  }
  return text;
}

size_t ByteTokenizer::token_length(int32_t id) const {
  if (id < 0 || id > 255)
    throw std::invalid_argument(
        fmt::format("token id {} is out of range for the byte tokenizer (vocabulary 256)", id));
  return 1;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::string& data) {
  if (kind == "byte") {
    // A byte tokenizer has no state; data here means a corrupt or mislabelled checkpoint.
    if (!data.empty()) {
      throw ConfigError(fmt::format(
          "byte tokenizer takes no data, but the checkpoint holds {} bytes", data.size()));
    }
    return std::make_unique<ByteTokenizer>();
  }
  if (kind == "bpe") return std::make_unique<BpeTokenizer>(BpeTokenizer::from_json(data));
  throw ConfigError(fmt::format("unknown tokenizer kind '{}'", kind));
}

namespace {

namespace fs = std::filesystem;

// Whether the file starts like a safetensors file: u64 header length, then '{'.
bool looks_like_safetensors(const RegularFile& f) {
  unsigned char head[9];
  if (::pread(f.fd(), head, 9, 0) != 9) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | head[i];
  return head[8] == '{' && n > 1 && n < (uint64_t(1) << 32);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  if (spec.rfind("bpe:", 0) == 0)
    throw ConfigError(fmt::format("tokenizer '{}' must be trained on a corpus first", spec));
  std::error_code ec;
  const fs::file_status st = fs::status(spec, ec);
  if (st.type() == fs::file_type::not_found)
    throw ConfigError(fmt::format(
        "tokenizer '{}' does not exist (give byte, bpe:N, a tokenizer.json, a checkpoint or a run "
        "folder)",
        spec));
  if (fs::is_directory(st)) {
    const Checkpoint ck = load_checkpoint_or_run(spec);
    return make_tokenizer(ck.tokenizer_kind, ck.tokenizer_data);
  }
  // Opened once, as a regular file, before anything is read (a FIFO or /dev/zero is refused).
  const RegularFile file = open_regular_file<ConfigError>(spec, kMaxSafetensorsBytes, "tokenizer");
  if (looks_like_safetensors(file)) {
    const Checkpoint ck = load_checkpoint(spec, /*weights_only=*/true);
    return make_tokenizer(ck.tokenizer_kind, ck.tokenizer_data);
  }
  if (file.size() > kMaxTokenizerJsonBytes)
    throw ConfigError(
        fmt::format("tokenizer '{}' is {} bytes; a tokenizer.json may have at most {}", spec,
                    file.size(), byte_limit_text(kMaxTokenizerJsonBytes)));
  std::string text, why;
  if (!file.read_all(text, why)) throw ConfigError(why);
  try {
    return std::make_unique<BpeTokenizer>(BpeTokenizer::from_json(text));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("'{}': {}", spec, e.what()));
  }
}

TokenSeq::TokenSeq(const std::vector<int32_t>& ids, int vocab) : wide_(vocab > 65536) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw std::invalid_argument(
          fmt::format("token {} (id {}) is outside the vocabulary [0, {})", i, ids[i], vocab));
  if (wide_)
    u32_.assign(ids.begin(), ids.end());
  else
    u16_.assign(ids.begin(), ids.end());
}

bool TokenSeq::operator==(const std::vector<int32_t>& ids) const {
  if (ids.size() != size()) return false;
  for (size_t i = 0; i < ids.size(); ++i)
    if ((*this)[i] != ids[i]) return false;
  return true;
}

}  // namespace cllm
