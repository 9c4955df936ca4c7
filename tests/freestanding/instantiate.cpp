// Freestanding instantiation check (tests/freestanding/check.sh, ctest freestanding_riscv64).
//
// core/ and devices/ are mostly header templates: compiling their .cpp files alone proves
// little. This file instantiates them the way a kernel would: a minimal kernel-style Hal
// (static bump arena for DMA, identity share, MmioIo register windows) and functions with
// external linkage that call every public entry point with run-time arguments, so nothing
// is constant-folded away. check.sh compiles it for riscv64-unknown-elf together with
// core/src/*.cpp and devices/src/*.cpp and fails on any undefined symbol that is not in
// allowlist.txt (memcpy, memset, memmove, memcmp, virtio_panic, __cxa_pure_virtual).
//
// It is never part of a hosted target. When a new public template lands in core/ or
// devices/, add a function below that instantiates it (see "More instantiations" at the end).

#include <cstddef>
#include <cstdint>
#include <optional>

#include "axdriver/base.h"
#include "axdriver/block.h"
#include "axdriver/display.h"
#include "axdriver/virtio/probe.h"
#include "virtio/atomic.h"
#include "virtio/barrier.h"
#include "virtio/config.h"
#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/transport.h"

namespace virtio_freestanding {

using virtio::BufferDirection;
using virtio::DmaAllocation;
using virtio::Error;
using virtio::kPageSize;
using virtio::MmioIo;
using virtio::PhysAddr;
using virtio::Result;

// ---------------------------------------------------------------------------------------
// A kernel's Hal: identity-mapped physical memory, DMA pages from a static bump arena
// (never freed; .bss is zero, so every allocation is zeroed as the Hal contract requires).
// Constant-initialised only: no static constructors.

inline constexpr std::size_t kArenaPages = 16;
alignas(kPageSize) std::uint8_t g_dma_arena[kArenaPages * kPageSize];
std::size_t g_dma_next_page = 0;

struct KernelHal {
  using Io = MmioIo;

  Result<DmaAllocation> dma_alloc(std::size_t pages, BufferDirection /*dir*/) {
    if (pages == 0 || pages > kArenaPages - g_dma_next_page) return Error::DmaError;
    std::uint8_t* vaddr = g_dma_arena + g_dma_next_page * kPageSize;
    g_dma_next_page += pages;
    return DmaAllocation{static_cast<PhysAddr>(reinterpret_cast<std::uintptr_t>(vaddr)), vaddr};
  }
  void dma_dealloc(PhysAddr /*paddr*/, std::uint8_t* /*vaddr*/, std::size_t /*pages*/) {}

  Result<Io> mmio_map(PhysAddr paddr, std::size_t size) {
    return Io(static_cast<std::uintptr_t>(paddr), size);
  }

