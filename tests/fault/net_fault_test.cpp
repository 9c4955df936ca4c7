// Fault scenarios for the net stack (reference/hardening-fuzzing-device-models.md §6(b)):
// the emulated NIC misbehaves through its fault knobs and the production VirtIoNetDev must
// drop and count, or fail with BadState and recover, never lose or double-hand a buffer.
// Every scenario runs over MMIO v1, MMIO v2 and PCI and ends with the pool invariant.
//
//   F4/F5 used id out of range / not outstanding -> dead, reclaimed, recover() works
//   F6  used len beyond the posted buffer         -> dead, every buffer reclaimed, recover()
//   F7  RX completion shorter than header+Ethernet -> dropped, counted, buffer reposted
//   F9  DEVICE_NEEDS_RESET                         -> noticed on the config interrupt, recover()
//   F20 RX stalled                                 -> TX held, nothing lost, resumes in order
//   F26 bad RX header fields (num_buffers, GSO, NEEDS_CSUM, unknown flags) -> dropped and
//       counted, or accepted where the spec allows; the buffer always goes back
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "e2e/net_harness.h"

namespace {

using namespace virtio;
using namespace virtio::test;
using axdriver::DevError;
using emu::NetFaults;

class NetFault : public ::testing::TestWithParam<NetTransportKind> {
 protected:
  std::size_t hdr() const { return GetParam() == NetTransportKind::MmioLegacy ? 10 : 12; }
  static std::vector<std::uint32_t> drain(NetRig& rig) { return drain_test_frames(rig); }
};

TEST_P(NetFault, DeviceDropsEveryOtherFrameCountedNothingLost) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  NetFaults f;
  f.drop_every = 2;
  rig.nic->set_net_faults(f);
  for (std::uint32_t s = 0; s < 20; ++s) ASSERT_TRUE(rig.send(s, 128).has_value());
  const auto seqs = drain(rig);
  ASSERT_EQ(seqs.size(), 10u);
  for (std::uint32_t i = 0; i < 10; ++i) EXPECT_EQ(seqs[i], 2 * i);
  EXPECT_EQ(rig.nic->net_stats().rx_dropped_fault, 10u);
  rig.expect_no_leak();
}

TEST_P(NetFault, F07_TruncatedRxCompletionIsDroppedAndReposted) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  NetFaults f;
  f.only_frame = 3;
  f.truncate_to = static_cast<std::uint32_t>(hdr() + 13);  // one byte short of a frame
  rig.nic->set_net_faults(f);
  for (std::uint32_t s = 0; s < 8; ++s) ASSERT_TRUE(rig.send(s, 500).has_value());
  const auto seqs = drain(rig);
  EXPECT_EQ(seqs, (std::vector<std::uint32_t>{0, 1, 2, 4, 5, 6, 7}));
  EXPECT_EQ(rig.dev->stats().rx_dropped, 1u);
  EXPECT_EQ(rig.dev->raw_stats().rx_short, 1u);
  EXPECT_EQ(rig.dev->rx_posted(), 64u);  // bug 7: the ring keeps its size
  // Truncated but still a frame: delivered short (the driver cannot know), bytes intact.
  f.only_frame = 9;
  f.truncate_to = static_cast<std::uint32_t>(hdr() + 100);
  rig.nic->set_net_faults(f);
  for (std::uint32_t s = 8; s < 11; ++s) ASSERT_TRUE(rig.send(s, 500).has_value());
  std::vector<std::size_t> lens;
  for (;;) {
    auto r = rig.dev->receive();
    if (!r) break;
    lens.push_back(r->packet_len());
    EXPECT_TRUE(check_test_frame(r->packet(), rig.mac).has_value());  // a correct prefix
    ASSERT_TRUE(rig.dev->recycle_rx_buffer(*r).has_value());
  }
  EXPECT_EQ(lens, (std::vector<std::size_t>{500, 100, 500}));
  rig.expect_no_leak();
}

