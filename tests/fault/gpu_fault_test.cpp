// The GPU driver against a misbehaving emulated GPU (reference/hardening-fuzzing-device-models.md
// T20, T22, F20/F21, F24, F27), over MMIO v1, MMIO v2 and PCI: every ERR_* answer and every
// malformed answer at every step gives a typed error, nothing leaks on either side, and a
// device that stops answering is reset before anything it could touch is freed.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "e2e/gpu_harness.h"

namespace {

using namespace virtio::test::gpu;
using axdriver::DevError;
using virtio::Error;
using virtio::GpuFault;
using virtio::emu::GpuDeviceConfig;
namespace resp = virtio::gpu::resp;

GpuDeviceConfig small() {
  GpuDeviceConfig c;
  c.width = 64;
  c.height = 32;
  return c;
}

const std::uint32_t kErrors[] = {resp::kErrUnspec,
                                 resp::kErrOutOfMemory,
                                 resp::kErrInvalidScanoutId,
                                 resp::kErrInvalidResourceId,
                                 resp::kErrInvalidContextId,
                                 resp::kErrInvalidParameter,
                                 0x12ff /* unknown error */};

DevError dev_error_for(std::uint32_t type) {
  switch (type) {
    case resp::kErrOutOfMemory:
      return DevError::NoMemory;
    case resp::kErrInvalidScanoutId:
    case resp::kErrInvalidResourceId:
    case resp::kErrInvalidContextId:
    case resp::kErrInvalidParameter:
      return DevError::InvalidParam;
    default:
      return DevError::Io;
  }
}

std::string err_name(std::uint32_t type) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", type);
  return buf;
}

// try_new sends GET_DISPLAY_INFO, CREATE_2D, ATTACH_BACKING, SET_SCANOUT (commands 0..3).
enum Step : std::uint64_t { kDisplayInfo = 0, kCreate = 1, kAttach = 2, kSetScanout = 3 };

// --- ERR_* during construction -----------------------------------------------------------

class GpuErrOnConstruction
    : public ::testing::TestWithParam<std::tuple<Kind, std::uint32_t, std::uint64_t>> {};

TEST_P(GpuErrOnConstruction, TypedErrorAndNothingLeft) {
  const auto [kind, type, step] = GetParam();
  Rig rig(kind, small());
  rig.device().gpu_faults().error_on_command = step;
  rig.device().gpu_faults().error_type = type;
  {
    auto dev = rig.dev();
    ASSERT_FALSE(dev.has_value());
    EXPECT_EQ(dev.error(), dev_error_for(type));
  }
  // What the driver created was released through the protocol before the final reset.
  const auto s = rig.device().gpu_stats();
  EXPECT_EQ(s.errors, 1u);
  if (step == kAttach) {
    EXPECT_EQ(s.unrefs, 1u);
  }
  if (step == kSetScanout) {
    EXPECT_EQ(s.detaches, 1u);
    EXPECT_EQ(s.unrefs, 1u);
  }
  rig.expect_no_leaks();
}

INSTANTIATE_TEST_SUITE_P(
    All, GpuErrOnConstruction,
    ::testing::Combine(::testing::Values(Kind::MmioV1, Kind::MmioV2, Kind::Pci),
                       ::testing::ValuesIn(kErrors),
                       ::testing::Values(kDisplayInfo, kCreate, kAttach, kSetScanout)),
    [](const auto& p) {
      return std::string(kind_name(std::get<0>(p.param))) + "_" + err_name(std::get<1>(p.param)) +
             "_cmd" + std::to_string(std::get<2>(p.param));
    });

// --- ERR_* after construction: the device stays usable ------------------------------------

class GpuErr : public ::testing::TestWithParam<Kind> {};

