// In-run reference benchmarks: the physical floors every other benchmark is stated against
// (reference/performance.md §7). They run in the same binary and the same job, so ratios
// cancel machine and VM drift.
//
//   BM_Ref_Memcpy/N           memcpy of N bytes, hot in L1 (a rotating set of 64 buffers
//                             would measure L2; we want the floor).
//   BM_Ref_MemcpyCold/4096    memcpy of 4 KiB slots at random over a 512 MiB pool (DRAM).
//   BM_Ref_SplitFloor/B       a deliberately minimal, unchecked split ring, driver and
//                             device in one thread, batch B, event-idx on (the floor our
//                             checked SplitQueue + emulator are measured against).
//   BM_Ref_CachelinePingPong  one cache line bounced between two threads (pause-spin).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "virtio/barrier.h"
#include "virtio/spec/split_ring.h"

namespace {

void BM_Ref_Memcpy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint8_t> src(n, 0x5a), dst(n);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Ref_Memcpy)->Arg(64)->Arg(512)->Arg(1500)->Arg(4096)->Arg(65536)->Arg(3145728);

void BM_Ref_MemcpyCold(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t kPool = std::size_t{512} << 20;
  const std::size_t slots = kPool / n;
  auto* pool = static_cast<std::uint8_t*>(std::aligned_alloc(4096, kPool));
  std::memset(pool, 1, kPool);  // fault the pages in outside the timed loop
  std::vector<std::uint8_t> dst(n);
  std::vector<std::uint32_t> order(1 << 16);
  std::mt19937 rng(42);
  for (auto& o : order) o = static_cast<std::uint32_t>(rng() % slots);
  std::size_t i = 0;
  for (auto _ : state) {
    std::memcpy(dst.data(), pool + std::size_t{order[i++ & 0xffff]} * n, n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  std::free(pool);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Ref_MemcpyCold)->Arg(4096);

// --- the split-ring floor ------------------------------------------------------------------
// Minimal and unchecked on purpose: no bounds checks, no loop detection, no shadow state,
// no sharing. Layout and protocol are the spec's (§2.7), event-idx on both directions.
struct FloorRing {
  static constexpr std::uint16_t kSize = 256;
  static constexpr std::uint16_t kMask = kSize - 1;
  alignas(64) virtio::ring::Descriptor desc[kSize];
  alignas(64) std::uint16_t avail_flags = 0;
  std::uint16_t avail_idx = 0;
  std::uint16_t avail_ring[kSize];
  std::uint16_t used_event = 0;
  alignas(64) std::uint16_t used_flags = 0;
  std::uint16_t used_idx = 0;
  virtio::ring::UsedElem used_ring[kSize];
  std::uint16_t avail_event = 0;

  // Driver private state.
  std::uint16_t free_head = 0;
  std::uint16_t next_free[kSize];
  std::uint16_t shadow_avail = 0;
  std::uint16_t kicked_at = 0;
  std::uint16_t last_used = 0;
  // Device private state.
  std::uint16_t last_avail = 0;
  std::uint16_t irq_at = 0;
  std::uint64_t kicks = 0;
  std::uint64_t irqs = 0;
  std::uint8_t payload[64];

  FloorRing() {
    for (std::uint16_t i = 0; i < kSize; ++i) next_free[i] = static_cast<std::uint16_t>(i + 1);
  }

  void driver_add() {
    const std::uint16_t head = free_head;
    free_head = next_free[head];
    desc[head].addr = reinterpret_cast<std::uintptr_t>(payload);
    desc[head].len = sizeof payload;
    desc[head].flags = 0;
    avail_ring[shadow_avail & kMask] = head;
    ++shadow_avail;
  }
  bool driver_publish_and_check() {
    virtio::dma_wmb();
    __atomic_store_n(&avail_idx, shadow_avail, __ATOMIC_RELEASE);
    virtio::mb();
    const std::uint16_t event = __atomic_load_n(&avail_event, __ATOMIC_RELAXED);
    const bool kick = virtio::ring::need_event(event, shadow_avail, kicked_at);
    kicked_at = shadow_avail;
    return kick;
  }
  void device_run() {
    const std::uint16_t avail = __atomic_load_n(&avail_idx, __ATOMIC_ACQUIRE);
    std::uint16_t used = used_idx;
    while (last_avail != avail) {
      const std::uint16_t head = avail_ring[last_avail & kMask];
      ++last_avail;
      used_ring[used & kMask].id = head;
      used_ring[used & kMask].len = 0;
      ++used;
    }
    __atomic_store_n(&avail_event, last_avail, __ATOMIC_RELAXED);
    __atomic_store_n(&used_idx, used, __ATOMIC_RELEASE);
    virtio::mb();
    if (virtio::ring::need_event(__atomic_load_n(&used_event, __ATOMIC_RELAXED), used, irq_at))
      ++irqs;
    irq_at = used;
  }
  std::uint16_t driver_reap() {
    const std::uint16_t used = __atomic_load_n(&used_idx, __ATOMIC_ACQUIRE);
    std::uint16_t n = 0;
    while (last_used != used) {
      const auto head = static_cast<std::uint16_t>(used_ring[last_used & kMask].id.get());
      next_free[head] = free_head;
      free_head = head;
      ++last_used;
      ++n;
    }
    __atomic_store_n(&used_event, last_used, __ATOMIC_RELAXED);
    return n;
  }
};

void BM_Ref_SplitFloor(benchmark::State& state) {
  const auto batch = static_cast<int>(state.range(0));
  auto ring = std::make_unique<FloorRing>();
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) ring->driver_add();
    if (ring->driver_publish_and_check()) {
      ++ring->kicks;
      ring->device_run();
    }
    benchmark::DoNotOptimize(ring->driver_reap());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
  state.counters["kicks_per_req"] = benchmark::Counter(
      static_cast<double>(ring->kicks) / static_cast<double>(state.iterations() * batch));
}
BENCHMARK(BM_Ref_SplitFloor)->ArgName("batch")->Arg(1)->Arg(16)->Arg(64);

// --- cross-core reference -----------------------------------------------------------------
void BM_Ref_CachelinePingPong(benchmark::State& state) {
  alignas(64) static std::atomic<std::uint64_t> line{0};
  static std::atomic<bool> stop{false};
  line.store(0);
  stop.store(false);
  // Two CPUs, one thread each: sharing a CPU would measure the scheduler, not coherence.
  if (!bench::pin_pair_available()) {
    state.SkipWithError("needs two CPUs in the affinity mask");
    return;
  }
  bench::PinnedScope pin_main(0);
  std::thread peer([] {
    bench::pin_current_thread(1);
    std::uint64_t expect = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      if (line.load(std::memory_order_acquire) == expect) {
        line.store(expect + 1, std::memory_order_release);
        expect += 2;
      } else {
        virtio::cpu_relax();
      }
    }
  });
  std::uint64_t v = 0;
  for (auto _ : state) {
    line.store(v + 1, std::memory_order_release);
    while (line.load(std::memory_order_acquire) != v + 2) virtio::cpu_relax();
    v += 2;
  }
  stop.store(true);
  peer.join();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Ref_CachelinePingPong)->UseRealTime();

}  // namespace
