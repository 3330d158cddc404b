// The weights fingerprint of metrics.jsonl (src/step_fingerprint): it follows every bit of every
// tensor, names the tensor that changed, and ignores the padding between tensors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "src/step_fingerprint.hpp"

using namespace cllm;

namespace {

ParamLayout tiny_layout() {
  ModelConfig m = model_preset("tiny");
  m.vocab = 256;
  return ParamLayout(m);
}

void flip_bit(float& x, int bit) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u ^= 1u << bit;
  std::memcpy(&x, &u, sizeof u);
}

}  // namespace

TEST_CASE("step fingerprint: one changed bit changes its tensor's hash and no other", "[fp]") {
  const ParamLayout layout = tiny_layout();
  AlignedVector<float> w(layout.total(), 0.0f);
  init_parameters(layout, 7, w.data());
  const StepFingerprint base = step_fingerprint(layout, w.data());
  REQUIRE(base.tensors.size() == layout.tensors().size());
  CHECK(base.weights_hex().size() == 16);
  CHECK(base.tensors_hex().size() == 8 * layout.tensors().size());
  CHECK(step_fingerprint(layout, w.data()).weights == base.weights);  // deterministic

  for (size_t t = 0; t < layout.tensors().size(); ++t) {
    const TensorInfo& info = layout.tensors()[t];
    // The first, the last and a middle element; the lowest and the sign bit.
    for (size_t at : {size_t(0), info.size / 2, info.size - 1}) {
      for (int bit : {0, 31}) {
        AlignedVector<float> v = w;
        flip_bit(v[info.offset + at], bit);
        const StepFingerprint f = step_fingerprint(layout, v.data());
        INFO(info.name << " element " << at << " bit " << bit);
        CHECK(f.weights != base.weights);
        for (size_t u = 0; u < layout.tensors().size(); ++u)
          CHECK((f.tensors[u] != base.tensors[u]) == (u == t));
      }
    }
  }
}

TEST_CASE("step fingerprint: the padding between tensors does not count", "[fp]") {
  const ParamLayout layout = tiny_layout();
  AlignedVector<float> w(layout.total(), 0.0f);
  init_parameters(layout, 7, w.data());
  const uint64_t base = step_fingerprint(layout, w.data()).weights;
  std::vector<bool> used(layout.total(), false);
  for (const auto& t : layout.tensors())
    for (size_t i = 0; i < t.size; ++i) used[t.offset + i] = true;
  size_t padding = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (!used[i]) w[i] = 12345.0f, ++padding;
  INFO(padding << " padding floats");
  CHECK(step_fingerprint(layout, w.data()).weights == base);
}

TEST_CASE("step fingerprint: every length, every position", "[fp]") {
  // Lengths around the 16-float blocks, so that the tail path is covered too.
  std::vector<float> v(40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.25f - 3.0f;
  for (size_t n = 1; n <= v.size(); ++n) {
    const uint64_t h = hash_floats(v.data(), n);
    CHECK(hash_floats(v.data(), n - 1) != h);  // the length counts (a trailing zero too)
    for (size_t i = 0; i < n; ++i) {
      std::vector<float> u(v.begin(), v.begin() + long(n));
      u[i] = std::nextafter(u[i], 100.0f);
      INFO("n " << n << " i " << i);
      CHECK(hash_floats(u.data(), n) != h);
    }
  }
  // Swapped neighbours differ (the position counts, not only the values).
  std::vector<float> s = v;
  std::swap(s[3], s[4]);
  CHECK(hash_floats(s.data(), s.size()) != hash_floats(v.data(), v.size()));
  // -0 and +0 are different bits.
  const float pz = 0.0f, nz = -0.0f;
  CHECK(hash_floats(&pz, 1) != hash_floats(&nz, 1));
}
