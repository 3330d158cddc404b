#pragma once
// Facts about this machine and process.
#include <cstdint>

namespace cllm {

int detected_cores();  // at least 1
double peak_rss_mb();  // peak resident set size of this process
// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
double available_memory_bytes();

}  // namespace cllm
