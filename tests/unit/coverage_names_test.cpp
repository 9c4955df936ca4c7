// Lines of core/ that neither the other tests nor the fuzz corpora reached (docs/FUZZING.md,
// Coverage): the name tables used by logs and JSON, the transitional PCI id table, and the
// legacy-MMIO queue layout check. Each name must be non-null, non-empty and distinct.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>

#include "axdriver/base.h"
#include "support/emu_fixture.h"
#include "virtio/emu/test_device.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"

namespace {

using virtio::DeviceId;
using virtio::Error;

TEST(CoverageNames, EveryErrorHasADistinctName) {
  std::set<std::string> names;
  for (int e = 0; e <= static_cast<int>(Error::Timeout); ++e) {
    const char* n = virtio::error_name(static_cast<Error>(e));
    ASSERT_NE(n, nullptr);
    EXPECT_GT(std::strlen(n), 0u);
    EXPECT_STRNE(n, "Unknown") << e;
    names.insert(n);
  }
  EXPECT_EQ(names.size(), static_cast<std::size_t>(Error::Timeout) + 1);
  EXPECT_STREQ(virtio::error_name(static_cast<Error>(200)), "Unknown");
}

TEST(CoverageNames, EveryKnownDeviceIdHasAName) {
  std::set<std::string> names;
  for (std::uint32_t id = 1; id <= 25; ++id) {
    const char* n = virtio::device_id_name(static_cast<DeviceId>(id));
    ASSERT_NE(n, nullptr);
    if (virtio::is_known_device_id(id)) {
      EXPECT_STRNE(n, "unknown") << id;
      names.insert(n);
    } else {
      EXPECT_STREQ(n, "unknown") << id;
    }
  }
  EXPECT_EQ(names.size(), 23u);  // 1..25 without 14 and 15
  EXPECT_STREQ(virtio::device_id_name(DeviceId::Invalid), "unknown");
}

TEST(CoverageNames, AxdriverErrorsAndTypes) {
  std::set<std::string> messages;
  for (int e = 0; e <= static_cast<int>(axdriver::DevError::Unsupported); ++e) {
    const char* m = axdriver::dev_error_message(static_cast<axdriver::DevError>(e));
    ASSERT_NE(m, nullptr);
    messages.insert(m);
  }
  EXPECT_EQ(messages.size(), static_cast<std::size_t>(axdriver::DevError::Unsupported) + 1);
  EXPECT_STREQ(axdriver::dev_error_message(static_cast<axdriver::DevError>(99)), "Unknown error");
  EXPECT_STREQ(axdriver::device_type_name(axdriver::DeviceType::Block), "Block");
  EXPECT_STREQ(axdriver::device_type_name(axdriver::DeviceType::Char), "Char");
  EXPECT_STREQ(axdriver::device_type_name(axdriver::DeviceType::Net), "Net");
  EXPECT_STREQ(axdriver::device_type_name(axdriver::DeviceType::Display), "Display");
  EXPECT_STREQ(axdriver::device_type_name(static_cast<axdriver::DeviceType>(9)), "Unknown");
}

TEST(CoverageNames, TransitionalPciIdTable) {
  // §4.1.2.1.
  EXPECT_EQ(virtio::transitional_device_type(0x1000), DeviceId::Network);
  EXPECT_EQ(virtio::transitional_device_type(0x1001), DeviceId::Block);
  EXPECT_EQ(virtio::transitional_device_type(0x1002), DeviceId::MemoryBallooning);
  EXPECT_EQ(virtio::transitional_device_type(0x1003), DeviceId::Console);
  EXPECT_EQ(virtio::transitional_device_type(0x1004), DeviceId::ScsiHost);
  EXPECT_EQ(virtio::transitional_device_type(0x1005), DeviceId::EntropySource);
  EXPECT_EQ(virtio::transitional_device_type(0x1009), DeviceId::P9);
  EXPECT_EQ(virtio::transitional_device_type(0x1006), std::nullopt);
}

TEST(CoverageNames, LegacyQueueSetRefusesAnotherLayout) {
  // §2.7.2: on MMIO v1 the three parts must be where the legacy layout puts them.
  virtio::test::EmuPlatform p;
  virtio::emu::TestDevice dev(DeviceId::EntropySource, 1, 16, 0);
  auto t = p.mmio_transport(p.add_mmio(&dev, virtio::MmioVersion::Legacy));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(virtio::begin_init(*t, virtio::kTransportFeatures).has_value());
  const virtio::PhysAddr desc = 0x8000'0000;
  auto r = t->queue_set(0, 16, desc, desc + 0x100, desc + 0x200);  // used not at the 4 KiB boundary
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Error::InvalidParam);
  auto m = t->queue_set(0, 16, desc + 8, desc + 8 + 0x100,
                        desc + 8 + virtio::ring::legacy_used_offset(16));
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error(), Error::Misaligned);
}

}  // namespace
