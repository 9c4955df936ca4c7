// virtio-net data path benchmarks (reference/performance.md §7, Tier A): the production
// VirtIoNetDev over MMIO (modern) against the emulated loopback NIC, device synchronous in the
// driver's notify, interrupts off (a polling driver, as ArceOS uses it).
//
//   BM_VirtioNet_TxRxLoopback/size:S/burst:B
//       B frames of S bytes: alloc_tx_buffer + write the 14-byte Ethernet header and a seq,
//       transmit, device copies each into the next RX buffer, receive, recycle_rx_buffer,
//       recycle_tx_buffers. burst 1 goes through the NetDriverOps calls one packet at a time;
//       burst > 1 uses the burst calls (one doorbell per burst, like DPDK tx/rx_burst).
//       Two virtqueue round trips and one payload copy per packet.
//   BM_VirtioNet_TxRxLoopbackTrait/size:S/burst:B
//       the same through the per-packet NetDriverOps calls only (one doorbell per packet).
//   BM_VirtioNet_RxRefill/burst:B
//       posting B received buffers back to the RX ring (recycle_rx_buffers: pointer
//       validation, descriptor add, one doorbell check). Timed manually around the posting
//       only, in thread CPU time (the two cores are shared, so wall time would count other
//       processes); the clock reads' own cost is calibrated and subtracted. The traffic that
//       produces the buffers is outside the timed region.
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "axdriver/virtio/net.h"
#include "virtio/emu/net_device.h"
#include "virtio/emu/net_packet.h"
#include "virtio/emu/net_testbed.h"

namespace {

using virtio::emu::NetTestbed;
using virtio::emu::NetTransportKind;
using NetDev = axdriver::virtio::VirtIoNetDev<virtio::emu::EmuHal, NetTestbed::Mmio, 256>;
using axdriver::NetBufPtr;

struct Rig {
  Rig() : bed(NetTransportKind::Mmio) {
    nic = bed.add_nic();
    auto t = bed.mmio();
    if (!t) return;
    auto d = NetDev::try_new(bed.hal(), std::move(*t));
    if (!d) return;
    dev.emplace(std::move(*d));
    dev->disable_interrupts();
    mac = dev->mac_address().bytes;
  }
  bool ok() const { return dev.has_value(); }