TEST_P(GpuErr, FlushStepsFailTypedAndTheNextFlushWorks) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    for (std::uint64_t step = 0; step < 2; ++step) {  // TRANSFER, then RESOURCE_FLUSH
      for (std::uint32_t type : kErrors) {
        rig.device().gpu_faults().error_on_command = rig.device().gpu_stats().commands + step;
        rig.device().gpu_faults().error_type = type;
        auto r = dev->flush();
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), dev_error_for(type));
        EXPECT_EQ(dev->inner().last_fault(), GpuFault::ErrorResponse);
        EXPECT_EQ(dev->inner().last_response_type(), type);
        EXPECT_FALSE(dev->inner().broken());
      }
    }
    rig.device().gpu_faults().error_on_command.reset();
    fill(dev->fb().bytes(), 0x808080);
    ASSERT_TRUE(dev->flush().has_value());
    EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 64, 32, 0x808080));
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, EveryTransferRefused) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    rig.device().gpu_faults().error_on_type = virtio::gpu::cmd::kTransferToHost2d;
    rig.device().gpu_faults().error_type = resp::kErrInvalidResourceId;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(err(dev->flush()), DevError::InvalidParam);
    rig.device().gpu_faults().error_on_type.reset();
    EXPECT_TRUE(dev->flush().has_value());
  }
  rig.expect_no_leaks();
}

// change_resolution sends CREATE_2D, ATTACH, SET_SCANOUT, then DETACH + UNREF of the old one.
TEST_P(GpuErr, ResolutionChangeStepsFailCleanly) {
  for (std::uint64_t step = 0; step < 5; ++step) {
    SCOPED_TRACE(step);
    Rig rig(GetParam(), small());
    {
      auto dev = rig.dev();
      ASSERT_TRUE(dev.has_value());
      fill(dev->fb().bytes(), 0x00ff00);
      ASSERT_TRUE(dev->flush().has_value());
      rig.device().gpu_faults().error_on_command = rig.device().gpu_stats().commands + step;
      rig.device().gpu_faults().error_type = resp::kErrUnspec;
      auto r = dev->change_resolution(40, 20);
      EXPECT_EQ(err(r), DevError::Io);
      EXPECT_FALSE(dev->inner().broken());
      if (step < 3) {
        // Nothing switched: the old framebuffer is still shown and usable.
        EXPECT_EQ(dev->info().width, 64u);
        EXPECT_EQ(dev->fb().size(), 64u * 32u * 4u);
        EXPECT_EQ(rig.device().live_resources(), 1u);
        EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, 64, 32, 0x00ff00));
      } else {
        // The new framebuffer is shown; releasing the old one failed half way.
        EXPECT_EQ(dev->info().width, 40u);
        EXPECT_EQ(dev->fb().size(), 40u * 20u * 4u);
      }
      fill(dev->fb().bytes(), 0x0000ff);
      ASSERT_TRUE(dev->flush().has_value());
      EXPECT_TRUE(rect_is(*rig.device().snapshot(0), 0, 0, dev->info().width, dev->info().height,
                          0x0000ff));
    }
    rig.expect_no_leaks();
  }
}

TEST_P(GpuErr, EdidAndCursorErrors) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    std::array<std::uint8_t, 1024> edid{};
    rig.device().gpu_faults().error_on_type = virtio::gpu::cmd::kGetEdid;
    rig.device().gpu_faults().error_type = resp::kErrInvalidParameter;
    EXPECT_EQ(err(dev->inner().get_edid(0, edid)), Error::InvalidParam);
    rig.device().gpu_faults().error_on_type = virtio::gpu::cmd::kResourceCreate2d;
    rig.device().gpu_faults().error_type = resp::kErrOutOfMemory;
    std::vector<std::uint8_t> image(64 * 64 * 4, 1);
    EXPECT_EQ(err(dev->inner().setup_cursor(image, 0, 0, 0, 0)), Error::DmaError);
    rig.device().gpu_faults().error_on_type.reset();
    EXPECT_TRUE(dev->inner().setup_cursor(image, 0, 0, 0, 0).has_value());
    EXPECT_EQ(rig.device().live_resources(), 2u);
  }
  rig.expect_no_leaks();
}

// --- malformed answers: typed error, reset, nothing left ------------------------------------

struct Malformed {
  const char* name;
  void (*inject)(virtio::emu::GpuFaults&, std::uint64_t index);
  GpuFault fault;
};

const Malformed kMalformed[] = {
    {"WrongType", [](virtio::emu::GpuFaults& f, std::uint64_t i) { f.wrong_type_on_command = i; },
     GpuFault::WrongType},
    {"ShortHeader",
     [](virtio::emu::GpuFaults& f, std::uint64_t i) {
       f.short_response_on_command = i;
       f.short_len = 8;
     },
     GpuFault::ShortResponse},
    {"Empty",
     [](virtio::emu::GpuFaults& f, std::uint64_t i) {
       f.short_response_on_command = i;
       f.short_len = 0;
     },
     GpuFault::ShortResponse},
};

