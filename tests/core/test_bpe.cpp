// Byte-level BPE: the GPT-2 splitter, training, encoding, decoding, tokenizer.json, and what
// follows the vocabulary (token storage, windows, bits per byte, the data fingerprint).
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "src/aligned.hpp"
#include "src/bpe.hpp"
#include "src/config.hpp"
#include "src/corpus.hpp"
#include "src/evaluate.hpp"
#include "src/params.hpp"
#include "src/sampler.hpp"
#include "src/sha256.hpp"
#include "src/tokenizer.hpp"

using namespace cllm;
using Pieces = std::vector<std::string>;

namespace {

Pieces split(const std::string& s) {
  Pieces out;
  for (auto v : gpt2_split(s)) out.emplace_back(v);
  return out;
}

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng() & 0xFF);
  return s;
}

// English-like text with some variety: made-up words of syllables (so that a vocabulary of a
// few thousand tokens still finds pairs to merge), numbers, punctuation, contractions, UTF-8.
std::string sample_text(size_t bytes, uint64_t seed = 7) {
  static const char* const syllables[] = {
      "an", "ber", "ca", "dor", "el", "fin", "gu", "ho", "is", "jak", "ke", "lo", "mir",
      "na", "or",  "pe", "qui", "ra", "sol", "ti", "ur", "ve", "wa",  "xi", "yo", "ze",
      "th", "ing", "ed", "st",  "ch", "ou",  "é",  "ñ",  "ü",  "日",  "本", "語"};
  static const char* const extras[] = {"it's", "don't", "we'll", "they're", "I'm",  "42",
                                       "1611", "3.14",  "--",    "!?",      "(see)"};
  constexpr size_t ns = sizeof(syllables) / sizeof(syllables[0]);
  constexpr size_t ne = sizeof(extras) / sizeof(extras[0]);
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < bytes) {
    if (rng() % 8 == 0) {
      s += extras[rng() % ne];
    } else {
      // Zipf-like: low syllable indices are far more common.
      const int n = 1 + int(rng() % 3);
      for (int k = 0; k < n; ++k) s += syllables[(rng() % ns) * (rng() % ns) / ns];
    }
    const uint64_t r = rng() % 20;
    s += r == 0 ? ",\n" : r == 1 ? ".  " : r == 2 ? "\n\n" : " ";
  }
  return s;
}

}  // namespace

TEST_CASE("GPT-2 splitter gives the pattern's pieces", "[bpe]") {
  CHECK(split("Hello, world!") == Pieces{"Hello", ",", " world", "!"});
  CHECK(split("don't stop") == Pieces{"don", "'t", " stop"});
  CHECK(split("we'll they're I'm he'd it's you've") ==
        Pieces{"we", "'ll", " they", "'re", " I", "'m", " he", "'d", " it", "'s", " you", "'ve"});
  CHECK(split("'s'S") == Pieces{"'s", "'", "S"});  // contractions are lower-case only
  CHECK(split("a  b") == Pieces{"a", " ", " b"});  // \s+(?!\S) leaves the last space to " b"
  CHECK(split("a\n\nb") == Pieces{"a", "\n", "\n", "b"});
  CHECK(split("a \n b") == Pieces{"a", " \n", " b"});
  CHECK(split("x   ") == Pieces{"x", "   "});  // trailing white space stays whole
  CHECK(split("123abc 42x") == Pieces{"123", "abc", " 42", "x"});
  CHECK(split("(see) -- ok?!") == Pieces{"(", "see", ")", " --", " ok", "?!"});
  CHECK(split(" 'quoted'") == Pieces{" '", "quoted", "'"});
  CHECK(split("héllo wörld") == Pieces{"héllo", " wörld"});
  CHECK(split("日本語です。") == Pieces{"日本語です", "。"});
  CHECK(split("x\xC2\xA0y") == Pieces{"x", "\xC2\xA0", "y"});  // NBSP is \s, not a prefix
  CHECK(split("\xE2\x85\xA0\xC2\xB2") == Pieces{"\xE2\x85\xA0\xC2\xB2"});  // Ⅰ² are \p{N}
  CHECK(split("\xF0\x9F\x98\x80!") == Pieces{"\xF0\x9F\x98\x80!"});        // emoji is "other"
  CHECK(split("\xF0\x90\x90\x80x") == Pieces{"\xF0\x90\x90\x80x"});        // 𐐀 is a letter
  // Bytes that are not valid UTF-8 are "other" characters of one byte.
  CHECK(split("x\xFF\xFEy") == Pieces{"x", "\xFF\xFE", "y"});
  CHECK(split(" \xC3") == Pieces{" \xC3"});
  CHECK(split(std::string("a\0b", 3)) == Pieces{"a", std::string("\0", 1), "b"});
  CHECK(split("").empty());
}

