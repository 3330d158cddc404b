#pragma once
// Elapsed time on the monotonic clock, the one way every part of the project measures it.
#include <chrono>

namespace cllm {

using SteadyClock = std::chrono::steady_clock;

inline double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
inline double ms_since(SteadyClock::time_point a) {
  return ms_between(a, SteadyClock::now());
}
// Seconds since an arbitrary fixed origin (differences only).
inline double seconds_now() {
  return std::chrono::duration<double>(SteadyClock::now().time_since_epoch()).count();
}

}  // namespace cllm
