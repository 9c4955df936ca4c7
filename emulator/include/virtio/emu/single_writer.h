// Statistics counters with one writer at a time (the doorbell writer, the device's completion
// context, the driver's share/unshare): a relaxed load + store instead of a locked
// read-modify-write, which costs ~7 ns on this machine kind and sat on every request's path
// (docs/PERFORMANCE.md). Readers on other threads still see whole values.
#pragma once

#include <atomic>

namespace virtio::emu {

// Adds `delta` (unsigned arithmetic: a negative delta cast to T wraps to a subtraction).
template <class T>
inline void bump_single_writer(std::atomic<T>& counter, T delta = T{1}) {
  counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

}  // namespace virtio::emu
