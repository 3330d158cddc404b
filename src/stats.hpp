#pragma once
// Order statistics of timings, shared by the run folder, the live page and the benchmarks (one
// definition, so a "median" means the same everywhere it is printed).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace cllm {

// The q-quantile of the finite values of `v` (nearest rank; the median averages the two middle
// values), NaN when there are none. Linear time: the live server recomputes it every second.
inline double quantile(std::vector<double> v, double q) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  const size_t n = v.size();
  if (q == 0.5) {
    std::nth_element(v.begin(), v.begin() + long(n / 2), v.end());
    const double hi = v[n / 2];
    if (n % 2) return hi;
    return 0.5 * (*std::max_element(v.begin(), v.begin() + long(n / 2)) + hi);
  }
  const size_t k = std::min(n - 1, size_t(std::max(1.0, std::ceil(q * double(n)))) - 1);
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

inline double median(std::vector<double> v) {
  return quantile(std::move(v), 0.5);
}

}  // namespace cllm
