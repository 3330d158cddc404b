// Any bytes as a corpus: one file, or a folder of up to 8 files (some hidden, some in a
// subfolder). Loading either refuses with one clean line or gives a corpus whose parts add up:
// every text byte becomes a token, files are joined by newlines, binary files are skipped, the
// validation tail is the requested fraction.
//
// Input: byte 0 = mode (bit 0: folder; bits 1-2: validation fraction 0, 0.1, 0.25 or 0.5), byte 1 =
// window length - 1 (mod 64); then, in folder mode, files as [flags byte][2-byte length][bytes]
// (flags bit 0: hidden name, bit 1: in a subfolder), else the rest is the one file.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "src/corpus.hpp"
#include "src/tokenizer.hpp"

using namespace cllm;
namespace fs = std::filesystem;

namespace {
void write(const fs::path& p, const uint8_t* data, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(n));
  if (!out) fuzz::fail("cannot write " + p.string());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool folder = data[0] & 1;
  static const double kFractions[] = {0.0, 0.1, 0.25, 0.5};
  const double val_fraction = kFractions[(data[0] >> 1) & 3];
  const size_t min_tokens = 1 + data[1] % 64;
  const fs::path root = fs::path(fuzz::scratch_dir()) / "corpus";
  std::error_code ec;
  fs::remove_all(root, ec);
  size_t pos = 2;
  if (folder) {
    fs::create_directories(root / "sub");
    for (int i = 0; i < 8 && pos + 3 <= size; ++i) {
      const uint8_t flags = data[pos];
      size_t n = size_t(data[pos + 1]) | size_t(data[pos + 2]) << 8;
      pos += 3;
      n = std::min(n, size - pos);
      const std::string name = std::string(flags & 1 ? "." : "") + "f" + std::to_string(i);
      write((flags & 2 ? root / "sub" : root) / name, data + pos, n);
      pos += n;
    }
  } else {
    fs::create_directories(root);
    write(root / "one.txt", data + pos, size - pos);
  }
  const std::string path = folder ? root.string() : (root / "one.txt").string();
  ByteTokenizer tok;
  Corpus c;
  try {
    c = load_corpus(path, tok, val_fraction, min_tokens);
  } catch (const CorpusError& e) {
    fuzz::check_message(e.what());
    return 0;
  }
  // The parts add up: text bytes plus one separator per file that does not end in a newline.
  size_t joined = 0;
  for (const auto& f : c.files) {
    const uintmax_t n = fs::file_size(f);
    if (n == 0) continue;
    std::ifstream in(f, std::ios::binary);
    in.seekg(std::streamoff(n - 1));
    joined += n + (in.get() == '\n' ? 0 : 1);
  }
  const size_t total = c.train.size() + c.val.size();
  if (total != joined) fuzz::fail("token count does not match the files read");
  if (c.files.empty()) fuzz::fail("a corpus without files");
  if (c.train.size() < min_tokens) fuzz::fail("training part shorter than a window");
  if (val_fraction > 0 && c.val.size() != size_t(std::llround(double(total) * val_fraction)))
    fuzz::fail("validation part is not the requested fraction");
  for (size_t i = 0; i < c.train.size(); ++i)
    if (c.train[i] < 0 || c.train[i] > 255) fuzz::fail("token outside the byte range");
  return 0;
}
