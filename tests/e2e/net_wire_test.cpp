// End to end over "the wire": two NICs wired together, the ARP/ICMP responder driven through
// VirtIoNetDev, pcap captures read back by tshark (skipped when tshark is not installed),
// `virtio-sim net --pcap`, and the default machine's NICs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "axdriver/virtio/probe.h"
#include "e2e/net_harness.h"
#include "virtio/emu/machine.h"
#include "virtio/emu/net_pcap.h"

namespace {

using namespace virtio;
using namespace virtio::test;
using axdriver::DevError;
using axdriver::NetBufPtr;
using emu::NetDeviceConfig;
namespace pkt = emu::netpkt;

// --- helpers ------------------------------------------------------------------------------

std::string run(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  if (status != nullptr) *status = st;
  return out;
}

bool have_tshark() {
  int st = 0;
  run("command -v tshark >/dev/null 2>&1", &st);
  return st == 0;
}

// Frames in a capture as tshark counts them (the acceptance check of the issue).
std::size_t tshark_frames(const std::string& file) {
  const std::string out = run("tshark -r '" + file + "' -T fields -e frame.number 2>/dev/null");
  std::size_t lines = 0;
  for (char c : out) lines += c == '\n';
  return lines;
}

// tshark's verdict on every IPv4 header and ICMP checksum in the capture ("1" = good).
std::vector<std::string> tshark_checksums(const std::string& file) {
  const std::string out = run("tshark -r '" + file +
                              "' -o ip.check_checksum:TRUE -T fields -e ip.checksum.status -e "
                              "icmp.checksum.status -Y icmp 2>/dev/null");
  std::vector<std::string> lines;
  std::string cur;
  for (char c : out) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return lines;
}

// virtio-sim next to this test binary (build/tests -> build/tools/virtio-sim).
std::string virtio_sim_path() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return {};
  self[n] = 0;
  std::string dir(self);
  dir = dir.substr(0, dir.rfind('/'));
  const std::string sim = dir + "/../tools/virtio-sim";
  return ::access(sim.c_str(), X_OK) == 0 ? sim : std::string();
}

std::string temp_file(const char* name) {
  return ::testing::TempDir() + "virtio_net_" + std::to_string(::getpid()) + "_" + name;
}

class NetWire : public ::testing::TestWithParam<NetTransportKind> {};

// --- a pair of NICs --------------------------------------------------------------------------

TEST_P(NetWire, PairOfNicsBothDirectionsWithBackPressure) {
  emu::NetTestbed bed(GetParam());
  NetDeviceConfig ca, cb;
  ca.mac = {0x52, 0x54, 0x00, 0, 0, 0xa};
  cb.mac = {0x52, 0x54, 0x00, 0, 0, 0xb};
  cb.inbox_frames = 16;  // small, so B's side fills up quickly
  emu::NetDevice* a = bed.add_nic(ca);
  emu::NetDevice* b = bed.add_nic(cb);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  emu::NetDevice::connect(*a, *b);
  auto ta = bed.transport(0);
  auto tb = bed.transport(1);
  ASSERT_TRUE(ta.has_value());
  ASSERT_TRUE(tb.has_value());
  auto da = NetDev::try_new(bed.hal(), std::move(*ta));
  auto db = NetDev::try_new(bed.hal(), std::move(*tb));
  ASSERT_TRUE(da.has_value());
  ASSERT_TRUE(db.has_value());

  // A -> B while B does not receive: 64 frames fill B's RX ring, 16 wait in B's inbox, the
  // rest stay in A's TX ring (held), then A's queue is full.
  std::uint32_t sent = 0;
  for (;; ++sent) {
    (void)da->recycle_tx_buffers();
    auto buf = da->alloc_tx_buffer(100);
    if (!buf) break;
    fill_test_frame(buf->packet_mut(), cb.mac, sent);
    auto r = da->transmit(*buf);
    if (!r) {
      EXPECT_EQ(r.error(), DevError::Again);
      (void)da->recycle_rx_buffer(*buf);
      break;
    }
  }
  EXPECT_EQ(sent, 64u + 16 + 64);
  EXPECT_EQ(a->held_tx(), 64);
  EXPECT_EQ(b->inbox_size(), 16u);
  // B drains: everything arrives, in order, intact.
  std::uint32_t next = 0;
  for (int round = 0; round < 20 && next < sent; ++round) {
    for (;;) {
      auto r = db->receive();
      if (!r) break;
      EXPECT_EQ(check_test_frame(r->packet(), cb.mac), next);
      ++next;
      ASSERT_TRUE(db->recycle_rx_buffer(*r).has_value());
    }
    (void)da->recycle_tx_buffers();
  }
  EXPECT_EQ(next, sent);
  // And B -> A.
  for (std::uint32_t s = 0; s < 10; ++s) {
    auto buf = db->alloc_tx_buffer(200);
    ASSERT_TRUE(buf.has_value());
    fill_test_frame(buf->packet_mut(), ca.mac, 1000 + s);
    ASSERT_TRUE(db->transmit(*buf).has_value());
  }
  for (std::uint32_t s = 0; s < 10; ++s) {
    auto r = da->receive();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(check_test_frame(r->packet(), ca.mac), 1000 + s);
    ASSERT_TRUE(da->recycle_rx_buffer(*r).has_value());
  }
  EXPECT_EQ(da->receive().error(), DevError::Again);
  ASSERT_TRUE(db->recycle_tx_buffers().has_value());
  ASSERT_TRUE(da->recycle_tx_buffers().has_value());
  for (auto* d : {&*da, &*db}) {
    const auto audit = d->audit();
    EXPECT_TRUE(audit.consistent);
    EXPECT_EQ(audit.caller, 0u);
    EXPECT_EQ(d->pool().free_count(), 0u);
  }
}