class GpuMalformedOnConstruction
    : public ::testing::TestWithParam<std::tuple<Kind, int, std::uint64_t>> {};

TEST_P(GpuMalformedOnConstruction, BadStateAfterResetAndNothingLeft) {
  const auto [kind, which, step] = GetParam();
  const Malformed& m = kMalformed[which];
  Rig rig(kind, small());
  m.inject(rig.device().gpu_faults(), step);
  const auto resets = rig.device().stats().resets;
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    auto fb = gpu->setup_framebuffer();
    ASSERT_FALSE(fb.has_value());
    EXPECT_EQ(fb.error(), Error::DeviceBroken);
    EXPECT_EQ(gpu->last_fault(), m.fault);
    EXPECT_TRUE(gpu->broken());
    // The driver reset the device at once: it holds nothing any more.
    EXPECT_GT(rig.device().stats().resets, resets + 1);
    EXPECT_EQ(rig.device().live_resources(), 0u);
    EXPECT_EQ(gpu->framebuffer().size(), 0u);
    EXPECT_EQ(err(gpu->flush()), Error::DeviceBroken);
    EXPECT_EQ(err(gpu->get_display_info()), Error::DeviceBroken);
  }
  rig.expect_no_leaks();
  // The adapter maps it to BadState.
  Rig rig2(kind, small());
  m.inject(rig2.device().gpu_faults(), step);
  EXPECT_EQ(err(rig2.dev()), DevError::BadState);
  rig2.expect_no_leaks();
}

INSTANTIATE_TEST_SUITE_P(
    All, GpuMalformedOnConstruction,
    ::testing::Combine(::testing::Values(Kind::MmioV1, Kind::MmioV2, Kind::Pci),
                       ::testing::Values(0, 1, 2),
                       ::testing::Values(kDisplayInfo, kCreate, kAttach, kSetScanout)),
    [](const auto& p) {
      return std::string(kind_name(std::get<0>(p.param))) + "_" +
             kMalformed[std::get<1>(p.param)].name + "_cmd" + std::to_string(std::get<2>(p.param));
    });

TEST_P(GpuErr, ShortDisplayInfoBody) {
  Rig rig(GetParam(), small());
  // The header is complete (24 bytes) but the 408-byte display info is not.
  rig.device().gpu_faults().short_response_on_command = 0;
  rig.device().gpu_faults().short_len = 24;
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    EXPECT_EQ(err(gpu->get_display_info()), Error::DeviceBroken);
    EXPECT_EQ(gpu->last_fault(), GpuFault::ShortResponse);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, MalformedFlushAnswerBreaksTheDevice) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    rig.device().gpu_faults().wrong_type_on_command = rig.device().gpu_stats().commands + 1;
    EXPECT_EQ(err(dev->flush()), DevError::BadState);
    EXPECT_EQ(dev->inner().last_fault(), GpuFault::WrongType);
    EXPECT_EQ(rig.device().live_resources(), 0u);  // reset
    EXPECT_EQ(err(dev->flush()), DevError::BadState);
    // fb() stays valid memory for a caller that still draws.
    fill(dev->fb().bytes(), 0x111111);
  }
  rig.expect_no_leaks();
}

// --- config and display info (F24) ---------------------------------------------------------

TEST_P(GpuErr, NoScanoutIsRefused) {
  Rig rig(GetParam(), small());
  rig.device().gpu_faults().num_scanouts_override = 0;
  EXPECT_EQ(err(rig.dev()), DevError::Unsupported);
  rig.expect_no_leaks();
}

