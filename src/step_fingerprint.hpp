#pragma once
// A cheap fingerprint of the weights after a step, for metrics.jsonl: one 64-bit hash of the
// whole weights and a 32-bit hash per tensor (so that `cllm diff` can name the tensors where two
// runs part). It depends on the weights' bits only: the tensors' floats in layout order, never
// the padding between them, the sphere count, the backend or a resume.
//
// Not cryptographic: it detects differences (any single changed word changes the hash of its
// tensor), it does not resist someone forging a collision. weights_sha256 (summary.json, the
// checkpoints) is the cryptographic one; it costs about 40 times more (cllm-bench-step prints
// both).
#include <cstdint>
#include <string>
#include <vector>

#include "src/params.hpp"

namespace cllm {

struct StepFingerprint {
  uint64_t weights = 0;
  std::vector<uint32_t> tensors;  // one per layout tensor, in layout order

  std::string weights_hex() const;  // 16 hex digits
  std::string tensors_hex() const;  // 8 hex digits per tensor, concatenated
};

StepFingerprint step_fingerprint(const ParamLayout& layout, const float* params);

// The 64-bit hash of `n` floats' bits (one tensor).
uint64_t hash_floats(const float* p, size_t n);

}  // namespace cllm
