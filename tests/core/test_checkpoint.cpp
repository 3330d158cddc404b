// SHA-256, the safetensors container and the CLLM checkpoint on top of it.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "src/checkpoint.hpp"
#include "src/params.hpp"
#include "src/safetensors.hpp"
#include "src/sha256.hpp"
#include "tests/temp_dir.hpp"

using namespace cllm;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

using cllm::test::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  return n;
}

// Deterministic "random" bits, including a few special values, so the round trip is bit-exact
// for every pattern a float can hold.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void fill_random(const ParamLayout& layout, AlignedVector<float>& v, uint64_t seed) {
  v.assign(layout.total(), 0.0f);
  for (const auto& t : layout.tensors())
    for (size_t i = 0; i < t.size; ++i) {
      const uint64_t r = mix(seed * 1000003 + t.offset + i);
      float f;
      if (r % 97 == 0) {
        const uint32_t bits = uint32_t(r >> 32);  // any bit pattern: NaNs, denormals, infinities
        std::memcpy(&f, &bits, 4);
      } else {
        f = float(int64_t(r % 2000001) - 1000000) * 1e-6f;
      }
      v[t.offset + i] = f;
    }
}

std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s += char(i);
  return s + std::string("\0\xff\0", 3);
}

Checkpoint make_checkpoint(const ModelConfig& cfg, uint64_t salt = 1) {
  const ParamLayout layout(cfg);
  Checkpoint ck;
  ck.model = cfg;
  ck.tokenizer_kind = "bpe";
  ck.tokenizer_data = all_bytes();
  ck.step = 1234567890123ULL + salt;
  ck.seed = 0xdeadbeefcafebabeULL;
  ck.run = {{"batch", 16}, {"micro_batch", 2}, {"context", 64}, {"optimizer", {{"lr", 3e-4}}}};
  fill_random(layout, ck.weights, 10 * salt + 1);
  fill_random(layout, ck.adam_m, 10 * salt + 2);
  fill_random(layout, ck.adam_v, 10 * salt + 3);
  for (size_t i = 0; i < layout.tensors().size(); ++i)
    ck.grad_scale_exp.push_back(int32_t(i * 7 % 50) - 25);
  return ck;
}

ModelConfig micro_model() {
  ModelConfig c;
  c.vocab = 16, c.d_model = 4, c.layers = 1, c.n_heads = 1, c.context = 4;
  return c;
}

bool same_bits(const AlignedVector<float>& a, const AlignedVector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void require_equal(const Checkpoint& a, const Checkpoint& b) {
  REQUIRE(a.model == b.model);
  REQUIRE(a.tokenizer_kind == b.tokenizer_kind);
  REQUIRE(a.tokenizer_data == b.tokenizer_data);
  REQUIRE(a.step == b.step);
  REQUIRE(a.seed == b.seed);
  REQUIRE(a.run == b.run);
  REQUIRE(same_bits(a.weights, b.weights));
  REQUIRE(same_bits(a.adam_m, b.adam_m));
  REQUIRE(same_bits(a.adam_v, b.adam_v));
  REQUIRE(a.grad_scale_exp == b.grad_scale_exp);
}

// The metadata checksum as docs/checkpoint-format.md defines it.
std::string metadata_checksum(const std::map<std::string, std::string>& meta) {
  Sha256 sha;
  for (const auto& [k, v] : meta) {
    if (k == "metadata_sha256") continue;
    sha.update(k.data(), k.size());
    sha.update("", 1);
    sha.update(v.data(), v.size());
    sha.update("", 1);
  }
  const auto d = sha.finish();
  return to_hex(d.data(), d.size());
}

// Writes a (doctored) checkpoint with valid checksums, as a buggy or future writer would.
void write_sealed(const std::string& path, StFile file) {
  write_safetensors(path, file);
  std::string sha;
  read_safetensors(path, &sha);
  file.metadata["payload_sha256"] = sha;
  file.metadata["metadata_sha256"] = metadata_checksum(file.metadata);
  write_safetensors(path, file);
}

}  // namespace

