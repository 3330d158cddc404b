#include "src/process_usage.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

namespace cllm {

double current_rss_mb() {
  // One read of a short file: cheap enough for every step (a few microseconds).
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  long long size = 0, resident = 0;
  if (std::sscanf(buf, "%lld %lld", &size, &resident) != 2) return 0;
  return double(resident) * double(::sysconf(_SC_PAGESIZE)) / 1048576.0;
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

bool run_this_thread_when_idle() {
  // On Linux, pid 0 and the thread's own id both name the calling thread, not the process.
  sched_param none{};
  if (::sched_setscheduler(0, SCHED_IDLE, &none) == 0) return true;
  ::setpriority(PRIO_PROCESS, id_t(::syscall(SYS_gettid)), 19);
  return false;
}

}  // namespace cllm
