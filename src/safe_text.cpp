#include "src/safe_text.hpp"

#include <stdexcept>

namespace cllm {

namespace {

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

size_t utf8_length(std::string_view s, size_t i, bool cut) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  const size_t avail = s.size() - i;
  for (size_t k = 1; k < len; ++k) {
    if (k >= avail) return cut ? avail : 0;
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
  }
  return len;
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string printable(std::string_view s, size_t max) {
  const size_t n = max > 0 && s.size() > max ? max : s.size();
  std::string out;
  out.reserve(n + 8);
  for (size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = utf8_length(s, i);
    if (len > 1 && i + len <= n) {  // a whole multi-byte character
      out.append(s.data() + i, len);
      i += len;
      continue;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    ++i;
  }
  if (n < s.size()) out += "...";
  return out;
}

nlohmann::json path_to_json(const std::string& path) {
  if (valid_utf8(path)) return path;
  std::string hex;
  hex.reserve(2 * path.size());
  for (const char ch : path) {
    const auto c = static_cast<unsigned char>(ch);
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return {{"bytes_hex", hex}};
}

std::string path_from_json(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  const auto bad = [] { return std::invalid_argument("not a path (a string or {\"bytes_hex\"})"); };
  if (!j.is_object() || j.size() != 1 || !j.contains("bytes_hex") || !j["bytes_hex"].is_string())
    throw bad();
  const std::string& hex = j["bytes_hex"].get_ref<const std::string&>();
  if (hex.size() % 2 != 0) throw bad();
  const auto digit = [&](char h) -> int {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    throw bad();
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) out += char(digit(hex[i]) << 4 | digit(hex[i + 1]));
  return out;
}

}  // namespace cllm
