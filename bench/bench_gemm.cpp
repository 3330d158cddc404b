// cllm-bench-gemm: GFLOP/s of src/gemm against Eigen on the `small` model's product shapes
// (batch 16 x 128 tokens), one thread, interleaved, median of the repeats.
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/bench_util.hpp"
#include "src/aligned.hpp"
#include "src/gemm.hpp"

using namespace cllm;
using namespace cllm::bench;
using gemm::Causal;
using gemm::Op;

namespace {

struct Shape {
  const char* what;
  Op oa, ob;
  int64_t M, N, K;
  Causal causal;
};

int run(int argc, char** argv) {
  int repeats = 7, iters = 20, d_model = 128, tokens = 16 * 128;
  bool bf16 = false;
  cli::OptionTable t;
  add_int(t, "--repeats", "timed repeats (median reported)", repeats, 1);
  add_int(t, "--iters", "products per repeat", iters, 1);
  add_int(t, "--d-model", "the linear layers' width (768: the GPT-2 body)", d_model, 1);
  add_int(t, "--tokens", "columns of the activations (batch x context)", tokens, 1);
  bool peak_only = false;
  t.add("--bf16", "", "also time bf16 products", "", [&](const std::string&) { bf16 = true; });
  t.add("--peak", "", "only measure the core's fp32 FMA peak", "",
        [&](const std::string&) { peak_only = true; });
  parse_options(t, argc, argv, "usage: cllm-bench-gemm [options]\n");
  const double peak = gemm::fma_peak_gflops();
  fmt::print("fma_peak_gflops={:.1f}\n", peak);
  if (peak_only) return 0;
  const int64_t d = d_model, N = tokens, V = 256, T = 128, hd = 32;
  const std::vector<Shape> shapes = {
      {"qkv fwd  W x", Op::N, Op::N, 3 * d, N, d, Causal::none},
      {"fc fwd   W x", Op::N, Op::N, 4 * d, N, d, Causal::none},
      {"fc2 fwd  W x", Op::N, Op::N, d, N, 4 * d, Causal::none},
      {"head fwd W^T x", Op::T, Op::N, V, N, d, Causal::none},
      {"fc dW    dy x^T", Op::N, Op::T, 4 * d, d, N, Causal::none},
      {"fc dx    W^T dy", Op::T, Op::N, d, N, 4 * d, Causal::none},
      {"att k^T q", Op::T, Op::N, T, T, hd, Causal::rows_upto_col},
      {"att v p", Op::N, Op::N, hd, T, T, Causal::k_upto_col},
  };
  fmt::print("{:<16} {:>5} {:>5} {:>5} {:>10} {:>10} {:>10} {:>7}\n", "product", "M", "N", "K",
             "ours GF/s", "Eigen GF/s", bf16 ? "bf16 GF/s" : "", "ours %pk");
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  for (const auto& s : shapes) {
    const int64_t ra = s.oa == Op::N ? s.M : s.K, ca = s.oa == Op::N ? s.K : s.M;
    const int64_t rb = s.ob == Op::N ? s.K : s.N, cb = s.ob == Op::N ? s.N : s.K;
    Mat A = Mat::Random(ra, ca), B = Mat::Random(rb, cb), C(s.M, s.N);
    // Useful FLOPs: the causal shapes need about half of the full product.
    const double flops = 2.0 * s.M * s.N * s.K * (s.causal == Causal::none ? 1.0 : 0.5);
    std::vector<double> ours, eig, half;
    for (int r = 0; r < repeats; ++r) {
      auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i)
        gemm::matmul(s.oa, s.ob, s.M, s.N, s.K, A.data(), ra, B.data(), rb, C.data(), s.M, false,
                     nullptr, s.causal);
      ours.push_back(flops * iters / (ms_between(t0, Clock::now()) * 1e6));
      t0 = Clock::now();
      for (int i = 0; i < iters; ++i) {
        if (s.oa == Op::N && s.ob == Op::N) C.noalias() = A * B;
        if (s.oa == Op::T && s.ob == Op::N) C.noalias() = A.transpose() * B;
        if (s.oa == Op::N && s.ob == Op::T) C.noalias() = A * B.transpose();
      }
      eig.push_back(flops * iters / (ms_between(t0, Clock::now()) * 1e6));
      if (bf16 && gemm::has_bf16() && s.causal == Causal::none) {
        t0 = Clock::now();
        for (int i = 0; i < iters; ++i)
          gemm::matmul(s.oa, s.ob, s.M, s.N, s.K, A.data(), ra, B.data(), rb, C.data(), s.M, false,
                       nullptr, s.causal, true);
        half.push_back(flops * iters / (ms_between(t0, Clock::now()) * 1e6));
      }
    }
    fmt::print("{:<16} {:>5} {:>5} {:>5} {:>10.1f} {:>10.1f} {:>10} {:>7.1f}\n", s.what, s.M, s.N,
               s.K, median(ours), median(eig),
               half.empty() ? "" : fmt::format("{:.1f}", median(half)), 100 * median(ours) / peak);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main("cllm-bench-gemm", [&] { return run(argc, argv); });
}
