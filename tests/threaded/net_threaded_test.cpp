// The emulated NIC on its own device thread (NotifyMode::Threaded) with the production driver
// polling from the test thread: loopback and a pair of NICs exchange every frame intact and
// in order, and no buffer is lost. Run under TSan in CI (label threaded).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "e2e/net_harness.h"
#include "virtio/barrier.h"

namespace {

using namespace virtio;
using namespace virtio::test;
using Clock = std::chrono::steady_clock;

emu::MachineConfig threaded() {
  emu::MachineConfig c;
  c.notify_mode = emu::NotifyMode::Threaded;
  c.ram_size = std::size_t{16} << 20;
  return c;
}

// Sends `count` frames from `tx` to `rx` (MAC `dst`), receiving as they arrive; every frame
// must come back intact and in order within the deadline.
void stream(NetDev& tx, NetDev& rx, const emu::netpkt::Mac& dst, std::uint32_t count) {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  std::uint32_t sent = 0, got = 0;
  while (got < count) {
    ASSERT_LT(Clock::now(), deadline) << "sent " << sent << ", received " << got;
    if (sent < count) {
      (void)tx.recycle_tx_buffers();
      if (auto b = tx.alloc_tx_buffer(64 + sent % 1400)) {
        fill_test_frame(b->packet_mut(), dst, sent);
        if (tx.transmit(*b)) {
          ++sent;
        } else {
          (void)tx.recycle_rx_buffer(*b);
        }
      }
    }
    auto r = rx.receive();
    if (!r) {
      ASSERT_EQ(r.error(), axdriver::DevError::Again);
      cpu_relax();
      continue;
    }
    ASSERT_EQ(check_test_frame(r->packet(), dst), got);
    ++got;
    ASSERT_TRUE(rx.recycle_rx_buffer(*r).has_value());
  }
  // The last TX completions may still be on their way.
  while (tx.tx_in_flight() != 0) {
    ASSERT_LT(Clock::now(), deadline);
    ASSERT_TRUE(tx.recycle_tx_buffers().has_value());
    cpu_relax();
  }
}

void expect_clean(NetDev& dev) {
  const auto a = dev.audit();
  EXPECT_TRUE(a.consistent);
  EXPECT_EQ(a.caller, 0u);
  EXPECT_EQ(dev.pool().free_count(), 0u);
}

class NetThreaded : public ::testing::TestWithParam<NetTransportKind> {};

TEST_P(NetThreaded, LoopbackOnADeviceThread) {
  NetRig rig(GetParam(), {}, threaded());
  ASSERT_TRUE(rig.ok());
  stream(*rig.dev, *rig.dev, rig.mac, 3000);
  expect_clean(*rig.dev);
  EXPECT_EQ(rig.nic->net_stats().rx_frames, 3000u);
}

TEST_P(NetThreaded, PairOnTwoDeviceThreads) {
  emu::NetTestbed bed(GetParam(), threaded());
  emu::NetDeviceConfig ca, cb;
  ca.mac = {0x52, 0x54, 0, 0, 0, 0xa};
  cb.mac = {0x52, 0x54, 0, 0, 0, 0xb};
  emu::NetDevice* a = bed.add_nic(ca);
  emu::NetDevice* b = bed.add_nic(cb);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  emu::NetDevice::connect(*a, *b);  // before the drivers start: no device touches peers yet
  auto ta = bed.transport(0);
  auto tb = bed.transport(1);
  ASSERT_TRUE(ta && tb);
  auto da = NetDev::try_new(bed.hal(), std::move(*ta));
  auto db = NetDev::try_new(bed.hal(), std::move(*tb));
  ASSERT_TRUE(da && db);
  stream(*da, *db, cb.mac, 2000);
  stream(*db, *da, ca.mac, 2000);
  expect_clean(*da);
  expect_clean(*db);
}

INSTANTIATE_TEST_SUITE_P(Transports, NetThreaded,
                         ::testing::Values(NetTransportKind::MmioLegacy, NetTransportKind::Mmio,
                                           NetTransportKind::Pci),
                         kind_name);

}  // namespace
