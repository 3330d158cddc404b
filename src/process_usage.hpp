#pragma once
// What this process uses now: read by the root for its metrics rows and by a node for its
// answers (which the root puts into the same rows).

namespace cllm {

// Current resident set size of this process (/proc/self/statm); 0 when unknown.
double current_rss_mb();
// CPU time (user + system, all threads) this process has used since it started.
double process_cpu_s();

// Lets the calling thread run only on CPU time nobody else wants (Linux SCHED_IDLE; where that is
// refused, the lowest nice value): for background work, such as writing a checkpoint, that must
// not take cores from training. True when SCHED_IDLE was set.
bool run_this_thread_when_idle();

}  // namespace cllm