TEST_CASE("GPT-2 splitter covers any byte string exactly", "[bpe]") {
  std::mt19937_64 rng(1);
  for (int round = 0; round < 200; ++round) {
    const std::string s =
        round % 2 ? random_bytes(rng, rng() % 300) : sample_text(rng() % 300, round);
    std::string joined;
    for (auto p : gpt2_split(s)) {
      REQUIRE(!p.empty());
      joined += p;
    }
    REQUIRE(joined == s);
  }
}

TEST_CASE("BPE training: deterministic merges and the documented tie rule", "[bpe]") {
  // Every pair occurs once: ties all the way, broken by the smallest (left id, right id).
  // Pieces "ab", " cd": (' ', 'c') = (32, 99) < ('a', 'b') = (97, 98) < (256, 'd').
  const BpeTokenizer t = BpeTokenizer::train("ab cd", 259);
  REQUIRE(t.merges().size() == 3);
  CHECK(t.token(256) == " c");
  CHECK(t.token(257) == "ab");
  CHECK(t.token(258) == " cd");
  // Counts weigh by piece frequency: "ab" occurs three times.
  const BpeTokenizer u = BpeTokenizer::train("ab ab ab cd", 257);
  CHECK(u.token(256) == "ab");

  const std::string text = sample_text(200000);
  const BpeTokenizer a = BpeTokenizer::train(text, 600), b = BpeTokenizer::train(text, 600);
  CHECK(a.vocab_size() == 600);
  CHECK(a.to_json() == b.to_json());
  // A larger vocabulary extends the same merge sequence.
  const BpeTokenizer c = BpeTokenizer::train(text, 700);
  for (size_t i = 0; i < a.merges().size(); ++i) {
    CHECK(a.merges()[i].left == c.merges()[i].left);
    CHECK(a.merges()[i].right == c.merges()[i].right);
  }
  // Pieces of any length: a 200 KB run of '=' and a 100 KB run of letters (counted in chunks
  // for training, encoded whole).
  const std::string runs = std::string(200000, '=') + " " + std::string(100000, 'k') + " end";
  const BpeTokenizer r = BpeTokenizer::train(runs, 280);
  CHECK(r.vocab_size() == 280);
  CHECK(r.decode(r.encode(runs)) == runs);
  CHECK(r.encode(runs).size() < runs.size() / 50);
  // Too small a text: training stops when no pair is left.
  const BpeTokenizer d = BpeTokenizer::train("aaaa", 1000);
  CHECK(d.vocab_size() == 258);  // "aa", "aaaa"
  CHECK_THROWS_AS(BpeTokenizer::train(text, 256), ConfigError);
  CHECK_THROWS_AS(BpeTokenizer::train(text, 65537), ConfigError);
}

