// The checkpoints' snapshots: each holds the state of its moment, and a snapshot the sink has let
// go of lends its buffers to the next one, never one still held.
#include <cstring>
#include <memory>

#include <catch2/catch.hpp>

#include "run/observers.hpp"
#include "tests/test_util.hpp"

using namespace cllm;

namespace {

bool same_bits(const AlignedVector<float>& a, const AlignedVector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The state moved on: step 7, every float of weights and moments changed.
void move_on(TrainState& st) {
  AlignedVector<float> w = *st.weights(), m = st.adam().m, v = st.adam().v;
  for (auto* x : {&w, &m, &v})
    for (float& f : *x) f = f * 0.5f + 1.0f;
  st.restore(7, w.data(), m.data(), v.data(), st.grad_scale_exp());
}

void require_holds(const Checkpoint& ck, const TrainState& st) {
  REQUIRE(ck.step == uint64_t(st.step()));
  REQUIRE(same_bits(ck.weights, *st.weights()));
  REQUIRE(same_bits(ck.adam_m, st.adam().m));
  REQUIRE(same_bits(ck.adam_v, st.adam().v));
  REQUIRE(ck.run["settings"] == nlohmann::json{{"corpus", "x.txt"}});
}

}  // namespace

TEST_CASE("checkpoint snapshots reuse only buffers the sink has let go of", "[snapshots]") {
  TrainState st(test::spheres_run());
  const auto tok = make_tokenizer("byte", "");
  const nlohmann::json settings = {{"corpus", "x.txt"}};
  CheckpointSnapshots snapshots;

  auto first = snapshots.take(st, *tok, settings);
  require_holds(*first, st);
  const Checkpoint before = *first;
  const float* first_weights = first->weights.data();

  // Still held (a writer at work): the next snapshot is a new one, and the held one is unchanged.
  move_on(st);
  auto second = snapshots.take(st, *tok, settings);
  REQUIRE(second.get() != first.get());
  require_holds(*second, st);
  REQUIRE(same_bits(first->weights, before.weights));
  REQUIRE(same_bits(first->adam_v, before.adam_v));
  REQUIRE(first->step == before.step);

  // Let go of both: the newest one's buffers carry the next snapshot (kept, not freed).
  const std::weak_ptr<const Checkpoint> first_kept = first, second_kept = second;
  first.reset();
  const float* second_weights = second->weights.data();
  second.reset();
  REQUIRE(first_kept.expired());
  REQUIRE_FALSE(second_kept.expired());
  st.restore(9, before.weights.data(), before.adam_m.data(), before.adam_v.data(),
             before.grad_scale_exp);
  const auto third = snapshots.take(st, *tok, settings);
  REQUIRE(third == second_kept.lock());
  REQUIRE(third->weights.data() == second_weights);
  REQUIRE(third->weights.data() != first_weights);
  require_holds(*third, st);
  REQUIRE(third->tokenizer_kind == "byte");
}