  void write_frame(const NetBufPtr& p, std::uint32_t seq) {
    std::uint8_t* f = p.buf_ptr();
    std::memcpy(f, mac.data(), 6);
    std::memcpy(f + 6, mac.data(), 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    std::memcpy(f + 14, &seq, sizeof seq);
  }

  NetTestbed bed;
  virtio::emu::NetDevice* nic = nullptr;
  std::optional<NetDev> dev;
  virtio::emu::netpkt::Mac mac{};
};

void report(benchmark::State& state, Rig& rig, std::int64_t packets, std::size_t size,
            std::uint64_t kicks_before) {
  state.SetItemsProcessed(packets);
  state.SetBytesProcessed(packets * static_cast<std::int64_t>(size));
  const auto kicks = rig.nic->stats().notifications - kicks_before;
  state.counters["kicks_per_pkt"] = benchmark::Counter(
      static_cast<double>(kicks) / static_cast<double>(packets > 0 ? packets : 1));
  const auto a = rig.dev->audit();
  if (!a.consistent || a.caller != 0) state.SkipWithError("buffer ownership broken");
}

void BM_VirtioNet_TxRxLoopback(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto burst = static_cast<std::size_t>(state.range(1));
  Rig rig;
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  NetDev& dev = *rig.dev;
  std::vector<NetBufPtr> tx(burst), rx(burst);
  std::uint32_t seq = 0;
  std::uint32_t bad = 0;
  const auto kicks = rig.nic->stats().notifications;
  for (auto _ : state) {
    if (burst == 1) {
      auto b = dev.alloc_tx_buffer(size);
      rig.write_frame(*b, seq++);
      (void)dev.transmit(*b);
      auto r = dev.receive();
      if (!r) {
        ++bad;
        continue;
      }
      benchmark::DoNotOptimize(r->buf_ptr()[14]);
      (void)dev.recycle_rx_buffer(*r);
      (void)dev.recycle_tx_buffers();
    } else {
      for (std::size_t i = 0; i < burst; ++i) {
        auto b = dev.alloc_tx_buffer(size);
        rig.write_frame(*b, seq++);
        tx[i] = *b;
      }
      (void)dev.transmit_burst(tx);
      auto n = dev.receive_burst(rx);
      if (!n || *n != burst) ++bad;
      const std::size_t got = n ? *n : 0;
      for (std::size_t i = 0; i < got; ++i) benchmark::DoNotOptimize(rx[i].buf_ptr()[14]);
      (void)dev.recycle_rx_buffers(std::span<const NetBufPtr>(rx.data(), got));
      (void)dev.recycle_tx_buffers();
    }
  }
  if (bad != 0) state.SkipWithError("lost packets");
  report(state, rig, state.iterations() * static_cast<std::int64_t>(burst), size, kicks);
}
BENCHMARK(BM_VirtioNet_TxRxLoopback)
    ->ArgNames({"size", "burst"})
    ->Args({64, 1})
    ->Args({64, 32})
    ->Args({1500, 1})
    ->Args({1500, 32});

void BM_VirtioNet_TxRxLoopbackTrait(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto burst = static_cast<std::size_t>(state.range(1));
  Rig rig;
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  // Through the abstract interface, as a kernel's network stack holds the device.
  axdriver::NetDriverOps& ops = *rig.dev;
  std::vector<NetBufPtr> rx(burst);
  std::uint32_t seq = 0;
  std::uint32_t bad = 0;
  const auto kicks = rig.nic->stats().notifications;
  for (auto _ : state) {
    for (std::size_t i = 0; i < burst; ++i) {
      auto b = ops.alloc_tx_buffer(size);
      rig.write_frame(*b, seq++);
      (void)ops.transmit(*b);
    }
    for (std::size_t i = 0; i < burst; ++i) {
      auto r = ops.receive();
      if (!r) {
        ++bad;
        break;
      }
      benchmark::DoNotOptimize(r->buf_ptr()[14]);
      (void)ops.recycle_rx_buffer(*r);
    }
    (void)ops.recycle_tx_buffers();
  }
  if (bad != 0) state.SkipWithError("lost packets");
  report(state, rig, state.iterations() * static_cast<std::int64_t>(burst), size, kicks);
}
BENCHMARK(BM_VirtioNet_TxRxLoopbackTrait)
    ->ArgNames({"size", "burst"})
    ->Args({64, 1})
    ->Args({64, 32})
    ->Args({1500, 32});

std::int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The cost of one pair of clock reads (their minimum over many tries).
std::int64_t clock_overhead_ns() {
  std::int64_t best = 1'000'000;
  for (int i = 0; i < 2000; ++i) {
    const std::int64_t a = thread_cpu_ns();
    const std::int64_t b = thread_cpu_ns();
    best = std::min(best, b - a);
  }
  return best;
}

void BM_VirtioNet_RxRefill(benchmark::State& state) {
  const auto burst = static_cast<std::size_t>(state.range(0));
  Rig rig;
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  NetDev& dev = *rig.dev;
  std::vector<NetBufPtr> tx(burst), rx(burst);
  std::uint32_t seq = 0;
  std::uint32_t bad = 0;
  const std::int64_t overhead = clock_overhead_ns();
  for (auto _ : state) {
    // Untimed: loop `burst` frames through so the caller holds `burst` received buffers.
    for (std::size_t i = 0; i < burst; ++i) {
      auto b = dev.alloc_tx_buffer(64);
      rig.write_frame(*b, seq++);
      tx[i] = *b;
    }
    (void)dev.transmit_burst(tx);
    auto n = dev.receive_burst(rx);
    (void)dev.recycle_tx_buffers();
    if (!n || *n != burst) {
      ++bad;
      break;
    }
    const std::int64_t t0 = thread_cpu_ns();
    (void)dev.recycle_rx_buffers(rx);
    const std::int64_t t1 = thread_cpu_ns();
    state.SetIterationTime(static_cast<double>(std::max<std::int64_t>(t1 - t0 - overhead, 0)) *
                           1e-9);
  }
  if (bad != 0) state.SkipWithError("lost packets");
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(burst));
  const auto a = dev.audit();
  if (!a.consistent || a.caller != 0) state.SkipWithError("buffer ownership broken");
}
BENCHMARK(BM_VirtioNet_RxRefill)->ArgName("burst")->Arg(32)->Arg(256)->UseManualTime();

}  // namespace