  Result<PhysAddr> share(std::uint8_t* data, std::size_t /*len*/, BufferDirection /*dir*/) {
    return static_cast<PhysAddr>(reinterpret_cast<std::uintptr_t>(data));
  }
  void unshare(PhysAddr /*paddr*/, std::uint8_t* /*data*/, std::size_t /*len*/,
               BufferDirection /*dir*/) {}
};
static_assert(virtio::Hal<KernelHal>);

using Mmio = virtio::MmioTransport<MmioIo>;
using Probed = axdriver::virtio::ProbedMmioDevice<MmioIo>;

// ---------------------------------------------------------------------------------------
// Probing and the axdriver mapping (axdriver_virtio).

std::optional<Probed> probe_mmio(KernelHal& hal, PhysAddr base, std::size_t size) {
  return axdriver::virtio::probe_mmio_device(hal, base, size);
}

std::optional<Probed> probe_mmio_window(MmioIo io) {
  return axdriver::virtio::probe_mmio_device(io);
}

axdriver::DevError map_error(Error e) { return axdriver::virtio::as_dev_err(e); }

std::optional<axdriver::DeviceType> map_type(virtio::DeviceId id) {
  return axdriver::virtio::as_dev_type(id);
}

axdriver::DevResult<std::uint64_t> map_result(Result<std::uint64_t> r) {
  return axdriver::virtio::to_dev_result(static_cast<Result<std::uint64_t>&&>(r));
}

axdriver::DevResult<> map_void_result(Result<void> r) {
  return axdriver::virtio::to_dev_result(static_cast<Result<void>&&>(r));
}

// ---------------------------------------------------------------------------------------
// Generic device initialisation (VIRTIO 1.2 §3.1.1) over the MMIO transport.

Result<std::uint64_t> init_begin(Mmio& t, std::uint64_t driver_features) {
  return virtio::begin_init(t, driver_features);
}

Result<void> init_finish(Mmio& t) { return virtio::finish_init(t); }

Result<void> device_reset(Mmio& t) { return virtio::reset_device(t); }

void device_fail(Mmio& t) { virtio::fail_device(t); }

Result<std::uint64_t> config_u64_consistent(Mmio& t, std::size_t offset) {
  return virtio::read_config_consistent(
      t, [&] { return t.template read_config_space<std::uint64_t>(offset); });
}

Result<void> config_bytes(Mmio& t, std::size_t offset, std::uint8_t* out, std::size_t len) {
  return virtio::read_config_bytes(t, offset, out, len);
}

// ---------------------------------------------------------------------------------------
// Every MmioTransport method.

Result<Mmio> mmio_create(MmioIo io) { return Mmio::create(io); }

std::uint64_t mmio_features(Mmio& t) { return t.read_device_features(); }
void mmio_set_features(Mmio& t, std::uint64_t f) { t.write_driver_features(f); }
std::uint32_t mmio_max_queue_size(Mmio& t, std::uint16_t q) { return t.max_queue_size(q); }
void mmio_notify(Mmio& t, std::uint16_t q) { t.notify(q); }
std::uint8_t mmio_get_status(Mmio& t) { return t.get_status(); }
void mmio_set_status(Mmio& t, std::uint8_t s) { t.set_status(s); }
void mmio_set_page_size(Mmio& t, std::uint32_t s) { t.set_guest_page_size(s); }
bool mmio_legacy(const Mmio& t) { return t.requires_legacy_layout(); }
virtio::DeviceId mmio_device_type(const Mmio& t) { return t.device_type(); }
virtio::MmioVersion mmio_version(const Mmio& t) { return t.version(); }
std::uint32_t mmio_vendor(const Mmio& t) { return t.vendor_id(); }

Result<void> mmio_queue_set(Mmio& t, std::uint16_t q, std::uint32_t size, PhysAddr desc,
                            PhysAddr driver_area, PhysAddr device_area) {
  return t.queue_set(q, size, desc, driver_area, device_area);
}
void mmio_queue_unset(Mmio& t, std::uint16_t q) { t.queue_unset(q); }
bool mmio_queue_used(Mmio& t, std::uint16_t q) { return t.queue_used(q); }
std::uint32_t mmio_ack_interrupt(Mmio& t) { return t.ack_interrupt(); }
std::uint32_t mmio_generation(Mmio& t) { return t.read_config_generation(); }
std::size_t mmio_config_size(const Mmio& t) { return t.config_space_size(); }

Result<std::uint8_t> mmio_cfg8(Mmio& t, std::size_t o) {
  return t.read_config_space<std::uint8_t>(o);
}
Result<std::uint16_t> mmio_cfg16(Mmio& t, std::size_t o) {
  return t.read_config_space<std::uint16_t>(o);
}
Result<std::uint32_t> mmio_cfg32(Mmio& t, std::size_t o) {
  return t.read_config_space<std::uint32_t>(o);
}
Result<std::uint64_t> mmio_cfg64(Mmio& t, std::size_t o) {
  return t.read_config_space<std::uint64_t>(o);
}
Result<void> mmio_wcfg8(Mmio& t, std::size_t o, std::uint8_t v) {
  return t.write_config_space<std::uint8_t>(o, v);
}
Result<void> mmio_wcfg16(Mmio& t, std::size_t o, std::uint16_t v) {
  return t.write_config_space<std::uint16_t>(o, v);
}
Result<void> mmio_wcfg32(Mmio& t, std::size_t o, std::uint32_t v) {
  return t.write_config_space<std::uint32_t>(o, v);
}
Result<void> mmio_wcfg64(Mmio& t, std::size_t o, std::uint64_t v) {
  return t.write_config_space<std::uint64_t>(o, v);
}

// ---------------------------------------------------------------------------------------
// DMA regions, Result misuse (the panic hook), barriers and atomics.

Result<virtio::DmaRegion<KernelHal>> dma_allocate(KernelHal hal, std::size_t pages,
                                                  BufferDirection dir) {
  return virtio::DmaRegion<KernelHal>::allocate(hal, pages, dir);
}

// Allocate, move, and destroy (dma_dealloc) a region: the RAII paths.
PhysAddr dma_roundtrip(KernelHal hal, std::size_t pages) {
  auto r = virtio::DmaRegion<KernelHal>::allocate(hal, pages, BufferDirection::Both);
  if (!r) return 0;
  virtio::DmaRegion<KernelHal> owner = static_cast<virtio::DmaRegion<KernelHal>&&>(*r);
  virtio::DmaRegion<KernelHal> other;
  other = static_cast<virtio::DmaRegion<KernelHal>&&>(owner);
  return other.valid() ? other.paddr() + other.size() : 0;
}

// value() on an error must reach virtio_panic, nothing else (no abort, no throw).
std::uint32_t result_value_or_panic(Result<std::uint32_t> r) { return r.value(); }
Error result_error_or_panic(Result<void> r) { return r.error(); }

void barriers() {
  virtio::dma_wmb();
  virtio::dma_rmb();
  virtio::mb();
  virtio::io_before_notify();
  virtio::cpu_relax();
}

// 16-bit ring indices must be native atomics on rv64gc, not __atomic_* libcalls.
std::uint16_t atomics(std::uint16_t* idx, std::uint16_t v) {
  virtio::atomic::store_release(idx, v);
  const std::uint16_t a = virtio::atomic::load_acquire(idx);
  const std::uint16_t b = virtio::atomic::load_relaxed(idx);
  virtio::atomic::store_relaxed(idx, static_cast<std::uint16_t>(a + b));
  return virtio::atomic::fetch_add(idx, std::uint16_t{1});
}

// ---------------------------------------------------------------------------------------
// The trait layer: a concrete BaseDriverOps emits the abstract classes' vtables (which
// reference __cxa_pure_virtual) exactly as a kernel's device table would.

class ProbedOnly final : public axdriver::BaseDriverOps {
 public:
  explicit ProbedOnly(axdriver::DeviceType type) : type_(type) {}
  const char* device_name() const override { return "virtio-mmio"; }
  axdriver::DeviceType device_type() const override { return type_; }

