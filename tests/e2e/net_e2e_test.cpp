// End to end: the production VirtIoNetDev (NetDriverOps over NetRaw over SplitQueue over the
// real MMIO v1 / MMIO v2 / PCI transports) against the emulated NIC, over each transport.
// Every test ends with the pool invariant (no leak, nothing owned twice): see NetRig.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "e2e/net_harness.h"

namespace {

using namespace virtio;
using namespace virtio::test;
using axdriver::DevError;
using axdriver::NetBufPtr;
using emu::NetDeviceConfig;
using emu::NetFaults;

class NetE2E : public ::testing::TestWithParam<NetTransportKind> {
 protected:
  std::size_t hdr() const { return GetParam() == NetTransportKind::MmioLegacy ? 10 : 12; }

  static std::vector<std::uint32_t> drain(NetRig& rig, std::size_t* corrupted = nullptr) {
    return drain_test_frames(rig, corrupted);
  }
};

TEST_P(NetE2E, NegotiatesHeaderMacLinkAndMtu) {
  NetDeviceConfig cfg;
  cfg.mac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
  cfg.mtu = 1400;
  NetRig rig(GetParam(), cfg);
  ASSERT_TRUE(rig.ok());
  EXPECT_STREQ(rig.dev->device_name(), "virtio-net");
  EXPECT_EQ(rig.dev->device_type(), axdriver::DeviceType::Net);
  EXPECT_EQ(rig.dev->header_len(), hdr());
  EXPECT_EQ(rig.nic->header_len(), hdr());
  EXPECT_EQ(rig.dev->mac_address(), (axdriver::EthernetAddress{cfg.mac}));
  EXPECT_EQ(rig.dev->mtu(), 1400);
  EXPECT_EQ(rig.dev->max_frame_len(), 1414u);
  EXPECT_EQ(rig.dev->rx_queue_size(), 64u);
  EXPECT_EQ(rig.dev->tx_queue_size(), 64u);
  EXPECT_TRUE(rig.dev->link_up());
  rig.nic->set_link(false);
  EXPECT_FALSE(rig.dev->link_up());
  // RX pre-filled with QS buffers, TX free list with QS: the whole pool of 2·QS.
  EXPECT_EQ(rig.dev->rx_posted(), 64u);
  EXPECT_EQ(rig.dev->tx_free_count(), 64u);
  EXPECT_EQ(rig.pool_free_start, 0u);
  EXPECT_EQ(rig.dev->alloc_tx_buffer(1415).error(), DevError::InvalidParam);
  EXPECT_EQ(rig.dev->alloc_tx_buffer(13).error(), DevError::InvalidParam);
  rig.expect_no_leak();
}

TEST_P(NetE2E, LoopbackEveryByteInOrder) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  std::vector<std::uint32_t> got;
  std::uint32_t seq = 0;
  // Sizes sweep 18..1514 (a test frame carries its 4-byte seq after the Ethernet header).
  for (int round = 0; round < 40; ++round) {
    for (int k = 0; k < 25; ++k, ++seq) {
      const std::size_t size = 18 + (seq * 37) % 1497;
      ASSERT_TRUE(rig.send(seq, size).has_value()) << seq;
    }
    const auto part = drain(rig);
    got.insert(got.end(), part.begin(), part.end());
  }
  ASSERT_EQ(got.size(), seq);
  for (std::uint32_t i = 0; i < seq; ++i) EXPECT_EQ(got[i], i);
  // The smallest frame is a bare Ethernet header.
  auto b = rig.dev->alloc_tx_buffer(14);
  ASSERT_TRUE(b.has_value());
  fill_test_frame(b->packet_mut(), rig.mac, 0);
  ASSERT_TRUE(rig.dev->transmit(*b).has_value());
  auto r = rig.dev->receive();
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->packet_len(), 14u);
  EXPECT_TRUE(std::equal(rig.mac.begin(), rig.mac.end(), r->packet().begin()));
  EXPECT_EQ(emu::netpkt::load_be16(r->packet().data() + 12), emu::netpkt::kEtherTypeExperimental);
  ASSERT_TRUE(rig.dev->recycle_rx_buffer(*r).has_value());
  ASSERT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  ++seq;
  const auto st = rig.dev->stats();
  EXPECT_EQ(st.tx_packets, seq);
  EXPECT_EQ(st.rx_packets, seq);
  EXPECT_EQ(st.rx_dropped, 0u);
  EXPECT_EQ(rig.nic->net_stats().rx_frames, seq);
  EXPECT_EQ(rig.dev->tx_in_flight(), 0u);
  rig.expect_no_leak();
}

