#include "src/bpe.hpp"

#include <algorithm>
#include <cstring>
#include <queue>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/config.hpp"

namespace cllm {

namespace {

// ---------------------------------------------------------------------------------------------
// Unicode classes of the GPT-2 pattern

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct ClassRange {
  uint32_t first, last;
  uint8_t cls;
};
constexpr ClassRange kRanges[] = {
#include "src/bpe_unicode.inc"
};

// Class of every BMP code point (one byte each, 64 KiB), built once; supplementary planes use
// a binary search over kRanges.
struct ClassTable {
  uint8_t bmp[0x10000];
  ClassTable() {
    std::memset(bmp, kOther, sizeof bmp);
    for (int c = 'A'; c <= 'Z'; ++c) bmp[c] = bmp[c + 32] = kLetter;
    for (int c = '0'; c <= '9'; ++c) bmp[c] = kNumber;
    for (int c : {'\t', '\n', '\v', '\f', '\r', ' '}) bmp[c] = kSpace;
    for (const auto& r : kRanges)
      for (uint32_t c = r.first; c <= std::min<uint32_t>(r.last, 0xFFFF); ++c) bmp[c] = r.cls;
  }
};
const ClassTable& class_table() {
  static const ClassTable t;
  return t;
}

uint8_t class_of(uint32_t cp) {
  if (cp < 0x10000) return class_table().bmp[cp];
  auto it = std::upper_bound(std::begin(kRanges), std::end(kRanges), cp,
                             [](uint32_t c, const ClassRange& r) { return c < r.first; });
  if (it == std::begin(kRanges)) return kOther;
  --it;
  return cp <= it->last ? it->cls : uint8_t(kOther);
}

// Class and length of the character at s[i] (i < n). A byte that does not start a valid UTF-8
// sequence (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) is one "other"
// character of length 1.
inline uint8_t char_at(const unsigned char* s, size_t n, size_t i, size_t* len) {
  const unsigned char c = s[i];
  if (c < 0x80) {
    *len = 1;
    return class_table().bmp[c];
  }
  size_t l;
  uint32_t cp;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    l = 2, cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    l = 3, cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    l = 4, cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *len = 1;
    return kOther;
  }
  if (i + l > n) {
    *len = 1;
    return kOther;
  }
  for (size_t k = 1; k < l; ++k) {
    const unsigned char b = s[i + k];
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) {
      *len = 1;
      return kOther;
    }
    cp = cp << 6 | (b & 0x3F);
  }
  *len = l;
  return class_of(cp);
}

// End of the run of characters of class `cls` starting at s[i].
inline size_t run_end(const unsigned char* s, size_t n, size_t i, uint8_t cls) {
  const uint8_t* ascii = class_table().bmp;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      if (ascii[c] != cls) break;
      ++i;
    } else {
      size_t l;
      if (char_at(s, n, i, &l) != cls) break;
      i += l;
    }
  }
  return i;
}

// End of the GPT-2 piece that starts at s[i] (i < n): the alternatives of the pattern in order,
// leftmost-first as the regex engine tries them.
inline size_t piece_end(const unsigned char* s, size_t n, size_t i) {
  const unsigned char c = s[i];
  // 's|'t|'re|'ve|'m|'ll|'d
  if (c == '\'' && i + 1 < n) {
    const unsigned char c1 = s[i + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 < n) {
      const unsigned char c2 = s[i + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return i + 3;
    }
  }
  size_t len;
  const uint8_t cls = char_at(s, n, i, &len);
  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+  with the optional space being U+0020 only
  if (c == ' ' && i + 1 < n) {
    size_t len1;
    const uint8_t cls1 = char_at(s, n, i + 1, &len1);
    if (cls1 != kSpace) return run_end(s, n, i + 1 + len1, cls1);
  }
  if (cls != kSpace) return run_end(s, n, i + len, cls);
  // \s+(?!\S) | \s+ : the whitespace run, less its last character when a non-space follows
  // (that character then starts the next piece, e.g. " word"); a single whitespace character
  // before a non-space is a piece of its own.
  size_t last = i, j = i + len;
  while (j < n) {
    size_t l;
    if (char_at(s, n, j, &l) != kSpace) break;
    last = j;
    j += l;
  }
  if (j == n) return n;
  return last > i ? last : j;
}

template <class F>
void for_each_piece(std::string_view text, F&& f) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const size_t e = piece_end(s, n, i);
    f(i, e - i);
    i = e;
  }
}