TEST_CASE("sha256 matches the FIPS 180-4 vectors", "[checkpoint]") {
  REQUIRE(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  REQUIRE(sha256_hex("abc", 3) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  REQUIRE(sha256_hex(m448.data(), m448.size()) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
      "pq"
      "rsmnopqrstnopqrstu";
  REQUIRE(sha256_hex(m896.data(), m896.size()) ==
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

  // One million 'a', fed in odd-sized chunks.
  const std::string a(1000000, 'a');
  Sha256 h;
  const size_t chunks[] = {1, 3, 7, 13, 55, 63, 64, 65, 127, 1001};
  size_t pos = 0;
  for (int i = 0; pos < a.size(); ++i) {
    const size_t n = std::min(chunks[i % 10], a.size() - pos);
    h.update(a.data() + pos, n);
    pos += n;
  }
  auto d = h.finish();
  REQUIRE(to_hex(d.data(), d.size()) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // finish() resets: the same object hashes the next message from scratch.
  h.update("abc", 3);
  d = h.finish();
  REQUIRE(to_hex(d.data(), d.size()) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  // Padding boundaries (values from Python's hashlib).
  const std::pair<size_t, const char*> lengths[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {57, "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
      {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"}};
  for (const auto& [n, hex] : lengths) {
    INFO("length " << n);
    REQUIRE(sha256_hex(a.data(), n) == hex);
  }
  const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  REQUIRE(to_hex(bytes, 4) == "000fa5ff");
}

TEST_CASE("weights_sha256 hashes the unpadded tensors in layout order", "[checkpoint]") {
  const ParamLayout layout(model_preset("tiny"));
  AlignedVector<float> w;
  fill_random(layout, w, 5);
  std::string concat;
  for (const auto& t : layout.tensors())
    concat.append(reinterpret_cast<const char*>(w.data() + t.offset), t.size * sizeof(float));
  REQUIRE(concat.size() == layout.num_parameters() * sizeof(float));
  const std::string hex = weights_sha256(layout, w.data());
  REQUIRE(hex == sha256_hex(concat.data(), concat.size()));
  REQUIRE(hex.size() == 64);
  // Padding does not count; any real element does.
  const auto& first = layout.tensors()[0];
  if (first.size < layout.tensors()[1].offset) {
    w[first.size] = 42.0f;
    REQUIRE(weights_sha256(layout, w.data()) == hex);
  }
  w[layout.tensors()[1].offset] += 1.0f;
  REQUIRE(weights_sha256(layout, w.data()) != hex);
}

TEST_CASE("safetensors round trip is bit-exact for every dtype", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("all.safetensors");
  StFile f;
  f.metadata = {{"a", "1"}, {"unicode", "h\xc3\xa9llo \xe2\x9c\x93"}, {"empty", ""}};
  auto tensor = [](const std::string& dtype, std::vector<int64_t> shape, size_t nbytes,
                   uint64_t seed) {
    StTensor t{dtype, std::move(shape), std::vector<uint8_t>(nbytes)};
    for (size_t i = 0; i < nbytes; ++i) t.bytes[i] = uint8_t(mix(seed + i));
    return t;
  };
  f.tensors["u8"] = tensor("U8", {3, 5}, 15, 1);  // odd size
  f.tensors["f32"] = tensor("F32", {7}, 28, 2);   // 4-byte, not a multiple of 8
  f.tensors["i32"] = tensor("I32", {2, 3}, 24, 3);
  f.tensors["i64"] = tensor("I64", {3}, 24, 4);
  f.tensors["f64"] = tensor("F64", {2, 2}, 32, 5);
  f.tensors["scalar"] = tensor("F32", {}, 4, 6);     // 0-d
  f.tensors["empty"] = tensor("F32", {0, 3}, 0, 7);  // no elements
  write_safetensors(path, f);

  std::string sha;
  const StFile g = read_safetensors(path, &sha);
  REQUIRE(g.metadata == f.metadata);
  REQUIRE(g.tensors.size() == f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    INFO(name);
    const auto& u = g.tensors.at(name);
    REQUIRE(u.dtype == t.dtype);
    REQUIRE(u.shape == t.shape);
    REQUIRE(u.bytes == t.bytes);
  }

  // Layout: 8-aligned header, each tensor aligned to its element size, no gaps, checksum of
  // exactly the bytes after the header.
  const std::string raw = read_bytes(path);
  const uint64_t n = header_length(raw);
  REQUIRE(n % 8 == 0);
  REQUIRE(sha == sha256_hex(raw.data() + 8 + n, raw.size() - 8 - n));
  const auto header = nlohmann::json::parse(raw.substr(8, n));
  uint64_t total = 0;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const uint64_t begin = it.value()["data_offsets"][0], end = it.value()["data_offsets"][1];
    INFO(it.key());
    REQUIRE(begin % dtype_size(it.value()["dtype"]) == 0);
    total += end - begin;
  }
  REQUIRE(total == raw.size() - 8 - n);

  // Writing the same content twice gives the same bytes.
  write_safetensors(path, f);
  REQUIRE(read_bytes(path) == raw);
}

TEST_CASE("safetensors writer refuses inconsistent tensors", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("bad.safetensors");
  StFile f;
  f.tensors["x"] = StTensor{"F32", {3}, std::vector<uint8_t>(8)};
  REQUIRE_THROWS_WITH(write_safetensors(path, f), Contains(path) && Contains("'x'"));
  f.tensors["x"] = StTensor{"F17", {2}, std::vector<uint8_t>(8)};
  REQUIRE_THROWS_WITH(write_safetensors(path, f), Contains(path) && Contains("dtype"));
  REQUIRE(fs::is_empty(dir.path));
}

TEST_CASE("checkpoint round trip is bit-exact", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file(checkpoint_name(7));
  const Checkpoint ck = make_checkpoint(model_preset("tiny"));
  save_checkpoint(path, ck);
  const Checkpoint back = load_checkpoint(path);
  require_equal(ck, back);
  REQUIRE(back.source_path == path);
  // Padding entries come back as zero.
  const ParamLayout layout(ck.model);
  const auto& t0 = layout.tensors()[0];
  for (size_t i = t0.offset + t0.size; i < layout.tensors()[1].offset; ++i)
    REQUIRE(back.weights[i] == 0.0f);

  // Without the exact-sum state, and with empty tokenizer data and default run.
  Checkpoint bare = make_checkpoint(micro_model(), 2);
  bare.grad_scale_exp.clear();
  bare.tokenizer_data.clear();
  bare.tokenizer_kind = "byte";
  bare.run = nlohmann::json();
  bare.step = 0;
  bare.seed = std::numeric_limits<uint64_t>::max();
  save_checkpoint(path, bare);
  require_equal(bare, load_checkpoint(path));

  // Tokenizer data of every length mod 3 (base64 padding).
  for (size_t len = 0; len < 7; ++len) {
    bare.tokenizer_data = std::string("\0\xff\x80zq\n\x01", len);
    save_checkpoint(path, bare);
    REQUIRE(load_checkpoint(path).tokenizer_data == bare.tokenizer_data);
  }
  // No temporaries left behind.
  REQUIRE(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("checkpoint header is valid safetensors for Python readers", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  const Checkpoint ck = make_checkpoint(model_preset("tiny"));
  save_checkpoint(path, ck);
  const std::string raw = read_bytes(path);
  REQUIRE(raw.size() >= 8);
  const uint64_t n = header_length(raw);
  REQUIRE(n % 8 == 0);
  REQUIRE(8 + n <= raw.size());
  REQUIRE(raw[8] == '{');
  const auto header = nlohmann::json::parse(raw.substr(8, n));
  REQUIRE(header.is_object());
  const auto& meta = header.at("__metadata__");
  for (auto it = meta.begin(); it != meta.end(); ++it) {
    INFO(it.key());
    REQUIRE(it.value().is_string());
  }
  REQUIRE(meta.at("format") == "cllm-checkpoint");
  REQUIRE(meta.at("format_version") == "1");
  REQUIRE(meta.at("step") == std::to_string(ck.step));
  REQUIRE(meta.at("seed") == std::to_string(ck.seed));
  REQUIRE(nlohmann::json::parse(meta.at("model").get<std::string>())["d_model"] == 64);
  REQUIRE(nlohmann::json::parse(meta.at("run").get<std::string>()) == ck.run);
  REQUIRE(meta.at("payload_sha256") == sha256_hex(raw.data() + 8 + n, raw.size() - 8 - n));
  std::map<std::string, std::string> meta_map = meta.get<std::map<std::string, std::string>>();
  REQUIRE(meta.at("metadata_sha256") == metadata_checksum(meta_map));

  // Tensor entries: exactly dtype/shape/data_offsets, contiguous, covering the buffer.
  const ParamLayout layout(ck.model);
  REQUIRE(header.size() == 1 + 3 * layout.tensors().size() + 1);
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    INFO(it.key());
    REQUIRE(it.value().size() == 3);
    spans.emplace_back(it.value()["data_offsets"][0], it.value()["data_offsets"][1]);
  }
  std::sort(spans.begin(), spans.end());
  uint64_t pos = 0;
  for (const auto& [b, e] : spans) {
    REQUIRE(b == pos);
    pos = e;
  }
  REQUIRE(pos == raw.size() - 8 - n);
  const auto& wte = header.at("wte.weight");
  REQUIRE(wte["dtype"] == "F32");
  REQUIRE(wte["shape"] == nlohmann::json::array({256, 64}));
  REQUIRE(header.at("h.1.attn.c_attn.weight")["shape"] == nlohmann::json::array({64, 192}));
  REQUIRE(header.at("optim.adam_m.wte.weight")["shape"] == nlohmann::json::array({256, 64}));
  REQUIRE(header.at("optim.adam_v.ln_f.bias")["shape"] == nlohmann::json::array({64}));
  REQUIRE(header.at("optim.grad_scale_exp")["dtype"] == "I32");
  // The data is the plain little-endian floats.
  const uint64_t b = wte["data_offsets"][0];
  REQUIRE(std::memcmp(raw.data() + 8 + n + b, ck.weights.data(), 256 * 64 * 4) == 0);
}

TEST_CASE("truncated checkpoints are refused with the file named", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string good = dir.file("good.safetensors");
  save_checkpoint(good, make_checkpoint(model_preset("tiny")));
  const std::string raw = read_bytes(good);
  const uint64_t n = header_length(raw);
  const std::string cut_path = dir.file("cut.safetensors");
  const size_t cuts[] = {0,
                         1,
                         7,
                         8,
                         9,
                         size_t(8 + n / 2),
                         size_t(8 + n - 1),
                         size_t(8 + n),
                         size_t(8 + n + 1),
                         size_t(8 + n + 100),
                         raw.size() / 2,
                         raw.size() - 1};
  for (size_t cut : cuts) {
    INFO("cut at " << cut << " of " << raw.size());
    write_bytes(cut_path, raw.substr(0, cut));
    REQUIRE_THROWS_AS(load_checkpoint(cut_path), CheckpointError);
    REQUIRE_THROWS_WITH(load_checkpoint(cut_path), Contains(cut_path));
    if (cut > 8) REQUIRE_THROWS_WITH(load_checkpoint(cut_path), Contains("truncated"));
  }
  write_bytes(cut_path, raw.substr(0, raw.size() - 1000));
  REQUIRE_THROWS_WITH(load_checkpoint(cut_path),
                      Contains(fmt::format("header says {} bytes of data, file has {}",
                                           raw.size() - 8 - n, raw.size() - 8 - n - 1000)));
  // Extra bytes at the end are refused too.
  write_bytes(cut_path, raw + "x");
  REQUIRE_THROWS_WITH(load_checkpoint(cut_path), Contains(cut_path) && Contains("after its data"));
}

TEST_CASE("a flipped byte anywhere in a checkpoint is detected", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  // Targeted, on the tiny preset: one byte in the data, one in the header.
  save_checkpoint(path, make_checkpoint(model_preset("tiny")));
  const std::string raw = read_bytes(path);
  const uint64_t n = header_length(raw);
  std::string bad = raw;
  bad[8 + n + 12345] ^= 0x10;
  write_bytes(path, bad);
  REQUIRE_THROWS_WITH(load_checkpoint(path),
                      Contains(path) && Contains("checksum mismatch: file is corrupt"));
  bad = raw;
  const size_t step_at = raw.find("\"step\":\"") + 8;
  REQUIRE(step_at < 8 + n);
  bad[step_at] ^= 0x01;  // a digit of the step: still valid JSON
  write_bytes(path, bad);
  REQUIRE_THROWS_WITH(load_checkpoint(path),
                      Contains(path) && Contains("checksum mismatch: file is corrupt"));
  bad = raw;
  bad[8 + n / 2] ^= 0x80;
  write_bytes(path, bad);
  REQUIRE_THROWS_WITH(load_checkpoint(path), Contains(path));

  // Exhaustive, on a micro model: every byte of the file, two different flips each.
  save_checkpoint(path, make_checkpoint(micro_model()));
  const std::string small = read_bytes(path);
  REQUIRE_NOTHROW(load_checkpoint(path));
  size_t detected = 0;
  std::fstream io(path, std::ios::binary | std::ios::in | std::ios::out);
  const auto put = [&](size_t at, char c) {
    io.seekp(std::streamoff(at));
    io.put(c);
    io.flush();
  };
  for (size_t i = 0; i < small.size(); ++i)
    for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80)}) {
      put(i, char(uint8_t(small[i]) ^ mask));
      try {
        load_checkpoint(path);
        FAIL("flip of byte " << i << " with mask " << int(mask) << " went undetected");
      } catch (const CheckpointError& e) {
        const std::string what = e.what();
        if (what.find(path) == std::string::npos || what.find('\n') != std::string::npos)
          FAIL("message for byte " << i << " is not one line naming the file: " << what);
        ++detected;
      }
      put(i, small[i]);
    }
  REQUIRE(detected == 2 * small.size());
}

TEST_CASE("foreign and garbage files are refused", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string text = dir.file("notes.txt");
  write_bytes(text, "This is a text file, not a checkpoint.\nSecond line.\n");
  REQUIRE_THROWS_WITH(load_checkpoint(text), Contains(text) && Contains("not a safetensors file"));
  const std::string empty = dir.file("empty.safetensors");
  write_bytes(empty, "");
  REQUIRE_THROWS_WITH(load_checkpoint(empty), Contains(empty) && Contains("empty"));
  const std::string tiny = dir.file("tiny.bin");
  write_bytes(tiny, "abc");
  REQUIRE_THROWS_WITH(load_checkpoint(tiny), Contains(tiny));
  const std::string binary = dir.file("random.bin");
  std::string junk;
  for (int i = 0; i < 1000; ++i) junk += char(mix(i));
  write_bytes(binary, junk);
  REQUIRE_THROWS_WITH(load_checkpoint(binary), Contains(binary));
  // A plausible length but not JSON.
  write_bytes(binary, std::string("\x10\0\0\0\0\0\0\0{not json at all}", 24));
  REQUIRE_THROWS_WITH(load_checkpoint(binary), Contains(binary) && Contains("JSON"));
  REQUIRE_THROWS_WITH(load_checkpoint(dir.file("missing.safetensors")),
                      Contains("missing.safetensors") && Contains("cannot open"));
  REQUIRE_THROWS_WITH(load_checkpoint(dir.path.string()), Contains(dir.path.string()));

  // A valid safetensors file from another tool.
  const std::string other = dir.file("model.safetensors");
  StFile f;
  f.tensors["weight"] = StTensor{"F32", {2}, std::vector<uint8_t>(8)};
  write_safetensors(other, f);
  REQUIRE_THROWS_WITH(load_checkpoint(other),
                      Contains(other) && Contains("is not a CLLM checkpoint"));
  f.metadata["format"] = "pt\nweird";
  write_safetensors(other, f);
  REQUIRE_THROWS_WITH(
      load_checkpoint(other),
      Contains(other) && Contains("is not a CLLM checkpoint (format 'pt\\x0aweird')"));
}

TEST_CASE("checkpoints from a newer format or with wrong tensors are refused", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  const Checkpoint ck = make_checkpoint(micro_model());
  save_checkpoint(path, ck);
  const StFile good = read_safetensors(path);
  const std::string doctored = dir.file("doctored.safetensors");

  // The resealing helper itself produces a loadable file.
  write_sealed(doctored, good);
  require_equal(ck, load_checkpoint(doctored));

  StFile f = good;
  f.metadata["format_version"] = "2";
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("format version 2, newer"));

  f = good;
  f.tensors.erase("h.0.mlp.c_fc.bias");
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("missing tensor 'h.0.mlp.c_fc.bias'"));

  f = good;
  f.tensors.erase("optim.adam_v.wte.weight");
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("missing tensor 'optim.adam_v.wte.weight'"));

  f = good;
  f.tensors["wte.weight"].shape = {4, 16};  // same bytes, transposed shape
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("tensor 'wte.weight' of F32 [4, 16]"));

  f = good;
  f.tensors["extra"] = StTensor{"U8", {1}, {7}};
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("unexpected tensor 'extra'"));

  // A checkpoint written before docs/glossary.md names the layers "n_layers": still read.
  f = good;
  f.metadata["model"] = R"({"vocab":16,"d_model":4,"n_layers":1,"n_heads":1,"context":4})";
  write_sealed(doctored, f);
  CHECK(load_checkpoint(doctored).model.layers == 1);
  f.metadata["model"] = R"({"vocab":16,"d_model":4,"n_layers":2,"n_heads":1,"context":4})";
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("missing tensor 'h.1."));

  f = good;
  f.metadata["model"] = R"({"vocab":16,"d_model":4,"layers":1,"n_heads":3,"context":4})";
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("invalid model config"));

  f = good;
  f.metadata.erase("payload_sha256");
  f.metadata["metadata_sha256"] = metadata_checksum(f.metadata);
  write_safetensors(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored), Contains(doctored) && Contains("payload_sha256"));
}