 private:
  axdriver::DeviceType type_;
};

const char* describe(const axdriver::BaseDriverOps& dev) {
  return axdriver::device_type_name(dev.device_type());
}

// A kernel's bring-up of one MMIO slot: probe, negotiate, DRIVER_OK.
const char* bring_up(KernelHal& hal, PhysAddr base, std::size_t size, std::uint64_t features) {
  auto probed = axdriver::virtio::probe_mmio_device(hal, base, size);
  if (!probed) return "empty";
  auto negotiated = virtio::begin_init(probed->transport, features);
  if (!negotiated) {
    return axdriver::dev_error_message(axdriver::virtio::as_dev_err(negotiated.error()));
  }
  auto done = virtio::finish_init(probed->transport);
  if (!done) return virtio::error_name(done.error());
  ProbedOnly dev(probed->type);
  return describe(dev);
}

// ---------------------------------------------------------------------------------------
// More instantiations go here as the core grows. For each, one function with external
// linkage and run-time arguments, using KernelHal / MmioIo:
//   - PCI: ConfigurationAccess (ECAM/CAM) + PciRoot enumeration, PciTransport over an
//     MmioIo BAR window, axdriver::virtio::probe_pci_device, AnyTransport.
//   - SplitQueue<KernelHal, N>: new/add/notify/pop_used(token)/pop_used() over Mmio.
//   - devices/: virtio::Blk / NetRaw / Gpu <KernelHal, Mmio> and the adapters VirtIoBlkDev,
//     VirtIoNetDev<..., QS>, VirtIoGpuDev (construct, read_block/write_block/flush,
//     transmit/receive/recycle_rx_buffer/alloc_tx_buffer, info/fb/flush), each behind
//     #if VIRTIO_WITH_BLK / _NET / _GPU.

}  // namespace virtio_freestanding