TEST_P(GpuErr, TooManyScanoutsAreClamped) {
  GpuDeviceConfig c = small();
  c.num_scanouts = 16;
  Rig rig(GetParam(), c);
  rig.device().gpu_faults().num_scanouts_override = 100;
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    EXPECT_EQ(dev->inner().num_scanouts(), 16u);
    EXPECT_TRUE(dev->flush().has_value());
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, NoEnabledScanoutFallsBackToTheDocumentedDefault) {
  Rig rig(GetParam(), small());
  rig.device().gpu_faults().mutate_display_info = [](virtio::gpu::RespDisplayInfo& r) {
    for (auto& p : r.pmodes) p.enabled = 0;
  };
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    EXPECT_TRUE(dev->inner().fallback_mode());
    EXPECT_EQ(dev->inner().scanout(), 0u);
    EXPECT_EQ(dev->info().width, Driver::kDefaultWidth);
    EXPECT_EQ(dev->info().height, Driver::kDefaultHeight);
    EXPECT_TRUE(dev->flush().has_value());
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, GarbageDisplayInfoIsIgnored) {
  GpuDeviceConfig c = small();
  c.num_scanouts = 3;
  c.enabled_scanouts = 3;
  Rig rig(GetParam(), c);
  rig.device().gpu_faults().mutate_display_info = [](virtio::gpu::RespDisplayInfo& r) {
    r.pmodes[0].r.width = 0xffffffffu;  // absurd
    r.pmodes[1].r.height = 0;           // empty
    r.pmodes[2].r.width = 48;           // usable
    r.pmodes[2].r.height = 16;
    r.pmodes[9].enabled = 1;  // beyond num_scanouts
    r.pmodes[9].r.width = 8;
    r.pmodes[9].r.height = 8;
  };
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    auto info = gpu->get_display_info();
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->num_scanouts, 3u);
    EXPECT_FALSE(info->modes[0].enabled);
    EXPECT_FALSE(info->modes[1].enabled);
    EXPECT_TRUE(info->modes[2].enabled);
    EXPECT_FALSE(info->modes[9].enabled);
    auto fb = gpu->setup_framebuffer();
    ASSERT_TRUE(fb.has_value());
    EXPECT_EQ(gpu->scanout(), 2u);
    EXPECT_EQ(gpu->width(), 48u);
    EXPECT_EQ(fb->size(), 48u * 16u * 4u);
  }
  rig.expect_no_leaks();
}

// --- EDID (F27) -------------------------------------------------------------------------

TEST_P(GpuErr, OversizedEdidIsClamped) {
  Rig rig(GetParam(), small());
  rig.device().gpu_faults().edid_size_override = 5000;
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    std::array<std::uint8_t, 1024> edid{};
    auto n = gpu->get_edid(0, edid);
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(*n, 1024u);
    EXPECT_EQ(gpu->edid_clamped(), 1u);
    EXPECT_FALSE(gpu->broken());
    // A small destination gets a prefix.
    std::array<std::uint8_t, 16> head{};
    rig.device().gpu_faults().edid_size_override.reset();
    n = gpu->get_edid(0, head);
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(*n, 128u);
    EXPECT_EQ(head[1], 0xff);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, EdidShorterThanItsSizeIsMalformed) {
  Rig rig(GetParam(), small());
  rig.device().gpu_faults().short_response_on_command = 0;
  rig.device().gpu_faults().short_len = 32 + 100;  // size says 128
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    std::array<std::uint8_t, 1024> edid{};
    EXPECT_EQ(err(gpu->get_edid(0, edid)), Error::DeviceBroken);
    EXPECT_EQ(gpu->last_fault(), GpuFault::ShortResponse);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, NoEdidFeatureMeansUnsupported) {
  GpuDeviceConfig c = small();
  c.edid = false;
  Rig rig(GetParam(), c);
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    EXPECT_FALSE(gpu->edid_supported());
    std::array<std::uint8_t, 1024> edid{};
    EXPECT_EQ(err(gpu->get_edid(0, edid)), Error::Unsupported);
    EXPECT_EQ(rig.device().gpu_stats().commands, 0u);
  }
  rig.expect_no_leaks();
}

// --- fences (F27) -------------------------------------------------------------------------

TEST_P(GpuErr, MissingFenceEchoIsCountedNotFatal) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    EXPECT_EQ(dev->inner().bad_fences(), 0u);
    rig.device().gpu_faults().drop_fence = true;
    EXPECT_TRUE(dev->flush().has_value());
    EXPECT_EQ(dev->inner().bad_fences(), 2u);
  }
  rig.expect_no_leaks();
}

// --- a device that stops answering (F20/F21) and one that gives up (F9) ---------------------

