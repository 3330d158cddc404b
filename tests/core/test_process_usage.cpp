// What a process learns of itself (src/process_usage.hpp), and the background threads' priority.
#include <sched.h>

#include <thread>

#include <catch2/catch.hpp>

#include "src/process_usage.hpp"

using namespace cllm;

TEST_CASE("a background thread runs on idle time only, and only that thread", "[process]") {
  const int before = ::sched_getscheduler(0);
  int policy = -1;
  bool idle = false;
  std::thread t([&] {
    idle = run_this_thread_when_idle();
    policy = ::sched_getscheduler(0);
  });
  t.join();
  // SCHED_IDLE needs no privilege on Linux (it only lowers a thread).
  CHECK(idle);
  CHECK(policy == SCHED_IDLE);
  CHECK(::sched_getscheduler(0) == before);  // the calling thread is untouched
}

TEST_CASE("the process's CPU time and resident memory are read", "[process]") {
  CHECK(current_rss_mb() > 1);
  const double t0 = process_cpu_s();
  volatile double x = 0;
  for (int i = 0; i < 20000000; ++i) x = x + 1e-9 * i;
  CHECK(process_cpu_s() > t0);
}