TEST_CASE("BPE round-trips every byte string and compresses text", "[bpe]") {
  const std::string text = sample_text(300000);
  const BpeTokenizer t = BpeTokenizer::train(text, 1000);
  std::mt19937_64 rng(3);
  for (int round = 0; round < 100; ++round) {
    const std::string s = random_bytes(rng, rng() % 2000);
    const auto ids = t.encode(s);
    for (int32_t id : ids) REQUIRE((id >= 0 && id < t.vocab_size()));
    REQUIRE(t.decode(ids) == s);
  }
  // Long inputs take the cached path: same ids as piece by piece.
  const std::string big = sample_text(50000, 99) + random_bytes(rng, 5000) + std::string(9000, ' ');
  const auto ids = t.encode(big);
  CHECK(t.decode(ids) == big);
  std::vector<int32_t> bypiece;
  for (auto p : gpt2_split(big)) {
    const auto v = t.encode(p);
    bypiece.insert(bypiece.end(), v.begin(), v.end());
  }
  CHECK(ids == bypiece);
  // English-like text packs several bytes per token.
  const auto enc = t.encode(text);
  CHECK(double(text.size()) / double(enc.size()) > 2.5);
  CHECK(t.bytes_per_token_hint() == Approx(double(text.size()) / double(enc.size())).epsilon(0.01));
  CHECK(t.encode("").empty());
  CHECK(t.decode({}).empty());
  CHECK_THROWS_AS(t.decode({1, t.vocab_size()}), std::invalid_argument);
  CHECK_THROWS_AS(t.decode({-1}), std::invalid_argument);
  CHECK(t.token_length(65) == 1);
  CHECK(t.token_length(int32_t(t.vocab_size() - 1)) == t.token(t.vocab_size() - 1).size());
}

TEST_CASE("BPE encoding applies merges by rank, leftmost first (Hugging Face's order)", "[bpe]") {
  // Vocabulary: bytes, "ab" 256, "bc" 257, "abc" 258; merges by rank: "b c", "a b", "ab c".
  nlohmann::json vocab = nlohmann::json::object();
  const BpeTokenizer base = BpeTokenizer::bytes_only();
  for (int b = 0; b < 256; ++b) vocab[base.token_text(b)] = b;
  vocab["ab"] = 256, vocab["bc"] = 257, vocab["abc"] = 258;
  nlohmann::json j = nlohmann::json::parse(base.to_json());
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = {"b c", "a b", nlohmann::json::array({"ab", "c"})};
  const BpeTokenizer t = BpeTokenizer::from_json(j.dump());
  CHECK(t.vocab_size() == 259);
  CHECK(t.encode("abc") == std::vector<int32_t>{'a', 257});  // "b c" (rank 0) wins over "a b"
  CHECK(t.encode("abab") == std::vector<int32_t>{256, 256});
  CHECK(t.encode("aabcc") == std::vector<int32_t>{'a', 'a', 257, 'c'});
  CHECK(t.encode("ab c") == std::vector<int32_t>{256, ' ', 'c'});  // merges stay inside pieces
}

