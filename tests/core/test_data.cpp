// Tokenizer, corpus loading and stateless window sampling.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "src/config.hpp"
#include "src/corpus.hpp"
#include "src/sampler.hpp"
#include "src/tokenizer.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace cllm;

namespace {

using cllm::test::TempDir;

std::string as_text(TokenView ids) {
  return ByteTokenizer().decode(ids.to_vector());
}

std::vector<int32_t> iota_tokens(size_t n) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>(i % 1000);
  return t;
}

}  // namespace

TEST_CASE("byte tokenizer round-trips arbitrary bytes", "[data]") {
  ByteTokenizer tok;
  CHECK(tok.kind() == "byte");
  CHECK(tok.vocab_size() == 256);
  CHECK(tok.serialize().empty());
  CHECK(tok.bytes_per_token_hint() == 1.0);

  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  all += "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";  // café € 😀
  std::vector<int32_t> ids = tok.encode(all);
  REQUIRE(ids.size() == all.size());
  CHECK(ids[0] == 0);
  CHECK(ids[255] == 255);
  CHECK(ids[256 + 3] == 0xC3);
  for (int32_t id : ids) CHECK((id >= 0 && id < 256));
  CHECK(tok.decode(ids) == all);
  CHECK(tok.encode("").empty());
  CHECK(tok.decode({}).empty());
}

TEST_CASE("byte tokenizer decode rejects out-of-range ids", "[data]") {
  ByteTokenizer tok;
  CHECK_THROWS_AS(tok.decode({65, 256}), std::invalid_argument);
  CHECK_THROWS_AS(tok.decode({-1}), std::invalid_argument);
  CHECK_THROWS_WITH(tok.decode({1, 2, 300}), Catch::Contains("300"));
}

TEST_CASE("make_tokenizer rebuilds the byte tokenizer and rejects unknown kinds", "[data]") {
  auto tok = make_tokenizer("byte", "");
  REQUIRE(tok != nullptr);
  CHECK(tok->kind() == "byte");
  CHECK(tok->vocab_size() == 256);
  CHECK(tok->decode(tok->encode("hi\n")) == "hi\n");
  CHECK_THROWS_AS(make_tokenizer("bpe9", ""), ConfigError);
  CHECK_THROWS_WITH(make_tokenizer("bpe9", ""), "unknown tokenizer kind 'bpe9'");
  CHECK_THROWS_AS(make_tokenizer("byte", "junk"), ConfigError);
}

TEST_CASE("binary detection", "[data]") {
  auto binary = [](const std::string& s) { return looks_binary(s.data(), s.size()); };
  CHECK_FALSE(binary("plain text\twith\r\nwhitespace\f\v"));
  CHECK_FALSE(binary("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC\xF0\x9F\x98\x80"));  // all valid UTF-8
  CHECK_FALSE(binary(""));
  CHECK(binary(std::string("text\0more", 9)));
  CHECK(binary("\x01\x02\x03\x04text"));     // 4 of 8 bytes are control bytes
  CHECK(binary("\xFF\xFE\xC0\xAF abc"));     // invalid UTF-8 (0xFF, overlong C0 AF)
  CHECK_FALSE(binary("\x01\x02 abcdefgh"));  // 2 of 11: under 30%
  CHECK(binary("\xED\xA0\x80"));             // UTF-16 surrogate encoded in UTF-8
  // A NUL after the first 8 KiB is not looked at.
  std::string late(9000, 'a');
  late[8500] = '\0';
  CHECK_FALSE(binary(late));
  // A multi-byte character cut by the 8 KiB sample boundary is still valid text.
  std::string cut(8191, 'a');
  cut += "\xE2\x82\xAC";
  CHECK_FALSE(binary(cut));
  // Mostly non-UTF-8 high bytes (Latin-1, random data) count as binary.
  std::string latin(100, '\xE9');
  CHECK(binary(latin));
}

