#pragma once
// What decides the last bits of a gradient on a machine: the binary (compiler, flags, Eigen's
// kernels) and the CPU it runs on (vector units, glibc's run-time choice of expf). Two machines
// whose probe shard gives the same gradient, bit for bit, compute every shard the same; the
// cluster refuses a node whose fingerprint differs from the root's, so that the weights stay
// bit-identical to a one-process run on a mixed fleet.
#include <string>
#include <vector>

#include "src/training.hpp"

namespace cllm {

struct NumericsFingerprint {
  std::string probe_sha256;  // of a fixed shard's exact gradient sum and loss
  std::string build_id;      // compiler, flags, library versions of this binary
  std::string model;         // the model's shape
  std::string tokenizer;     // kind and SHA-256 of its data
};

// Computes the probe (one shard of `run`'s model, fixed weights and tokens) with the shared
// ShardWorker path. `perturb` changes one weight first: a test-only stand-in for another CPU.
NumericsFingerprint numerics_fingerprint(const RunConfig& run, const std::string& tokenizer_kind,
                                         const std::string& tokenizer_data, bool perturb = false);

// The fields that differ, with both values ("probe gradient 3fa1... (root) vs 91c0... (node)").
std::vector<std::string> fingerprint_differences(const NumericsFingerprint& root,
                                                 const NumericsFingerprint& node);

// This binary's build: "cllm 0.1.0; GNU 12.2.0; -march=native -O3 ...; Eigen 3.4.0".
std::string build_id();

}  // namespace cllm
