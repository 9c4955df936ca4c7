// MmioTransport (legacy v1 and modern v2) and the §3.1.1 init sequence, driven through the
// production transport against the emulator's MMIO register file.
#include <gtest/gtest.h>

#include "axdriver/virtio/probe.h"
#include "support/emu_fixture.h"
#include "virtio/spec/mmio.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::MmioVersion;
using virtio::test::BareDevice;
using virtio::test::EmuPlatform;
namespace status = virtio::status;
namespace feature = virtio::feature;

constexpr std::uint64_t kMac = feature::bit(5);

class MmioInit : public ::testing::TestWithParam<MmioVersion> {
 protected:
  EmuPlatform platform;
  BareDevice device;
  MmioVersion version() const { return GetParam(); }
  bool legacy() const { return version() == MmioVersion::Legacy; }
  auto transport() {
    auto t = platform.mmio_transport(platform.add_mmio(&device, version()));
    EXPECT_TRUE(t);
    return std::move(*t);
  }
};

INSTANTIATE_TEST_SUITE_P(Versions, MmioInit,
                         ::testing::Values(MmioVersion::Legacy, MmioVersion::Modern),
                         [](const auto& param_info) {
                           return param_info.param == MmioVersion::Legacy ? "v1" : "v2";
                         });

TEST_P(MmioInit, FullSequenceReachesDriverOk) {
  auto t = transport();
  EXPECT_EQ(t.version(), version());
  EXPECT_EQ(t.device_type(), virtio::DeviceId::Block);
  auto negotiated = virtio::begin_init(t, virtio::kTransportFeatures | kMac);
  ASSERT_TRUE(negotiated) << virtio::error_name(negotiated.error());
  if (legacy()) {
    // Legacy: no VERSION_1, no FEATURES_OK step.
    EXPECT_EQ(*negotiated, feature::kRingEventIdx | kMac);
    EXPECT_EQ(device.status(), status::kAcknowledge | status::kDriver);
  } else {
    EXPECT_EQ(*negotiated, feature::kVersion1 | feature::kRingEventIdx | kMac);
    EXPECT_EQ(device.status(), status::kAcknowledge | status::kDriver | status::kFeaturesOk);
  }
  EXPECT_EQ(device.driver_features(), *negotiated);
  ASSERT_TRUE(virtio::finish_init(t));
  EXPECT_NE(device.status() & status::kDriverOk, 0);
  EXPECT_EQ(device.driver_ok_calls, 1);
}

TEST_P(MmioInit, NeverAcceptsFeaturesTheDeviceDidNotOffer) {
  auto t = transport();
  auto negotiated = virtio::begin_init(t, ~std::uint64_t{0});
  ASSERT_TRUE(negotiated);
  EXPECT_EQ(*negotiated & ~device.device_features(), 0u);
}

TEST_P(MmioInit, ResetThatNeverCompletesTimesOut) {
  device.faults().reset_never_completes = true;
  auto t = transport();
  t.set_status(status::kAcknowledge);  // something non-zero to (fail to) reset from
  auto r = virtio::begin_init(t, virtio::kTransportFeatures);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::ResetTimeout);
}

TEST_P(MmioInit, QueueNumMaxZeroIsUnavailable) {
  device.faults().queue_max_override = 0;
  auto t = transport();
  ASSERT_TRUE(virtio::begin_init(t, virtio::kTransportFeatures));
  EXPECT_EQ(t.max_queue_size(0), 0u);
  auto r = t.queue_set(0, 16, 0x8000'0000, 0x8000'0100, 0x8000'1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::QueueUnavailable);
}

TEST_P(MmioInit, QueueAlreadyReadyIsAlreadyUsed) {
  device.faults().queue_already_ready = true;
  auto t = transport();
  ASSERT_TRUE(virtio::begin_init(t, virtio::kTransportFeatures));
  EXPECT_TRUE(t.queue_used(0));
  const virtio::PhysAddr desc = 0x8000'0000;
  auto r = t.queue_set(0, 16, desc, desc + virtio::ring::desc_table_size(16),
                       desc + virtio::ring::legacy_used_offset(16));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::AlreadyUsed);
}