TEST_P(GpuErr, StalledControlQueueTimesOutAndResets) {
  Rig rig(GetParam(), small());
  {
    auto gpu = rig.driver();
    ASSERT_TRUE(gpu.has_value());
    gpu->set_poll_limit(5000);
    rig.device().gpu_faults().stall_ctrl = true;
    const auto resets = rig.device().stats().resets;
    EXPECT_EQ(err(gpu->setup_framebuffer()), Error::Timeout);
    EXPECT_EQ(gpu->last_fault(), GpuFault::Timeout);
    EXPECT_TRUE(gpu->broken());
    EXPECT_EQ(rig.device().stats().resets, resets + 1);
    EXPECT_EQ(err(gpu->flush()), Error::DeviceBroken);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, StallAfterConstruction) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    dev->inner().set_poll_limit(5000);
    rig.device().gpu_faults().stall_ctrl = true;
    EXPECT_EQ(err(dev->flush()), DevError::ResourceBusy);  // Timeout
    EXPECT_EQ(rig.device().live_resources(), 0u);          // reset
    EXPECT_EQ(err(dev->flush()), DevError::BadState);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, StalledCursorQueueTimesOut) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    dev->inner().set_poll_limit(5000);
    rig.device().gpu_faults().stall_cursor = true;
    std::vector<std::uint8_t> image(64 * 64 * 4, 1);
    EXPECT_EQ(err(dev->inner().setup_cursor(image, 0, 0, 0, 0)), Error::Timeout);
    EXPECT_TRUE(dev->inner().broken());
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, DeviceNeedsResetIsNoticedWhileWaiting) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    rig.device().set_needs_reset();  // the device stops serving queues (§2.1.2)
    EXPECT_EQ(err(dev->flush()), DevError::BadState);
    EXPECT_EQ(dev->inner().last_fault(), GpuFault::NeedsReset);
  }
  rig.expect_no_leaks();
}

TEST_P(GpuErr, DeviceNeedsResetThroughTheInterrupt) {
  Rig rig(GetParam(), small());
  {
    auto dev = rig.dev();
    ASSERT_TRUE(dev.has_value());
    rig.device().set_needs_reset();
    const std::uint32_t isr = dev->inner().ack_interrupt();
    EXPECT_NE(isr & virtio::interrupt::kConfigChange, 0u);
    EXPECT_TRUE(dev->inner().broken());
    EXPECT_EQ(dev->inner().last_fault(), GpuFault::NeedsReset);
  }
  rig.expect_no_leaks();
}

// F11/F12: queue sizes the device offers. Two entries are enough (one 2-descriptor request in
// flight); one or zero is refused.
TEST_P(GpuErr, QueueSizes) {
  for (std::uint16_t max :
       {std::uint16_t{0}, std::uint16_t{1}, std::uint16_t{2}, std::uint16_t{3}}) {
    SCOPED_TRACE(max);
    Rig rig(GetParam(), small());
    rig.device().faults().queue_max_override = max;
    {
      auto dev = rig.dev();
      ASSERT_EQ(dev.has_value(), max >= 2);
      if (dev) {
        EXPECT_TRUE(dev->flush().has_value());
        std::vector<std::uint8_t> image(64 * 64 * 4, 1);
        EXPECT_TRUE(dev->inner().setup_cursor(image, 0, 0, 0, 0).has_value());
      } else {
        EXPECT_EQ(dev.error(), DevError::BadState);  // QueueUnavailable
      }
    }
    rig.expect_no_leaks();
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, GpuErr,
                         ::testing::Values(Kind::MmioV1, Kind::MmioV2, Kind::Pci),
                         [](const auto& p) { return std::string(kind_name(p.param)); });

// Allocation failure in the guest's DMA allocator (F31) at each allocation of try_new.
TEST(GpuFaultAlloc, DmaFailureAtEachAllocation) {
  for (std::size_t n = 0; n < 5; ++n) {
    SCOPED_TRACE(n);
    Rig rig(Kind::MmioV2, small());
    rig.machine().memory().fail_allocation_after(n);
    {
      // controlq ring, cursorq ring, command page, framebuffer: the first four fail.
      auto dev = rig.dev();
      EXPECT_EQ(dev.has_value(), n >= 4);
      if (dev.has_value()) {
        EXPECT_TRUE(dev->flush().has_value());
      } else {
        EXPECT_EQ(dev.error(), DevError::NoMemory);
      }
    }
    rig.machine().memory().clear_allocation_fault();
    rig.expect_no_leaks();
  }
}

}  // namespace
