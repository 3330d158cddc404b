#include "actors/owner.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "src/clock.hpp"

namespace cllm {

namespace {

struct OwnerState {
  static inline const char* name = "owner";
  std::shared_ptr<const OwnerSetup> setup;
  uint64_t round = 0;        // 0: none yet
  std::vector<char> folded;  // per shard of the round: already in the slice
};

using owner_pointer = owner_actor::stateful_pointer<OwnerState>;

// Whether `round` is current (a newer one starts the slice afresh; an older one is stale).
bool enter_round(OwnerState& st, uint64_t round, const StepWork& work) {
  if (round < st.round) return false;
  const auto& crash = st.setup->crash_steps;
  if (work.attempt == 0 && std::find(crash.begin(), crash.end(), work.step) != crash.end())
    throw std::runtime_error("injected crash");
  const int32_t shards = work.shards;
  if (round > st.round) {
    st.round = round;
    st.setup->slot->reset(st.setup->layout, st.setup->begin, st.setup->end);
    st.folded.assign(size_t(std::max(shards, 0)), 0);
  }
  return true;
}

char& folded(OwnerState& st, int32_t shard) {
  if (shard < 0 || size_t(shard) >= st.folded.size())
    throw std::invalid_argument("owner: a shard outside the step");
  return st.folded[size_t(shard)];
}

owner_actor::behavior_type owner_behavior(owner_pointer self,
                                          std::shared_ptr<const OwnerSetup> setup) {
  self->state.setup = std::move(setup);
  // Its exit reason names what failed (the coordinator reports it when it gives up).
  self->set_exception_handler(
      [](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error { return crash_error(ep); });
  return {
      [self](fold_atom, uint64_t round, const StepWork& work, int32_t shard, const WeightsRef& grad,
             double loss, int64_t tokens) -> double {
        auto& st = self->state;
        if (!enter_round(st, round, work)) return -1;
        char& done = folded(st, shard);
        if (done) return 0;
        const auto t0 = SteadyClock::now();
        st.setup->slot->add_shard(st.setup->layout, grad->data(), work.grad_scale_exp, work.shards,
                                  loss, tokens);
        done = 1;
        return ms_since(t0);
      },
      [self](merge_atom, uint64_t round, const StepWork& work, const std::vector<int32_t>& shards,
             const ExactGradRef& partial) -> double {
        auto& st = self->state;
        if (!enter_round(st, round, work)) return -1;
        for (int32_t s : shards)
          if (folded(st, s)) return 0;  // (a resent part: never counted twice)
        const auto t0 = SteadyClock::now();
        st.setup->slot->merge_range(*partial);
        for (int32_t s : shards) folded(st, s) = 1;
        return ms_since(t0);
      },
      [self](held_atom, uint64_t round) -> int32_t {
        const auto& st = self->state;
        if (round != st.round) return -1;
        return int32_t(std::count(st.folded.begin(), st.folded.end(), char(1)));
      },
      [self](apply_atom, const SliceBodyRef& body) {
        (*body)(self->state.setup->index);
        return true;
      },
  };
}

}  // namespace

owner_actor spawn_owner(caf::local_actor* parent, std::shared_ptr<const OwnerSetup> setup) {
  return parent->spawn<caf::linked>(owner_behavior, std::move(setup));
}

}  // namespace cllm