// ---------------------------------------------------------------------------------------------
// Hugging Face's ByteLevel alphabet: every byte is shown as a printable character (GPT-2's
// bytes_to_unicode): bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves, the other
// 68 bytes map to U+0100.. in byte order.

struct ByteAlphabet {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // code point -> byte, -1 when not in the alphabet
  ByteAlphabet() {
    std::fill(std::begin(from_cp), std::end(from_cp), int16_t(-1));
    uint32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = self ? uint32_t(b) : extra++;
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::string to_byte_level(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, alphabet().to_cp[b]);
  return out;
}

// Inverse of to_byte_level; false when `text` holds a character outside the alphabet.
bool from_byte_level(const std::string& text, std::string& bytes) {
  bytes.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    if (s[i] < 0x80) {
      cp = s[i++];
    } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < text.size() && (s[i + 1] & 0xC0) == 0x80) {
      cp = uint32_t(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F);
      i += 2;
    } else {
      return false;  // the alphabet ends at U+0143: two UTF-8 bytes at most
    }
    if (cp >= 324 || alphabet().from_cp[cp] < 0) return false;
    bytes += char(alphabet().from_cp[cp]);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// A hash table of byte strings (views into a text the caller keeps alive) -> a 64-bit value.
// Open addressing, linear probing; used for the training counts and the encoder's cache.

inline uint64_t mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0x9E3779B97F4A7C15ULL;
  h ^= h >> 29;
  return h;
}

inline uint64_t hash_bytes(const unsigned char* p, size_t n) {
  uint64_t h = 0x243F6A8885A308D3ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 31;
    p += 8, n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
  }
  return mix(h);
}

class PieceTable {
 public:
  struct Entry {
    uint64_t hash = 0;
    const unsigned char* ptr = nullptr;  // null = empty slot
    uint32_t len = 0;
    uint32_t aux = 0;
    uint64_t value = 0;
  };
  explicit PieceTable(size_t capacity_pow2) : slots_(capacity_pow2), mask_(capacity_pow2 - 1) {}

  // The entry for (p, n): found, or newly inserted with value 0 (then *fresh = true). Returns
  // null when the table is too full to insert (callers treat that as a cache miss).
  Entry* find_or_insert(const unsigned char* p, uint32_t n, uint64_t h, bool grow, bool* fresh) {
    *fresh = false;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Entry& e = slots_[i];
      if (e.ptr == nullptr) {
        if ((used_ + 1) * 2 > slots_.size()) {
          if (!grow) return nullptr;
          rehash();
          return find_or_insert(p, n, h, grow, fresh);
        }
        e.hash = h, e.ptr = p, e.len = n, e.value = 0;
        ++used_;
        *fresh = true;
        return &e;
      }
      if (e.hash == h && e.len == n && std::memcmp(e.ptr, p, n) == 0) return &e;
    }
  }
  const std::vector<Entry>& slots() const { return slots_; }

 private:
  void rehash() {
    std::vector<Entry> old(slots_.size() * 2);
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    for (const Entry& e : old) {
      if (e.ptr == nullptr) continue;
      size_t i = e.hash & mask_;
      while (slots_[i].ptr != nullptr) i = (i + 1) & mask_;
      slots_[i] = e;
    }
  }
  std::vector<Entry> slots_;
  size_t mask_;
  size_t used_ = 0;
};

