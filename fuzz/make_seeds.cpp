// Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/ (small, valid examples
// the fuzzer mutates). Usage: cllm_fuzz_seeds FUZZ_CORPUS_DIR   (see tools/fuzz.sh --seeds)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "src/checkpoint.hpp"
#include "src/params.hpp"
#include "src/safetensors.hpp"

using namespace cllm;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The smallest model the checkpoint accepts is still a full transformer: 16-token vocabulary,
// width 4, one layer, one head, context 4 (a few hundred floats per copy).
Checkpoint micro_checkpoint(bool scale_exp, const std::string& tokenizer_data) {
  Checkpoint ck;
  ck.model.vocab = 16, ck.model.d_model = 4, ck.model.n_layers = 1, ck.model.n_heads = 1;
  ck.model.context = 4;
  const ParamLayout layout(ck.model);
  ck.weights.assign(layout.total(), 0.0f);
  ck.adam_m.assign(layout.total(), 0.0f);
  ck.adam_v.assign(layout.total(), 0.0f);
  for (size_t i = 0; i < layout.total(); ++i) ck.weights[i] = float(int(i % 7) - 3) * 0.25f;
  if (scale_exp) ck.grad_scale_exp.assign(layout.tensors().size(), -20);
  ck.tokenizer_data = tokenizer_data;
  ck.step = 42, ck.seed = 1337;
  ck.run = {{"batch", 8}, {"lr", 0.001}, {"steps", 100}, {"data_sha256", "ab"}};
  return ck;
}

// A corpus input of fuzz_corpus: mode byte, window byte, then the files.
std::string corpus_input(bool folder, int fraction, int window,
                         const std::vector<std::pair<int, std::string>>& files) {
  std::string s;
  s += char((folder ? 1 : 0) | fraction << 1);
  s += char(window - 1);
  for (const auto& [flags, bytes] : files) {
    if (folder) {
      s += char(flags);
      s += char(bytes.size() & 255);
      s += char(bytes.size() >> 8);
    }
    s += bytes;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cllm_fuzz_seeds FUZZ_CORPUS_DIR\n");
    return 2;
  }
  const fs::path out(argv[1]);
  const fs::path tmp = out / "tmp.safetensors";

  // fuzz_safetensors: generic files of several dtypes, and the smallest ones.
  {
    StFile f;
    f.metadata = {{"format", "example"}, {"note", "seed"}};
    f.tensors["a"] = StTensor{"F32", {2, 2}, std::vector<uint8_t>(16, 1)};
    f.tensors["b.bias"] = StTensor{"I64", {3}, std::vector<uint8_t>(24, 2)};
    f.tensors["c"] = StTensor{"U8", {5}, {1, 2, 3, 4, 5}};
    f.tensors["empty"] = StTensor{"BF16", {0, 3}, {}};
    write_safetensors(tmp.string(), f);
    write(out / "fuzz_safetensors" / "mixed.safetensors", read(tmp));
    write_safetensors(tmp.string(), StFile{});
    write(out / "fuzz_safetensors" / "empty.safetensors", read(tmp));
    StFile m;
    m.metadata = {{"k", "v"}};
    write_safetensors(tmp.string(), m);
    write(out / "fuzz_safetensors" / "metadata-only.safetensors", read(tmp));
  }
  // fuzz_checkpoint: micro checkpoints with and without the exact-sum state, with tokenizer data.
  save_checkpoint(tmp.string(), micro_checkpoint(true, ""));
  write(out / "fuzz_checkpoint" / "micro.safetensors", read(tmp));
  save_checkpoint(tmp.string(), micro_checkpoint(false, std::string("merges\0\xff", 8)));
  write(out / "fuzz_checkpoint" / "micro-no-exp.safetensors", read(tmp));
  fs::remove(tmp);

  // fuzz_config: what users write.
  write(out / "fuzz_config" / "plain.cfg",
        "# a run\nsteps = 200\nlr = 3e-4\ncorpus = data/kjv.txt\nmodel = tiny\nresume\n");
  write(out / "fuzz_config" / "styles.cfg",
        "\xEF\xBB\xBF[train]\r\nlearning-rate=\"1e-3\"   # peak\r\n; old style comment\r\n"
        "epochs = 0.5\r\nprogress = 'plain'\r\nresume = false\r\n");
  write(out / "fuzz_config" / "errors.cfg", "steps = 1e3\nlr = 1e-320\nepochs = 0\n");

  // fuzz_corpus: one text file; a folder with text, a binary file, a hidden file, a subfolder.
  const std::string text = "In the beginning was the word.\nAnd the word was with spheres.\n";
  write(out / "fuzz_corpus" / "file.bin", corpus_input(false, 1, 8, {{0, text + text}}));
  write(out / "fuzz_corpus" / "folder.bin",
        corpus_input(true, 1, 4,
                     {{0, text},
                      {2, "second file without newline"},
                      {1, "hidden"},
                      {0, std::string("\x7f"
                                      "ELF\0\0\0binary",
                                      13)},
                      {0, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n"}}));
  std::printf("seeds written to %s\n", out.c_str());
  return 0;
}