// --- the responder through the production driver ---------------------------------------------

// ARP + `count` pings; returns the number of intact replies.
int ping(NetDev& dev, int count, std::uint16_t ident) {
  const pkt::Mac mac = dev.mac_address().bytes;
  std::uint8_t f[1514];
  const auto send = [&](std::size_t n) {
    (void)dev.recycle_tx_buffers();
    auto buf = dev.alloc_tx_buffer(n);
    EXPECT_TRUE(buf.has_value());
    if (!buf) return;
    std::memcpy(buf->buf_ptr(), f, n);
    EXPECT_TRUE(dev.transmit(*buf).has_value());
  };
  send(pkt::write_arp_request(f, mac, pkt::kSlirpGuestIp, pkt::kSlirpGatewayIp));
  auto r = dev.receive();
  EXPECT_TRUE(r.has_value());
  if (!r) return 0;
  const auto arp = pkt::parse_arp(r->packet());
  EXPECT_TRUE(arp.has_value());
  EXPECT_TRUE(dev.recycle_rx_buffer(*r).has_value());
  if (!arp) return 0;
  EXPECT_EQ(arp->op, pkt::kArpReply);
  EXPECT_EQ(arp->sender_mac, pkt::kSlirpGatewayMac);
  EXPECT_EQ(arp->sender_ip, pkt::kSlirpGatewayIp);
  int good = 0;
  for (int i = 1; i <= count; ++i) {
    std::uint8_t payload[56];
    for (std::size_t k = 0; k < sizeof payload; ++k)
      payload[k] = static_cast<std::uint8_t>(k + static_cast<std::size_t>(i));
    send(pkt::write_icmp_echo_request(f, mac, arp->sender_mac, pkt::kSlirpGuestIp,
                                      pkt::kSlirpGatewayIp, ident, static_cast<std::uint16_t>(i),
                                      payload));
    auto e = dev.receive();
    EXPECT_TRUE(e.has_value());
    if (!e) continue;
    const auto echo = pkt::parse_icmp_echo(e->packet());
    if (echo && echo->type == pkt::kIcmpEchoReply && echo->ip_checksum_ok &&
        echo->icmp_checksum_ok && echo->ident == ident && echo->seq == i &&
        echo->payload.size() == sizeof payload &&
        std::equal(echo->payload.begin(), echo->payload.end(), payload)) {
      ++good;
    }
    EXPECT_TRUE(dev.recycle_rx_buffer(*e).has_value());
  }
  EXPECT_TRUE(dev.recycle_tx_buffers().has_value());
  return good;
}

TEST_P(NetWire, PingTheResponderThroughVirtIoNetDev) {
  NetDeviceConfig cfg;
  cfg.backend = emu::NetBackend::Responder;
  NetRig rig(GetParam(), cfg);
  ASSERT_TRUE(rig.ok());
  EXPECT_EQ(ping(*rig.dev, 5, 0x4242), 5);
  const auto rs = rig.nic->responder_stats();
  EXPECT_EQ(rs.arp_replies, 1u);
  EXPECT_EQ(rs.echo_replies, 5u);
  rig.expect_no_leak();
}

// --- captures read by tshark ------------------------------------------------------------------

