// cllm-bench-tokenizer: byte-level BPE speed on one core.
//   training on a corpus at vocabulary N (the target: the 4.3 MB default corpus at
//   N = 4096 in <= 5 s), encoding (>= 20 MB/s) and decoding (>= 200 MB/s) of the whole corpus,
//   and the GPT-2 pre-tokenizer alone. Rounds are interleaved (train, split, encode, decode) so
//   that a change in machine load hits every figure alike; each round checks the round trip.
// Usage: cllm-bench-tokenizer [--corpus data/kjv.txt] [--vocab 4096] [--rounds 5]
//        [--json FILE]   (run it under `flock -x /work/cpu.lock` on the shared machines)
#include <fstream>
#include <thread>

#include "bench/bench_util.hpp"
#include "src/bpe.hpp"
#include "src/corpus.hpp"
#include "src/stats.hpp"

using namespace cllm;

namespace {

double seconds_since(bench::Clock::time_point t0) {
  return std::chrono::duration<double>(bench::Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  return bench::bench_main("cllm-bench-tokenizer", [&] {
    std::string corpus = "data/kjv.txt", json_path;
    int vocab = 4096, rounds = 5;
    cli::OptionTable t;
    t.add("--corpus", "PATH", "text file or folder", corpus, [&](auto& v) { corpus = v; });
    bench::add_int(t, "--vocab", "BPE vocabulary", vocab, 257);
    bench::add_int(t, "--rounds", "interleaved rounds", rounds, 1);
    t.add("--json", "FILE", "also write the figures as JSON", "", [&](auto& v) { json_path = v; });
    bench::parse_options(t, argc, argv,
                         "usage: cllm-bench-tokenizer [options]\nByte-level BPE training, "
                         "encoding and decoding speed on one core.\n");
    const CorpusText ct = read_corpus(corpus);
    const std::string& text = ct.text;
    const double mb = double(text.size()) / 1e6;
    fmt::print("corpus {} ({:.2f} MB), vocabulary {}, {} rounds, one thread\ncpu: {}\n", corpus, mb,
               vocab, rounds, bench::cpu_model());
    fmt::print("{:>5} {:>9} {:>12} {:>12} {:>12} {:>10}\n", "round", "train s", "split MB/s",
               "encode MB/s", "decode MB/s", "bytes/tok");
    std::vector<double> train_s, split_mbs, enc_mbs, dec_mbs;
    double bpt = 0;
    for (int r = 0; r < rounds; ++r) {
      auto t0 = bench::Clock::now();
      const BpeTokenizer tok = BpeTokenizer::train(text, vocab);
      train_s.push_back(seconds_since(t0));

      t0 = bench::Clock::now();
      const size_t pieces = gpt2_split(text).size();
      split_mbs.push_back(mb / seconds_since(t0));

      t0 = bench::Clock::now();
      const std::vector<int32_t> ids = tok.encode(text);
      enc_mbs.push_back(mb / seconds_since(t0));

      t0 = bench::Clock::now();
      const std::string back = tok.decode(ids);
      dec_mbs.push_back(mb / seconds_since(t0));
      if (back != text) throw std::runtime_error("round trip failed");
      bpt = double(text.size()) / double(ids.size());
      fmt::print("{:>5} {:>9.3f} {:>12.1f} {:>12.1f} {:>12.1f} {:>10.3f}   ({} pieces, {} ids)\n",
                 r + 1, train_s.back(), split_mbs.back(), enc_mbs.back(), dec_mbs.back(), bpt,
                 pieces, ids.size());
    }
    const double tr = median(train_s), en = median(enc_mbs), de = median(dec_mbs);
    fmt::print("median {:>8.3f} {:>12.1f} {:>12.1f} {:>12.1f}\n", tr, median(split_mbs), en, de);
    fmt::print("targets: train <= 5 s: {}; encode >= 20 MB/s: {}; decode >= 200 MB/s: {}\n",
               tr <= 5 ? "met" : "MISSED", en >= 20 ? "met" : "MISSED",
               de >= 200 ? "met" : "MISSED");
    if (!json_path.empty()) {
      const nlohmann::json j = {
          {"corpus", corpus},          {"bytes", text.size()},   {"vocab", vocab},
          {"cpu", bench::cpu_model()}, {"train_s", train_s},     {"split_mb_s", split_mbs},
          {"encode_mb_s", enc_mbs},    {"decode_mb_s", dec_mbs}, {"bytes_per_token", bpt}};
      std::ofstream(json_path) << j.dump(2) << "\n";
    }
    return 0;
  });
}
