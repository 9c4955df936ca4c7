// End to end: the production virtio::Gpu / VirtIoGpuDev against the emulated GPU over MMIO v1,
// MMIO v2 and PCI. What the driver writes into fb() must reach the emulated scanout after
// flush() and not before; dirty-rectangle flushes, resolution changes (driver- and
// host-initiated), the cursor, EDID, the PNG snapshot, and teardown without leaks.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "e2e/gpu_harness.h"
#include "virtio/emu/png.h"

namespace {

using namespace virtio::test::gpu;
using virtio::emu::GpuDeviceConfig;
using virtio::emu::ScanoutImage;

GpuDeviceConfig mode(std::uint32_t w, std::uint32_t h) {
  GpuDeviceConfig c;
  c.width = w;
  c.height = h;
  return c;
}

class GpuE2e : public ::testing::TestWithParam<Kind> {};

TEST_P(GpuE2e, InfoMatchesTheDisplayAndFbSizeIsExact) {
  Rig rig(GetParam(), mode(300, 170));  // 300*170*4 is not a multiple of the page size
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    EXPECT_STREQ(dev->device_name(), "virtio-gpu");
    EXPECT_EQ(dev->device_type(), axdriver::DeviceType::Display);
    EXPECT_TRUE(dev->need_flush());
    const axdriver::DisplayInfo info = dev->info();
    EXPECT_EQ(info.width, 300u);
    EXPECT_EQ(info.height, 170u);
    EXPECT_EQ(info.fb_size, 300u * 170u * 4u);
    EXPECT_NE(info.fb_base_vaddr, 0u);
    EXPECT_EQ(dev->fb().size(), info.fb_size);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(dev->fb().data()), info.fb_base_vaddr);
    // The framebuffer is guest memory from dma_alloc.
    EXPECT_TRUE(rig.machine().memory().guest_address(dev->fb().data(), info.fb_size).has_value());
    const auto st = rig.device().scanout_state(0);
    EXPECT_EQ(st.resource_id, dev->inner().framebuffer_resource_id());
    EXPECT_EQ(st.width, 300u);
    EXPECT_EQ(st.height, 170u);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, PixelsAppearAfterFlushAndNotBefore) {
  Rig rig(GetParam(), mode(64, 48));
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    auto before = rig.device().snapshot(0);
    ASSERT_TRUE(before.has_value());
    EXPECT_TRUE(rect_is(*before, 0, 0, 64, 48, 0x000000));  // a new resource is black

    fill(dev->fb().bytes(), 0x123456);
    auto unflushed = rig.device().snapshot(0);
    ASSERT_TRUE(unflushed.has_value());
    EXPECT_TRUE(rect_is(*unflushed, 0, 0, 64, 48, 0x000000));

    ASSERT_TRUE(dev->flush().has_value());
    auto flushed = rig.device().snapshot(0);
    ASSERT_TRUE(flushed.has_value());
    EXPECT_EQ(flushed->width, 64u);
    EXPECT_EQ(flushed->height, 48u);
    EXPECT_TRUE(rect_is(*flushed, 0, 0, 64, 48, 0x123456));

    // A second frame: again invisible until flushed.
    fill(dev->fb().bytes(), 0xabcdef);
    EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 64, 48, 0x123456));
    ASSERT_TRUE(dev->flush().has_value());
    EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 64, 48, 0xabcdef));
    EXPECT_EQ(rig.device().gpu_stats().flushes, 2u);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, DirtyRectangleFlushUpdatesOnlyTheRectangle) {
  Rig rig(GetParam(), mode(128, 96));
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    fill(dev->fb().bytes(), 0x0000ff);
    ASSERT_TRUE(dev->flush().has_value());
    const auto transferred = rig.device().gpu_stats().bytes_transferred;

    // Everything changes in the framebuffer, but only (10, 20, 30, 40) is flushed.
    fill(dev->fb().bytes(), 0x00ff00);
    fill_rect(dev->fb().bytes(), 128, 10, 20, 30, 40, 0xff0000);
    ASSERT_TRUE(dev->flush_rect(10, 20, 30, 40).has_value());
    EXPECT_EQ(rig.device().gpu_stats().bytes_transferred - transferred, 30u * 40u * 4u);

    auto img = rig.device().snapshot(0);
    ASSERT_TRUE(img.has_value());
    EXPECT_TRUE(rect_is(*img, 10, 20, 30, 40, 0xff0000));
    EXPECT_TRUE(rect_is(*img, 0, 0, 128, 20, 0x0000ff));
    EXPECT_TRUE(rect_is(*img, 0, 60, 128, 36, 0x0000ff));
    EXPECT_TRUE(rect_is(*img, 0, 20, 10, 40, 0x0000ff));
    EXPECT_TRUE(rect_is(*img, 40, 20, 88, 40, 0x0000ff));

    // Corner and edge rectangles; then the rest becomes visible with a full flush.
    ASSERT_TRUE(dev->flush_rect(127, 95, 1, 1).has_value());
    EXPECT_EQ(rig.device().snapshot(0)->pixel(127, 95), 0x00ff00u);
    EXPECT_EQ(rig.device().snapshot(0)->pixel(126, 95), 0x0000ffu);
    ASSERT_TRUE(dev->flush().has_value());
    img = rig.device().snapshot(0);
    EXPECT_TRUE(rect_is(*img, 0, 0, 128, 20, 0x00ff00));
    EXPECT_TRUE(rect_is(*img, 10, 20, 30, 40, 0xff0000));

    // Rectangles outside the framebuffer or empty are the caller's error, not the device's.
    EXPECT_EQ(err(dev->flush_rect(100, 0, 29, 1)), axdriver::DevError::InvalidParam);
    EXPECT_EQ(err(dev->flush_rect(0, 0, 0, 1)), axdriver::DevError::InvalidParam);
    EXPECT_EQ(err(dev->flush_rect(0xffffffffu, 0, 2, 1)), axdriver::DevError::InvalidParam);
    EXPECT_EQ(rig.device().gpu_stats().errors, 0u);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, DriverChangesResolution) {
  Rig rig(GetParam(), mode(160, 120));
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    const std::uint32_t first_id = dev->inner().framebuffer_resource_id();
    fill(dev->fb().bytes(), 0xffffff);
    ASSERT_TRUE(dev->flush().has_value());

    ASSERT_TRUE(dev->change_resolution(320, 200).has_value());
    const axdriver::DisplayInfo info = dev->info();
    EXPECT_EQ(info.width, 320u);
    EXPECT_EQ(info.height, 200u);
    EXPECT_EQ(info.fb_size, 320u * 200u * 4u);
    EXPECT_EQ(dev->fb().size(), info.fb_size);
    // The old resource is gone from the device; the new one is on the scanout.
    EXPECT_EQ(rig.device().live_resources(), 1u);
    EXPECT_NE(dev->inner().framebuffer_resource_id(), first_id);
    const auto st = rig.device().scanout_state(0);
    EXPECT_EQ(st.resource_id, dev->inner().framebuffer_resource_id());
    EXPECT_EQ(st.width, 320u);
    EXPECT_EQ(st.height, 200u);

    ASSERT_TRUE(axdriver::virtio::draw_test_pattern(dev->fb(), 320, 200));
    ASSERT_TRUE(dev->flush().has_value());
    auto img = rig.device().snapshot(0);
    ASSERT_TRUE(img.has_value());
    EXPECT_EQ(img->width, 320u);
    EXPECT_EQ(img->height, 200u);
    EXPECT_TRUE(shows_test_pattern(*img));

    // Back down, and a refused size leaves everything as it was.
    ASSERT_TRUE(dev->change_resolution(16, 16).has_value());
    EXPECT_EQ(dev->info().width, 16u);
    EXPECT_EQ(err(dev->change_resolution(0, 10)), axdriver::DevError::InvalidParam);
    EXPECT_EQ(err(dev->change_resolution(20000, 10)), axdriver::DevError::InvalidParam);
    EXPECT_EQ(dev->info().width, 16u);
    EXPECT_EQ(rig.device().live_resources(), 1u);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, HostResolutionChangeIsReportedAndFollowed) {
  Rig rig(GetParam(), mode(200, 100));
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    auto& gpu = dev->inner();
    EXPECT_FALSE(gpu.take_display_changed());

    rig.device().set_display_mode(0, 400, 300);
    EXPECT_NE(rig.device().events_read() & virtio::gpu::kEventDisplay, 0u);
    const std::uint32_t isr = gpu.ack_interrupt();
    EXPECT_NE(isr & virtio::interrupt::kConfigChange, 0u);
    EXPECT_TRUE(gpu.take_display_changed());
    EXPECT_FALSE(gpu.take_display_changed());
    // The driver cleared the event (§5.7.4 events_clear).
    EXPECT_EQ(rig.device().events_read(), 0u);

    auto res = gpu.resolution();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->width, 400u);
    EXPECT_EQ(res->height, 300u);
    ASSERT_TRUE(dev->change_resolution(res->width, res->height).has_value());
    fill(dev->fb().bytes(), 0x00ff00);
    ASSERT_TRUE(dev->flush().has_value());
    auto img = rig.device().snapshot(0);
    ASSERT_TRUE(img.has_value());
    EXPECT_EQ(img->width, 400u);
    EXPECT_TRUE(rect_is(*img, 0, 0, 400, 300, 0x00ff00));
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, Cursor) {
  Rig rig(GetParam(), mode(320, 240));
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    auto& gpu = dev->inner();
    std::vector<std::uint8_t> image(64 * 64 * 4);
    for (std::uint32_t i = 0; i < 64 * 64; ++i) {
      axdriver::virtio::put_pixel_bgra(image.data() + i * 4, (i % 2) != 0 ? 0xff8000 : 0x0080ff);
    }
    ASSERT_TRUE(gpu.setup_cursor(image, 100, 50, 3, 4).has_value());
    auto c = rig.device().cursor_state(0);
    EXPECT_TRUE(c.visible);
    EXPECT_EQ(c.resource_id, Driver::kCursorResourceId);
    EXPECT_EQ(c.x, 100u);
    EXPECT_EQ(c.y, 50u);
    EXPECT_EQ(c.hot_x, 3u);
    EXPECT_EQ(c.hot_y, 4u);
    ASSERT_EQ(c.rgba.size(), 64u * 64u * 4u);
    EXPECT_EQ(c.rgba[0], 0x00);  // pixel 0: 0x0080ff
    EXPECT_EQ(c.rgba[1], 0x80);
    EXPECT_EQ(c.rgba[2], 0xff);
    EXPECT_EQ(c.rgba[3], 0xff);
    EXPECT_EQ(c.rgba[4], 0xff);  // pixel 1: 0xff8000
    EXPECT_EQ(c.rgba[5], 0x80);
    EXPECT_EQ(c.rgba[6], 0x00);

    ASSERT_TRUE(gpu.move_cursor(7, 9).has_value());
    c = rig.device().cursor_state(0);
    EXPECT_EQ(c.x, 7u);
    EXPECT_EQ(c.y, 9u);
    EXPECT_TRUE(c.visible);

    // A new image reuses the cursor resource.
    std::fill(image.begin(), image.end(), std::uint8_t{0xff});
    ASSERT_TRUE(gpu.setup_cursor(image, 1, 2, 0, 0).has_value());
    EXPECT_EQ(rig.device().live_resources(), 2u);
    EXPECT_EQ(rig.device().cursor_state(0).rgba[0], 0xff);

    ASSERT_TRUE(gpu.hide_cursor().has_value());
    EXPECT_FALSE(rig.device().cursor_state(0).visible);
    EXPECT_EQ(rig.device().gpu_stats().cursor_updates, 3u);
    EXPECT_EQ(rig.device().gpu_stats().cursor_moves, 1u);

    // Caller errors.
    EXPECT_EQ(err(gpu.setup_cursor(std::span<const std::uint8_t>(image.data(), 100), 0, 0, 0, 0)),
              virtio::Error::InvalidParam);
    EXPECT_EQ(err(gpu.setup_cursor(image, 0, 0, 64, 0)), virtio::Error::InvalidParam);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, EdidDescribesTheMode) {
  Rig rig(GetParam(), mode(1024, 768));
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    ASSERT_TRUE(gpu->edid_supported());
    std::array<std::uint8_t, 1024> edid{};
    auto n = gpu->get_edid(0, edid);
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(*n, 128u);
    auto preferred = virtio::edid_preferred_mode(std::span<const std::uint8_t>(edid.data(), *n));
    ASSERT_TRUE(preferred.has_value());
    EXPECT_EQ(preferred->width, 1024u);
    EXPECT_EQ(preferred->height, 768u);
    EXPECT_EQ(err(gpu->get_edid(1, edid)), virtio::Error::InvalidParam);  // one scanout
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, ExplicitShutdownReleasesEveryResourceBeforeTheReset) {
  Rig rig(GetParam(), mode(96, 64));
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    std::vector<std::uint8_t> image(64 * 64 * 4, 0x80);
    ASSERT_TRUE(dev->inner().setup_cursor(image, 0, 0, 0, 0).has_value());
    ASSERT_TRUE(dev->flush().has_value());
    EXPECT_EQ(rig.device().live_resources(), 2u);
    const auto resets = rig.device().stats().resets;

    ASSERT_TRUE(dev->inner().shutdown().has_value());
    // DETACH + UNREF through the protocol, not by the reset.
    EXPECT_EQ(rig.device().stats().resets, resets);
    EXPECT_EQ(rig.device().live_resources(), 0u);
    EXPECT_EQ(rig.device().live_backing_entries(), 0u);
    EXPECT_EQ(rig.device().live_frames(), 0u);
    EXPECT_EQ(rig.device().hostmem_used(), 0u);
    const auto s = rig.device().gpu_stats();
    EXPECT_EQ(s.detaches, 2u);
    EXPECT_EQ(s.unrefs, 2u);
    EXPECT_EQ(s.errors, 0u);
    EXPECT_FALSE(rig.device().snapshot(0).has_value());  // scanout disabled
  }
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, TestPatternPngRoundTrip) {
  if (!virtio::emu::png_supported()) GTEST_SKIP() << "built without libpng";
  Rig rig(GetParam(), mode(320, 200));
  const std::string path = ::testing::TempDir() + "gpu_e2e_pattern_" + kind_name(GetParam()) + "_" +
                           std::to_string(::getpid()) + ".png";
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    ASSERT_TRUE(
        axdriver::virtio::draw_test_pattern(dev->fb(), dev->info().width, dev->info().height));
    ASSERT_TRUE(dev->flush().has_value());
    std::string why;
    ASSERT_TRUE(rig.device().write_png(0, path, &why)) << why;
  }
  std::uint32_t w = 0, h = 0;
  std::vector<std::uint8_t> rgb;
  std::string why;
  ASSERT_TRUE(virtio::emu::read_png_rgb(path, w, h, rgb, &why)) << why;
  std::remove(path.c_str());
  ScanoutImage img;
  img.width = w;
  img.height = h;
  img.rgb = rgb;
  EXPECT_EQ(w, 320u);
  EXPECT_EQ(h, 200u);
  EXPECT_TRUE(shows_test_pattern(img));
  EXPECT_EQ(img.pixel(0, 0), 0xff0000u);
  EXPECT_EQ(img.pixel(319, 0), 0x00ff00u);
  EXPECT_EQ(img.pixel(0, 199), 0x0000ffu);
  EXPECT_EQ(img.pixel(319, 199), 0xffffffu);
  rig.expect_no_leaks();
}

