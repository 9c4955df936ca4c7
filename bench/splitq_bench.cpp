// Split virtqueue benchmarks (issue 3; reference/performance.md §7 Tier A and B): the
// production driver (virtio::SplitQueue over the production MMIO v2 transport) against the
// emulator's validating device side (virtio::emu::DeviceQueue). One item = one request.
//
//   BM_SplitVq_RoundTrip/batch:B/descs:D/event_idx:E
//       Ring 256, device synchronous inside the driver's notify, Identity sharing (buffers
//       in guest RAM, shared in place), no payload. Per iteration: B adds of a D-descriptor
//       chain (D=1: one readable buffer; D=3: blk-style header R, data W, status W),
//       notify_if_needed(), the device pops and validates every chain and pushes it (len 0),
//       one interrupt decision per kick (interrupts enabled, as in BM_Ref_SplitFloor), then
//       B pops. Counters: kicks and interrupts per request. Reference: BM_Ref_SplitFloor/B.
//   BM_DeviceModel_PopChain/descs:D/indirect:I
//       The device-side validated walk alone: chains of D descriptors (direct, or one
//       descriptor pointing at a D-entry indirect table) are built once in guest RAM; each
//       iteration re-publishes one (a single avail idx store), pops it (bounds and rule
//       checks on every descriptor) and pushes it back (len 0) so the head is free again.
//   BM_SplitVq_CrossThread_Throughput/outstanding:N   (UseRealTime)
//   BM_SplitVq_CrossThread_RTT/outstanding:1          (UseRealTime)
//       Driver on this thread (pinned to the first allowed CPU), device on a bench-local
//       polling thread pinned to the second one, spinning with pause on the ring (never a
//       futex). The notify doorbell only counts kicks (the device polls anyway); the device
//       thread pops, pushes and makes the interrupt decision like a real device. Throughput:
//       N requests in flight; per iteration the driver reaps every completion available,
//       posts as many new requests and checks for a kick once (items = requests).
//       RTT: add, kick check, spin until the completion. EVENT_IDX on, ring 256, used-buffer
//       interrupts enabled (the device decides and raises them; counted, never waited for).
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "virtio/barrier.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/machine.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/single_writer.h"
#include "virtio/queue/split_queue.h"
#include "virtio/spec/common.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::PhysAddr;
using virtio::emu::DeviceQueue;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::Machine;
using virtio::emu::MachineConfig;
using virtio::emu::NotifyMode;
using virtio::emu::QueueConfig;
using virtio::emu::ShareMode;
namespace feature = virtio::feature;
namespace ring = virtio::ring;

constexpr std::uint16_t kRing = 256;
using Queue = virtio::SplitQueue<EmuHal, kRing, 8>;
using Transport = virtio::MmioTransport<EmuIo>;

// A minimal device: one queue on a DeviceQueue. Inline: it serves the queue inside the
// driver's notify (synchronous mode). External: the doorbell only counts; a bench thread
// serves the queue.
class BenchDevice final : public virtio::emu::DeviceModel {
 public:
  BenchDevice(bool inline_serve)
      : DeviceModel(virtio::DeviceId::EntropySource,
                    feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx, 1,
                    kRing, 0),
        inline_(inline_serve) {}

  DeviceQueue& dq() { return dq_; }
  std::uint64_t kicks() const { return kicks_.load(std::memory_order_relaxed); }
  std::uint64_t faults() const { return faults_; }

  // Pops every available chain and completes it with len 0; one interrupt decision.
  // Returns the number served.
  std::size_t serve() {
    std::size_t n = 0;
    for (;;) {
      auto c = dq_.pop();
      if (!c) break;
      (void)dq_.push(c->head, 0);
      ++n;
    }
    if (n != 0 && dq_.should_interrupt()) raise_used_interrupt();
    return n;
  }

 protected:
  void on_driver_ok() override {
    const QueueConfig* cfg = queue(0);
    if (cfg == nullptr || !dq_.configure(memory(), *cfg, has_feature(feature::kRingEventIdx),
                                         has_feature(feature::kRingIndirectDesc))) {
      ++faults_;
      return;
    }
    // Driver and device on one thread: the store->load barriers that only order against a
    // concurrent driver may go (DeviceQueue::set_single_threaded).
    dq_.set_single_threaded(inline_);
    dq_.set_fault_callback([this](virtio::emu::QueueFault) { ++faults_; });
  }
  void on_queue_notify(std::uint16_t) override {
    virtio::emu::bump_single_writer(kicks_);
    if (inline_) serve();
  }
  void on_reset() override { dq_.reset(); }