inline uint64_t pair_key(uint32_t a, uint32_t b) {
  return uint64_t(a) << 32 | b;
}

size_t pow2_at_least(size_t n) {
  size_t p = 16;
  while (p < n) p <<= 1;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Training

// The training text's distinct pieces ("words") with their counts, each as a run of symbols that
// merges shrink in place.
struct TrainWord {
  size_t begin;  // first symbol in TrainWords::sym
  uint32_t len;
  int64_t count;
};
struct TrainWords {
  std::vector<TrainWord> words;
  std::vector<uint32_t> sym;  // every word's symbols, back to back
  int64_t bytes = 0;          // bytes of the text the words cover (count x length, summed)
};

// Single-byte pieces hold no pair and are left out. A piece longer than kMaxTrainPiece (a run of
// thousands of '=' or spaces, a base64 blob) is counted in chunks of that length: every merge
// rescans the pieces holding its pair, and one huge piece would make training quadratic.
// Encoding still merges such pieces whole.
TrainWords count_words(std::string_view text) {
  constexpr size_t kMaxTrainPiece = 256;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  PieceTable counts(1 << 16);
  for_each_piece(text, [&](size_t i, size_t n) {
    for (size_t off = 0; off < n; off += kMaxTrainPiece) {
      const size_t m = std::min(kMaxTrainPiece, n - off);
      if (m < 2) continue;
      bool fresh;
      counts.find_or_insert(s + i + off, uint32_t(m), hash_bytes(s + i + off, m), true, &fresh)
          ->value++;
    }
  });
  // Words in a fixed order (by bytes), so that nothing below depends on hash-table order.
  std::vector<const PieceTable::Entry*> entries;
  for (const auto& e : counts.slots())
    if (e.ptr != nullptr) entries.push_back(&e);
  std::sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) {
    return std::string_view(reinterpret_cast<const char*>(a->ptr), a->len) <
           std::string_view(reinterpret_cast<const char*>(b->ptr), b->len);
  });
  TrainWords tw;
  tw.words.reserve(entries.size());
  for (const auto* e : entries) {
    tw.words.push_back({tw.sym.size(), e->len, int64_t(e->value)});
    for (uint32_t k = 0; k < e->len; ++k) tw.sym.push_back(e->ptr[k]);
    tw.bytes += int64_t(e->value) * e->len;
  }
  return tw;
}

