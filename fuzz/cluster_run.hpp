#pragma once
// The run that fuzz_cluster's messages are for, shared with the seed writer: the smallest model
// (16-token vocabulary, width 4, one layer, context 4), a step of three shards of two windows.
#include "src/training.hpp"

namespace fuzz {

inline cllm::RunConfig cluster_run() {
  cllm::RunConfig r;
  r.model.vocab = 16, r.model.d_model = 4, r.model.layers = 1, r.model.n_heads = 1;
  r.model.context = 4;
  r.batch.batch = 6, r.batch.micro_batch = 2, r.batch.context = 4;
  r.steps = 10;
  return r;
}

// Input layout: the first byte picks what arrives; the rest is its bytes as CAF serialises them.
enum ClusterMode : uint8_t {
  kHello = 0,        // JoinHello at the root's gateway
  kFingerprint = 1,  // Fingerprint at the gateway
  kWelcome = 2,      // JoinWelcome at a node
  kNodeSession = 3,  // at a node: (tag byte, NodeWork if tag is even else Chunk) ...
  kRootSession = 4,  // at a link: shards byte, then (tag byte, Chunk if even else NodeResult) ...
  kAnyMessage = 5,   // a whole caf::message (atoms and typed values by name, as BASP carries)
  kModes = 6,
};

}  // namespace fuzz