TEST_P(NetE2E, BurstApiAndInterrupts) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  const auto irqs_before = rig.nic->stats().interrupts;
  std::vector<NetBufPtr> tx, rx(64);
  for (std::uint32_t i = 0; i < 32; ++i) {
    auto b = rig.dev->alloc_tx_buffer(60 + i);
    ASSERT_TRUE(b.has_value());
    fill_test_frame(b->packet_mut(), rig.mac, i);
    tx.push_back(*b);
  }
  const auto notifications = rig.nic->stats().notifications;
  auto sent = rig.dev->transmit_burst(tx);
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(*sent, 32u);
  EXPECT_EQ(rig.nic->stats().notifications, notifications + 1);  // one doorbell per burst
  auto n = rig.dev->receive_burst(rx);
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(*n, 32u);
  for (std::uint32_t i = 0; i < 32; ++i) EXPECT_EQ(check_test_frame(rx[i].packet(), rig.mac), i);
  EXPECT_GT(rig.nic->stats().interrupts, irqs_before);
  EXPECT_NE(rig.dev->ack_interrupt() & interrupt::kUsedBuffer, 0u);
  EXPECT_TRUE(rig.dev->recycle_rx_buffers(std::span<const NetBufPtr>(rx.data(), *n)).has_value());
  EXPECT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  EXPECT_EQ(rig.dev->receive_burst(rx).error(), DevError::Again);
  // Polling mode: no more interrupts.
  rig.dev->disable_interrupts();
  const auto irqs = rig.nic->stats().interrupts;
  ASSERT_TRUE(rig.send(99, 100).has_value());
  drain(rig);
  EXPECT_EQ(rig.nic->stats().interrupts, irqs);
  rig.expect_no_leak();
}

TEST_P(NetE2E, TxRingFullsUpUnderStallsAndDrains) {
  for (const bool stall_rx : {false, true}) {
    NetRig rig(GetParam());
    ASSERT_TRUE(rig.ok());
    NetFaults f;
    // stall_tx: the device takes nothing from the TX ring. stall_rx: it takes nothing because
    // the loopback has no RX buffer to put frames in (back-pressure through the TX ring).
    (stall_rx ? f.stall_rx : f.stall_tx) = true;
    rig.nic->set_net_faults(f);
    for (std::uint32_t seq = 0; seq < 64; ++seq) ASSERT_TRUE(rig.send(seq, 200).has_value()) << seq;
    EXPECT_EQ(rig.dev->tx_in_flight(), 64u);
    EXPECT_EQ(rig.nic->held_tx(), 64);
    EXPECT_FALSE(rig.dev->can_transmit());
    // Every TX buffer is in flight and the pool is empty: nothing to hand out, nothing lost.
    EXPECT_EQ(rig.dev->alloc_tx_buffer(200).error(), DevError::NoMemory);
    EXPECT_EQ(rig.dev->receive().error(), DevError::Again);
    ASSERT_TRUE(rig.dev->recycle_tx_buffers().has_value());
    EXPECT_EQ(rig.dev->tx_in_flight(), 64u);
    rig.nic->set_net_faults(NetFaults{});
    rig.nic->service();
    const auto seqs = drain(rig);
    ASSERT_EQ(seqs.size(), 64u);
    for (std::uint32_t i = 0; i < 64; ++i) EXPECT_EQ(seqs[i], i);
    EXPECT_TRUE(rig.dev->can_transmit());
    rig.expect_no_leak();
  }
}