TEST_P(MmioInit, QueueSetProgramsTheDevice) {
  auto t = transport();
  ASSERT_TRUE(virtio::begin_init(t, virtio::kTransportFeatures));
  const virtio::PhysAddr desc = 0x8001'0000;
  const virtio::PhysAddr avail = desc + virtio::ring::desc_table_size(64);
  const virtio::PhysAddr used = desc + virtio::ring::legacy_used_offset(64);
  ASSERT_TRUE(t.queue_set(1, 64, desc, avail, used));
  const auto* q = device.queue(1);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(q->ready);
  EXPECT_EQ(q->size, 64);
  EXPECT_EQ(q->desc, desc);
  EXPECT_EQ(q->driver, avail);
  EXPECT_EQ(q->device, used);
  EXPECT_TRUE(t.queue_used(1));
  // Bad sizes are refused by the driver before touching the device.
  EXPECT_EQ(t.queue_set(0, 3, desc, avail, used).error(), Error::InvalidParam);
  EXPECT_EQ(t.queue_set(0, 512, desc, avail, used).error(), Error::InvalidParam);
}

TEST_P(MmioInit, QueueRegistersAreImmutableAfterDriverOk) {
  auto t = transport();
  ASSERT_TRUE(virtio::begin_init(t, virtio::kTransportFeatures));
  const virtio::PhysAddr desc = 0x8001'0000;
  ASSERT_TRUE(t.queue_set(0, 32, desc, desc + virtio::ring::desc_table_size(32),
                          desc + virtio::ring::legacy_used_offset(32)));
  ASSERT_TRUE(virtio::finish_init(t));
  const auto rejected_before = device.stats().rejected_writes;
  // A hostile driver rewrites the queue size and address after activation (CVE-2026-5747).
  t.io().write<std::uint32_t>(virtio::mmio::kQueueSel, 0);
  t.io().write<std::uint32_t>(virtio::mmio::kQueueNum, 8);
  t.io().write<std::uint32_t>(legacy() ? virtio::mmio::kQueuePfn : virtio::mmio::kQueueDescLow,
                              0x1234);
  EXPECT_EQ(device.queue(0)->size, 32);
  EXPECT_EQ(device.queue(0)->desc, desc);
  EXPECT_GT(device.stats().rejected_writes, rejected_before);
}

TEST_P(MmioInit, ConfigSpaceAccessIsBoundedAndAligned) {
  for (std::size_t i = 0; i < 16; ++i)
    device.set_config_byte(i, static_cast<std::uint8_t>(0x10 + i));
  auto t = transport();
  EXPECT_EQ(t.config_space_size(), virtio::emu::MmioDevice::kWindowSize - virtio::mmio::kConfig);
  EXPECT_EQ(*t.read_config_space<std::uint8_t>(1), 0x11);
  EXPECT_EQ(*t.read_config_space<std::uint16_t>(2), 0x1312);
  EXPECT_EQ(*t.read_config_space<std::uint32_t>(4), 0x17161514u);
  EXPECT_EQ(*t.read_config_space<std::uint64_t>(8), 0x1f1e1d1c1b1a1918ull);
  EXPECT_EQ(t.read_config_space<std::uint32_t>(2).error(), Error::InvalidParam);
  EXPECT_EQ(t.read_config_space<std::uint32_t>(t.config_space_size()).error(),
            Error::ConfigSpaceTooSmall);
  EXPECT_EQ(t.read_config_space<std::uint64_t>(t.config_space_size() - 4).error(),
            Error::InvalidParam);
  // Beyond the device's 64-byte config, inside the window: the device answers 0.
  EXPECT_EQ(*t.read_config_space<std::uint32_t>(64), 0u);
}

TEST_P(MmioInit, InterruptAckIgnoresUndefinedBits) {
  auto t = transport();
  ASSERT_TRUE(virtio::begin_init(t, virtio::kTransportFeatures));
  ASSERT_TRUE(virtio::finish_init(t));
  device.raise_used_interrupt();
  EXPECT_EQ(t.ack_interrupt(), virtio::interrupt::kUsedBuffer);
  EXPECT_EQ(device.interrupt_status(), 0u);
  EXPECT_EQ(t.ack_interrupt(), 0u);
}

TEST(MmioInitModern, FeaturesOkRefusedFailsTheDevice) {
  EmuPlatform platform;
  BareDevice device;
  device.faults().refuse_features_ok = true;
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  auto r = virtio::begin_init(t, virtio::kTransportFeatures);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::FeaturesRejected);
  EXPECT_NE(device.status() & status::kFailed, 0);
  EXPECT_EQ(device.status() & (status::kFeaturesOk | status::kDriverOk), 0);
}

