#pragma once
// Helpers shared by the core and actor tests: a repetitive toy corpus, a tiny run configuration
// and training loops over a Backend. Each test passes its own sentence and sizes, so that the
// weights it compares come from the same corpus and configuration as always.
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "src/backend.hpp"
#include "src/config.hpp"
#include "src/faults.hpp"
#include "src/sampler.hpp"
#include "src/sha256.hpp"
#include "src/supervision.hpp"
#include "src/training.hpp"

namespace cllm::test {

// The first n bytes of `sentence` repeated, as token ids.
inline std::vector<int32_t> toy_corpus(size_t n, const std::string& sentence) {
  std::string text;
  while (text.size() < n) text += sentence;
  return std::vector<int32_t>(text.begin(), text.begin() + n);
}

// The `tiny` preset at context `context`; batch x context tokens per step in shards of
// micro_batch sequences; learning rate 3e-3 with `warmup` warm-up steps over `steps` steps.
inline RunConfig tiny_run(int context, int batch, int micro_batch, int steps, int warmup) {
  RunConfig c;
  c.model = model_preset("tiny");
  c.model.context = context;
  c.batch.batch = batch, c.batch.micro_batch = micro_batch, c.batch.context = context;
  c.optim.lr = 3e-3, c.optim.warmup = warmup;
  c.steps = steps;
  return c;
}

// The corpus and run that the tree and pool tests share (their weights are compared with each
// other's and with the reference loop's): 12 shards of one 16-token sequence per step, 3 steps.
inline const char* const kSpheresSentence =
    "In the beginning was the word, and the word was with spheres. ";
inline RunConfig spheres_run() {
  return tiny_run(/*context=*/16, /*batch=*/12, /*micro_batch=*/1, /*steps=*/3, /*warmup=*/1);
}

// Step deadlines far beyond any step's time, however slow the machine (a sanitizer build, a
// loaded CI runner), for tests that do not test deadlines: there a deadline kill would be a
// spurious restart.
inline void patient(SupervisionPolicy& p) {
  p.deadline_floor_s = 600;
  p.first_deadline_s = 600;
}

inline std::string weights_hash(const TrainState& st) {
  return weights_sha256(st.layout(), st.weights()->data());
}

// Steps `st` through backend `b` until its step count reaches `steps`; no step may be
// non-finite. Exceptions of the backend (BackendFailure) pass through. The faults the backend
// handled are added to `faults` when given.
inline void train_steps(Backend& b, TrainState& st, int64_t steps, FaultCounts* faults = nullptr) {
  while (st.step() < steps) {
    const StepWork w = st.next_work();
    const StepSums& total = b.run_step(w, st.weights());
    if (faults) *faults += b.last_faults();
    REQUIRE(st.apply(total, w, b.slice_runner()).kind != StepOutcome::nonfinite);
  }
}

// The weights hash after cfg.steps steps through backend `b`, from a fresh TrainState.
inline std::string train_with(Backend& b, const RunConfig& cfg) {
  TrainState st(cfg);
  train_steps(b, st, cfg.steps);
  return weights_hash(st);
}

// The weights hash after cfg.steps steps of the plain reference loop.
inline std::string reference_sha(const RunConfig& cfg, const WindowSampler& sampler) {
  TrainState ref(cfg);
  train_reference(ref, sampler, cfg.steps);
  return weights_hash(ref);
}

}  // namespace cllm::test