// ---------------------------------------------------------------------------------------
// BEGIN SplitQueue instantiations (core/include/virtio/queue/split_queue.h; appended by the
// split-queue work, self-contained: delete or move this whole block as one piece).

#include "virtio/queue/split_queue.h"

namespace virtio_freestanding {

// With indirect tables, and with the indirect path compiled out (INDIRECT_MAX 0).
using KernelQueue = virtio::SplitQueue<KernelHal, 16>;
using KernelQueueDirect = virtio::SplitQueue<KernelHal, 8, 0>;
using Inputs = std::span<const std::span<const std::uint8_t>>;
using Outputs = std::span<const std::span<std::uint8_t>>;

Result<KernelQueue> split_queue_create(KernelHal hal, Mmio& t, std::uint16_t index, bool indirect,
                                       bool event_idx) {
  return KernelQueue::create(hal, t, index, indirect, event_idx);
}
Result<KernelQueueDirect> split_queue_create_direct(KernelHal hal, Mmio& t, std::uint16_t index,
                                                    bool event_idx) {
  return KernelQueueDirect::create(hal, t, index, true, event_idx);
}
void split_queue_move(KernelQueue& dst, KernelQueue& src) { dst = static_cast<KernelQueue&&>(src); }

Result<std::uint16_t> split_queue_add(KernelQueue& q, Inputs in, Outputs out) {
  return q.add(in, out);
}
Result<std::uint16_t> split_queue_add_direct(KernelQueueDirect& q, Inputs in, Outputs out) {
  return q.add(in, out);
}
bool split_queue_should_notify(KernelQueue& q) { return q.should_notify(); }
bool split_queue_notify(KernelQueue& q, Mmio& t) { return q.notify_if_needed(t); }
void split_queue_set_dev_notify(KernelQueue& q, bool enable) { q.set_dev_notify(enable); }
bool split_queue_enable_and_check(KernelQueue& q) { return q.enable_dev_notify_and_check(); }
bool split_queue_can_pop(const KernelQueue& q) { return q.can_pop(); }
Result<std::uint16_t> split_queue_peek(KernelQueue& q) { return q.peek_used(); }
Result<virtio::UsedElem> split_queue_pop(KernelQueue& q) { return q.pop_used(); }
Result<std::uint32_t> split_queue_pop_token(KernelQueue& q, std::uint16_t token) {
  return q.pop_used(token);
}
Result<virtio::UsedElem> split_queue_pop_direct(KernelQueueDirect& q) { return q.pop_used(); }
Result<std::uint32_t> split_queue_roundtrip(KernelQueue& q, Mmio& t, Inputs in, Outputs out,
                                            std::uint32_t spins) {
  return q.add_notify_wait_pop(in, out, t, spins);
}
std::optional<std::uint16_t> split_queue_detach(KernelQueue& q) { return q.detach_unused(); }
std::optional<std::uint16_t> split_queue_detach_direct(KernelQueueDirect& q) {
  return q.detach_unused();
}
Result<void> split_queue_restart(KernelQueue& q, Mmio& t) { return q.restart(t); }
std::uint32_t split_queue_state(const KernelQueue& q) {
  return static_cast<std::uint32_t>(q.broken()) + q.outstanding() + q.available_desc() + q.size() +
         q.queue_index() + static_cast<std::uint32_t>(q.desc_paddr()) +
         static_cast<std::uint32_t>(q.avail_paddr() + q.used_paddr());
}

}  // namespace virtio_freestanding

