// virtio::NetRaw (devices/include/virtio/drivers/net.h) against the emulated NIC: the seed's
// raw API, negotiation, config rules (T11/F24), buffer validation, T19 checks, restart.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "virtio/drivers/net.h"
#include "virtio/emu/net_device.h"
#include "virtio/emu/net_testbed.h"

namespace {

using namespace virtio;
using emu::NetDeviceConfig;
using emu::NetTestbed;
using emu::NetTransportKind;
using Raw = NetRaw<emu::EmuHal, NetTestbed::Any, 16>;

struct RawRig {
  explicit RawRig(NetTransportKind kind, NetDeviceConfig cfg = {}) : bed(kind) {
    nic = bed.add_nic(cfg);
    auto t = bed.transport();
    if (!t) {
      ADD_FAILURE() << error_name(t.error());
      return;
    }
    auto r = Raw::create(bed.hal(), std::move(*t));
    if (!r) {
      ADD_FAILURE() << error_name(r.error());
      return;
    }
    raw.emplace(std::move(*r));
  }
  NetTestbed bed;
  emu::NetDevice* nic = nullptr;
  std::optional<Raw> raw;
};

// A buffer in guest RAM (what a kernel's DMA buffer would be), 2 KiB.
struct Buf {
  explicit Buf(emu::EmuHal hal) {
    auto a = hal.dma_alloc(1, BufferDirection::Both);
    EXPECT_TRUE(a.has_value());
    p = a->vaddr;
  }
  std::span<std::uint8_t> span(std::size_t n) const { return {p, n}; }
  std::uint8_t* p = nullptr;
};

class NetRawTest : public ::testing::TestWithParam<NetTransportKind> {};

TEST_P(NetRawTest, NegotiatesFeaturesAndHeader) {
  RawRig rig(GetParam());
  ASSERT_TRUE(rig.raw.has_value());
  const std::uint64_t f = rig.raw->features();
  EXPECT_NE(f & net::kFMac, 0u);
  EXPECT_NE(f & net::kFStatus, 0u);
  EXPECT_NE(f & net::kFMtu, 0u);
  EXPECT_NE(f & feature::kRingEventIdx, 0u);
  EXPECT_NE(f & feature::kRingIndirectDesc, 0u);
  const bool legacy = GetParam() == NetTransportKind::MmioLegacy;
  EXPECT_EQ((f & feature::kVersion1) != 0, !legacy);
  EXPECT_EQ(rig.raw->header_len(), legacy ? 10u : 12u);
  EXPECT_EQ(rig.raw->legacy_header(), legacy);
  EXPECT_EQ(rig.raw->rx_queue_size(), 16);
  EXPECT_EQ(rig.raw->tx_queue_size(), 16);
  EXPECT_EQ(rig.raw->mac_address(),
            (std::array<std::uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
  EXPECT_TRUE(rig.raw->config().mac_from_device);
  EXPECT_EQ(rig.raw->mtu(), 1500);
  EXPECT_TRUE(rig.raw->link_up());
  EXPECT_TRUE(rig.nic->driver_ok());
}

TEST_P(NetRawTest, SeedApiRoundTrip) {
  RawRig rig(GetParam());
  ASSERT_TRUE(rig.raw.has_value());
  Raw& raw = *rig.raw;
  const std::size_t hdr = raw.header_len();
  Buf rx(rig.bed.hal()), tx(rig.bed.hal());
  auto rx_token = raw.receive_begin(rx.span(1526));
  ASSERT_TRUE(rx_token.has_value());
  EXPECT_EQ(raw.poll_receive().error(), Error::NotReady);

  std::memset(tx.p, 0xee, 64);
  auto hl = raw.fill_buffer_header(tx.span(2048));
  ASSERT_TRUE(hl.has_value());
  EXPECT_EQ(*hl, hdr);
  for (std::size_t i = 0; i < hdr; ++i) EXPECT_EQ(tx.p[i], 0) << i;
  for (std::size_t i = 0; i < 100; ++i) tx.p[hdr + i] = static_cast<std::uint8_t>(i);
  EXPECT_TRUE(raw.can_send());
  auto tx_token = raw.transmit_begin(tx.span(hdr + 100));
  ASSERT_TRUE(tx_token.has_value());

  auto done = raw.poll_transmit();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(*done, *tx_token);
  EXPECT_EQ(
      raw.transmit_complete(static_cast<std::uint16_t>(*tx_token + 1), tx.span(hdr + 100)).error(),
      Error::WrongToken);
  ASSERT_TRUE(raw.transmit_complete(*tx_token, tx.span(hdr + 100)).has_value());

  auto got = raw.poll_receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, *rx_token);
  auto pkt = raw.receive_complete(*got, rx.span(1526));
  ASSERT_TRUE(pkt.has_value());
  EXPECT_EQ(pkt->hdr_len, hdr);
  EXPECT_EQ(pkt->pkt_len, 100u);
  for (std::size_t i = 0; i < 100; ++i) EXPECT_EQ(rx.p[hdr + i], i);
  // The device's header: flags 0, GSO_NONE, num_buffers 1 with VERSION_1.
  EXPECT_EQ(rx.p[0], 0);
  EXPECT_EQ(rx.p[1], net::kGsoNone);
  if (hdr == 12) {
    EXPECT_EQ(rx.p[10] | rx.p[11] << 8, 1);
  }
}

TEST_P(NetRawTest, BufferSizesAreValidated) {
  RawRig rig(GetParam());
  ASSERT_TRUE(rig.raw.has_value());
  Raw& raw = *rig.raw;
  const std::size_t hdr = raw.header_len();
  Buf b(rig.bed.hal());
  EXPECT_EQ(raw.receive_begin(b.span(1525)).error(), Error::InvalidParam);  // < MIN_BUFFER_LEN
  EXPECT_EQ(raw.fill_buffer_header(b.span(hdr - 1)).error(), Error::InvalidParam);
  EXPECT_EQ(raw.transmit_begin(b.span(hdr + 13)).error(), Error::InvalidParam);    // < Ethernet
  EXPECT_EQ(raw.transmit_begin(b.span(hdr + 1515)).error(), Error::InvalidParam);  // > 14 + mtu
  EXPECT_EQ(raw.max_frame_len(), 1514u);
  EXPECT_EQ(raw.tx_queue().outstanding(), 0);
  EXPECT_EQ(raw.rx_queue().outstanding(), 0);
}

TEST_P(NetRawTest, CheckRxAppliesT19) {
  RawRig rig(GetParam());
  ASSERT_TRUE(rig.raw.has_value());
  Raw& raw = *rig.raw;
  const std::size_t hdr = raw.header_len();
  std::array<std::uint8_t, 1526> b{};
  EXPECT_TRUE(raw.check_rx(b, static_cast<std::uint32_t>(hdr + 14)).has_value());
  EXPECT_EQ(raw.check_rx(b, static_cast<std::uint32_t>(hdr + 13)).error(), Error::IoError);
  EXPECT_EQ(raw.check_rx(b, 1527).error(), Error::IoError);  // more than the buffer
  b[0] = net::kHdrFNeedsCsum;
  EXPECT_EQ(raw.check_rx(b, 100).error(), Error::IoError);
  b[0] = net::kHdrFDataValid | net::kHdrFRscInfo | 0xf0;  // ignored
  EXPECT_TRUE(raw.check_rx(b, 100).has_value());
  b[1] = net::kGsoUdp;
  EXPECT_EQ(raw.check_rx(b, 100).error(), Error::IoError);
  b[1] = 0;
  b[10] = 2;  // num_buffers 2 (a payload byte with the legacy header)
  EXPECT_EQ(raw.check_rx(b, 100).has_value(), hdr == 10);
  b[10] = 0;  // QEMU's unwritten num_buffers
  EXPECT_TRUE(raw.check_rx(b, 100).has_value());
  const auto& st = raw.stats();
  EXPECT_EQ(st.rx_short, 2u);
  EXPECT_EQ(st.rx_csum, 1u);
  EXPECT_EQ(st.rx_gso, 1u);
  EXPECT_EQ(st.rx_num_buffers, hdr == 12 ? 1u : 0u);
}

TEST_P(NetRawTest, ResetDetachRestart) {
  RawRig rig(GetParam());
  ASSERT_TRUE(rig.raw.has_value());
  Raw& raw = *rig.raw;
  Buf rx1(rig.bed.hal()), rx2(rig.bed.hal()), tx(rig.bed.hal());
  ASSERT_TRUE(raw.receive_begin(rx1.span(1526)).has_value());
  ASSERT_TRUE(raw.receive_begin(rx2.span(1526)).has_value());
  EXPECT_EQ(raw.restart().error(), Error::InvalidParam);  // buffers still outstanding
  ASSERT_TRUE(raw.reset().has_value());
  EXPECT_EQ(rig.nic->status(), 0);
  int detached = 0;
  while (raw.detach_rx()) ++detached;
  EXPECT_EQ(detached, 2);
  EXPECT_FALSE(raw.detach_tx().has_value());
  ASSERT_TRUE(raw.restart().has_value());
  EXPECT_TRUE(rig.nic->driver_ok());
  ASSERT_TRUE(raw.receive_begin(rx1.span(1526)).has_value());
  const std::size_t hdr = raw.header_len();
  std::memset(tx.p, 0, hdr);
  std::memset(tx.p + hdr, 0x42, 60);
  ASSERT_TRUE(raw.transmit_begin(tx.span(hdr + 60)).has_value());
  auto used = raw.pop_receive();
  ASSERT_TRUE(used.has_value());
  auto pkt = raw.check_rx(rx1.span(1526), used->len);
  ASSERT_TRUE(pkt.has_value());
  EXPECT_EQ(pkt->pkt_len, 60u);
}

TEST_P(NetRawTest, ShortTxChainIsADeviceSideProtocolError) {
  RawRig rig(GetParam());
  ASSERT_TRUE(rig.raw.has_value());
  Buf b(rig.bed.hal());
  // Bypass NetRaw's own check: a 4-byte chain cannot even hold the header.
  const std::span<const std::uint8_t> in[1] = {std::span<const std::uint8_t>(b.p, 4)};
  ASSERT_TRUE(rig.raw->tx_queue()
                  .add(std::span<const std::span<const std::uint8_t>>(in, 1),
                       std::span<const std::span<std::uint8_t>>())
                  .has_value());
  rig.raw->kick_tx();
  EXPECT_TRUE(rig.nic->needs_reset());
  EXPECT_EQ(rig.nic->net_stats().protocol_errors, 1u);
  EXPECT_NE(rig.raw->transport().get_status() & status::kDeviceNeedsReset, 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, NetRawTest,
                         ::testing::Values(NetTransportKind::MmioLegacy, NetTransportKind::Mmio,
                                           NetTransportKind::Pci),
                         [](const auto& p) {
                           return std::string(p.param == NetTransportKind::Pci    ? "Pci"
                                              : p.param == NetTransportKind::Mmio ? "MmioModern"
                                                                                  : "MmioLegacy");
                         });

// --- config rules (F24), once (transport-independent) ------------------------------------

TEST(NetRawConfig, MissingFeaturesAndBadMtu) {
  NetDeviceConfig cfg;
  cfg.offer_mac = false;
  cfg.offer_status = false;
  cfg.link_up = false;  // ignored: without STATUS the link is up (§5.1.4)
  cfg.mtu = 50;         // < 68: not trusted, 1500 instead
  RawRig rig(NetTransportKind::Mmio, cfg);
  ASSERT_TRUE(rig.raw.has_value());
  EXPECT_EQ(rig.raw->mac_address(), Raw::kFallbackMac);
  EXPECT_FALSE(rig.raw->config().mac_from_device);
  EXPECT_TRUE(rig.raw->link_up());
  EXPECT_EQ(rig.raw->status(), net::kSLinkUp);
  EXPECT_EQ(rig.raw->mtu(), 1500);
  EXPECT_FALSE(rig.raw->config().mtu_from_device);
}

TEST(NetRawConfig, LinkStatusIsLiveAndBigMtuAccepted) {
  NetDeviceConfig cfg;
  cfg.mtu = 9000;
  RawRig rig(NetTransportKind::Pci, cfg);
  ASSERT_TRUE(rig.raw.has_value());
  EXPECT_EQ(rig.raw->mtu(), 9000);
  EXPECT_EQ(rig.raw->max_frame_len(), 9014u);
  EXPECT_TRUE(rig.raw->link_up());
  const auto irqs = rig.nic->stats().config_interrupts;
  rig.nic->set_link(false);
  EXPECT_EQ(rig.nic->stats().config_interrupts, irqs + 1);
  EXPECT_FALSE(rig.raw->link_up());
  EXPECT_NE(rig.raw->ack_interrupt() & interrupt::kConfigChange, 0u);
  rig.nic->set_link(true);
  EXPECT_TRUE(rig.raw->link_up());
}

TEST(NetRawConfig, WithoutMtuFeatureTheDefaultApplies) {
  NetDeviceConfig cfg;
  cfg.offer_mtu = false;
  cfg.mtu = 9000;
  RawRig rig(NetTransportKind::Mmio, cfg);
  ASSERT_TRUE(rig.raw.has_value());
  EXPECT_EQ(rig.raw->features() & net::kFMtu, 0u);
  EXPECT_EQ(rig.raw->mtu(), 1500);
}

}  // namespace
