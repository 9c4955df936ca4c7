// Test rig for the GPU: an emu::Machine with one GpuDevice on MMIO v1, MMIO v2 or PCI, the
// production transport found as a kernel finds it, and leak accounting on the guest side.
// Shared by tests/unit/gpu_*, tests/e2e/gpu_* and tests/fault/gpu_* (include "e2e/gpu_harness.h").
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "axdriver/virtio/gpu.h"
#include "support/vq_transport.h"
#include "virtio/drivers/gpu.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/gpu_device.h"
#include "virtio/emu/machine.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/transport/any.h"

namespace virtio::test::gpu {

// The transports every GPU test runs over (tests/support/vq_transport.h).
using Kind = TransportKind;

// A name usable in a gtest parameter name ("MmioV1", not "mmio-v1").
inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::MmioV1:
      return "MmioV1";
    case Kind::MmioV2:
      return "MmioV2";
    case Kind::Pci:
      return "Pci";
  }
  return "?";
}

using Transport = EmuTransport;
using Driver = Gpu<emu::EmuHal, Transport>;
using Dev = axdriver::virtio::VirtIoGpuDev<emu::EmuHal, Transport>;

// The error of a Result, or nothing (a wrong success fails an EXPECT instead of reaching
// the panic hook through error()).
template <class R>
std::optional<typename R::error_type> err(const R& r) {
  if (r.has_value()) return std::nullopt;
  return r.error();
}

class Rig {
 public:
  explicit Rig(Kind kind, emu::GpuDeviceConfig config = {},
               emu::ShareMode share = emu::ShareMode::Identity,
               emu::NotifyMode notify = emu::NotifyMode::Synchronous)
      : machine_(emu::MachineConfig{std::size_t{32} << 20, share, notify}) {
    auto model = std::make_unique<emu::GpuDevice>(config);
    dev_ = model.get();
    auto t = attach_device(machine_, std::move(model), kind);
    EXPECT_TRUE(t.has_value()) << "attach failed";
    if (t) transport_.emplace(std::move(*t));
    baseline_pages_ = machine_.memory().stats().pages_allocated;
  }

  emu::Machine& machine() { return machine_; }
  emu::GpuDevice& device() { return *dev_; }
  emu::EmuHal hal() { return machine_.hal(); }
  Transport transport() { return *transport_; }

  Result<Driver> driver() { return Driver::create(hal(), transport()); }
  axdriver::DevResult<Dev> dev() { return Dev::try_new(hal(), transport()); }

  // Guest pages held beyond what the machine held before any driver ran.
  std::size_t leaked_pages() { return machine_.memory().stats().pages_allocated - baseline_pages_; }
  std::size_t live_shares() { return machine_.memory().stats().shares_live; }

  // Nothing left on either side (call once the driver is gone).
  void expect_no_leaks() {
    EXPECT_EQ(leaked_pages(), 0u);
    EXPECT_EQ(live_shares(), 0u);
    EXPECT_EQ(dev_->live_resources(), 0u);
    EXPECT_EQ(dev_->hostmem_used(), 0u);
    EXPECT_EQ(dev_->live_backing_entries(), 0u);
    EXPECT_EQ(dev_->live_frames(), 0u);
  }

 private:
  emu::Machine machine_;
  emu::GpuDevice* dev_ = nullptr;
  std::optional<Transport> transport_;
  std::size_t baseline_pages_ = 0;
};

// Fills a width x height B8G8R8A8 framebuffer with one colour.
inline void fill(std::span<std::uint8_t> fb, std::uint32_t rgb) {
  for (std::size_t i = 0; i + 4 <= fb.size(); i += 4)
    axdriver::virtio::put_pixel_bgra(fb.data() + i, rgb);
}

// Fills the rect [x, x+w) x [y, y+h) of a framebuffer `width` pixels wide.
inline void fill_rect(std::span<std::uint8_t> fb, std::uint32_t width, std::uint32_t x,
                      std::uint32_t y, std::uint32_t w, std::uint32_t h, std::uint32_t rgb) {
  for (std::uint32_t j = y; j < y + h; ++j) {
    for (std::uint32_t i = x; i < x + w; ++i) {
      axdriver::virtio::put_pixel_bgra(fb.data() + (std::size_t{j} * width + i) * 4, rgb);
    }
  }
}

// Every pixel of `img` in the rect has colour `rgb`.
inline ::testing::AssertionResult rect_is(const emu::ScanoutImage& img, std::uint32_t x,
                                          std::uint32_t y, std::uint32_t w, std::uint32_t h,
                                          std::uint32_t rgb) {
  for (std::uint32_t j = y; j < y + h; ++j) {
    for (std::uint32_t i = x; i < x + w; ++i) {
      if (img.pixel(i, j) != rgb) {
        return ::testing::AssertionFailure() << "pixel (" << i << "," << j << ") is 0x" << std::hex
                                             << img.pixel(i, j) << ", want 0x" << rgb;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// The test pattern's four quadrants (docs/GPU.md).
inline ::testing::AssertionResult shows_test_pattern(const emu::ScanoutImage& img) {
  const std::uint32_t w = img.width, h = img.height;
  for (std::uint32_t y = 0; y < h; ++y) {
    for (std::uint32_t x = 0; x < w; ++x) {
      const std::uint32_t want = axdriver::virtio::test_pattern_rgb(x, y, w, h);
      if (img.pixel(x, y) != want) {
        return ::testing::AssertionFailure() << "pixel (" << x << "," << y << ") is 0x" << std::hex
                                             << img.pixel(x, y) << ", want 0x" << want;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace virtio::test::gpu
