// Small helpers shared by the benchmark files.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <cstddef>

namespace bench {

// The i-th CPU of the process's affinity mask at startup (so `taskset -c 0,1` is honoured).
inline int nth_allowed_cpu(int i) {
  static cpu_set_t initial = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    return set;
  }();
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(static_cast<std::size_t>(cpu), &initial) && seen++ == i) return cpu;
  }
  return -1;
}

inline bool pin_pair_available() { return nth_allowed_cpu(1) >= 0; }

inline void pin_current_thread(int i) {
  const int cpu = nth_allowed_cpu(i);
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<std::size_t>(cpu), &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Pins the calling thread for the scope and restores its previous mask afterwards.
class PinnedScope {
 public:
  explicit PinnedScope(int i) {
    pthread_getaffinity_np(pthread_self(), sizeof saved_, &saved_);
    pin_current_thread(i);
  }
  ~PinnedScope() { pthread_setaffinity_np(pthread_self(), sizeof saved_, &saved_); }
  PinnedScope(const PinnedScope&) = delete;
  PinnedScope& operator=(const PinnedScope&) = delete;

 private:
  cpu_set_t saved_;
};

}  // namespace bench