TEST_CASE("tokenizer.json: Hugging Face layout and round trip", "[bpe]") {
  const BpeTokenizer t = BpeTokenizer::train(sample_text(100000), 400);
  const auto j = nlohmann::json::parse(t.to_json(2));
  CHECK(j["pre_tokenizer"]["type"] == "ByteLevel");
  CHECK(j["pre_tokenizer"]["add_prefix_space"] == false);
  CHECK(j["decoder"]["type"] == "ByteLevel");
  CHECK(j["model"]["type"] == "BPE");
  CHECK(j["model"]["vocab"].size() == 400);
  CHECK(j["model"]["merges"].size() == t.merges().size());
  // GPT-2's byte alphabet: space -> U+0120, newline -> U+010A, NUL -> U+0100, 'a' -> 'a'.
  CHECK(j["model"]["vocab"]["\xC4\xA0"] == 32);
  CHECK(j["model"]["vocab"]["\xC4\x8A"] == 10);
  CHECK(j["model"]["vocab"]["\xC4\x80"] == 0);
  CHECK(j["model"]["vocab"]["a"] == 97);
  CHECK(j["model"]["vocab"]["\xC3\xA9"] == 0xE9);  // bytes 0xAE..0xFF stand for themselves

  const BpeTokenizer u = BpeTokenizer::from_json(t.to_json(2));
  CHECK(u.to_json() == t.to_json());
  const std::string s = sample_text(20000, 5) + "\xFF\x00\xC3";
  CHECK(u.encode(s) == t.encode(s));
  const auto rebuilt = make_tokenizer("bpe", t.serialize());
  CHECK(rebuilt->kind() == "bpe");
  CHECK(rebuilt->encode(s) == t.encode(s));

  // What is not a byte-level BPE of this kind is refused with one line.
  const auto refuse = [](const nlohmann::json& x) {
    CHECK_THROWS_AS(BpeTokenizer::from_json(x.dump()), ConfigError);
  };
  CHECK_THROWS_AS(BpeTokenizer::from_json("{not json"), ConfigError);
  auto k = j;
  k["added_tokens"] = {{{"id", 0}, {"content", "<|endoftext|>"}}};
  refuse(k);
  k = j, k["model"]["type"] = "WordPiece", refuse(k);
  k = j, k["pre_tokenizer"] = {{"type", "Whitespace"}}, refuse(k);
  k = j, k["pre_tokenizer"]["add_prefix_space"] = true, refuse(k);
  k = j, k["normalizer"] = {{"type", "NFC"}}, refuse(k);
  k = j, k["model"]["vocab"].erase("a"), refuse(k);  // a byte missing: ids not dense
  k = j, k["model"]["merges"].push_back("zz qq"), refuse(k);
  {
    // Byte 'A' (0x41) loses its token, its id going to a longer string: the message names the
    // byte as a byte (and as the file writes it), not as a number that reads like a token id.
    k = j;
    k["model"]["vocab"].erase("A");
    k["model"]["vocab"]["AAAAAAAAQ"] = 0x41;
    k["model"]["merges"] = nlohmann::json::array();
    try {
      BpeTokenizer::from_json(k.dump());
      FAIL("a vocabulary without byte 0x41 was accepted");
    } catch (const ConfigError& e) {
      CHECK_THAT(e.what(), Catch::Contains("byte 0x41") && Catch::Contains("\"A\""));
    }
  }
  k = j, k["model"]["vocab"]["\xE2\x82\xAC"] = 400, refuse(k);  // not in the alphabet
  CHECK_THROWS_AS(make_tokenizer("bpe", ""), ConfigError);
}

TEST_CASE("the byte tokenizer is the BPE without merges", "[bpe]") {
  const BpeTokenizer b = as_byte_level_bpe(ByteTokenizer());
  std::mt19937_64 rng(11);
  const std::string s = random_bytes(rng, 5000);
  CHECK(b.encode(s) == ByteTokenizer().encode(s));
  CHECK(b.vocab_size() == 256);
  CHECK(b.merges().empty());
}

