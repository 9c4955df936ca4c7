// virtio-blk data path benchmarks (reference/performance.md §7, Tier A): the production
// driver (VirtIoBlkDev / virtio::Blk over AnyTransport, probed like a kernel does it) against
// the emulated block device with a RAM backing store, device synchronous in the notifying
// thread. One item = one request; ratios.py divides by BM_Ref_Memcpy/<bytes> of the same run.
//
//   BM_VirtioBlk_Read/B/qd:1          read_block() through the BlockDriverOps interface
//                                     (virtual call, blocking, one kick per request)
//   BM_VirtioBlk_Read/B/qd:32         Blk's non-blocking API: 32 reads queued while plugged,
//                                     one kick, 32 completions collected (peek_used/complete)
//   BM_VirtioBlk_Write/...            the same, copy in the other direction
//   BM_VirtioBlk_ReadCold/4096/qd:Q   random 4 KiB blocks of a 512 MiB disk (DRAM-bound),
//                                     vs BM_Ref_MemcpyCold/4096 (random slots of 512 MiB)
//   BM_VirtioBlk_Flush, _GetId        non-data commands (2-descriptor chains)
//
// Data buffers live in guest RAM (DMA memory: shared in place, like a kernel's buffers).
// Hot variants use qd blocks of the disk and qd buffers (qd 1: the same block into the same
// buffer, exactly BM_Ref_Memcpy's hot copy; qd 32 at 4 KiB: 256 KiB, L2). Used-buffer
// interrupts are disabled (a polling driver; the device then skips the interrupt), as
// virtio-sim does.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "axdriver/virtio/blk.h"
#include "axdriver/virtio/probe.h"
#include "bench_util.h"
#include "virtio/emu/block_device.h"
#include "virtio/emu/machine.h"
#include "virtio/transport/any.h"

namespace {

using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using Transport = virtio::AnyTransport<EmuIo>;
using BlkDev = axdriver::virtio::VirtIoBlkDev<EmuHal, Transport, 64>;

class BlkRig {
 public:
  BlkRig(std::uint64_t disk_bytes, std::size_t buffers, std::size_t buffer_bytes) {
    virtio::emu::MachineConfig mc;
    mc.ram_size =
        std::max<std::size_t>(std::size_t{16} << 20, buffers * buffer_bytes * 2 + (8u << 20));
    machine_ = std::make_unique<virtio::emu::Machine>(mc);
    auto backend = std::make_unique<virtio::emu::RamBackend>(disk_bytes);
    ram_ = backend.get();
    // Fault every disk page in now, outside the timed loop.
    std::memset(ram_->data(), 0x3c, disk_bytes);
    auto model = std::make_unique<virtio::emu::BlockDevice>(std::move(backend));
    device_ = model.get();
    const auto base = machine_->add_mmio(std::move(model), virtio::MmioVersion::Modern);
    EmuHal hal = machine_->hal();
    auto probed =
        axdriver::virtio::probe_mmio_device(hal, *base, virtio::emu::MmioDevice::kWindowSize);
    if (!probed) return;
    auto dev = BlkDev::try_new(hal, Transport(std::move(probed->transport)));
    if (!dev) return;
    dev_.emplace(std::move(*dev));
    dev_->inner().disable_interrupts();
    const std::size_t pages = virtio::pages_for(buffer_bytes);
    for (std::size_t i = 0; i < buffers; ++i) {
      auto a = hal.dma_alloc(pages, virtio::BufferDirection::Both);
      if (!a) {
        dev_.reset();
        return;
      }
      std::memset(a->vaddr, static_cast<int>(i), buffer_bytes);
      buffers_.push_back(a->vaddr);
    }
  }

  bool ok() const { return dev_.has_value(); }
  BlkDev& dev() { return *dev_; }
  virtio::emu::BlockDevice& device() { return *device_; }
  std::uint8_t* buffer(std::size_t i) const { return buffers_[i]; }

 private:
  std::unique_ptr<virtio::emu::Machine> machine_;
  virtio::emu::RamBackend* ram_ = nullptr;
  virtio::emu::BlockDevice* device_ = nullptr;
  std::optional<BlkDev> dev_;
  std::vector<std::uint8_t*> buffers_;
};

void report(benchmark::State& state, std::size_t bytes_per_item, std::int64_t items_per_iter,
            virtio::emu::BlockDevice& device, std::uint64_t notifies_before) {
  const std::int64_t items = static_cast<std::int64_t>(state.iterations()) * items_per_iter;
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * static_cast<std::int64_t>(bytes_per_item));
  if (items > 0) {
    state.counters["kicks_per_req"] =
        benchmark::Counter(static_cast<double>(device.stats().notifications - notifies_before) /
                           static_cast<double>(items));
  }
}

// qd 1: the blocking BlockDriverOps path, through the trait interface (a virtual call, as a
// kernel's block layer makes it).
template <bool kWrite>
void blocking_io(benchmark::State& state, BlkRig& rig, std::size_t bs, std::uint64_t blocks_span,
                 bool random, std::uint64_t seed) {
  axdriver::BlockDriverOps* ops = &rig.dev();
  benchmark::DoNotOptimize(ops);
  const std::uint64_t per = bs / ops->block_size();
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> order(4096);
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = random ? rng() % blocks_span : i % blocks_span;
  const auto before = rig.device().stats().notifications;
  std::size_t i = 0;
  for (auto _ : state) {
    const std::uint64_t block = order[i++ & 4095] * per;
    axdriver::DevResult<> r;
    if constexpr (kWrite) {
      r = ops->write_block(block, std::span<const std::uint8_t>(rig.buffer(0), bs));
    } else {
      r = ops->read_block(block, std::span<std::uint8_t>(rig.buffer(0), bs));
    }
    if (!r) {
      state.SkipWithError("I/O failed");
      break;
    }
    benchmark::DoNotOptimize(rig.buffer(0));
    benchmark::ClobberMemory();
  }
  report(state, bs, 1, rig.device(), before);
}