TEST_P(NetE2E, QueueFullBackPressureWithAHeldBuffer) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  // Take one RX packet and keep it, so the caller holds a valid buffer.
  ASSERT_TRUE(rig.send(1, 64).has_value());
  auto held = rig.dev->receive();
  ASSERT_TRUE(held.has_value());
  ASSERT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  NetFaults f;
  f.stall_tx = true;
  rig.nic->set_net_faults(f);
  for (std::uint32_t s = 0; s < 64; ++s) ASSERT_TRUE(rig.send(100 + s, 64).has_value());
  // Forward the held RX buffer: the TX queue is full -> Again, and the buffer is untouched.
  auto r = rig.dev->transmit(*held);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), DevError::Again);
  EXPECT_EQ(rig.dev->pool().owner(static_cast<std::uint32_t>(held->tag())),
            axdriver::NetBufOwner::Caller);
  f.stall_tx = false;
  rig.nic->set_net_faults(f);
  rig.nic->service();
  EXPECT_EQ(drain(rig).size(), 64u);
  // Now it goes through (a received buffer forwarded as-is: the driver writes a TX header).
  ASSERT_TRUE(rig.dev->transmit(*held).has_value());
  auto back = drain(rig);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], 1u);
  rig.expect_no_leak();
}

TEST_P(NetE2E, RxExhaustionHoldsTxThenRefillDelivers) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  std::vector<NetBufPtr> kept;
  for (std::uint32_t s = 0; s < 64; ++s) {
    ASSERT_TRUE(rig.send(s, 300).has_value());
    auto r = rig.dev->receive();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(check_test_frame(r->packet(), rig.mac), s);
    kept.push_back(*r);
    ASSERT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  }
  EXPECT_EQ(rig.dev->rx_posted(), 0u);  // the caller holds every RX buffer
  for (std::uint32_t s = 64; s < 74; ++s) ASSERT_TRUE(rig.send(s, 300).has_value());
  EXPECT_EQ(rig.dev->receive().error(), DevError::Again);
  EXPECT_EQ(rig.nic->held_tx(), 10);
  EXPECT_EQ(rig.dev->tx_in_flight(), 10u);
  // Refill: the held frames arrive, in order.
  for (const auto& b : kept) ASSERT_TRUE(rig.dev->recycle_rx_buffer(b).has_value());
  const auto seqs = drain(rig);
  ASSERT_EQ(seqs.size(), 10u);
  for (std::uint32_t i = 0; i < 10; ++i) EXPECT_EQ(seqs[i], 64 + i);
  EXPECT_EQ(rig.nic->net_stats().rx_dropped_no_buffer, 0u);
  rig.expect_no_leak();
}

TEST_P(NetE2E, RxExhaustionWithDropPolicyDropsAndCounts) {
  NetDeviceConfig cfg;
  cfg.rx_full = emu::NetRxFullPolicy::Drop;
  NetRig rig(GetParam(), cfg);
  ASSERT_TRUE(rig.ok());
  std::vector<NetBufPtr> kept;
  for (std::uint32_t s = 0; s < 64; ++s) {
    ASSERT_TRUE(rig.send(s, 100).has_value());
    kept.push_back(*rig.dev->receive());
  }
  for (std::uint32_t s = 64; s < 69; ++s) ASSERT_TRUE(rig.send(s, 100).has_value());
  EXPECT_EQ(rig.nic->net_stats().rx_dropped_no_buffer, 5u);
  EXPECT_EQ(rig.nic->held_tx(), 0);
  for (const auto& b : kept) ASSERT_TRUE(rig.dev->recycle_rx_buffer(b).has_value());
  EXPECT_TRUE(drain(rig).empty());
  ASSERT_TRUE(rig.send(7, 100).has_value());
  EXPECT_EQ(drain(rig), std::vector<std::uint32_t>{7});
  rig.expect_no_leak();
}

// --- fault knobs (each: drop/count/recycle, or reset + reclaim + recover) -----------------

// --- ownership at the API boundary ---------------------------------------------------------