// Pair counts, where each pair occurs, and a max-heap of (count, pair) with lazy updates: an
// entry whose count is stale is re-queued with the current count when it surfaces.
class PairIndex {
 public:
  explicit PairIndex(const TrainWords& tw) : stamp_(tw.words.size(), UINT32_MAX) {
    for (uint32_t w = 0; w < tw.words.size(); ++w) {
      const TrainWord& wd = tw.words[w];
      for (uint32_t k = 0; k + 1 < wd.len; ++k) {
        const uint64_t p = pair_key(tw.sym[wd.begin + k], tw.sym[wd.begin + k + 1]);
        count_[p] += wd.count;
        auto& list = where_[p];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    }
    std::vector<Cand> initial;
    initial.reserve(count_.size());
    for (const auto& [p, c] : count_) initial.push_back({c, p});
    heap_ = std::priority_queue<Cand>(std::less<Cand>(), std::move(initial));
  }

  // The most frequent pair (ties: the smallest); false when no pair occurs any more.
  bool pop_best(uint64_t& pair) {
    while (!heap_.empty()) {
      const Cand top = heap_.top();
      heap_.pop();
      const auto cit = count_.find(top.pair);
      const int64_t now = cit == count_.end() ? 0 : cit->second;
      if (now != top.count) {
        if (now > 0) heap_.push({now, top.pair});
        continue;
      }
      if (now <= 0) return false;
      pair = top.pair;
      return true;
    }
    return false;
  }

  // Every occurrence of `pair` becomes `x`, left to right, in every word that holds it; the
  // word's pairs are taken out of the counts before and put back after. `merge_no` is unique per
  // call.
  void merge(TrainWords& tw, uint64_t pair, uint32_t x, uint32_t merge_no) {
    const uint32_t a = uint32_t(pair >> 32), b = uint32_t(pair);
    std::vector<uint32_t> list = std::move(where_[pair]);
    where_.erase(pair);
    touched_.clear();
    for (uint32_t w : list) {
      if (stamp_[w] == merge_no) continue;
      stamp_[w] = merge_no;
      TrainWord& wd = tw.words[w];
      uint32_t* ws = tw.sym.data() + wd.begin;
      bool has = false;
      for (uint32_t k = 0; k + 1 < wd.len && !has; ++k) has = ws[k] == a && ws[k + 1] == b;
      if (!has) continue;  // a stale entry: the pair left this word in an earlier merge
      for (uint32_t k = 0; k + 1 < wd.len; ++k) count_[pair_key(ws[k], ws[k + 1])] -= wd.count;
      uint32_t out = 0;
      for (uint32_t k = 0; k < wd.len;) {
        if (k + 1 < wd.len && ws[k] == a && ws[k + 1] == b) {
          ws[out++] = x;
          k += 2;
        } else {
          ws[out++] = ws[k++];
        }
      }
      wd.len = out;
      count_pairs_with(ws, w, wd, x);
    }
    std::sort(touched_.begin(), touched_.end());
    touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
    for (uint64_t p : touched_) {
      const int64_t c = count_[p];
      if (c > 0) heap_.push({c, p});
    }
  }

 private:
  struct Cand {
    int64_t count;
    uint64_t pair;
    // Highest count first; among equal counts the smallest (left, right).
    bool operator<(const Cand& o) const {
      return count != o.count ? count < o.count : pair > o.pair;
    }
  };

  // Puts the merged word's pairs back into the counts. Only pairs with the new token `x` can have
  // grown; the others keep valid heap entries.
  void count_pairs_with(const uint32_t* ws, uint32_t w, const TrainWord& wd, uint32_t x) {
    for (uint32_t k = 0; k + 1 < wd.len; ++k) {
      const uint64_t p = pair_key(ws[k], ws[k + 1]);
      count_[p] += wd.count;
      if (ws[k] == x || ws[k + 1] == x) {
        auto& l = where_[p];
        if (l.empty() || l.back() != w) l.push_back(w);
        touched_.push_back(p);
      }
    }
  }

  std::unordered_map<uint64_t, int64_t> count_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where_;
  std::priority_queue<Cand> heap_;
  std::vector<uint32_t> stamp_;    // per word: the last merge that looked at it
  std::vector<uint64_t> touched_;  // pairs whose count grew in this merge
};

}  // namespace

std::vector<std::string_view> gpt2_split(std::string_view text) {
  std::vector<std::string_view> out;
  for_each_piece(text, [&](size_t i, size_t n) { out.push_back(text.substr(i, n)); });
  return out;
}