TEST_P(NetWire, PcapOfLoopbackAndPingIsReadByTshark) {
  if (!have_tshark()) GTEST_SKIP() << "tshark is not installed";
  const std::string loop_file = temp_file("loop.pcap");
  const std::string ping_file = temp_file("ping.pcap");
  {
    NetRig rig(GetParam());
    ASSERT_TRUE(rig.ok());
    auto w = emu::PcapWriter::open(loop_file);
    ASSERT_NE(w, nullptr);
    rig.nic->set_pcap(w.get());
    for (std::uint32_t s = 0; s < 37; ++s) ASSERT_TRUE(rig.send(s, 60 + s * 30).has_value());
    for (;;) {
      auto r = rig.dev->receive();
      if (!r) break;
      ASSERT_TRUE(rig.dev->recycle_rx_buffer(*r).has_value());
    }
    rig.nic->set_pcap(nullptr);
    EXPECT_EQ(w->frames(), 37u);  // looped frames are captured once
  }
  EXPECT_EQ(tshark_frames(loop_file), 37u);
  {
    NetDeviceConfig cfg;
    cfg.backend = emu::NetBackend::Responder;
    NetRig rig(GetParam(), cfg);
    ASSERT_TRUE(rig.ok());
    auto w = emu::PcapWriter::open(ping_file);
    ASSERT_NE(w, nullptr);
    rig.nic->set_pcap(w.get());
    EXPECT_EQ(ping(*rig.dev, 3, 7), 3);
    rig.nic->set_pcap(nullptr);
  }
  EXPECT_EQ(tshark_frames(ping_file), 2u + 2 * 3);
  // tshark recomputes the checksums: every IPv4 header and ICMP message is correct.
  const auto sums = tshark_checksums(ping_file);
  ASSERT_EQ(sums.size(), 6u);
  for (const auto& line : sums) EXPECT_EQ(line, "1\t1");
  std::remove(loop_file.c_str());
  std::remove(ping_file.c_str());
}

INSTANTIATE_TEST_SUITE_P(Transports, NetWire,
                         ::testing::Values(NetTransportKind::MmioLegacy, NetTransportKind::Mmio,
                                           NetTransportKind::Pci),
                         kind_name);

TEST(NetSim, PcapFromVirtioSimHasTheExpectedFrameCount) {
  if (!have_tshark()) GTEST_SKIP() << "tshark is not installed";
  const std::string sim = virtio_sim_path();
  if (sim.empty()) GTEST_SKIP() << "virtio-sim not found next to the test binary";
  for (const char* transport : {"mmio", "mmio-legacy", "pci"}) {
    const std::string file = temp_file("sim.pcap");
    int st = -1;
    const std::string out = run(sim + " net --transport " + transport +
                                    " --packets 50 --size 300 --json --pcap '" + file + "'",
                                &st);
    EXPECT_EQ(st, 0) << out;
    EXPECT_NE(out.find("\"sent\": 50"), std::string::npos) << out;
    EXPECT_NE(out.find("\"received\": 50"), std::string::npos) << out;
    EXPECT_NE(out.find("\"corrupted\": 0"), std::string::npos) << out;
    EXPECT_NE(out.find("\"ok\": true"), std::string::npos) << out;
    EXPECT_EQ(tshark_frames(file), 50u) << transport;
    const std::string ping = run(sim + " net --ping --packets 4 --json --transport " +
                                     std::string(transport) + " --pcap '" + file + "'",
                                 &st);
    EXPECT_EQ(st, 0) << ping;
    EXPECT_EQ(tshark_frames(file), 2u + 2 * 4) << transport;  // ARP pair + 4 echo pairs
    std::remove(file.c_str());
  }
}

TEST(NetSim, BadArgumentsAreRejected) {
  const std::string sim = virtio_sim_path();
  if (sim.empty()) GTEST_SKIP() << "virtio-sim not found next to the test binary";
  int st = 0;
  run(sim + " net --transport ccw 2>/dev/null", &st);
  EXPECT_NE(st, 0);
  run(sim + " net --size 17 2>/dev/null", &st);
  EXPECT_NE(st, 0);
  run(sim + " net --size 1515 2>/dev/null", &st);
  EXPECT_NE(st, 0);
  run(sim + " net --packets x 2>/dev/null", &st);
  EXPECT_NE(st, 0);
}

// --- the default machine ------------------------------------------------------------------------

TEST(NetDefaultMachine, BothNicsAreLoopbackNics) {
  auto m = emu::Machine::create_default();
  emu::EmuHal hal = m->hal();
  int found = 0;
  for (const emu::MmioSlot& slot : m->mmio_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Network) continue;
    ++found;
    auto probed = axdriver::virtio::probe_mmio_device(hal, slot.base, emu::MmioDevice::kWindowSize);
    ASSERT_TRUE(probed.has_value());
    EXPECT_EQ(probed->type, axdriver::DeviceType::Net);
    auto dev = axdriver::virtio::VirtIoNetDev<emu::EmuHal, emu::NetTestbed::Mmio, 64>::try_new(
        hal, std::move(probed->transport));
    ASSERT_TRUE(dev.has_value());
    auto buf = dev->alloc_tx_buffer(64);
    ASSERT_TRUE(buf.has_value());
    fill_test_frame(buf->packet_mut(), dev->mac_address().bytes, 9);
    ASSERT_TRUE(dev->transmit(*buf).has_value());
    auto r = dev->receive();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(check_test_frame(r->packet(), dev->mac_address().bytes), 9u);
    ASSERT_TRUE(dev->recycle_rx_buffer(*r).has_value());
  }
  int pci = 0;
  for (const emu::PciSlot& slot : m->pci_slots()) {
    if (slot.model != nullptr && slot.model->device_id() == DeviceId::Network) ++pci;
  }
  EXPECT_EQ(found, 1);
  EXPECT_EQ(pci, 1);
}

}  // namespace