TEST_CASE("corpus from a single file", "[data]") {
  TempDir dir("cllm-data");
  ByteTokenizer tok;
  std::string f = dir.write("a.txt", "hello world");
  Corpus c = load_corpus(f, tok, 0.0, 4);
  CHECK(as_text(c.train) == "hello world\n");  // separator appended
  CHECK(c.val.empty());
  CHECK(c.bytes == 11);
  CHECK(c.files_read == 1);
  CHECK(c.files_skipped == 0);
  CHECK(c.files == std::vector<std::string>{f});

  std::string g = dir.write("b.txt", "ends with newline\n");
  CHECK(as_text(load_corpus(g, tok, 0.0, 1).train) == "ends with newline\n");
}

TEST_CASE("corpus from a nested folder is sorted and skips binary and hidden files", "[data]") {
  TempDir dir("cllm-data");
  TempDir outside("cllm-data");
  ByteTokenizer tok;
  std::string root = (dir.path / "root").string();
  dir.write("root/b.txt", "B");
  dir.write("root/a/z.txt", "Z\n");
  dir.write("root/a.txt", "A");
  std::string bin = dir.write("root/sub/bin.dat", std::string("\x7F"
                                                              "ELF\0\0\0",
                                                              7));
  dir.write("root/.git/config", "hidden text");
  dir.write("root/.notes", "hidden text");
  std::string target = outside.write("linked.txt", "L");
  fs::create_symlink(target, dir.path / "root/link.txt");
  fs::create_directory_symlink(dir.path / "root", dir.path / "root/sub/loop");  // a cycle

  Corpus c = load_corpus(root, tok, 0.0, 1);
  // Byte-wise order: '.' (0x2E) sorts before '/' (0x2F), so a.txt comes before a/z.txt.
  CHECK(as_text(c.train) == "A\nZ\nB\nL\n");
  CHECK(c.files == std::vector<std::string>{root + "/a.txt", root + "/a/z.txt", root + "/b.txt",
                                            root + "/link.txt"});
  CHECK(c.files_read == 4);
  CHECK(c.files_skipped == 1);
  CHECK(c.skipped == std::vector<std::string>{bin});
  CHECK(c.hidden_skipped == 2);
  CHECK(c.bytes == 5);

  // Deterministic: the same folder gives the same tokens.
  CHECK(load_corpus(root, tok, 0.0, 1).train == c.train);
}