TEST_P(GpuE2e, SecondEnabledScanoutIsChosenWhenTheFirstIsOff) {
  GpuDeviceConfig c = mode(80, 60);
  c.num_scanouts = 3;
  c.enabled_scanouts = 3;
  Rig rig(GetParam(), c);
  rig.device().set_display_mode(0, 80, 60, /*enabled=*/false);
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    EXPECT_EQ(dev->inner().scanout(), 1u);
    EXPECT_EQ(dev->inner().num_scanouts(), 3u);
    fill(dev->fb().bytes(), 0xff00ff);
    ASSERT_TRUE(dev->flush().has_value());
    EXPECT_FALSE(rig.device().snapshot(0).has_value());
    EXPECT_TRUE(rect_is(*rig.device().snapshot(1), 0, 0, 80, 60, 0xff00ff));
  }
  rig.expect_no_leaks();
}

INSTANTIATE_TEST_SUITE_P(Transports, GpuE2e,
                         ::testing::Values(Kind::MmioV1, Kind::MmioV2, Kind::Pci),
                         [](const auto& p) { return std::string(kind_name(p.param)); });

// Bounce-buffer sharing: the driver must read responses only after unshare().
TEST(GpuE2eBounce, FlushAndQueriesWorkWithBounceBuffers) {
  Rig rig(Kind::MmioV2, mode(50, 40), virtio::emu::ShareMode::Bounce);
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    EXPECT_EQ(dev->info().width, 50u);
    fill(dev->fb().bytes(), 0x445566);
    ASSERT_TRUE(dev->flush().has_value());
    EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 50, 40, 0x445566));
    std::array<std::uint8_t, 1024> edid{};
    auto n = dev->inner().get_edid(0, edid);
    ASSERT_TRUE(n.has_value());
    EXPECT_TRUE(
        virtio::edid_preferred_mode(std::span<const std::uint8_t>(edid.data(), *n)).has_value());
    EXPECT_EQ(dev->inner().bad_fences(), 0u);
  }
  rig.expect_no_leaks();
}

