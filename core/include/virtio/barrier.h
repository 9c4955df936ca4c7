// The barrier vocabulary for memory shared with a device (DESIGN.md §2).
// Every call site says why it needs the barrier.
//
//   dma_wmb()          order CPU writes to DMA memory before later writes to DMA memory
//                      (descriptors/ring entry before avail->idx).
//   dma_rmb()          order a read of a device-written index before reads of the entries
//                      it covers (used->idx before used->ring[]).
//   mb()               full barrier, store -> load ordering (publish avail->idx, then read
//                      used->flags / avail_event; enable notifications, then re-check).
//   io_before_notify() make DMA writes visible before the MMIO doorbell write.
//   cpu_relax()        spin-loop hint (pause / nop); halves cross-core ping-pong latency.
#pragma once

#include <cstdint>

namespace virtio {

#if defined(__x86_64__) || defined(__i386__)

// x86 is TSO: stores are not reordered with stores, loads not with loads, so write and read
// barriers only need to stop the compiler.
inline void dma_wmb() { __asm__ __volatile__("" ::: "memory"); }
inline void dma_rmb() { __asm__ __volatile__("" ::: "memory"); }
// A locked RMW on the stack is a full barrier at ~5 ns; mfence costs ~20 ns on the
// reference machine (reference/performance.md §4.3).
inline void mb() { __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc"); }
inline void io_before_notify() { __asm__ __volatile__("" ::: "memory"); }
inline void cpu_relax() { __asm__ __volatile__("pause" ::: "memory"); }

#elif defined(__riscv)

// RISC-V: fence predecessor/successor sets. i/o = device I/O, r/w = memory.
inline void dma_wmb() { __asm__ __volatile__("fence w,w" ::: "memory"); }
inline void dma_rmb() { __asm__ __volatile__("fence r,r" ::: "memory"); }
inline void mb() { __asm__ __volatile__("fence rw,rw" ::: "memory"); }
// Linux writel(): memory writes must be visible before the device sees the doorbell.
inline void io_before_notify() { __asm__ __volatile__("fence w,o" ::: "memory"); }
inline void cpu_relax() { __asm__ __volatile__("nop" ::: "memory"); }

#elif defined(__aarch64__)

inline void dma_wmb() { __asm__ __volatile__("dmb oshst" ::: "memory"); }
inline void dma_rmb() { __asm__ __volatile__("dmb oshld" ::: "memory"); }
inline void mb() { __asm__ __volatile__("dmb osh" ::: "memory"); }
inline void io_before_notify() { __asm__ __volatile__("dsb st" ::: "memory"); }
inline void cpu_relax() { __asm__ __volatile__("yield" ::: "memory"); }

#else

inline void dma_wmb() { __atomic_thread_fence(__ATOMIC_RELEASE); }
inline void dma_rmb() { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
inline void mb() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void io_before_notify() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void cpu_relax() {}

#endif

}  // namespace virtio
