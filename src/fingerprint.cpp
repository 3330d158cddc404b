#include "src/fingerprint.hpp"

#include <fmt/format.h>
#include <Eigen/Core>

#include "src/exact_sum.hpp"
#include "src/params.hpp"
#include "src/sha256.hpp"

#ifndef CLLM_BUILD_FLAGS
#define CLLM_BUILD_FLAGS "unknown flags"
#endif
#ifndef CLLM_VERSION
#define CLLM_VERSION "unknown"
#endif

namespace cllm {

std::string build_id() {
  return fmt::format("cllm {}; g++ {}; {}; Eigen {}.{}.{}", CLLM_VERSION, __VERSION__,
                     CLLM_BUILD_FLAGS, EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
                     EIGEN_MINOR_VERSION);
}

NumericsFingerprint numerics_fingerprint(const RunConfig& run, const std::string& tokenizer_kind,
                                         const std::string& tokenizer_data, bool perturb) {
  const ParamLayout layout(run.model);
  AlignedVector<float> weights(layout.total());
  init_parameters(layout, /*seed=*/0x9e3779b9ULL, weights.data());
  if (perturb) weights[0] = std::nextafter(weights[0], 1.0f);
  std::vector<int32_t> tokens(shard_tokens(run));
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = int32_t((i * 2654435761ULL + 12345) % uint64_t(run.model.vocab));
  StepWork work;
  work.shards = 1;
  work.grad_scale_exp = choose_grad_scale_exp(layout, {}, 1);
  ShardWorker worker(run);
  ExactGrad acc(layout);
  worker.compute(weights.data(), work, 0, acc, tokens.data());

  Sha256 sha;
  sha.update(acc.sum.data(), acc.sum.size() * sizeof(int64_t));
  sha.update(acc.max_abs.data(), acc.max_abs.size() * sizeof(float));
  sha.update(&acc.loss_fixed, sizeof acc.loss_fixed);
  const auto d = sha.finish();
  NumericsFingerprint f;
  f.probe_sha256 = to_hex(d.data(), d.size());
  f.build_id = build_id();
  f.model = run.model.describe();
  f.tokenizer = tokenizer_kind + " " + sha256_hex(tokenizer_data.data(), tokenizer_data.size());
  return f;
}

std::vector<std::string> fingerprint_differences(const NumericsFingerprint& root,
                                                 const NumericsFingerprint& node) {
  std::vector<std::string> out;
  const auto cmp = [&](const char* what, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(fmt::format("{} '{}' (root) vs '{}' (node)", what, a, b));
  };
  cmp("probe gradient", root.probe_sha256.substr(0, 16), node.probe_sha256.substr(0, 16));
  cmp("build", root.build_id, node.build_id);
  cmp("model", root.model, node.model);
  cmp("tokenizer", root.tokenizer.substr(0, 24), node.tokenizer.substr(0, 24));
  return out;
}

}  // namespace cllm