TEST_P(NetE2E, InvalidPointersChangeNothingAndNothingIsHandedOutTwice) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  ASSERT_TRUE(rig.send(0, 80).has_value());
  auto p = rig.dev->receive();
  ASSERT_TRUE(p.has_value());
  const NetBufPtr copy = *p;
  ASSERT_TRUE(rig.dev->recycle_rx_buffer(*p).has_value());
  // A stale copy: already given back.
  EXPECT_EQ(rig.dev->recycle_rx_buffer(copy).error(), DevError::InvalidParam);
  EXPECT_EQ(rig.dev->transmit(copy).error(), DevError::InvalidParam);
  // The same buffer handed out again gets a new generation: the old copy stays stale.
  std::set<std::uint32_t> seen;
  std::vector<NetBufPtr> held;
  for (std::uint32_t s = 1; s <= 64; ++s) {
    ASSERT_TRUE(rig.send(s, 80).has_value());
    auto r = rig.dev->receive();
    ASSERT_TRUE(r.has_value());
    const auto idx = static_cast<std::uint32_t>(r->tag());
    EXPECT_TRUE(seen.insert(idx).second) << "buffer " << idx << " handed out twice";
    held.push_back(*r);
    ASSERT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  }
  EXPECT_EQ(rig.dev->recycle_rx_buffer(copy).error(), DevError::InvalidParam);
  // Foreign and forged pointers.
  std::uint8_t outside[64] = {};
  EXPECT_EQ(rig.dev->recycle_rx_buffer(NetBufPtr(outside, outside, 10)).error(),
            DevError::InvalidParam);
  NetBufPtr forged(held[0].raw_ptr(), held[0].buf_ptr(), held[0].packet_len() + 1, held[0].tag());
  EXPECT_EQ(rig.dev->recycle_rx_buffer(forged).error(), DevError::InvalidParam);
  NetBufPtr wrong_index(held[0].raw_ptr(), held[0].buf_ptr(), held[0].packet_len(), held[1].tag());
  EXPECT_EQ(rig.dev->transmit(wrong_index).error(), DevError::InvalidParam);
  EXPECT_EQ(rig.dev->recycle_rx_buffer(NetBufPtr()).error(), DevError::InvalidParam);
  EXPECT_GE(rig.dev->stats().rejected_ptrs, 6u);
  for (const auto& b : held) ASSERT_TRUE(rig.dev->recycle_rx_buffer(b).has_value());
  rig.expect_no_leak();
}

TEST_P(NetE2E, BounceSharingStillDeliversEveryByte) {
  emu::MachineConfig mc;
  mc.share_mode = emu::ShareMode::Bounce;
  NetRig rig(GetParam(), {}, mc);
  ASSERT_TRUE(rig.ok());
  for (std::uint32_t s = 0; s < 100; ++s) ASSERT_TRUE(rig.send(s, 18 + s * 14).has_value());
  const auto seqs = drain(rig);
  ASSERT_EQ(seqs.size(), 100u);
  for (std::uint32_t i = 0; i < 100; ++i) EXPECT_EQ(seqs[i], i);
  rig.expect_no_leak();
  EXPECT_GT(rig.bed.machine().memory().stats().bounces, 0u);
}

TEST_P(NetE2E, DeviceWithSmallerQueuesThanQs) {
  NetDeviceConfig cfg;
  cfg.queue_max = 16;  // the driver asks for 64, gets 16: the rest of the pool stays free
  NetRig rig(GetParam(), cfg);
  ASSERT_TRUE(rig.ok());
  EXPECT_EQ(rig.dev->rx_queue_size(), 16u);
  EXPECT_EQ(rig.dev->tx_queue_size(), 16u);
  EXPECT_EQ(rig.dev->rx_posted(), 16u);
  EXPECT_EQ(rig.pool_free_start, NetDev::kPoolSize - 32);
  // 16 fill the RX ring, 16 more are held in the TX ring, then the TX ring is full (the
  // 33rd buffer comes from the pool, the queue refuses it).
  for (std::uint32_t s = 0; s < 32; ++s) ASSERT_TRUE(rig.send(s, 700).has_value());
  EXPECT_EQ(rig.send(32, 700).error(), DevError::Again);
  const auto seqs = drain(rig);
  ASSERT_EQ(seqs.size(), 32u);  // the held ones follow as the RX ring is refilled
  for (std::uint32_t i = 0; i < 32; ++i) EXPECT_EQ(seqs[i], i);
  rig.expect_no_leak();
}