TEST_CASE("require_compatible refuses another model shape or tokenizer", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file(checkpoint_name(3));
  save_checkpoint(path, make_checkpoint(model_preset("tiny")));
  const Checkpoint ck = load_checkpoint(path);
  REQUIRE_NOTHROW(require_compatible(ck, model_preset("tiny"), "bpe"));
  REQUIRE_THROWS_AS(require_compatible(ck, model_preset("small"), "bpe"), CheckpointError);
  REQUIRE_THROWS_WITH(require_compatible(ck, model_preset("small"), "bpe"),
                      Contains(path) && Contains("has model " + model_preset("tiny").describe()) &&
                          Contains("but this run uses " + model_preset("small").describe()));
  REQUIRE_THROWS_WITH(require_compatible(ck, model_preset("tiny"), "byte"),
                      Contains(path) && Contains("tokenizer 'bpe' but this run uses 'byte'"));
}

TEST_CASE("checkpoint writes are atomic", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file(checkpoint_name(1));
  const Checkpoint original = make_checkpoint(model_preset("tiny"));
  save_checkpoint(path, original);
  const std::string original_bytes = read_bytes(path);
  const auto intact = [&] {
    REQUIRE(read_bytes(path) == original_bytes);
    for (const auto& e : fs::directory_iterator(dir.path)) {
      INFO(e.path());
      REQUIRE(e.path().filename().string().find(".tmp.") == std::string::npos);
    }
  };

  SECTION("into a folder that does not exist") {
    const std::string nowhere = dir.file("no/such/folder/" + checkpoint_name(2));
    REQUIRE_THROWS_WITH(save_checkpoint(nowhere, original),
                        Contains(nowhere) && Contains("No such file or directory"));
    REQUIRE_FALSE(fs::exists(dir.path / "no"));
    intact();
  }
  SECTION("a checkpoint with the wrong sizes") {
    Checkpoint wrong = make_checkpoint(model_preset("tiny"), 2);
    wrong.adam_v.pop_back();
    REQUIRE_THROWS_WITH(save_checkpoint(path, wrong), Contains(path) && Contains("adam_v"));
    wrong = make_checkpoint(model_preset("tiny"), 2);
    wrong.grad_scale_exp.push_back(0);
    REQUIRE_THROWS_WITH(save_checkpoint(path, wrong), Contains(path) && Contains("grad_scale_exp"));
    intact();
  }
  SECTION("the temporary cannot be created") {
    const fs::path blocker = path + ".tmp." + std::to_string(::getpid());
    fs::create_directory(blocker);
    REQUIRE_THROWS_WITH(save_checkpoint(path, make_checkpoint(model_preset("tiny"), 2)),
                        Contains(path));
    REQUIRE(fs::is_directory(blocker));  // not ours: left alone
    fs::remove(blocker);
    intact();
  }
  SECTION("the disk fills up in the middle of the data") {
    // A file-size limit makes write() fail with EFBIG part way through.
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    struct rlimit low = old;
    low.rlim_cur = 100000;
    const auto old_handler = signal(SIGXFSZ, SIG_IGN);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &low) == 0);
    std::string message;
    try {
      save_checkpoint(path, make_checkpoint(model_preset("tiny"), 2));
    } catch (const CheckpointError& e) {
      message = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    REQUIRE_THAT(message, Contains(path) && Contains("failed"));
    intact();
    require_equal(original, load_checkpoint(path));
  }
  SECTION("the rename fails") {
    const std::string occupied = dir.file("occupied");
    fs::create_directories(fs::path(occupied) / "child");
    REQUIRE_THROWS_WITH(save_checkpoint(occupied, original), Contains(occupied));
    REQUIRE(fs::is_directory(fs::path(occupied) / "child"));
    intact();
  }
  SECTION("a successful write replaces the old file") {
    const Checkpoint next = make_checkpoint(model_preset("tiny"), 3);
    save_checkpoint(path, next);
    require_equal(next, load_checkpoint(path));
  }
}

