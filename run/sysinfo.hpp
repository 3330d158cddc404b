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
// Current resident set size of this process (/proc/self/statm); 0 when unknown.
double current_rss_mb();
// CPU time (user + system, all threads) this process has used since it started.
double process_cpu_s();
// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
double available_memory_bytes();

}  // namespace cllm