// END SplitQueue instantiations
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// BEGIN Blk / VirtIoBlkDev instantiations (devices/include/virtio/drivers/blk.h,
// devices/include/axdriver/virtio/blk.h; appended by the block-device work, self-contained:
// delete or move this whole block as one piece).

#if VIRTIO_WITH_BLK
#include "axdriver/virtio/blk.h"
#include "virtio/drivers/blk.h"
#include "virtio/transport/any.h"

namespace virtio_freestanding {

using KernelBlk = virtio::Blk<KernelHal, Mmio>;
using KernelAny = virtio::AnyTransport<MmioIo>;
using KernelBlkDev = axdriver::virtio::VirtIoBlkDev<KernelHal, KernelAny, 32>;

Result<KernelBlk> blk_create(KernelHal hal, Mmio t) { return KernelBlk::create(hal, t); }
Result<void> blk_read(KernelBlk& b, std::uint64_t sector, std::span<std::uint8_t> buf) {
  return b.read_blocks(sector, buf);
}
Result<void> blk_write(KernelBlk& b, std::uint64_t sector, std::span<const std::uint8_t> buf) {
  return b.write_blocks(sector, buf);
}
Result<void> blk_flush(KernelBlk& b) { return b.flush(); }
Result<std::size_t> blk_id(KernelBlk& b, std::span<std::uint8_t, virtio::blk::kIdBytes> out) {
  return b.device_id(out);
}
Result<void> blk_discard(KernelBlk& b, std::uint64_t s, std::uint64_t n) { return b.discard(s, n); }
Result<void> blk_write_zeroes(KernelBlk& b, std::uint64_t s, std::uint64_t n, bool unmap) {
  return b.write_zeroes(s, n, unmap);
}
Result<std::uint16_t> blk_read_nb(KernelBlk& b, std::uint64_t s, std::span<std::uint8_t> buf) {
  return b.read_blocks_nb(s, buf);
}
Result<std::uint16_t> blk_write_nb(KernelBlk& b, std::uint64_t s,
                                   std::span<const std::uint8_t> buf) {
  return b.write_blocks_nb(s, buf);
}
Result<std::uint16_t> blk_flush_nb(KernelBlk& b) { return b.flush_nb(); }
Result<std::uint16_t> blk_peek(KernelBlk& b) { return b.peek_used(); }
Result<void> blk_complete(KernelBlk& b, std::uint16_t token) {
  return b.complete_read_blocks(token);
}
Result<void> blk_poll(KernelBlk& b) { return b.poll(); }
void blk_abort(KernelBlk& b) { b.abort(); }
Result<void> blk_recover(KernelBlk& b) { return b.recover(); }
std::uint32_t blk_irq(KernelBlk& b, bool enable) {
  if (enable) {
    b.enable_interrupts();
  } else {
    b.disable_interrupts();
  }
  return b.ack_interrupt();
}
std::uint64_t blk_state(const KernelBlk& b) {
  return b.capacity() + b.num_blocks() + b.block_size() + b.features() + b.pending() +
         b.in_flight() + b.max_request_bytes() + static_cast<std::uint64_t>(b.readonly()) +
         static_cast<std::uint64_t>(b.broken());
}
void blk_move(KernelBlk& src, void* storage) {
  new (storage) KernelBlk(static_cast<KernelBlk&&>(src));
}

// The adapter over AnyTransport, used through the trait interface as a kernel's block
// layer would.
axdriver::DevResult<KernelBlkDev> blk_dev_create(KernelHal hal, KernelAny t) {
  return KernelBlkDev::try_new(hal, static_cast<KernelAny&&>(t));
}
axdriver::DevResult<> blk_dev_io(axdriver::BlockDriverOps& dev, std::uint64_t block,
                                 std::span<std::uint8_t> buf) {
  if (auto r = dev.read_block(block, buf); !r) return r;
  if (auto r = dev.write_block(block, buf); !r) return r;
  return dev.flush();
}
std::uint64_t blk_dev_geometry(const axdriver::BlockDriverOps& dev) {
  return dev.num_blocks() * dev.block_size() + static_cast<std::uint64_t>(dev.device_type());
}
axdriver::DevResult<> blk_dev_roundtrip(KernelHal hal, KernelAny t, std::span<std::uint8_t> buf) {
  auto dev = KernelBlkDev::try_new(hal, static_cast<KernelAny&&>(t));
  if (!dev) return dev.error();
  return blk_dev_io(*dev, 0, buf);
}

}  // namespace virtio_freestanding
#endif  // VIRTIO_WITH_BLK