// The device on its own polling thread (NotifyMode::Threaded): the same flows work when the
// device runs concurrently with the driver.
TEST(GpuE2eThreaded, FlushDirtyRectCursorAndResolutionChange) {
  for (Kind kind : {Kind::MmioV2, Kind::Pci}) {
    SCOPED_TRACE(kind_name(kind));
    Rig rig(kind, mode(96, 64), virtio::emu::ShareMode::Identity,
            virtio::emu::NotifyMode::Threaded);
    {
      auto dev = rig.dev();
      ASSERT_TRUE(dev.has_value());
      for (std::uint32_t i = 0; i < 20; ++i) {
        fill(dev->fb().bytes(), 0x010203u * i);
        ASSERT_TRUE(dev->flush().has_value());
        EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 96, 64, 0x010203u * i));
      }
      fill_rect(dev->fb().bytes(), 96, 5, 5, 10, 10, 0xffffff);
      ASSERT_TRUE(dev->flush_rect(5, 5, 10, 10).has_value());
      EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 5, 5, 10, 10, 0xffffff));
      std::vector<std::uint8_t> image(64 * 64 * 4, 0x7f);
      ASSERT_TRUE(dev->inner().setup_cursor(image, 3, 4, 0, 0).has_value());
      ASSERT_TRUE(dev->inner().move_cursor(5, 6).has_value());
      EXPECT_EQ(rig.device().cursor_state(0).x, 5u);
      ASSERT_TRUE(dev->change_resolution(48, 32).has_value());
      fill(dev->fb().bytes(), 0x00ffff);
      ASSERT_TRUE(dev->flush().has_value());
      EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 48, 32, 0x00ffff));
    }
    rig.expect_no_leaks();
  }
}

}  // namespace
