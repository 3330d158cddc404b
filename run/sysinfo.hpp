#pragma once
// Facts about this machine and process.
#include <algorithm>
#include <cstdint>
#include <thread>

#include "src/process_usage.hpp"

namespace cllm {

// Hardware threads, at least 1 (inline: tests that link only the core library use it too).
inline int detected_cores() {
  return int(std::max(1u, std::thread::hardware_concurrency()));
}
double peak_rss_mb();  // peak resident set size of this process
// (current_rss_mb and process_cpu_s: src/process_usage.hpp, which nodes use too)
// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
double available_memory_bytes();

}  // namespace cllm