 private:
  DeviceQueue dq_;
  bool inline_;
  std::atomic<std::uint64_t> kicks_{0};  // written by the driver thread only
  std::uint64_t faults_ = 0;
};

// Machine + BenchDevice on MMIO v2 + the production transport and queue.
class Rig {
 public:
  Rig(bool inline_serve, bool event_idx, bool indirect) {
    MachineConfig mc;
    mc.ram_size = std::size_t{16} << 20;
    mc.share_mode = ShareMode::Identity;
    mc.notify_mode = NotifyMode::Synchronous;
    machine_ = std::make_unique<Machine>(mc);
    auto model = std::make_unique<BenchDevice>(inline_serve);
    dev_ = model.get();
    const auto base = machine_->add_mmio(std::move(model), virtio::MmioVersion::Modern);
    EmuHal hal = machine_->hal();
    auto io = hal.mmio_map(*base, virtio::emu::MmioDevice::kWindowSize);
    if (!io) return;
    auto t = Transport::create(*io);
    if (!t) return;
    transport_.emplace(*t);
    const std::uint64_t want = feature::kVersion1 | (event_idx ? feature::kRingEventIdx : 0) |
                               (indirect ? feature::kRingIndirectDesc : 0);
    if (!virtio::begin_init(*transport_, want)) return;
    auto q = Queue::create(hal, *transport_, 0, indirect, event_idx);
    if (!q) return;
    queue_ = std::make_unique<Queue>(std::move(*q));
    if (!virtio::finish_init(*transport_) || dev_->faults() != 0) return;
    // Request buffers in guest RAM: shared in place (Identity), like a kernel's DMA buffers.
    auto pa = machine_->memory().alloc_pages(1);
    if (!pa) return;
    buf_ = machine_->memory().host_base() + (*pa - machine_->memory().base());
    ok_ = true;
  }
  ~Rig() {
    if (transport_) (void)virtio::reset_device(*transport_);
    queue_.reset();
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  bool ok() const { return ok_; }
  Queue& q() { return *queue_; }
  Transport& t() { return *transport_; }
  BenchDevice& dev() { return *dev_; }
  std::uint64_t interrupts() const { return dev_->stats().interrupts; }
  // Buffers for a D-descriptor request: D=1 one readable; otherwise 1 readable + D-1
  // writable (blk-style for D=3: header, data, status).
  void make_request(int descs) {
    ins_[0] = std::span<const std::uint8_t>(buf_, 16);
    nin_ = 1;
    nout_ = 0;
    for (int i = 1; i < descs; ++i) {
      outs_[nout_++] = std::span<std::uint8_t>(buf_ + 64 + 512 * i, i + 1 == descs ? 1 : 512);
    }
  }
  virtio::Result<std::uint16_t> add() {
    return queue_->add(std::span(ins_.data(), nin_), std::span(outs_.data(), nout_));
  }

 private:
  std::unique_ptr<Machine> machine_;
  BenchDevice* dev_ = nullptr;
  std::optional<Transport> transport_;
  std::unique_ptr<Queue> queue_;
  std::uint8_t* buf_ = nullptr;
  std::array<std::span<const std::uint8_t>, 1> ins_{};
  std::array<std::span<std::uint8_t>, 16> outs_{};
  std::size_t nin_ = 0;
  std::size_t nout_ = 0;
  bool ok_ = false;
};

// --- Tier A: single thread, device synchronous -------------------------------------------

void BM_SplitVq_RoundTrip(benchmark::State& state) {
  const auto batch = static_cast<int>(state.range(0));
  const auto descs = static_cast<int>(state.range(1));
  const bool event_idx = state.range(2) != 0;
  Rig rig(/*inline_serve=*/true, event_idx, /*indirect=*/false);
  if (!rig.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  rig.make_request(descs);
  Queue& q = rig.q();
  Transport& t = rig.t();
  const std::uint64_t kicks0 = rig.dev().kicks();
  const std::uint64_t irqs0 = rig.interrupts();
  bool failed = false;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      auto token = rig.add();
      failed |= !token;
      benchmark::DoNotOptimize(token);
    }
    q.notify_if_needed(t);
    for (int i = 0; i < batch; ++i) {
      auto used = q.pop_used();
      failed |= !used;
      benchmark::DoNotOptimize(used);
    }
  }
  if (failed || rig.dev().faults() != 0) state.SkipWithError("a request failed");
  const double reqs = static_cast<double>(state.iterations()) * batch;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
  state.counters["kicks_per_req"] = static_cast<double>(rig.dev().kicks() - kicks0) / reqs;
  state.counters["irqs_per_req"] = static_cast<double>(rig.interrupts() - irqs0) / reqs;
}
BENCHMARK(BM_SplitVq_RoundTrip)
    ->ArgNames({"batch", "descs", "event_idx"})
    ->ArgsProduct({{1, 16, 64}, {1, 3}, {0, 1}});