TEST_P(NetFault, F26_BadRxHeaderFieldsAreDroppedCountedAndRecycled) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  struct Case {
    const char* name;
    NetFaults f;
    bool dropped;
  };
  std::vector<Case> cases;
  {
    NetFaults f;
    f.num_buffers = 2;
    cases.push_back({"num_buffers=2", f, hdr() == 12});  // no num_buffers in the legacy header
  }
  {
    NetFaults f;
    f.num_buffers = 0;  // QEMU leaves it unwritten without MRG_RXBUF: accepted
    cases.push_back({"num_buffers=0", f, false});
  }
  {
    NetFaults f;
    f.gso_type = net::kGsoTcpV4;
    cases.push_back({"gso_type=TCPV4", f, true});
  }
  {
    NetFaults f;
    f.hdr_flags = net::kHdrFNeedsCsum;
    f.csum_start = 60000;  // beyond the packet
    f.csum_offset = 6;
    cases.push_back({"NEEDS_CSUM", f, true});
  }
  {
    NetFaults f;
    f.hdr_flags = static_cast<std::uint8_t>(net::kHdrFDataValid | 0x80);  // DATA_VALID + unknown
    f.csum_start = 60000;                                                 // ignored
    cases.push_back({"unknown flags", f, false});
  }
  std::uint32_t seq = 0;
  std::uint64_t dropped = 0;
  for (auto& c : cases) {
    c.f.only_frame = rig.nic->net_stats().rx_frames + rig.nic->net_stats().rx_dropped_fault + 1;
    rig.nic->set_net_faults(c.f);
    const std::uint32_t first = seq;
    for (int k = 0; k < 3; ++k, ++seq) ASSERT_TRUE(rig.send(seq, 90).has_value());
    const auto seqs = drain(rig);
    if (c.dropped) {
      EXPECT_EQ(seqs, (std::vector<std::uint32_t>{first, first + 2})) << c.name;
      ++dropped;
    } else {
      EXPECT_EQ(seqs, (std::vector<std::uint32_t>{first, first + 1, first + 2})) << c.name;
    }
    EXPECT_EQ(rig.dev->stats().rx_dropped, dropped) << c.name;
    EXPECT_EQ(rig.dev->rx_posted(), 64u) << c.name;
  }
  rig.expect_no_leak();
}

TEST_P(NetFault, F06_RxLenBeyondBufferResetsReclaimsAndRecovers) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  NetFaults f;
  f.only_frame = 2;
  f.len_beyond_buffer = 1;
  rig.nic->set_net_faults(f);
  for (std::uint32_t s = 0; s < 4; ++s) ASSERT_TRUE(rig.send(s, 64).has_value());
  auto a = rig.dev->receive();
  ASSERT_TRUE(a.has_value());
  auto b = rig.dev->receive();
  ASSERT_TRUE(b.has_value());
  // The third completion lies about its length (T15): the device is reset, everything it
  // held is reclaimed, and the driver refuses service until recover().
  auto c = rig.dev->receive();
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error(), DevError::BadState);
  EXPECT_TRUE(rig.dev->dead());
  EXPECT_EQ(rig.dev->stats().device_failures, 1u);
  EXPECT_EQ(rig.dev->rx_posted(), 0u);
  EXPECT_EQ(rig.dev->alloc_tx_buffer(64).error(), DevError::BadState);
  EXPECT_FALSE(rig.dev->can_transmit());
  // Buffers the caller held are still valid and come back.
  EXPECT_EQ(rig.dev->recycle_rx_buffer(*a).error(), DevError::BadState);
  EXPECT_EQ(rig.dev->recycle_rx_buffer(*a).error(), DevError::InvalidParam);  // already back
  (void)rig.dev->recycle_rx_buffer(*b);
  auto audit = rig.dev->audit();
  EXPECT_TRUE(audit.consistent);
  EXPECT_EQ(audit.caller, 0u);
  rig.nic->set_net_faults(NetFaults{});
  ASSERT_TRUE(rig.dev->recover().has_value());
  EXPECT_FALSE(rig.dev->dead());
  EXPECT_EQ(rig.dev->rx_posted(), 64u);
  for (std::uint32_t s = 10; s < 15; ++s) ASSERT_TRUE(rig.send(s, 64).has_value());
  EXPECT_EQ(drain(rig), (std::vector<std::uint32_t>{10, 11, 12, 13, 14}));
  rig.expect_no_leak();
}