BpeTokenizer BpeTokenizer::train(std::string_view text, int vocab, const BpeProgress& progress) {
  if (vocab < kMinVocab || vocab > kMaxVocab)
    throw ConfigError(
        fmt::format("BPE vocabulary must be in [{}, {}] (got {})", kMinVocab, kMaxVocab, vocab));
  BpeTokenizer t;
  t.tokens_.reserve(size_t(vocab));
  for (int b = 0; b < 256; ++b) t.tokens_.emplace_back(1, char(b));
  TrainWords tw = count_words(text);
  PairIndex pairs(tw);

  std::unordered_map<std::string, uint32_t> id_of;
  for (uint32_t b = 0; b < 256; ++b) id_of.emplace(t.tokens_[b], b);
  const int wanted = vocab - 256;
  uint32_t merge_no = 0;
  uint64_t pair = 0;
  while (int(t.tokens_.size()) < vocab && pairs.pop_best(pair)) {
    const uint32_t a = uint32_t(pair >> 32), b = uint32_t(pair);
    std::string joined = t.tokens_[a] + t.tokens_[b];
    auto [jit, added] = id_of.emplace(std::move(joined), uint32_t(t.tokens_.size()));
    const uint32_t x = jit->second;
    if (added) t.tokens_.push_back(jit->first);
    t.merges_.push_back({a, b, x});
    pairs.merge(tw, pair, x, merge_no);
    ++merge_no;
    if (progress && (merge_no % 64 == 0)) progress(int(t.tokens_.size()) - 256, wanted);
  }
  if (progress) progress(int(t.tokens_.size()) - 256, wanted);
  t.finish();
  // Bytes per token on the training text, for messages (encoding it again would cost time):
  // estimated from the final word segmentations.
  int64_t toks = 0;
  for (const TrainWord& wd : tw.words) toks += wd.count * wd.len;
  const int64_t singles = int64_t(text.size()) - tw.bytes;  // one-byte pieces: one token each
  t.bytes_per_token_ = toks + singles > 0 ? double(text.size()) / double(toks + singles) : 1.0;
  return t;
}

BpeTokenizer BpeTokenizer::bytes_only() {
  BpeTokenizer t;
  for (int b = 0; b < 256; ++b) t.tokens_.emplace_back(1, char(b));
  t.finish();
  return t;
}

void BpeTokenizer::finish() {
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  for (size_t id = 0; id < tokens_.size(); ++id)
    if (tokens_[id].size() == 1) byte_id_[uint8_t(tokens_[id][0])] = int32_t(id);
  for (int b = 0; b < 256; ++b)
    if (byte_id_[b] < 0) {
      // Named as a byte and as tokenizer.json writes it, so it cannot be read as a token id.
      std::string shown;
      append_utf8(shown, alphabet().to_cp[b]);
      throw ConfigError(
          fmt::format("the BPE vocabulary has no token for the byte 0x{:02X} (written \"{}\" in "
                      "tokenizer.json); each of the 256 bytes needs a token of its own",
                      b, shown));
    }

  merge_table_.assign(pow2_at_least(merges_.size() * 2 + 1), Slot{0, 0, 0});
  merge_mask_ = merge_table_.size() - 1;
  for (uint32_t r = 0; r < merges_.size(); ++r) {
    const uint64_t key = pair_key(merges_[r].left, merges_[r].right) + 1;
    size_t i = mix(key) & merge_mask_;
    while (merge_table_[i].key != 0 && merge_table_[i].key != key) i = (i + 1) & merge_mask_;
    // A pair listed twice keeps its first (lowest) rank, as a rank map built in order would.
    if (merge_table_[i].key == 0) merge_table_[i] = {key, r, merges_[r].result};
  }

  short_.assign(tokens_.size(), {});
  len_.resize(tokens_.size());
  long_offset_.assign(tokens_.size(), 0);
  long_bytes_.clear();
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& tk = tokens_[id];
    len_[id] = uint32_t(tk.size());
    if (tk.size() <= 16) {
      std::memcpy(short_[id].data(), tk.data(), tk.size());
    } else {
      long_offset_[id] = long_bytes_.size();
      long_bytes_ += tk;
    }
  }
}

