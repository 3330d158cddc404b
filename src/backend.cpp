#include "src/backend.hpp"

#include "src/clock.hpp"

namespace cllm {

double Partial::merge(Partial& p) {
  const auto t0 = SteadyClock::now();
  if (grad.shards == 0 && grad.sum.empty())
    grad = std::move(p.grad);  // nothing of our own yet: adopt, no copy
  else
    grad.merge(p.grad);
  timing += p.timing;
  faults += p.faults;
  const double ms = ms_since(t0);
  timing.reduce_ms += ms;
  return ms;
}

}  // namespace cllm