TEST_CASE("list_checkpoints orders by step and ignores other files", "[checkpoint]") {
  REQUIRE(checkpoint_name(42) == "ckpt-00000042.safetensors");
  REQUIRE(checkpoint_name(0) == "ckpt-00000000.safetensors");
  REQUIRE(checkpoint_name(123456789) == "ckpt-123456789.safetensors");
  TempDir dir("cllm-ckpt");
  REQUIRE(list_checkpoints(dir.file("absent")).empty());
  REQUIRE(list_checkpoints(dir.path.string()).empty());
  for (const char* name :
       {"ckpt-00000010.safetensors", "ckpt-00000002.safetensors", "ckpt-100000000.safetensors",
        "ckpt-00000005.safetensors.tmp.1234", "ckpt-5.safetensors", "ckpt-0000000x.safetensors",
        "ckpt-00000003.safetensor", "xckpt-00000004.safetensors", "notes.txt"})
    write_bytes(dir.file(name), "x");
  fs::create_directory(dir.path / "ckpt-00000007.safetensors");
  const auto list = list_checkpoints(dir.path.string());
  REQUIRE(list == std::vector<std::string>{dir.file("ckpt-00000002.safetensors"),
                                           dir.file("ckpt-00000010.safetensors"),
                                           dir.file("ckpt-100000000.safetensors")});
  // What save_checkpoint writes is listed.
  save_checkpoint(dir.file(checkpoint_name(11)), make_checkpoint(micro_model()));
  REQUIRE(list_checkpoints(dir.path.string()).at(2) == dir.file(checkpoint_name(11)));
}

