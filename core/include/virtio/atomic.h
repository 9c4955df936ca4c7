// Thin wrappers over the __atomic builtins for fields of memory shared with the device.
// <atomic> drags in atomic_wait/pthread on a freestanding libstdc++ (reference/style-anchors
// §4.2), so the core uses the builtins directly.
#pragma once

#include <cstdint>

namespace virtio::atomic {

template <class T>
inline T load_acquire(const T* p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
template <class T>
inline T load_relaxed(const T* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
template <class T>
inline void store_release(T* p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
template <class T>
inline void store_relaxed(T* p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
template <class T>
inline T fetch_add(T* p, T v) {
  return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}

}  // namespace virtio::atomic
