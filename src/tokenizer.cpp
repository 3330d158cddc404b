#include "src/tokenizer.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "src/config.hpp"

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

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::string& data) {
  if (kind == "byte") {
    // A byte tokenizer has no state; data here means a corrupt or mislabelled checkpoint.
    if (!data.empty()) {
      throw ConfigError(fmt::format(
          "byte tokenizer takes no data, but the checkpoint holds {} bytes", data.size()));
    }
    return std::make_unique<ByteTokenizer>();
  }
  throw ConfigError(fmt::format("unknown tokenizer kind '{}'", kind));
}

}  // namespace cllm