TEST_CASE("sha256 fast path matches the portable code on random input", "[checkpoint]") {
  // xorshift64*: deterministic, no <random> needed.
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  auto next = [&state] {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dULL;
  };
  // Hashes buf with the dispatching Sha256 fed in random chunks of at most max_chunk bytes.
  auto chunked = [&next](const std::vector<uint8_t>& buf, size_t max_chunk) {
    Sha256 h;
    size_t pos = 0;
    while (pos < buf.size()) {
      const size_t n = std::min<size_t>(next() % (max_chunk + 1), buf.size() - pos);
      h.update(buf.data() + pos, n);  // n may be 0
      pos += n;
    }
    const auto d = h.finish();
    return to_hex(d.data(), d.size());
  };
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  for (size_t n : {size_t(1) << 20, (size_t(3) << 20) + 17, (size_t(4) << 20) - 1})
    lengths.push_back(n);
  for (const size_t n : lengths) {
    INFO("length " << n);
    std::vector<uint8_t> buf(n);
    for (auto& b : buf) b = uint8_t(next() >> 56);
    const std::string want = sha256_hex_portable(buf.data(), n);
    REQUIRE(sha256_hex(buf.data(), n) == want);
    REQUIRE(chunked(buf, 150) == want);
    if (n > 300) REQUIRE(chunked(buf, 300000) == want);
  }
  // The portable code itself is right (FIPS 180-4 vectors).
  REQUIRE(sha256_hex_portable("abc", 3) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  REQUIRE(sha256_hex_portable(m448.data(), m448.size()) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string a(1000000, 'a');
  REQUIRE(sha256_hex_portable(a.data(), a.size()) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("a tensor table with two offsets swapped is caught", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  save_checkpoint(path, make_checkpoint(micro_model()));
  // Swap the data of two tensors of the same shape, as swapping their offsets in the header
  // would: the data buffer (and so payload_sha256) stays the same bytes in another order only
  // if the sizes match, so reseal the payload checksum too.
  StFile f = read_safetensors(path);
  std::swap(f.tensors.at("h.0.ln_1.weight").bytes, f.tensors.at("h.0.ln_1.bias").bytes);
  const std::string doctored = dir.file("swapped.safetensors");
  write_sealed(doctored, f);
  REQUIRE_THROWS_WITH(load_checkpoint(doctored),
                      Contains(doctored) && Contains("tensor table was altered"));
}

TEST_CASE("both data checksums come from one pass and equal an independent hash", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  save_checkpoint(path, make_checkpoint(model_preset("tiny")));
  const std::string bytes = read_bytes(path);
  const std::string data = bytes.substr(8 + header_length(bytes));
  const StFile f = read_safetensors(path);
  REQUIRE(f.metadata.at("payload_sha256") == sha256_hex_portable(data.data(), data.size()));
  REQUIRE(f.metadata.at("tensors_sha256") == f.metadata.at("payload_sha256"));
}

TEST_CASE("a checkpoint written before one-pass checksums loads and is rewritten byte for byte",
          "[checkpoint]") {
  // Written by main's cllm at a9f8247 (tensors_sha256 and payload_sha256 hashed separately):
  //   cllm train --corpus <first 20000 bytes of data/kjv.txt> --tokenizer bpe:260 --d-model 4
  //     --layers 1 --heads 1 --context 4 --batch 2 --micro-batch 1 --steps 2 --checkpoint-every 2
  // The same bytes written again: files of this build load in that one.
  const std::string fixture = std::string(CLLM_FIXTURE_DIR) + "/checkpoint_v1_micro.safetensors";
  const Checkpoint ck = load_checkpoint(fixture);
  REQUIRE(ck.step == 2);
  REQUIRE(ck.tokenizer_kind == "bpe");
  TempDir dir("cllm-ckpt");
  const std::string again = dir.file(checkpoint_name(ck.step));
  write_checkpoint_and_prune(ck, again, 1);
  REQUIRE(read_bytes(again) == read_bytes(fixture));
  verify_checkpoint_file(fixture, ck);
}

TEST_CASE("the read-back catches a file that differs from what was written", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file(checkpoint_name(7));
  const Checkpoint ck = make_checkpoint(model_preset("tiny"));
  save_checkpoint(path, ck);
  verify_checkpoint_file(path, ck);
  const std::string good = read_bytes(path);
  const size_t data_begin = 8 + header_length(good);

  SECTION("a byte of the data") {
    for (const size_t at :
         {data_begin, data_begin + (good.size() - data_begin) / 2, good.size() - 1}) {
      std::string bad = good;
      bad[at] ^= 0x01;
      write_bytes(path, bad);
      REQUIRE_THROWS_WITH(verify_checkpoint_file(path, ck),
                          Contains(path) && Contains("differs from what was written"));
    }
  }
  SECTION("a short file") {
    write_bytes(path, good.substr(0, good.size() - 4));
    REQUIRE_THROWS_WITH(verify_checkpoint_file(path, ck), Contains(path) && Contains("truncated"));
  }
  SECTION("a byte of the metadata") {
    std::string bad = good;
    const size_t at = bad.find("\"step\":\"");
    REQUIRE(at != std::string::npos);
    bad[at + 8] = bad[at + 8] == '1' ? '2' : '1';
    write_bytes(path, bad);
    REQUIRE_THROWS_WITH(verify_checkpoint_file(path, ck),
                        Contains(path) && Contains("metadata was altered"));
  }
  SECTION("another checkpoint's tensors") {
    REQUIRE_THROWS_WITH(verify_checkpoint_file(path, make_checkpoint(model_preset("tiny"), 2)),
                        Contains(path) && Contains("differs from what was written"));
  }
  SECTION("the same tensors under other metadata") {
    Checkpoint other = ck;
    other.seed += 1;
    REQUIRE_THROWS_WITH(verify_checkpoint_file(path, other),
                        Contains(path) && Contains("other metadata than was written"));
    other = ck;
    other.grad_scale_exp.clear();
    REQUIRE_THROWS_WITH(verify_checkpoint_file(path, other),
                        Contains(path) && Contains("unexpected tensor 'optim.grad_scale_exp'"));
  }
}

TEST_CASE("a checkpoint that fails its read-back is an error and prunes nothing", "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const ModelConfig model = model_preset("tiny");
  for (uint64_t step : {1, 2}) {
    Checkpoint ck = make_checkpoint(model, step);
    ck.step = step;
    write_checkpoint_and_prune(ck, dir.file(checkpoint_name(step)), 2);
  }
  REQUIRE(list_checkpoints(dir.path.string()).size() == 2);
  Checkpoint next = make_checkpoint(model, 3);
  next.step = 3;
  const std::string path = dir.file(checkpoint_name(3));
  SECTION("a flipped byte") {
    REQUIRE_THROWS_WITH(write_checkpoint_and_prune(next, path, 2,
                                                   [&] {
                                                     std::string b = read_bytes(path);
                                                     b[b.size() / 2] ^= 0x40;
                                                     write_bytes(path, b);
                                                   }),
                        Contains(path) && Contains("differs from what was written"));
  }
  SECTION("a short file") {
    REQUIRE_THROWS_WITH(
        write_checkpoint_and_prune(next, path, 2, [&] { fs::resize_file(path, 1000); }),
        Contains(path) && Contains("truncated"));
  }
  // Both older ones are still there; without the damage, step 1 would have gone.
  REQUIRE(
      list_checkpoints(dir.path.string()) ==
      std::vector<std::string>{dir.file(checkpoint_name(1)), dir.file(checkpoint_name(2)), path});
  write_checkpoint_and_prune(next, path, 2);
  REQUIRE(list_checkpoints(dir.path.string()) ==
          std::vector<std::string>{dir.file(checkpoint_name(2)), path});
}

TEST_CASE("a wrong tensors_sha256 is caught in a file laid out as cllm writes it", "[checkpoint]") {
  // The loader takes the payload's digest for tensors_sha256 when the data is in the tensors'
  // order: a resealed file whose tensors_sha256 is not that digest must still be refused.
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  save_checkpoint(path, make_checkpoint(micro_model()));
  std::string bytes = read_bytes(path);
  const size_t n = header_length(bytes);
  StFile f = read_safetensors(path);
  const std::string old_tsha = f.metadata.at("tensors_sha256");
  const std::string old_msha = f.metadata.at("metadata_sha256");
  f.metadata["tensors_sha256"] = std::string(64, 'a');
  const std::string new_msha = metadata_checksum(f.metadata);
  // Same lengths: patch the header in place, the data (and its layout) untouched.
  std::string header = bytes.substr(8, n);
  // (The key too: payload_sha256 holds the same digest.)
  for (const auto& [from, to] :
       {std::pair{"\"tensors_sha256\":\"" + old_tsha,
                  "\"tensors_sha256\":\"" + std::string(64, 'a')},
        std::pair{"\"metadata_sha256\":\"" + old_msha, "\"metadata_sha256\":\"" + new_msha}}) {
    const size_t at = header.find(from);
    REQUIRE(at != std::string::npos);
    header.replace(at, from.size(), to);
  }
  bytes.replace(8, n, header);
  write_bytes(path, bytes);
  REQUIRE(read_safetensors(path).metadata.at("tensors_sha256") == std::string(64, 'a'));
  REQUIRE_THROWS_WITH(load_checkpoint(path),
                      Contains(path) && Contains("tensor table was altered"));
}

TEST_CASE("a weights-only load checks what a full load checks and keeps no moments",
          "[checkpoint]") {
  TempDir dir("cllm-ckpt");
  const std::string path = dir.file("ck.safetensors");
  const Checkpoint ck = make_checkpoint(model_preset("tiny"));
  save_checkpoint(path, ck);
  Checkpoint w = load_checkpoint(path, /*weights_only=*/true);
  REQUIRE(w.adam_m.empty());
  REQUIRE(w.adam_v.empty());
  w.adam_m = ck.adam_m, w.adam_v = ck.adam_v;
  require_equal(ck, w);

  // A flip in the moments, which it does not keep, is still caught (the payload's digest).
  const std::string raw = read_bytes(path);
  std::string bad = raw;
  bad[raw.size() - 4 * ck.adam_v.size() / 2] ^= 0x04;  // in adam_v's data
  write_bytes(path, bad);
  REQUIRE_THROWS_WITH(load_checkpoint(path, true),
                      Contains(path) && Contains("checksum mismatch: file is corrupt"));

  // Data in another order than tensors_sha256's (not written by cllm): read whole, same result.
  write_bytes(path, raw);
  const std::string other = dir.file("other-order.safetensors");
  write_sealed(other, read_safetensors(path));
  REQUIRE(read_safetensors(other).data_order != read_safetensors(path).data_order);
  Checkpoint o = load_checkpoint(other, true);
  REQUIRE(o.adam_m.empty());
  REQUIRE(same_bits(o.weights, ck.weights));

  // Exhaustive, on a micro model: every byte of the file flipped is caught.
  save_checkpoint(path, make_checkpoint(micro_model()));
  const std::string small = read_bytes(path);
  size_t detected = 0;
  for (size_t i = 0; i < small.size(); ++i) {
    std::string flipped = small;
    flipped[i] = char(uint8_t(small[i]) ^ 0x01);
    write_bytes(path, flipped);
    try {
      load_checkpoint(path, true);
      FAIL("flip of byte " << i << " went undetected by a weights-only load");
    } catch (const CheckpointError&) {
      ++detected;
    }
  }
  REQUIRE(detected == small.size());
}