// END Blk / VirtIoBlkDev instantiations
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// BEGIN Gpu / VirtIoGpuDev instantiations (devices/include/virtio/drivers/gpu.h,
// devices/include/axdriver/virtio/gpu.h; appended by the GPU work, self-contained: delete or
// move this whole block as one piece).

#if VIRTIO_WITH_GPU
#include "axdriver/virtio/gpu.h"
#include "virtio/drivers/gpu.h"
#include "virtio/transport/any.h"

namespace virtio_freestanding {

using KernelGpu = virtio::Gpu<KernelHal, Mmio>;
using KernelGpuAny = virtio::AnyTransport<MmioIo>;
using KernelGpuDev = axdriver::virtio::VirtIoGpuDev<KernelHal, KernelGpuAny>;

Result<KernelGpu> gpu_create(KernelHal hal, Mmio t) { return KernelGpu::create(hal, t); }
void gpu_move(KernelGpu& src, void* storage) {
  new (storage) KernelGpu(static_cast<KernelGpu&&>(src));
}
Result<virtio::GpuDisplayInfo> gpu_display_info(KernelGpu& g) { return g.get_display_info(); }
Result<virtio::GpuResolution> gpu_resolution(KernelGpu& g) { return g.resolution(); }
Result<std::size_t> gpu_edid(KernelGpu& g, std::uint32_t scanout, std::span<std::uint8_t> out) {
  return g.get_edid(scanout, out);
}
std::optional<virtio::GpuRect> gpu_edid_mode(std::span<const std::uint8_t> edid) {
  return virtio::edid_preferred_mode(edid);
}
Result<std::span<std::uint8_t>> gpu_setup(KernelGpu& g) { return g.setup_framebuffer(); }
Result<std::span<std::uint8_t>> gpu_resize(KernelGpu& g, std::uint32_t w, std::uint32_t h) {
  return g.change_resolution(w, h);
}
Result<void> gpu_flush(KernelGpu& g) { return g.flush(); }
Result<void> gpu_flush_rect(KernelGpu& g, virtio::GpuRect r) {
  if (auto t = g.transfer_to_host(r); !t) return t;
  if (auto f = g.resource_flush(r); !f) return f;
  return g.flush_rect(r);
}
Result<void> gpu_cursor(KernelGpu& g, std::span<const std::uint8_t> image, std::uint32_t x,
                        std::uint32_t y) {
  if (auto r = g.setup_cursor(image, x, y, 0, 0); !r) return r;
  if (auto r = g.move_cursor(y, x); !r) return r;
  return g.hide_cursor();
}
std::uint32_t gpu_irq(KernelGpu& g, bool enable) {
  if (enable) {
    g.enable_interrupts();
  } else {
    g.disable_interrupts();
  }
  return g.ack_interrupt() + static_cast<std::uint32_t>(g.take_display_changed());
}
Result<void> gpu_shutdown(KernelGpu& g) { return g.shutdown(); }
std::uint64_t gpu_state(const KernelGpu& g) {
  return g.features() + g.num_scanouts() + g.scanout() + g.width() + g.height() + g.commands() +
         g.bad_fences() + g.edid_clamped() + g.last_response_type() +
         static_cast<std::uint64_t>(g.last_fault()) + static_cast<std::uint64_t>(g.broken()) +
         g.framebuffer().size();
}

// The adapter over AnyTransport, used through the trait interface as a kernel's display
// layer would: construct, draw the test pattern into fb(), flush.
axdriver::DevResult<KernelGpuDev> gpu_dev_create(KernelHal hal, KernelGpuAny t) {
  return KernelGpuDev::try_new(hal, static_cast<KernelGpuAny&&>(t));
}
axdriver::DevResult<> gpu_dev_draw(axdriver::DisplayDriverOps& dev) {
  const axdriver::DisplayInfo info = dev.info();
  if (!axdriver::virtio::draw_test_pattern(dev.fb(), info.width, info.height)) {
    return axdriver::DevError::InvalidParam;
  }
  if (!dev.need_flush()) return axdriver::DevResult<>();
  return dev.flush();
}
axdriver::DevResult<> gpu_dev_extras(KernelGpuDev& dev, std::uint32_t w, std::uint32_t h) {
  if (auto r = dev.flush_rect(0, 0, w, h); !r) return r;
  return dev.change_resolution(w, h);
}
axdriver::DevResult<> gpu_dev_roundtrip(KernelHal hal, KernelGpuAny t) {
  auto dev = KernelGpuDev::try_new(hal, static_cast<KernelGpuAny&&>(t));
  if (!dev) return dev.error();
  return gpu_dev_draw(*dev);
}

}  // namespace virtio_freestanding
#endif  // VIRTIO_WITH_GPU