TEST(MmioInitModern, DeviceWithoutVersion1IsRefused) {
  EmuPlatform platform;
  BareDevice device;
  device.faults().drop_version_1 = true;
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  auto r = virtio::begin_init(t, virtio::kTransportFeatures);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::Unsupported);
  EXPECT_NE(device.status() & status::kFailed, 0);
}

TEST(MmioInitModern, ConfigGenerationChangingOnEveryReadIsBounded) {
  EmuPlatform platform;
  BareDevice device;
  device.set_config_byte(0, 42);
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  int reads = 0;
  auto read_field = [&]() -> virtio::Result<std::uint8_t> {
    ++reads;
    return t.read_config_space<std::uint8_t>(0);
  };
  auto stable = virtio::read_config_consistent(t, read_field);
  ASSERT_TRUE(stable);
  EXPECT_EQ(*stable, 42);
  EXPECT_EQ(reads, 1);

  device.faults().generation_changes_every_read = true;
  reads = 0;
  auto unstable = virtio::read_config_consistent(t, read_field);
  ASSERT_FALSE(unstable);
  EXPECT_EQ(unstable.error(), Error::ConfigUnstable);
  EXPECT_EQ(reads, static_cast<int>(virtio::kConfigGenerationRetries));
}

TEST(MmioInitModern, SingleGenerationChangeIsRetried) {
  EmuPlatform platform;
  BareDevice device;
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  int reads = 0;
  auto r = virtio::read_config_consistent(t, [&]() -> virtio::Result<std::uint8_t> {
    if (++reads == 1) device.config_changed();  // config changes under the first read
    return t.read_config_space<std::uint8_t>(0);
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(reads, 2);
}

TEST(MmioInitModern, DeviceRefusesStatusWritesThatClearBits) {
  EmuPlatform platform;
  BareDevice device;
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  t.set_status(status::kAcknowledge | status::kDriver);
  t.set_status(status::kAcknowledge);  // clears DRIVER: refused (§2.1.1)
  EXPECT_EQ(device.status(), status::kAcknowledge | status::kDriver);
  t.set_status(status::kAcknowledge | status::kDriver | status::kDriverOk);  // skips FEATURES_OK
  EXPECT_EQ(device.status() & status::kDriverOk, 0);
  EXPECT_GE(device.stats().rejected_writes, 2u);
}

// Found by fuzz_mmio_regs: FEATURES_OK refused and DRIVER_OK written in the same status
// write used to leave the device live without FEATURES_OK (§3.1.1).
TEST(MmioInitModern, DriverOkWrittenWithARefusedFeaturesOkDoesNotLatch) {
  EmuPlatform platform;
  BareDevice device;
  device.faults().refuse_features_ok = true;
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  t.set_status(status::kAcknowledge | status::kDriver | status::kFeaturesOk | status::kDriverOk);
  EXPECT_EQ(device.status(), status::kAcknowledge | status::kDriver);
}

TEST(MmioProbe, HeaderValidation) {
  EmuPlatform platform;
  BareDevice blk;
  const auto good = platform.add_mmio(&blk);
  const auto empty = platform.add_mmio(nullptr);
  BareDevice m2, m3;
  const auto bad_magic = platform.add_mmio(&m2);
  platform.slot(2).faults().magic = 0x12345678;
  const auto bad_version = platform.add_mmio(&m3);
  platform.slot(3).faults().version = 3;

  EXPECT_TRUE(platform.mmio_transport(good));
  EXPECT_EQ(platform.mmio_transport(empty).error(), Error::InvalidDeviceId);
  EXPECT_EQ(platform.mmio_transport(bad_magic).error(), Error::BadMagic);
  EXPECT_EQ(platform.mmio_transport(bad_version).error(), Error::UnsupportedVersion);
  auto small = platform.hal().mmio_map(good, 0x80);
  ASSERT_TRUE(small);
  EXPECT_EQ(virtio::MmioTransport<virtio::emu::EmuIo>::create(*small).error(),
            Error::RegionTooSmall);
}

TEST(MmioProbe, ProbeMmioDeviceSeedSemantics) {
  EmuPlatform platform;
  BareDevice blk(virtio::DeviceId::Block), net(virtio::DeviceId::Network),
      gpu(virtio::DeviceId::Gpu), rng(virtio::DeviceId::EntropySource), bad;
  const auto a = platform.add_mmio(&blk);
  const auto b = platform.add_mmio(&net, MmioVersion::Legacy);
  const auto c = platform.add_mmio(&gpu);
  const auto d = platform.add_mmio(&rng);
  const auto e = platform.add_mmio(nullptr);
  const auto f = platform.add_mmio(&bad);
  platform.slot(5).faults().magic = 0;

  auto& hal = platform.hal();
  using axdriver::DeviceType;
  auto pa = axdriver::virtio::probe_mmio_device(hal, a, 0x200);
  auto pb = axdriver::virtio::probe_mmio_device(hal, b, 0x200);
  auto pc = axdriver::virtio::probe_mmio_device(hal, c, 0x200);
  ASSERT_TRUE(pa && pb && pc);
  EXPECT_EQ(pa->type, DeviceType::Block);
  EXPECT_EQ(pb->type, DeviceType::Net);
  EXPECT_EQ(pb->transport.version(), MmioVersion::Legacy);
  EXPECT_EQ(pc->type, DeviceType::Display);
  EXPECT_FALSE(axdriver::virtio::probe_mmio_device(hal, d, 0x200));            // unsupported type
  EXPECT_FALSE(axdriver::virtio::probe_mmio_device(hal, e, 0x200));            // empty slot
  EXPECT_FALSE(axdriver::virtio::probe_mmio_device(hal, f, 0x200));            // bad magic
  EXPECT_FALSE(axdriver::virtio::probe_mmio_device(hal, 0, 0x200));            // null base
  EXPECT_FALSE(axdriver::virtio::probe_mmio_device(hal, 0x2000'0000, 0x200));  // unmapped
}

TEST(MmioRegisterFile, RejectsWhatTheSpecForbids) {
  EmuPlatform platform;
  BareDevice device(virtio::DeviceId::Block, feature::kVersion1, 2, 128);
  auto t = *platform.mmio_transport(platform.add_mmio(&device));
  const auto& io = t.io();
  ASSERT_TRUE(virtio::begin_init(t, virtio::kTransportFeatures));
  // QueueSel out of range: QueueNumMax reads 0, writes are ignored.
  io.write<std::uint32_t>(virtio::mmio::kQueueSel, 7);
  EXPECT_EQ(io.read<std::uint32_t>(virtio::mmio::kQueueNumMax), 0u);
  io.write<std::uint32_t>(virtio::mmio::kQueueNum, 16);
  // QueueNum > QueueNumMax, or not a power of two: not latched.
  io.write<std::uint32_t>(virtio::mmio::kQueueSel, 0);
  io.write<std::uint32_t>(virtio::mmio::kQueueNum, 256);
  EXPECT_EQ(device.queue(0)->size, 0);
  io.write<std::uint32_t>(virtio::mmio::kQueueNum, 12);
  EXPECT_EQ(device.queue(0)->size, 0);
  io.write<std::uint32_t>(virtio::mmio::kQueueNum, 64);
  EXPECT_EQ(device.queue(0)->size, 64);
  // QueueReady with no size programmed is refused for the other queue.
  io.write<std::uint32_t>(virtio::mmio::kQueueSel, 1);
  io.write<std::uint32_t>(virtio::mmio::kQueueReady, 1);
  EXPECT_FALSE(device.queue(1)->ready);
  // Read-only registers ignore writes; sub-word control accesses are ignored.
  io.write<std::uint32_t>(virtio::mmio::kMagicValue, 0);
  io.write<std::uint32_t>(virtio::mmio::kDeviceId, 9);
  EXPECT_EQ(io.read<std::uint32_t>(virtio::mmio::kMagicValue), virtio::mmio::kMagic);
  EXPECT_EQ(io.read<std::uint32_t>(virtio::mmio::kDeviceId), 2u);
  EXPECT_EQ(io.read<std::uint16_t>(virtio::mmio::kMagicValue), 0u);
  EXPECT_GT(platform.slot(0).bad_accesses(), 0u);
  // A notify for a queue that does not exist is ignored, not a crash.
  t.notify(0xffff);
  // Writing 0 to status resets: queues and features are cleared.
  t.set_status(0);
  EXPECT_EQ(device.status(), 0);
  EXPECT_EQ(device.queue(0)->size, 0);
  EXPECT_EQ(device.driver_features(), 0u);
}

}  // namespace
