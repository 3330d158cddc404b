#pragma once
// Facts about this machine and process.
#include <algorithm>
#include <cstdint>
#include <thread>

namespace cllm {

// Hardware threads, at least 1 (inline: tests that link only the core library use it too).
inline int detected_cores() {
  return int(std::max(1u, std::thread::hardware_concurrency()));
}
double peak_rss_mb();  // peak resident set size of this process
// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
double available_memory_bytes();

}  // namespace cllm
