#include "run/sysinfo.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>

namespace cllm {

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

double available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  long long value = 0;
  while (meminfo >> key >> value >> unit)
    if (key == "MemAvailable:") return double(value) * 1024.0;
  return 0;
}

}  // namespace cllm