TEST_P(NetFault, F04_F05_UsedIdOutOfRangeOrNotOutstandingBreaksThenRecovers) {
  for (std::uint32_t bad : {1000u, 0xffffffffu, 0u}) {
    NetRig rig(GetParam());
    ASSERT_TRUE(rig.ok());
    // Frame 0 lands in token 0 (the first posted buffer); the caller keeps it, so token 0
    // is not outstanding when frame 1 claims to complete it.
    ASSERT_TRUE(rig.send(0, 64).has_value());
    auto kept = rig.dev->receive();
    ASSERT_TRUE(kept.has_value());
    NetFaults f;
    f.only_frame = 1;
    f.used_id = bad;
    rig.nic->set_net_faults(f);
    ASSERT_TRUE(rig.send(1, 64).has_value());
    auto r = rig.dev->receive();
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error(), DevError::BadState) << bad;
    EXPECT_TRUE(rig.dev->dead());
    EXPECT_EQ(rig.dev->recycle_tx_buffers().error(), DevError::BadState);
    (void)rig.dev->recycle_rx_buffer(*kept);
    rig.nic->set_net_faults(NetFaults{});
    ASSERT_TRUE(rig.dev->recover().has_value());
    ASSERT_TRUE(rig.send(2, 64).has_value());
    EXPECT_EQ(drain(rig), std::vector<std::uint32_t>{2});
    rig.expect_no_leak();
  }
}

TEST_P(NetFault, F20_StalledRxThenResumes) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  NetFaults f;
  f.stall_rx = true;
  rig.nic->set_net_faults(f);
  for (std::uint32_t s = 0; s < 20; ++s) ASSERT_TRUE(rig.send(s, 64).has_value());
  EXPECT_EQ(rig.dev->receive().error(), DevError::Again);
  EXPECT_FALSE(rig.dev->can_receive());
  EXPECT_EQ(rig.nic->held_tx(), 20);
  rig.nic->set_net_faults(NetFaults{});
  rig.nic->service();
  const auto seqs = drain(rig);
  ASSERT_EQ(seqs.size(), 20u);
  for (std::uint32_t i = 0; i < 20; ++i) EXPECT_EQ(seqs[i], i);
  rig.expect_no_leak();
}

TEST_P(NetFault, F09_DeviceNeedsResetIsNoticedAndRecovered) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  ASSERT_TRUE(rig.send(0, 64).has_value());
  auto kept = rig.dev->receive();
  ASSERT_TRUE(kept.has_value());
  ASSERT_TRUE(rig.send(1, 64).has_value());  // in the RX ring when the device gives up
  rig.nic->set_needs_reset();                // F9
  EXPECT_NE(rig.dev->ack_interrupt() & interrupt::kConfigChange, 0u);
  EXPECT_TRUE(rig.dev->dead());
  EXPECT_EQ(rig.dev->receive().error(), DevError::BadState);
  EXPECT_EQ(rig.dev->check_device_status().error(), DevError::BadState);
  (void)rig.dev->recycle_rx_buffer(*kept);
  ASSERT_TRUE(rig.dev->recover().has_value());
  ASSERT_TRUE(rig.send(2, 64).has_value());
  EXPECT_EQ(drain(rig), std::vector<std::uint32_t>{2});
  rig.expect_no_leak();
}

INSTANTIATE_TEST_SUITE_P(Transports, NetFault,
                         ::testing::Values(NetTransportKind::MmioLegacy, NetTransportKind::Mmio,
                                           NetTransportKind::Pci),
                         kind_name);

}  // namespace
