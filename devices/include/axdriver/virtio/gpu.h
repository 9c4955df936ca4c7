// axdriver_virtio's VirtIoGpuDev (seed "VirtIO GPU Device Implementation"): DisplayDriverOps
// over virtio::Gpu. Unlike the seed, construction returns an error instead of panicking (and
// releases what it created), and fb_size is width x height x 4, not the page-rounded
// allocation. need_flush() is true, as in the seed: the device shows only what flush() sent
// (TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the whole framebuffer).
//
// Pixel format: B8G8R8A8_UNORM. A pixel is the little-endian u32 0xAARRGGBB, i.e. the bytes
// B, G, R, A in memory (docs/GPU.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "axdriver/display.h"
#include "axdriver/virtio/probe.h"
#include "virtio/drivers/gpu.h"

namespace axdriver::virtio {

// The project's test pattern (docs/GPU.md): four quadrants split at (width / 2, height / 2):
// top-left red FF0000, top-right green 00FF00, bottom-left blue 0000FF, bottom-right white
// FFFFFF. Returns the expected 0xRRGGBB colour of pixel (x, y).
constexpr std::uint32_t test_pattern_rgb(std::uint32_t x, std::uint32_t y, std::uint32_t width,
                                         std::uint32_t height) {
  const bool right = x >= width / 2;
  const bool bottom = y >= height / 2;
  if (!bottom) return right ? 0x00ff00u : 0xff0000u;
  return right ? 0xffffffu : 0x0000ffu;
}

// Writes one B8G8R8A8 pixel (opaque) of colour 0xRRGGBB.
inline void put_pixel_bgra(std::uint8_t* p, std::uint32_t rgb) {
  p[0] = static_cast<std::uint8_t>(rgb);
  p[1] = static_cast<std::uint8_t>(rgb >> 8);
  p[2] = static_cast<std::uint8_t>(rgb >> 16);
  p[3] = 0xff;
}

// Draws the test pattern into a width x height B8G8R8A8 framebuffer. Returns false (and
// draws nothing) if the framebuffer is smaller than width x height x 4 bytes.
inline bool draw_test_pattern(const FrameBuffer& fb, std::uint32_t width, std::uint32_t height) {
  const std::size_t stride = std::size_t{width} * 4;
  if (fb.size() < stride * height) return false;
  for (std::uint32_t y = 0; y < height; ++y) {
    std::uint8_t* row = fb.data() + stride * y;
    for (std::uint32_t x = 0; x < width; ++x) {
      put_pixel_bgra(row + std::size_t{x} * 4, test_pattern_rgb(x, y, width, height));
    }
  }
  return true;
}

template <::virtio::Hal H, ::virtio::Transport T>
class VirtIoGpuDev final : public DisplayDriverOps {
 public:
  using Inner = ::virtio::Gpu<H, T>;

  // Gpu::create + setup_framebuffer. Any failure is a DevError; whatever was created on
  // the device is released and the device is reset (never a panic: seed bug 3).
  static DevResult<VirtIoGpuDev> try_new(H hal, T transport) {
    auto inner = Inner::create(std::move(hal), std::move(transport));
    if (!inner) return as_dev_err(inner.error());
    auto fb = inner->setup_framebuffer();
    if (!fb) return as_dev_err(fb.error());  // ~Gpu releases and resets
    return VirtIoGpuDev(std::move(*inner));
  }

  VirtIoGpuDev(VirtIoGpuDev&&) noexcept = default;

  const char* device_name() const override { return "virtio-gpu"; }
  DeviceType device_type() const override { return DeviceType::Display; }

  DisplayInfo info() const override { return info_; }
  FrameBuffer fb() override {
    return FrameBuffer::from_raw_parts_mut(reinterpret_cast<std::uint8_t*>(info_.fb_base_vaddr),
                                           info_.fb_size);
  }
  bool need_flush() const override { return true; }
  DevResult<> flush() override { return to_dev_result(inner_.flush()); }

  // Beyond DisplayDriverOps: a dirty-rectangle flush and a resolution change (info() and
  // fb() follow the new framebuffer; the old one is released).
  DevResult<> flush_rect(std::uint32_t x, std::uint32_t y, std::uint32_t width,
                         std::uint32_t height) {
    return to_dev_result(inner_.flush_rect(::virtio::GpuRect{x, y, width, height}));
  }
  DevResult<> change_resolution(std::uint32_t width, std::uint32_t height) {
    auto r = inner_.change_resolution(width, height);
    refresh_info();
    if (!r) return as_dev_err(r.error());
    return DevResult<>();
  }

  Inner& inner() { return inner_; }
  const Inner& inner() const { return inner_; }

 private:
  explicit VirtIoGpuDev(Inner inner) : inner_(std::move(inner)) { refresh_info(); }

  void refresh_info() {
    const auto fb = inner_.framebuffer();
    info_.width = fb.empty() ? 0 : inner_.width();
    info_.height = fb.empty() ? 0 : inner_.height();
    info_.fb_base_vaddr = reinterpret_cast<std::uintptr_t>(fb.data());
    info_.fb_size = fb.size();
  }

  Inner inner_;
  DisplayInfo info_{};
};

}  // namespace axdriver::virtio
