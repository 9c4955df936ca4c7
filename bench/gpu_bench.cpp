// virtio-gpu benchmarks (reference/performance.md §7, Tier A): the production driver
// (VirtIoGpuDev / virtio::Gpu over AnyTransport, probed like a kernel does it) against the
// emulated GPU, device synchronous in the notifying thread (single-threaded queues).
//
//   BM_VirtioGpu_FlushFullFrame/w:1024/h:768   VirtIoGpuDev::flush(): TRANSFER_TO_HOST_2D of
//                        the whole 1024x768x4 framebuffer (guest backing -> host resource, one
//                        copy) + RESOURCE_FLUSH (the scanout takes the frame, no copy).
//                        One item = one frame; ratios.py divides by BM_Ref_Memcpy/3145728.
//   BM_VirtioGpu_FlushRect/w:W/h:H      flush_rect() of a W x H dirty rectangle of that
//                        framebuffer (row-by-row copy, then a clipped copy to the scanout).
//   BM_VirtioGpu_CtrlCmd/<command>      one control command and its validated response:
//                        GET_DISPLAY_INFO (408-byte answer), GET_EDID (1056-byte answer),
//                        TRANSFER_TO_HOST_2D and RESOURCE_FLUSH of a 1x1 rectangle.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>

#include "axdriver/virtio/gpu.h"
#include "axdriver/virtio/probe.h"
#include "bench_util.h"
#include "virtio/emu/gpu_device.h"
#include "virtio/emu/machine.h"
#include "virtio/transport/any.h"

namespace {

using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using Transport = virtio::AnyTransport<EmuIo>;
using GpuDev = axdriver::virtio::VirtIoGpuDev<EmuHal, Transport>;

class GpuRig {
 public:
  GpuRig(std::uint32_t width, std::uint32_t height) {
    virtio::emu::MachineConfig mc;
    mc.ram_size = std::size_t{width} * height * 4 + (std::size_t{16} << 20);
    machine_ = std::make_unique<virtio::emu::Machine>(mc);
    virtio::emu::GpuDeviceConfig gc;
    gc.width = width;
    gc.height = height;
    auto model = std::make_unique<virtio::emu::GpuDevice>(gc);
    model->set_single_threaded(true);  // driver and device share this thread
    device_ = model.get();
    const auto base = machine_->add_mmio(std::move(model), virtio::MmioVersion::Modern);
    EmuHal hal = machine_->hal();
    auto probed =
        axdriver::virtio::probe_mmio_device(hal, *base, virtio::emu::MmioDevice::kWindowSize);
    if (!probed) return;
    auto dev = GpuDev::try_new(hal, Transport(std::move(probed->transport)));
    if (!dev) return;
    dev_.emplace(std::move(*dev));
    dev_->inner().disable_interrupts();  // a polling driver, as virtio-sim and blk_bench
    // Touch every page of the framebuffer and settle the device's frames outside timing.
    axdriver::virtio::draw_test_pattern(dev_->fb(), width, height);
    for (int i = 0; i < 3; ++i) (void)dev_->flush();
  }

  bool ok() const { return dev_.has_value(); }
  GpuDev& dev() { return *dev_; }
  virtio::emu::GpuDevice& device() { return *device_; }

 private:
  std::unique_ptr<virtio::emu::Machine> machine_;
  virtio::emu::GpuDevice* device_ = nullptr;
  std::optional<GpuDev> dev_;
};

void BM_VirtioGpu_FlushFullFrame(benchmark::State& state) {
  bench::PinnedScope pin(0);
  const auto w = static_cast<std::uint32_t>(state.range(0));
  const auto h = static_cast<std::uint32_t>(state.range(1));
  GpuRig rig(w, h);
  if (!rig.ok()) {
    state.SkipWithError("VirtIoGpuDev::try_new failed");
    return;
  }
  const auto cow_before = rig.device().gpu_stats().cow_copies;
  for (auto _ : state) {
    auto r = rig.dev().flush();
    if (!r) {
      state.SkipWithError("flush failed");
      break;
    }
  }
  const std::int64_t frame = std::int64_t{w} * h * 4;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * frame);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["cow_copies"] =
      static_cast<double>(rig.device().gpu_stats().cow_copies - cow_before);
}
BENCHMARK(BM_VirtioGpu_FlushFullFrame)->ArgNames({"w", "h"})->Args({1024, 768});