TEST_CASE("corpus errors are one line naming the path", "[data]") {
  TempDir dir("cllm-data");
  ByteTokenizer tok;
  const std::string d = dir.str();

  SECTION("missing path") {
    std::string p = d + "/nope.txt";
    REQUIRE_THROWS_AS(load_corpus(p, tok, 0.0, 1), CorpusError);
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.0, 1),
                        Catch::Contains("corpus '" + p + "' does not exist"));
  }
  SECTION("folder with only binary files") {
    dir.write("x/one.bin", std::string("\0\1\2", 3));
    dir.write("x/two.bin", std::string("\0\1\2", 3));
    std::string p = d + "/x";
    REQUIRE_THROWS_AS(load_corpus(p, tok, 0.0, 1), CorpusError);
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.0, 1),
                        Catch::Contains("corpus folder '" + p + "' contains no text files") &&
                            Catch::Contains("(2 binary files skipped)"));
  }
  SECTION("empty folder") {
    fs::create_directories(dir.path / "empty");
    std::string p = d + "/empty";
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.0, 1),
                        Catch::Contains(p) && Catch::Contains("no text files"));
  }
  SECTION("folder with only empty files") {
    dir.write("e/a.txt", "");
    std::string p = d + "/e";
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.0, 1),
                        Catch::Contains(p) && Catch::Contains("only empty"));
  }
  SECTION("empty file") {
    std::string p = dir.write("empty.txt", "");
    REQUIRE_THROWS_AS(load_corpus(p, tok, 0.0, 1), CorpusError);
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.0, 1),
                        Catch::Contains("corpus file '" + p + "' is empty"));
  }
  SECTION("binary file given directly") {
    std::string p = dir.write("data.bin", std::string("ab\0cd", 5));
    REQUIRE_THROWS_AS(load_corpus(p, tok, 0.0, 1), CorpusError);
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.0, 1),
                        Catch::Contains(p) && Catch::Contains("binary"));
  }
  SECTION("dangling symlink inside a folder") {
    dir.write("f/a.txt", "text");
    fs::create_symlink(dir.path / "f/gone.txt", dir.path / "f/b.txt");
    std::string link = d + "/f/b.txt";
    REQUIRE_THROWS_AS(load_corpus(d + "/f", tok, 0.0, 1), CorpusError);
    REQUIRE_THROWS_WITH(load_corpus(d + "/f", tok, 0.0, 1),
                        Catch::Contains("cannot read corpus file '" + link + "'"));
  }
  SECTION("unreadable file inside a folder") {
    dir.write("g/a.txt", "text");
    std::string p = dir.write("g/secret.txt", "text");
    fs::permissions(p, fs::perms::none);
    if (std::ifstream(p).is_open()) {
      WARN("running with privileges that ignore file permissions; check skipped");
    } else {
      REQUIRE_THROWS_AS(load_corpus(d + "/g", tok, 0.0, 1), CorpusError);
      REQUIRE_THROWS_WITH(load_corpus(d + "/g", tok, 0.0, 1),
                          "cannot read corpus file '" + p + "': Permission denied");
    }
  }
  SECTION("too few training tokens") {
    std::string p = dir.write("short.txt", std::string(49, 'x'));  // + "\n" = 50 tokens
    REQUIRE_THROWS_AS(load_corpus(p, tok, 0.0, 129), CorpusError);
    REQUIRE_THROWS_WITH(
        load_corpus(p, tok, 0.0, 129),
        "corpus '" + p +
            "' has 50 training tokens but one window needs 129 (context 128 + 1); use a longer "
            "text or a smaller --context");
    CHECK_NOTHROW(load_corpus(p, tok, 0.0, 50));
  }
  SECTION("too few validation tokens") {
    std::string p = dir.write("mid.txt", std::string(999, 'x'));  // 1000 tokens
    REQUIRE_THROWS_AS(load_corpus(p, tok, 0.1, 129), CorpusError);
    REQUIRE_THROWS_WITH(load_corpus(p, tok, 0.1, 129),
                        Catch::Contains(p) && Catch::Contains("100 validation tokens") &&
                            Catch::Contains("--val-fraction 0"));
    CHECK_NOTHROW(load_corpus(p, tok, 0.0, 129));
    CHECK_NOTHROW(load_corpus(p, tok, 0.2, 129));  // 200 validation tokens
  }
  SECTION("validation fraction out of range") {
    std::string p = dir.write("ok.txt", "some text");
    for (double vf : {-0.1, 0.6, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
      REQUIRE_THROWS_AS(load_corpus(p, tok, vf, 1), CorpusError);
      REQUIRE_THROWS_WITH(load_corpus(p, tok, vf, 1),
                          Catch::Contains(p) && Catch::Contains("[0, 0.5]"));
    }
  }
}

TEST_CASE("validation split takes the exact token tail", "[data]") {
  TempDir dir("cllm-data");
  ByteTokenizer tok;
  std::string text;
  for (int i = 0; i < 999; ++i) text.push_back(static_cast<char>('a' + i % 26));
  std::string p = dir.write("t.txt", text);  // 999 bytes + "\n" = 1000 tokens
  const std::vector<int32_t> all = tok.encode(text + "\n");
  struct Case {
    double vf;
    size_t val;
  };
  for (Case k : {Case{0.0, 0}, Case{0.1, 100}, Case{0.25, 250}, Case{0.5, 500}, Case{0.123, 123},
                 Case{0.29, 290}}) {
    Corpus c = load_corpus(p, tok, k.vf, 10);
    CHECK(c.val.size() == k.val);
    CHECK(c.train.size() == 1000 - k.val);
    CHECK(c.train == std::vector<int32_t>(all.begin(), all.end() - k.val));
    CHECK(c.val == std::vector<int32_t>(all.end() - k.val, all.end()));
  }
}