// The device-side walk: a hand-built ring in guest RAM, chains built once.
void BM_DeviceModel_PopChain(benchmark::State& state) {
  const auto descs = static_cast<std::uint32_t>(state.range(0));
  const bool indirect = state.range(1) != 0;
  constexpr PhysAddr kBase = 0x8000'0000;
  GuestMemory mem(kBase, std::size_t{4} << 20);
  auto host = [&](PhysAddr pa) { return mem.host_base() + (pa - kBase); };
  // Layout: desc table 0x0000 (4 KiB), avail 0x1000, used 0x2000, indirect tables from
  // 0x4000 (256 B each), data buffers from 0x100000 (64 B each).
  const PhysAddr desc = kBase, avail = kBase + 0x1000, used = kBase + 0x2000;
  const PhysAddr tables = kBase + 0x4000, data = kBase + 0x10'0000;
  auto put_desc = [&](PhysAddr table, std::uint32_t i, PhysAddr addr, std::uint32_t len,
                      std::uint16_t flags, std::uint16_t next) {
    ring::Descriptor d;
    d.addr = addr;
    d.len = len;
    d.flags = flags;
    d.next = next;
    std::memcpy(host(table + 16u * i), &d, sizeof d);
  };
  // Half readable then half writable (§2.7.4.2); a 1-descriptor chain is readable.
  auto flags_of = [&](std::uint32_t k) {
    const bool writable = descs > 1 && k >= descs / 2;
    const bool more = k + 1 < descs;
    return static_cast<std::uint16_t>((writable ? ring::kDescFWrite : 0) |
                                      (more ? ring::kDescFNext : 0));
  };
  std::vector<std::uint16_t> heads;
  if (indirect) {
    for (std::uint32_t h = 0; h < kRing; ++h) {
      const PhysAddr table = tables + 256u * h;
      for (std::uint32_t k = 0; k < descs; ++k) {
        put_desc(table, k, data + 64u * (h * descs + k), 64, flags_of(k),
                 static_cast<std::uint16_t>(k + 1 < descs ? k + 1 : 0));
      }
      put_desc(desc, h, table, 16u * descs, ring::kDescFIndirect, 0);
      heads.push_back(static_cast<std::uint16_t>(h));
    }
  } else {
    for (std::uint32_t h = 0; h + descs <= kRing; h += descs) {
      for (std::uint32_t k = 0; k < descs; ++k) {
        put_desc(desc, h + k, data + 64u * (h + k), 64, flags_of(k),
                 static_cast<std::uint16_t>(k + 1 < descs ? h + k + 1 : 0));
      }
      heads.push_back(static_cast<std::uint16_t>(h));
    }
  }
  // Every avail slot names a chain; publishing = one avail idx store.
  for (std::uint32_t s = 0; s < kRing; ++s) {
    const std::uint16_t head = heads[s % heads.size()];
    std::memcpy(host(avail + ring::avail_ring_offset(static_cast<std::uint16_t>(s))), &head, 2);
  }
  QueueConfig cfg;
  cfg.max_size = kRing;
  cfg.size = kRing;
  cfg.ready = true;
  cfg.desc = desc;
  cfg.driver = avail;
  cfg.device = used;
  DeviceQueue dq;
  if (!dq.configure(&mem, cfg, /*event_idx=*/false, indirect)) {
    state.SkipWithError("configure failed");
    return;
  }
  dq.set_single_threaded(true);
  auto* avail_idx = reinterpret_cast<std::uint16_t*>(host(avail + ring::avail_idx_offset()));
  std::uint16_t idx = 0;
  bool failed = false;
  for (auto _ : state) {
    ++idx;
    virtio::atomic::store_release(avail_idx, idx);
    auto c = dq.pop();
    failed |= !c;
    if (c) {
      benchmark::DoNotOptimize(c->writable_bytes);
      failed |= !dq.push(c->head, 0);
    }
  }
  if (failed) state.SkipWithError("pop failed");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DeviceModel_PopChain)
    ->ArgNames({"descs", "indirect"})
    ->ArgsProduct({{1, 3, 16}, {0, 1}});