TEST_P(NetE2E, AllocationFailureAtEverySiteLeavesNothingBehind) {
  emu::NetTestbed bed(GetParam());
  ASSERT_NE(bed.add_nic(), nullptr);
  auto& mem = bed.machine().memory();
  const auto baseline = mem.stats();
  int failures = 0;
  for (std::size_t n = 0; n < 8; ++n) {
    auto t = bed.transport();
    ASSERT_TRUE(t.has_value());
    mem.fail_allocation_after(n);  // F31: the n-th allocation from now fails
    auto d = NetDev::try_new(bed.hal(), std::move(*t));
    mem.clear_allocation_fault();
    if (!d) {
      ++failures;
      EXPECT_EQ(d.error(), DevError::NoMemory) << n;
    }
    // Success or not, once the device is gone nothing of it remains.
    d = DevError::Again;
    EXPECT_EQ(mem.stats().dma_allocations, baseline.dma_allocations) << n;
    EXPECT_EQ(mem.stats().pages_allocated, baseline.pages_allocated) << n;
  }
  EXPECT_GE(failures, 3);  // pool, RX ring, TX ring
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
}

TEST_P(NetE2E, ResetThatNeverCompletesQuarantinesUntilItDoes) {
  NetRig rig(GetParam());
  ASSERT_TRUE(rig.ok());
  rig.nic->faults().reset_never_completes = true;  // F19
  NetFaults f;
  f.len_beyond_buffer = 8;
  rig.nic->set_net_faults(f);
  ASSERT_TRUE(rig.send(0, 64).has_value());
  EXPECT_EQ(rig.dev->receive().error(), DevError::BadState);
  EXPECT_TRUE(rig.dev->dead());
  // The device may still write the RX buffers and read the TX one: quarantined, not freed.
  auto a = rig.dev->audit();
  EXPECT_TRUE(a.consistent);
  EXPECT_EQ(a.quarantined, 64u + 1);
  EXPECT_EQ(a.pool_free, 0u);
  EXPECT_EQ(rig.dev->recover().error(), DevError::BadState);  // still cannot reset it
  EXPECT_EQ(rig.dev->audit().quarantined, 65u);
  rig.nic->faults().reset_never_completes = false;
  rig.nic->set_net_faults(NetFaults{});
  ASSERT_TRUE(rig.dev->recover().has_value());
  EXPECT_EQ(rig.dev->audit().quarantined, 0u);
  ASSERT_TRUE(rig.send(1, 64).has_value());
  EXPECT_EQ(drain(rig), std::vector<std::uint32_t>{1});
  rig.expect_no_leak();
}

TEST_P(NetE2E, SharingFailureOnRepostKeepsTheBufferAndRefillsLater) {
  emu::MachineConfig mc;
  mc.share_mode = emu::ShareMode::Bounce;  // every share allocates a bounce page
  NetRig rig(GetParam(), {}, mc);
  ASSERT_TRUE(rig.ok());
  ASSERT_TRUE(rig.send(0, 100).has_value());
  auto r = rig.dev->receive();
  ASSERT_TRUE(r.has_value());
  auto& mem = rig.bed.machine().memory();
  mem.fail_allocation_after(0);  // the re-post's share fails (F31)
  auto back = rig.dev->recycle_rx_buffer(*r);
  mem.clear_allocation_fault();
  ASSERT_FALSE(back.has_value());
  EXPECT_EQ(back.error(), DevError::NoMemory);
  // Taken anyway: parked in the pool, the ring one short, nothing lost.
  EXPECT_EQ(rig.dev->recycle_rx_buffer(*r).error(), DevError::InvalidParam);
  EXPECT_EQ(rig.dev->rx_posted(), 63u);
  EXPECT_EQ(rig.dev->pool().free_count(), 1u);
  EXPECT_EQ(rig.dev->stats().rx_repost_failures, 1u);
  EXPECT_TRUE(rig.dev->audit().consistent);
  // The next receive that finds nothing tops the ring up from the pool.
  EXPECT_EQ(rig.dev->receive().error(), DevError::Again);
  EXPECT_EQ(rig.dev->rx_posted(), 64u);
  ASSERT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  ASSERT_TRUE(rig.send(1, 100).has_value());
  EXPECT_EQ(drain(rig), std::vector<std::uint32_t>{1});
  rig.expect_no_leak();
}

INSTANTIATE_TEST_SUITE_P(Transports, NetE2E,
                         ::testing::Values(NetTransportKind::MmioLegacy, NetTransportKind::Mmio,
                                           NetTransportKind::Pci),
                         kind_name);

}  // namespace