// END Gpu / VirtIoGpuDev instantiations
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// BEGIN NetRaw / NetBufPool / VirtIoNetDev instantiations (devices/include/virtio/drivers/net.h,
// core/include/axdriver/net.h + net_buf.h, devices/include/axdriver/virtio/net.h; appended by
// the net-device work, self-contained: delete or move this whole block as one piece).

#if VIRTIO_WITH_NET
#include "axdriver/net.h"
#include "axdriver/net_buf.h"
#include "axdriver/virtio/net.h"
#include "virtio/drivers/net.h"
#include "virtio/transport/any.h"

namespace virtio_freestanding {

using KernelNetRaw = virtio::NetRaw<KernelHal, Mmio, 16>;
using KernelNetAny = virtio::AnyTransport<MmioIo>;
// ArceOS' instantiation: QS = 64 (reference/virtio-drivers-and-axdriver.md §2).
using KernelNetDev = axdriver::virtio::VirtIoNetDev<KernelHal, KernelNetAny, 64>;
using KernelNetPool = axdriver::NetBufPool<KernelHal, 8>;

// The raw driver: the seed's TX/RX calls with caller-owned buffers.
Result<KernelNetRaw> net_raw_create(KernelHal hal, Mmio t) { return KernelNetRaw::create(hal, t); }
Result<std::uint16_t> net_raw_tx(KernelNetRaw& n, std::span<std::uint8_t> buf) {
  VIRTIO_TRY(n.fill_buffer_header(buf));
  return n.transmit_begin(buf);
}
Result<void> net_raw_tx_done(KernelNetRaw& n, std::span<const std::uint8_t> buf) {
  VIRTIO_TRY_ASSIGN(const std::uint16_t token, n.poll_transmit());
  return n.transmit_complete(token, buf);
}
Result<std::uint16_t> net_raw_rx(KernelNetRaw& n, std::span<std::uint8_t> buf) {
  return n.receive_begin(buf);
}
Result<virtio::RxPacket> net_raw_rx_done(KernelNetRaw& n, std::span<const std::uint8_t> buf) {
  VIRTIO_TRY_ASSIGN(const std::uint16_t token, n.poll_receive());
  return n.receive_complete(token, buf);
}
Result<void> net_raw_recover(KernelNetRaw& n) {
  VIRTIO_TRY(n.reset());
  while (n.detach_rx()) {
  }
  while (n.detach_tx()) {
  }
  return n.restart();
}
std::uint64_t net_raw_state(KernelNetRaw& n) {
  n.enable_interrupts();
  n.disable_interrupts();
  return n.mac_address()[5] + n.mtu() + n.header_len() + n.status() + n.ack_interrupt() +
         static_cast<std::uint64_t>(n.can_send()) + static_cast<std::uint64_t>(n.link_up()) +
         n.stats().rx_short + n.features();
}

// The pool on its own: O(1) alloc/free, checked setters, validated pointers.
axdriver::DevResult<KernelNetPool> net_pool_create(KernelHal hal, std::size_t len) {
  return KernelNetPool::create(hal, len);
}
axdriver::DevResult<axdriver::NetBufPtr> net_pool_cycle(KernelNetPool& pool, std::size_t len) {
  auto box = pool.alloc_boxed();
  if (!box) return axdriver::DevError::NoMemory;
  if (auto r = box->set_header_len(12); !r) return r.error();
  if (auto r = box->set_packet_len(len); !r) return r.error();
  const axdriver::NetBufPtr p = pool.into_buf_ptr(static_cast<axdriver::NetBufBox&&>(*box));
  auto back = pool.from_buf_ptr(p);
  if (!back) return back.error();
  return pool.into_buf_ptr(static_cast<axdriver::NetBufBox&&>(*back));
}

// The adapter, through NetDriverOps as a kernel's network stack holds it.
axdriver::DevResult<KernelNetDev> net_dev_create(KernelHal hal, KernelNetAny t) {
  return KernelNetDev::try_new(hal, static_cast<KernelNetAny&&>(t));
}
axdriver::DevResult<> net_dev_echo(axdriver::NetDriverOps& dev, std::size_t len) {
  if (!dev.can_transmit()) return axdriver::DevError::Again;
  auto tx = dev.alloc_tx_buffer(len);
  if (!tx) return tx.error();
  tx->packet_mut()[0] = 0xff;
  if (auto r = dev.transmit(*tx); !r) return r;
  if (auto r = dev.recycle_tx_buffers(); !r) return r;
  if (!dev.can_receive()) return axdriver::DevError::Again;
  auto rx = dev.receive();
  if (!rx) return rx.error();
  return dev.recycle_rx_buffer(*rx);
}
std::uint64_t net_dev_props(const axdriver::NetDriverOps& dev) {
  return dev.mac_address().bytes[0] + dev.rx_queue_size() + dev.tx_queue_size() +
         static_cast<std::uint64_t>(dev.device_type());
}
axdriver::DevResult<std::size_t> net_dev_bursts(KernelNetDev& dev,
                                                std::span<axdriver::NetBufPtr> bufs) {
  auto n = dev.receive_burst(bufs);
  if (!n) return n.error();
  if (auto r = dev.recycle_rx_buffers(bufs.first(*n)); !r) return r.error();
  return dev.transmit_burst(bufs.first(0));
}
axdriver::DevResult<> net_dev_recover(KernelNetDev& dev) {
  (void)dev.ack_interrupt();
  if (auto r = dev.check_device_status(); !r) return dev.recover();
  const axdriver::virtio::NetAudit a = dev.audit();
  return a.consistent ? axdriver::DevResult<>() : axdriver::DevError::BadState;
}

}  // namespace virtio_freestanding
#endif  // VIRTIO_WITH_NET

// END NetRaw / NetBufPool / VirtIoNetDev instantiations
// ---------------------------------------------------------------------------------------