// --- Tier B: device on a polling thread on the other CPU ---------------------------------

// The device thread: pinned, spins with pause, serves the queue until told to stop.
class DeviceThread {
 public:
  explicit DeviceThread(BenchDevice& dev)
      : thread_([this, &dev] {
          bench::pin_current_thread(1);
          ready_.store(true, std::memory_order_release);
          while (!stop_.load(std::memory_order_relaxed)) {
            if (dev.serve() == 0) virtio::cpu_relax();
          }
        }) {
    while (!ready_.load(std::memory_order_acquire)) virtio::cpu_relax();
  }
  ~DeviceThread() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  DeviceThread(const DeviceThread&) = delete;
  DeviceThread& operator=(const DeviceThread&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

constexpr std::uint64_t kSpinLimit = 2'000'000'000;

// Setup shared by the two cross-thread benchmarks; `body` runs the timed loop and returns
// the number of requests completed (or 0 on failure).
template <class Body>
void cross_thread(benchmark::State& state, Body body) {
  if (!bench::pin_pair_available()) {
    state.SkipWithError("needs two CPUs in the affinity mask");
    return;
  }
  bench::PinnedScope pin(0);
  Rig rig(/*inline_serve=*/false, /*event_idx=*/true, /*indirect=*/false);
  if (!rig.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  rig.make_request(1);
  std::uint64_t completed = 0;
  {
    DeviceThread device(rig.dev());
    const std::uint64_t kicks0 = rig.dev().kicks();
    const std::uint64_t irqs0 = rig.interrupts();
    completed = body(rig);
    // Drain what is still in flight before the device thread stops.
    std::uint64_t spins = 0;
    while (rig.q().outstanding() != 0 && ++spins < kSpinLimit) {
      if (!rig.q().pop_used()) virtio::cpu_relax();
    }
    if (completed != 0) {
      const auto reqs = static_cast<double>(completed);
      state.counters["kicks_per_req"] = static_cast<double>(rig.dev().kicks() - kicks0) / reqs;
      state.counters["irqs_per_req"] = static_cast<double>(rig.interrupts() - irqs0) / reqs;
    }
  }
  if (completed == 0 || rig.dev().faults() != 0) {
    state.SkipWithError("a request failed or timed out");
    return;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(completed));
}

// One iteration = one driver pass, NAPI-style: reap every completion available (spinning
// until there is one), post as many new requests, one kick check. Items = requests.
void BM_SplitVq_CrossThread_Throughput(benchmark::State& state) {
  const auto outstanding = static_cast<int>(state.range(0));
  cross_thread(state, [&](Rig& rig) -> std::uint64_t {
    Queue& q = rig.q();
    for (int i = 0; i < outstanding; ++i) {
      if (!rig.add()) return 0;
    }
    q.notify_if_needed(rig.t());
    std::uint64_t completed = 0;
    std::uint64_t spins = 0;
    for (auto _ : state) {
      int n = 0;
      for (;;) {
        while (q.pop_used()) ++n;
        if (n != 0) break;
        virtio::cpu_relax();
        if (++spins > kSpinLimit) return 0;
      }
      for (int i = 0; i < n; ++i) {
        if (!rig.add()) return 0;
      }
      q.notify_if_needed(rig.t());
      completed += static_cast<std::uint64_t>(n);
    }
    return completed;
  });
}
BENCHMARK(BM_SplitVq_CrossThread_Throughput)
    ->ArgName("outstanding")
    ->Arg(16)
    ->Arg(256)
    ->UseRealTime();

// One iteration = one request: add, kick check, spin until its completion.
void BM_SplitVq_CrossThread_RTT(benchmark::State& state) {
  cross_thread(state, [&](Rig& rig) -> std::uint64_t {
    Queue& q = rig.q();
    std::uint64_t completed = 0;
    std::uint64_t spins = 0;
    for (auto _ : state) {
      if (!rig.add()) return 0;
      q.notify_if_needed(rig.t());
      while (!q.pop_used()) {
        virtio::cpu_relax();
        if (++spins > kSpinLimit) return 0;
      }
      ++completed;
    }
    return completed;
  });
}
BENCHMARK(BM_SplitVq_CrossThread_RTT)->ArgName("outstanding")->Arg(1)->UseRealTime();

}  // namespace