// qd > 1: queue `qd` requests while plugged, one kick, collect all.
template <bool kWrite>
void queued_io(benchmark::State& state, BlkRig& rig, std::size_t bs, std::size_t qd,
               std::uint64_t blocks_span, bool random, std::uint64_t seed) {
  auto& blk = rig.dev().inner();
  const std::uint64_t sectors = bs / 512;
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> order(4096);
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = random ? rng() % blocks_span : i % blocks_span;
  const auto before = rig.device().stats().notifications;
  std::size_t k = 0;
  for (auto _ : state) {
    blk.plug();
    for (std::size_t q = 0; q < qd; ++q) {
      const std::uint64_t sector = order[k++ & 4095] * sectors;
      virtio::Result<std::uint16_t> t =
          kWrite ? blk.write_blocks_nb(sector, std::span<const std::uint8_t>(rig.buffer(q), bs))
                 : blk.read_blocks_nb(sector, std::span<std::uint8_t>(rig.buffer(q), bs));
      if (!t) {
        state.SkipWithError("submit failed");
        return;
      }
    }
    blk.unplug();
    for (std::size_t q = 0; q < qd; ++q) {
      auto t = blk.peek_used();
      if (!t || !blk.complete(*t)) {
        state.SkipWithError("completion failed");
        return;
      }
    }
    benchmark::ClobberMemory();
  }
  report(state, bs, static_cast<std::int64_t>(qd), rig.device(), before);
}

template <bool kWrite>
void BM_VirtioBlk_Io(benchmark::State& state) {
  const auto bs = static_cast<std::size_t>(state.range(0));
  const auto qd = static_cast<std::size_t>(state.range(1));
  // Hot, like BM_Ref_Memcpy (one source, one destination): qd 1 reads one block into one
  // buffer; qd 32 uses 32 blocks and 32 buffers (256 KiB at 4 KiB: L2).
  const std::uint64_t span = qd;
  BlkRig rig(std::max<std::uint64_t>(span * bs, 1u << 20), qd, bs);
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  if (qd == 1) {
    blocking_io<kWrite>(state, rig, bs, span, false, 0);
  } else {
    queued_io<kWrite>(state, rig, bs, qd, span, false, 0);
  }
}

void BM_VirtioBlk_Read(benchmark::State& state) { BM_VirtioBlk_Io<false>(state); }
void BM_VirtioBlk_Write(benchmark::State& state) { BM_VirtioBlk_Io<true>(state); }

void io_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"", "qd"});
  for (std::int64_t bs : {512, 4096, 65536}) {
    for (std::int64_t qd : {1, 32}) b->Args({bs, qd});
  }
}
BENCHMARK(BM_VirtioBlk_Read)->Apply(io_args);
BENCHMARK(BM_VirtioBlk_Write)->Apply(io_args);

// DRAM-bound: random 4 KiB blocks of a 512 MiB disk.
void BM_VirtioBlk_ReadCold(benchmark::State& state) {
  const auto bs = static_cast<std::size_t>(state.range(0));
  const auto qd = static_cast<std::size_t>(state.range(1));
  constexpr std::uint64_t kDisk = std::uint64_t{512} << 20;
  BlkRig rig(kDisk, qd, bs);
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  if (qd == 1) {
    blocking_io<false>(state, rig, bs, kDisk / bs, true, 42);
  } else {
    queued_io<false>(state, rig, bs, qd, kDisk / bs, true, 42);
  }
}
BENCHMARK(BM_VirtioBlk_ReadCold)->ArgNames({"", "qd"})->Args({4096, 1})->Args({4096, 32});

void BM_VirtioBlk_Flush(benchmark::State& state) {
  BlkRig rig(1u << 20, 1, 4096);
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  axdriver::BlockDriverOps* ops = &rig.dev();
  benchmark::DoNotOptimize(ops);
  const auto before = rig.device().stats().notifications;
  for (auto _ : state) {
    if (!ops->flush()) {
      state.SkipWithError("flush failed");
      break;
    }
  }
  report(state, 0, 1, rig.device(), before);
}
BENCHMARK(BM_VirtioBlk_Flush);

void BM_VirtioBlk_GetId(benchmark::State& state) {
  BlkRig rig(1u << 20, 1, 4096);
  if (!rig.ok()) {
    state.SkipWithError("device setup failed");
    return;
  }
  std::array<std::uint8_t, virtio::blk::kIdBytes> id{};
  const auto before = rig.device().stats().notifications;
  for (auto _ : state) {
    auto n = rig.dev().inner().device_id(id);
    if (!n) {
      state.SkipWithError("get_id failed");
      break;
    }
    benchmark::DoNotOptimize(*n);
  }
  report(state, 0, 1, rig.device(), before);
}
BENCHMARK(BM_VirtioBlk_GetId);

}  // namespace
