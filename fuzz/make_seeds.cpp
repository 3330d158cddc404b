// Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/ (small, valid examples
// the fuzzer mutates). Usage: cllm_fuzz_seeds FUZZ_CORPUS_DIR   (see tools/fuzz.sh --seeds)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <caf/all.hpp>

#include "cluster_run.hpp"
#include "messages/cluster.hpp"
#include "messages/messages.hpp"
#include "src/checkpoint.hpp"
#include "src/params.hpp"
#include "src/safetensors.hpp"
#include "src/sum_pack.hpp"

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
  ck.model.vocab = 16, ck.model.d_model = 4, ck.model.layers = 1, ck.model.n_heads = 1;
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

// fuzz_cluster: CAF's bytes of `xs`, one after another, after the mode byte.
struct Bytes {
  std::vector<char> buf;
  explicit Bytes(uint8_t mode) { buf.push_back(char(mode)); }
  template <class T>
  Bytes& add(T x) {
    caf::binary_serializer sink(nullptr, buf);
    if (sink(x)) throw std::runtime_error("cannot serialise a seed");
    return *this;
  }
  Bytes& tag(uint8_t t) {
    buf.push_back(char(t));
    return *this;
  }
  std::string str() const { return std::string(buf.begin(), buf.end()); }
};

// A node's request for shards 0 and 2 of step 3 with the windows, and its weights in chunks.
NodeWork cluster_work(const RunConfig& run, bool weights) {
  const ParamLayout layout(run.model);
  NodeWork w;
  w.request = 7, w.ctl.delivery = 0, w.ctl.deadline_ms = 5000;
  w.work.step = 3, w.work.shards = run.batch.shards();
  w.work.grad_scale_exp = choose_grad_scale_exp(layout, {}, w.work.shards);
  w.set.shards = {0, 2};
  for (size_t i = 0; i < 2 * shard_tokens(run); ++i) w.set.tokens.push_back(int32_t(i * 7 % 16));
  w.weights_version = 3;
  w.weight_bytes = weights ? layout.total() * sizeof(float) : 0;
  w.weight_chunks = weights ? 1 : 0;
  return w;
}

// The node's answer to it: the sum computed as a node computes it, packed as a node sends it.
std::pair<NodeResult, std::vector<char>> cluster_answer(const RunConfig& run, const NodeWork& w,
                                                        const AlignedVector<float>& weights) {
  ShardWorker worker(run);
  NodeResult r;
  r.request = w.request;
  for (size_t i = 0; i < w.set.shards.size(); ++i)
    worker.compute(weights.data(), w.work, w.set.shards[i], r.partial.grad,
                   w.set.tokens_of(i, shard_tokens(run)));
  r.partial.timing.compute_ms = 1.5, r.partial.timing.spheres = 2;
  r.partial.faults.restarts = 1;
  r.partial.faults.events.push_back(FaultEvent{FaultEvent::crashed, 1, 3, "injected crash"});
  std::vector<char> packed;
  pack_sums(r.partial.grad.sum.data(), r.partial.grad.sum.size(), packed);
  r.partial.grad.sum.clear();
  r.sum_chunks = 1, r.sum_bytes = packed.size(), r.node_ms = 2.5;
  r.cpu_s = 0.75, r.rss_mb = 42.5;
  return {std::move(r), std::move(packed)};
}

Chunk chunk_of(uint64_t id, const void* data, uint64_t bytes) {
  auto chunks = Chunk::split(id, nullptr, data, bytes);
  return chunks.at(0);
}

void cluster_seeds(const fs::path& out) {
  const fs::path dir = out / "fuzz_cluster";
  const RunConfig run = fuzz::cluster_run();
  JoinHello h;
  h.node_id = "node-1", h.host = "10.0.0.2", h.nonce = std::string(32, 'a');
  h.spheres = 3, h.fanout = 2, h.threads = 1, h.height = 1;
  write(dir / "hello", Bytes(fuzz::kHello).add(h).str());
  const Fingerprint fp{"ab12", "cllm other build", "d 4", "bytes 00"};
  write(dir / "fingerprint", Bytes(fuzz::kFingerprint).add(fp).str());
  const JoinWelcome jw{std::string(64, 'f'), run.to_json().dump(), "bytes", ""};
  write(dir / "welcome", Bytes(fuzz::kWelcome).add(jw).str());

  const ParamLayout layout(run.model);
  AlignedVector<float> weights(layout.total());
  init_parameters(layout, 1, weights.data());
  const NodeWork w = cluster_work(run, true);
  const Chunk wc = chunk_of(3, weights.data(), weights.size() * sizeof(float));
  // The request, its weights, and a second request for the weights it holds.
  write(dir / "node-session", Bytes(fuzz::kNodeSession)
                                  .tag(0)
                                  .add(w)
                                  .tag(1)
                                  .add(wc)
                                  .tag(0)
                                  .add(cluster_work(run, false))
                                  .str());
  auto [r, sum] = cluster_answer(run, w, weights);
  const Chunk sc = chunk_of(7, sum.data(), sum.size());
  write(dir / "root-session", Bytes(fuzz::kRootSession).tag(1).tag(0).add(sc).tag(1).add(r).str());
  NodeResult failed;
  failed.request = 7, failed.error = "node node-1: out of memory";
  write(dir / "root-session-error", Bytes(fuzz::kRootSession).tag(0).tag(1).add(failed).str());

  struct Config : caf::actor_system_config {
    Config() { register_messages(*this); }
  } cfg;
  caf::actor_system sys{cfg};
  const auto message = [&](const std::string& name, const caf::message& m) {
    std::vector<char> buf{char(fuzz::kAnyMessage)};
    caf::binary_serializer sink(sys, buf);
    if (sink(const_cast<caf::message&>(m))) throw std::runtime_error("cannot serialise " + name);
    write(dir / ("message-" + name), std::string(buf.begin(), buf.end()));
  };
  message("hello", caf::make_message(hello_atom::value, h));
  message("ready", caf::make_message(ready_atom::value, fp));
  message("welcome", caf::make_message(jw));
  message("work", caf::make_message(work_atom::value, w));
  message("chunk", caf::make_message(chunk_atom::value, sc));
  message("result", caf::make_message(result_atom::value, r));
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
  cluster_seeds(out);

  // fuzz_sum_pack: a count and a packing of it (values of a grid: trailing zeros, both signs,
  // an extreme), and a packing cut short.
  {
    const std::vector<int64_t> v = {0,       3 << 20, -(5 << 21),         INT64_MIN,
                                    1 << 24, 0,       -(int64_t(1) << 20)};
    std::vector<char> p;
    pack_sums(v.data(), v.size(), p);
    const std::string count{char(v.size()), 0};
    write(out / "fuzz_sum_pack" / "values", count + std::string(p.begin(), p.end()));
    write(out / "fuzz_sum_pack" / "cut", count + std::string(p.begin(), p.end() - 3));
  }
  std::printf("seeds written to %s\n", out.c_str());
  return 0;
}