void BM_VirtioGpu_FlushRect(benchmark::State& state) {
  bench::PinnedScope pin(0);
  const auto w = static_cast<std::uint32_t>(state.range(0));
  const auto h = static_cast<std::uint32_t>(state.range(1));
  GpuRig rig(1024, 768);
  if (!rig.ok()) {
    state.SkipWithError("VirtIoGpuDev::try_new failed");
    return;
  }
  // Settle copy-on-write: the first partial transfer after a full flush copies the frame.
  (void)rig.dev().flush_rect(0, 0, w, h);
  std::uint32_t i = 0;
  for (auto _ : state) {
    // Move the rectangle around so it is not always the same cache lines.
    const std::uint32_t x = (i * 64) % (1024 - w + 1);
    const std::uint32_t y = (i * 48) % (768 - h + 1);
    ++i;
    auto r = rig.dev().flush_rect(x, y, w, h);
    if (!r) {
      state.SkipWithError("flush_rect failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * w * h * 4);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_VirtioGpu_FlushRect)->ArgNames({"w", "h"})->Args({64, 64})->Args({256, 256});

enum class Cmd { GetDisplayInfo, GetEdid, Transfer, ResourceFlush };

void ctrl_cmd(benchmark::State& state, Cmd which) {
  bench::PinnedScope pin(0);
  GpuRig rig(1024, 768);
  if (!rig.ok()) {
    state.SkipWithError("VirtIoGpuDev::try_new failed");
    return;
  }
  auto& gpu = rig.dev().inner();
  const virtio::GpuRect one{1, 1, 1, 1};
  (void)gpu.transfer_to_host(one);  // settle copy-on-write outside timing
  std::array<std::uint8_t, 1024> edid{};
  virtio::GpuDisplayInfo info;
  for (auto _ : state) {
    bool good = false;
    switch (which) {
      case Cmd::GetDisplayInfo: {
        good = gpu.get_display_info(info).has_value();
        benchmark::DoNotOptimize(info);
        break;
      }
      case Cmd::GetEdid: {
        auto r = gpu.get_edid(0, edid);
        good = r.has_value();
        benchmark::DoNotOptimize(r);
        break;
      }
      case Cmd::Transfer:
        good = gpu.transfer_to_host(one).has_value();
        break;
      case Cmd::ResourceFlush:
        good = gpu.resource_flush(one).has_value();
        break;
    }
    if (!good) {
      state.SkipWithError("command failed");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_VirtioGpu_CtrlCmd_GetDisplayInfo(benchmark::State& s) { ctrl_cmd(s, Cmd::GetDisplayInfo); }
void BM_VirtioGpu_CtrlCmd_GetEdid(benchmark::State& s) { ctrl_cmd(s, Cmd::GetEdid); }
void BM_VirtioGpu_CtrlCmd_Transfer(benchmark::State& s) { ctrl_cmd(s, Cmd::Transfer); }
void BM_VirtioGpu_CtrlCmd_ResourceFlush(benchmark::State& s) { ctrl_cmd(s, Cmd::ResourceFlush); }
BENCHMARK(BM_VirtioGpu_CtrlCmd_GetDisplayInfo)->Name("BM_VirtioGpu_CtrlCmd/GET_DISPLAY_INFO");
BENCHMARK(BM_VirtioGpu_CtrlCmd_GetEdid)->Name("BM_VirtioGpu_CtrlCmd/GET_EDID");
BENCHMARK(BM_VirtioGpu_CtrlCmd_Transfer)->Name("BM_VirtioGpu_CtrlCmd/TRANSFER_TO_HOST_2D_1x1");
BENCHMARK(BM_VirtioGpu_CtrlCmd_ResourceFlush)->Name("BM_VirtioGpu_CtrlCmd/RESOURCE_FLUSH_1x1");

}  // namespace