const BpeTokenizer::Slot* BpeTokenizer::find_merge(uint32_t left, uint32_t right) const {
  const uint64_t key = pair_key(left, right) + 1;
  for (size_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
    const Slot& s = merge_table_[i];
    if (s.key == key) return &s;
    if (s.key == 0) return nullptr;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

void BpeTokenizer::encode_piece(const unsigned char* s, size_t n, std::vector<int32_t>& out) const {
  if (n == 1 || merges_.empty()) {
    for (size_t i = 0; i < n; ++i) out.push_back(byte_id_[s[i]]);
    return;
  }
  // Hugging Face's Word::merge_all: symbols in a linked list, candidate merges in a min-heap on
  // (rank, position); an entry is skipped when its position was merged away or the pair there
  // no longer produces the entry's token.
  struct Sym {
    uint32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Cand {
    uint64_t key;  // rank << 32 | position
    uint32_t result;
    bool operator>(const Cand& o) const { return key > o.key; }
  };
  thread_local std::vector<Sym> sy;
  thread_local std::vector<Cand> heap;
  sy.resize(n);
  heap.clear();
  for (size_t i = 0; i < n; ++i)
    sy[i] = {uint32_t(byte_id_[s[i]]), int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1, true};
  const auto push = [&](uint32_t pos) {
    const int32_t nx = sy[pos].next;
    if (const Slot* m = find_merge(sy[pos].id, sy[size_t(nx)].id)) {
      heap.push_back({uint64_t(m->rank) << 32 | pos, m->result});
      std::push_heap(heap.begin(), heap.end(), std::greater<Cand>());
    }
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>());
    const Cand top = heap.back();
    heap.pop_back();
    const uint32_t pos = uint32_t(top.key);
    Sym& cur = sy[pos];
    if (!cur.alive || cur.next < 0) continue;
    const Sym& right = sy[size_t(cur.next)];
    const Slot* m = find_merge(cur.id, right.id);
    if (m == nullptr || m->result != top.result) continue;
    cur.id = top.result;
    sy[size_t(cur.next)].alive = false;
    cur.next = right.next;
    if (cur.next >= 0) sy[size_t(cur.next)].prev = int32_t(pos);
    if (cur.prev >= 0) push(uint32_t(cur.prev));
    if (cur.next >= 0) push(pos);
  }
  for (int32_t i = 0; i >= 0; i = sy[size_t(i)].next) out.push_back(int32_t(sy[size_t(i)].id));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(size_t(double(text.size()) / bytes_per_token_) + 16);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  if (text.size() < 4096) {
    for_each_piece(text, [&](size_t i, size_t n) { encode_piece(s + i, n, out); });
    return out;
  }
  // Long texts repeat their pieces: a cache maps a piece's bytes to its ids (kept in `cached`),
  // so each distinct piece is merged once. Bounded: past a million entries it stops growing.
  PieceTable cache(pow2_at_least(std::min<size_t>(text.size() / 16, size_t(1) << 21)));
  std::vector<int32_t> cached;
  for_each_piece(text, [&](size_t i, size_t n) {
    if (n == 1) {
      out.push_back(byte_id_[s[i]]);
      return;
    }
    if (n > 64) {
      encode_piece(s + i, n, out);
      return;
    }
    bool fresh;
    PieceTable::Entry* e =
        cache.find_or_insert(s + i, uint32_t(n), hash_bytes(s + i, n), false, &fresh);
    if (e != nullptr && !fresh) {
      out.insert(out.end(), cached.begin() + std::ptrdiff_t(e->value),
                 cached.begin() + std::ptrdiff_t(e->value + e->aux));
      return;
    }
    const size_t before = out.size();
    encode_piece(s + i, n, out);
    if (e != nullptr) {
      e->value = cached.size();
      e->aux = uint32_t(out.size() - before);
      cached.insert(cached.end(), out.begin() + std::ptrdiff_t(before), out.end());
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  const uint32_t vocab = uint32_t(tokens_.size());
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (uint32_t(ids[i]) >= vocab)
      throw std::invalid_argument(fmt::format(
          "token id {} at position {} is out of range for this BPE tokenizer (vocabulary {})",
          ids[i], i, vocab));
    total += len_[size_t(ids[i])];
  }
  std::string out(total + 16, '\0');
  char* p = out.data();
  for (int32_t id : ids) {
    const uint32_t l = len_[size_t(id)];
    if (l <= 16)
      std::memcpy(p, short_[size_t(id)].data(), 16);  // whole slot: the tail is overwritten next
    else
      std::memcpy(p, long_bytes_.data() + long_offset_[size_t(id)], l);
    p += l;
  }
  out.resize(total);
  return out;
}

size_t BpeTokenizer::token_length(int32_t id) const {
  if (id < 0 || size_t(id) >= tokens_.size())
    throw std::invalid_argument(
        fmt::format("token id {} is outside the vocabulary [0, {})", id, tokens_.size()));
  return len_[size_t(id)];
}

double BpeTokenizer::bytes_per_token_hint() const {
  return bytes_per_token_;
}

std::string BpeTokenizer::token_text(int32_t id) const {
  return to_byte_level(token(id));
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

std::string BpeTokenizer::to_json(int indent) const {
  using ojson = nlohmann::ordered_json;
  const ojson byte_level = {{"type", "ByteLevel"},
                            {"add_prefix_space", false},
                            {"trim_offsets", true},
                            {"use_regex", true}};
  ojson vocab = ojson::object();
  for (size_t id = 0; id < tokens_.size(); ++id) vocab[to_byte_level(tokens_[id])] = id;
  ojson merges = ojson::array();
  for (const Merge& m : merges_)
    merges.push_back(to_byte_level(tokens_[m.left]) + " " + to_byte_level(tokens_[m.right]));
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = ojson::array();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = byte_level;
  j["post_processor"] = {{"type", "ByteLevel"},
                         {"add_prefix_space", true},
                         {"trim_offsets", false},
                         {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}};
  return j.dump(indent);
}

namespace {

[[noreturn]] void not_supported(const std::string& what) {
  throw ConfigError("tokenizer.json: " + what);
}

// A ByteLevel component with the GPT-2 pattern and no prefix space (the only form encoded here).
void check_byte_level(const nlohmann::json& c, const char* role) {
  if (!c.is_object() || c.value("type", "") != "ByteLevel")
    not_supported(fmt::format("the {} is not ByteLevel (only byte-level BPE is supported)", role));
  if (c.value("add_prefix_space", false) && std::string(role) == "pre-tokenizer")
    not_supported("add_prefix_space is not supported");
  if (!c.value("use_regex", true)) not_supported("a ByteLevel pre-tokenizer without its regex");
}

bool null_or(const nlohmann::json& m, const char* key, const nlohmann::json& ok) {
  return !m.contains(key) || m[key].is_null() || m[key] == ok;
}

}  // namespace

BpeTokenizer BpeTokenizer::from_json(const std::string& json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    not_supported(fmt::format("not valid JSON ({})", e.what()));
  }
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    not_supported("no \"model\" object (not a Hugging Face tokenizer file)");
  const auto& m = j["model"];
  if (m.value("type", "BPE") != "BPE")
    not_supported(fmt::format("model type '{}' is not BPE", m.value("type", "")));
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    not_supported("normalizers are not supported");
  if (!j.contains("pre_tokenizer")) not_supported("no pre_tokenizer");
  check_byte_level(j["pre_tokenizer"], "pre-tokenizer");
  if (j.contains("decoder") && !j["decoder"].is_null()) check_byte_level(j["decoder"], "decoder");
  if (j.contains("added_tokens") && !j["added_tokens"].empty())
    not_supported("added (special) tokens are not supported");
  if (!null_or(m, "dropout", 0.0) || !null_or(m, "continuing_subword_prefix", "") ||
      !null_or(m, "end_of_word_suffix", "") || !null_or(m, "byte_fallback", false) ||
      !null_or(m, "ignore_merges", false))
    not_supported(
        "BPE options dropout, continuing_subword_prefix, end_of_word_suffix, byte_fallback and "
        "ignore_merges are not supported");
  if (!m.contains("vocab") || !m["vocab"].is_object()) not_supported("no model.vocab object");
  if (!m.contains("merges") || !m["merges"].is_array()) not_supported("no model.merges array");

  BpeTokenizer t;
  const auto& vocab = m["vocab"];
  const size_t n = vocab.size();
  if (n < 256 || n > (size_t(1) << 24))
    not_supported(fmt::format("vocabulary of {} tokens (it must hold 256 to 2^24)", n));
  t.tokens_.resize(n);
  std::vector<bool> seen(n, false);
  std::unordered_map<std::string, uint32_t> id_of;
  id_of.reserve(n);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        size_t(it.value().get<int64_t>()) >= n)
      not_supported(fmt::format("token '{}' has id {}; ids must be 0..{}", it.key(),
                                it.value().dump(), n - 1));
    const size_t id = it.value().get<size_t>();
    if (seen[id]) not_supported(fmt::format("id {} is used twice", id));
    seen[id] = true;
    if (!from_byte_level(it.key(), t.tokens_[id]) || t.tokens_[id].empty())
      not_supported(fmt::format("token '{}' is not in the ByteLevel alphabet", it.key()));
    id_of.emplace(it.key(), uint32_t(id));
  }
  for (const auto& mg : m["merges"]) {
    std::string l, r;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        not_supported(fmt::format("merge '{}' is not two tokens", s));
      l = s.substr(0, sp), r = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      l = mg[0].get<std::string>(), r = mg[1].get<std::string>();
    } else {
      not_supported(fmt::format("merge {} is not two tokens", mg.dump()));
    }
    const auto li = id_of.find(l), ri = id_of.find(r), xi = id_of.find(l + r);
    if (li == id_of.end() || ri == id_of.end() || xi == id_of.end())
      not_supported(fmt::format("merge '{} {}' names a token missing from the vocabulary", l, r));
    t.merges_.push_back({li->second, ri->second, xi->second});
  }
  try {
    t.finish();
  } catch (const ConfigError& e) {
    not_supported(e.what());
  }
  // Typical English ratio until the tokenizer has seen text; only used in messages.
  t.bytes_per_token_ = t.merges_.empty() ? 1.0 : 3.5;
  return t;
}

BpeTokenizer BpeTokenizer::from_gpt2_files(const std::string& encoder_json,
                                           const std::string& merges_text) {
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(encoder_json);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("encoder.json: not valid JSON ({})", e.what()));
  }
  if (!vocab.is_object()) throw ConfigError("encoder.json: not a JSON object of token -> id");
  nlohmann::json merges = nlohmann::json::array();
  size_t line_no = 0;
  for (size_t at = 0; at < merges_text.size();) {
    size_t end = merges_text.find('\n', at);
    if (end == std::string::npos) end = merges_text.size();
    std::string line = merges_text.substr(at, end - at);
    at = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    if (sp == 0 || sp == std::string::npos || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string::npos)
      throw ConfigError(
          fmt::format("merges file, line {}: not two tokens separated by one space", line_no));
    merges.push_back(std::move(line));
  }
  if (merges.empty()) throw ConfigError("merges file: no merges (is it GPT-2's vocab.bpe?)");
  const nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  const nlohmann::json j = {
      {"pre_tokenizer", byte_level},
      {"decoder", byte_level},
      {"model", {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}}}};
  try {
    return from_json(j.dump());
  } catch (const ConfigError& e) {
    // from_json names tokenizer.json; here the problem is in the GPT-2 files.
    std::string what = e.what();
    const std::string prefix = "tokenizer.json: ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    throw ConfigError("GPT-2 tokenizer files: " + what);
  }
}

BpeTokenizer as_byte_level_bpe(const Tokenizer& tok) {
  if (tok.kind() == "byte") return BpeTokenizer::bytes_only();
  if (const auto* b = dynamic_cast<const BpeTokenizer*>(&tok)) return *b;
  throw ConfigError(fmt::format("the '{}' tokenizer is not a byte-level BPE", tok.kind()));
}

}  // namespace cllm