TEST_CASE("token storage follows the vocabulary", "[bpe]") {
  const std::vector<int32_t> ids = {0, 5, 65535, 7};
  const TokenSeq small(ids, 65536);
  CHECK(small.width() == 2);
  CHECK(small == ids);
  CHECK(small.to_vector() == ids);
  const TokenSeq wide(std::vector<int32_t>{0, 70000, 3}, 70001);
  CHECK(wide.width() == 4);
  CHECK(wide[1] == 70000);
  CHECK_THROWS_AS(TokenSeq(std::vector<int32_t>{256}, 256), std::invalid_argument);

  // The sampler reads the same windows from 2-byte storage as from int32 ids.
  std::vector<int32_t> many(3000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = int32_t((i * 7919) % 4096);
  const TokenSeq seq(many, 4096);
  const WindowSampler a(many, 32, 5), b(seq, 32, 5);
  std::vector<int32_t> wa(4 * 33), wb(4 * 33);
  a.fill(3, 0, 4, wa.data());
  b.fill(3, 0, 4, wb.data());
  CHECK(wa == wb);
  int ca = 0, cb = 0;
  CHECK(validation_windows(many, 32, 0, &ca) == validation_windows(seq, 32, 0, &cb));
  CHECK(ca == cb);
}

TEST_CASE("corpus with a BPE: split by bytes, parts encoded apart, fingerprint", "[bpe]") {
  CorpusText text;
  text.text = sample_text(60000, 21);
  text.path = "(memory)";
  text.bytes = text.text.size();
  const size_t cut = train_bytes(text, 0.1);
  CHECK(cut == text.text.size() - size_t(std::llround(double(text.text.size()) * 0.1)));
  const BpeTokenizer tok = BpeTokenizer::train(training_text(text, 0.1), 500);
  const std::string all = text.text;
  const Corpus c = encode_corpus(text, tok, 0.1, 65);
  CHECK(c.train.width() == 2);
  CHECK(tok.decode(c.train.to_vector()) == all.substr(0, cut));
  CHECK(tok.decode(c.val.to_vector()) == all.substr(cut));
  // The byte tokenizer's fingerprint is the SHA-256 of its int32 ids, as it always was.
  ByteTokenizer byte;
  const Corpus cb = encode_corpus(text, byte, 0.1, 65);
  const auto ids = cb.train.to_vector();
  CHECK(data_fingerprint(cb, byte) == sha256_hex(ids.data(), ids.size() * sizeof(int32_t)));
  // A BPE's fingerprint names the tokenizer too.
  const BpeTokenizer other = BpeTokenizer::train(training_text(text, 0.1), 501);
  const Corpus c2 = encode_corpus(text, other, 0.1, 65);
  CHECK(data_fingerprint(c, tok) != data_fingerprint(c2, other));
  CHECK(data_fingerprint(c, tok) == data_fingerprint(encode_corpus(text, tok, 0.1, 65), tok));
}

TEST_CASE("validation bits per byte count the bytes of the predicted tokens", "[bpe]") {
  const std::string text = sample_text(40000, 4);
  const BpeTokenizer tok = BpeTokenizer::train(text, 300);
  ModelConfig cfg = model_preset("tiny");
  cfg.vocab = tok.vocab_size();
  cfg.context = 16;
  AlignedVector<float> w(ParamLayout(cfg).total());
  init_parameters(ParamLayout(cfg), 1, w.data());
  const TokenSeq val(tok.encode(text.substr(0, 3000)), tok.vocab_size());
  Evaluator by_bytes(cfg, val, 16, 8, 4, tok);
  const EvalResult r = by_bytes.run(w.data());
  // The bytes are those of the targets: ids 1..16 of each window.
  const auto ids = val.to_vector();
  double bytes = 0;
  for (int k = 0; k < 8; ++k)
    for (int i = 1; i <= 16; ++i) bytes += double(tok.token(ids[size_t(k * 16 + i)]).size());
  CHECK(r.bytes == bytes);
  CHECK(r.bits_per_byte == Approx(r.loss * double(r.tokens) / std::log(2.0) / bytes));
  CHECK(r.bits_per_byte < r.loss / std::log(2.0));  // several bytes per token
  // For the byte tokenizer both ways of counting agree.
  ModelConfig bc = cfg;
  bc.vocab = 256;
  AlignedVector<float> wb(ParamLayout(bc).total());
  init_parameters(ParamLayout(bc), 1, wb.data());
  const TokenSeq bval(ByteTokenizer().encode(text.substr(0, 3000)), 256);
  const EvalResult x = Evaluator(bc, bval, 16, 8, 4, ByteTokenizer()).run(wb.data());
  const EvalResult y = Evaluator(bc, bval, 16, 8, 4, 1.0).run(wb.data());
  CHECK(x.bits_per_byte == Approx(y.bits_per_byte).epsilon(1e-12));
}