TEST_CASE("window sampler is a pure function of (seed, step, row)", "[data]") {
  const std::vector<int32_t> tokens = iota_tokens(5000);
  WindowSampler a(tokens, 16, 42), b(tokens, 16, 42);
  CHECK(a.context() == 16);
  CHECK(a.num_windows() == 5000 - 16);
  for (uint64_t step = 0; step < 50; ++step) {
    for (uint64_t row = 0; row < 8; ++row) {
      CHECK(a.window_start(step, row) == b.window_start(step, row));
    }
  }
  // Rows [0, 8) in one call equal [0, 4) + [4, 8): shards with any micro-batch see the same data.
  const int w = 17;
  std::vector<int32_t> whole(8 * w), parts(8 * w);
  a.fill(7, 0, 8, whole.data());
  b.fill(7, 0, 4, parts.data());
  b.fill(7, 4, 4, parts.data() + 4 * w);
  CHECK(whole == parts);
  // Window contents are the corpus slice at window_start.
  for (int r = 0; r < 8; ++r) {
    size_t s = a.window_start(7, r);
    CHECK(std::vector<int32_t>(whole.begin() + r * w, whole.begin() + (r + 1) * w) ==
          std::vector<int32_t>(tokens.begin() + s, tokens.begin() + s + w));
  }
  // Different seeds, steps and rows give different windows.
  WindowSampler c(tokens, 16, 43);
  int same_seed = 0, same_step = 0, same_row = 0;
  for (uint64_t step = 0; step < 100; ++step) {
    same_seed += a.window_start(step, 0) == c.window_start(step, 0);
    same_step += a.window_start(step, 0) == a.window_start(step + 1, 0);
    same_row += a.window_start(step, 0) == a.window_start(step, 1);
  }
  CHECK(same_seed < 5);
  CHECK(same_step < 5);
  CHECK(same_row < 5);
}

TEST_CASE("window sampler covers every start and stays in range", "[data]") {
  {
    const std::vector<int32_t> tokens = iota_tokens(1000);
    WindowSampler s(tokens, 64, 7);
    for (uint64_t step = 0; step < 2000; ++step) {
      for (uint64_t row = 0; row < 4; ++row) {
        size_t st = s.window_start(step, row);
        REQUIRE(st + 64 + 1 <= tokens.size());
      }
    }
  }
  // Tiny corpus: 10 tokens, context 3 -> starts 0..6, all reachable and roughly uniform.
  const std::vector<int32_t> tokens = iota_tokens(10);
  WindowSampler s(tokens, 3, 1);
  REQUIRE(s.num_windows() == 7);
  std::vector<int> hits(7, 0);
  const int draws = 7000;
  for (int i = 0; i < draws; ++i) {
    size_t st = s.window_start(static_cast<uint64_t>(i / 10), static_cast<uint64_t>(i % 10));
    REQUIRE(st < 7);
    ++hits[st];
  }
  for (int h : hits) {
    CHECK(h > 800);
    CHECK(h < 1200);
  }
  // Exactly one window: the only start is 0.
  const std::vector<int32_t> four = iota_tokens(4);
  WindowSampler one(four, 3, 99);
  CHECK(one.num_windows() == 1);
  for (uint64_t step = 0; step < 20; ++step) CHECK(one.window_start(step, step) == 0);
}

TEST_CASE("window sampler rejects too short a corpus", "[data]") {
  const std::vector<int32_t> tokens = iota_tokens(3);
  CHECK_THROWS_AS(WindowSampler(tokens, 3, 0), CorpusError);
  CHECK_THROWS_AS(WindowSampler(tokens, 0, 0), std::invalid_argument);
}

TEST_CASE("validation windows are ordered, non-overlapping and capped", "[data]") {
  const std::vector<int32_t> val = iota_tokens(10);
  int count = -1;
  std::vector<int32_t> w = validation_windows(val, 3, 0, &count);
  REQUIRE(count == 3);  // starts 0, 3, 6; the last ends at token 9
  CHECK(w == std::vector<int32_t>{0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9});

  w = validation_windows(val, 3, 2, &count);
  CHECK(count == 2);
  CHECK(w == std::vector<int32_t>{0, 1, 2, 3, 3, 4, 5, 6});

  w = validation_windows(val, 3, 100, &count);
  CHECK(count == 3);

  CHECK(validation_windows(iota_tokens(3), 3, 0, &count).empty());
  CHECK(count == 0);
  CHECK(validation_windows(iota_tokens(4), 3, 0, &count).size() == 4);
  CHECK(count == 1);
  CHECK(validation_windows(iota_tokens(9), 3, 0, &count).size() == 8);  // 0..3, 3..6; 6..9 short
  CHECK(count == 2);
  CHECK(validation_windows({}, 3, 0, nullptr).empty());
}
